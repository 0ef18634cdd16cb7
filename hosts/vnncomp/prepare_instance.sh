#!/bin/bash
# SPDX-License-Identifier: MIT
# VNN-COMP: prepare_instance.sh v1 BENCHMARK ONNX VNNLIB -- nothing to
# precompute; ends leftover runs of this tool and checks the files exist.
set -uo pipefail
if [ "${1:-}" != "v1" ] || [ $# -ne 4 ]; then
  echo "usage: prepare_instance.sh v1 BENCHMARK ONNX VNNLIB" >&2; exit 1
fi
pkill -f "shardbound verify" 2>/dev/null || true
for f in "$3" "$4"; do
  [ -f "$f" ] || [ -f "$f.gz" ] || { echo "missing file: $f" >&2; exit 1; }
done
exit 0
