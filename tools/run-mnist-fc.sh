#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs `shardbound verify` on the VNN-COMP 2022 mnist_fc instances (256x2 and
# 256x4) and compares every answer with the published reference results:
# tools/run-vnncomp.sh restricted to those two networks.
#
#   tools/run-mnist-fc.sh DATA_DIR [BUILD_DIR] [MAX_TIMEOUT] [OUT.md]
#
# DATA_DIR holds instances.csv, reference_results.csv, onnx/ and vnnlib/
# (the VNN-COMP benchmark folder). MAX_TIMEOUT (seconds) caps each
# instance's own timeout; 0 keeps the benchmark's. Extra verify options can
# be passed in SHARDBOUND_VERIFY_OPTIONS.
set -eu
data=${1:?usage: tools/run-mnist-fc.sh DATA_DIR [BUILD_DIR] [MAX_TIMEOUT] [OUT.md]}
INSTANCES='256x(2|4)' exec "$(dirname "$0")/run-vnncomp.sh" "$data" "${2:-.}" "${3:-0}" \
  "${4:-docs/mnist-fc-results.md}"
