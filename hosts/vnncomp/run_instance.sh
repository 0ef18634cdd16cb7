#!/bin/bash
# SPDX-License-Identifier: MIT
# VNN-COMP: run_instance.sh v1 BENCHMARK ONNX VNNLIB RESULTS_FILE TIMEOUT --
# runs `shardbound verify` and writes the results file (result word, and
# the counterexample for sat).
set -uo pipefail
if [ "${1:-}" != "v1" ] || [ $# -ne 6 ]; then
  echo "usage: run_instance.sh v1 BENCHMARK ONNX VNNLIB RESULTS_FILE TIMEOUT" >&2; exit 1
fi
top=$(cd "$(dirname "$0")/../.." && pwd)
onnx=$3 vnnlib=$4 results=$5 timeout=$6
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The harness may hand over gzipped files.
for var in onnx vnnlib; do
  f=${!var}
  if [ ! -f "$f" ] && [ -f "$f.gz" ]; then f=$f.gz; fi
  if [[ "$f" == *.gz ]]; then gunzip -c "$f" > "$tmp/$(basename "${f%.gz}")"; f=$tmp/$(basename "${f%.gz}"); fi
  printf -v "$var" '%s' "$f"
done
if [ -f "$top/configure.ac" ]; then
  # A checkout: its own build and backends.
  cli=$top/hosts/cli/shardbound
  export SHARDBOUND_BACKEND_PATH="${SHARDBOUND_BACKEND_PATH:-$top/backends/.libs}"
else
  # Installed: the installed command, which finds the installed backends.
  cli=shardbound
fi
"$cli" verify "$onnx" "$vnnlib" --timeout "$timeout" \
  --results-file "$results" --quiet
status=$?
# Whatever happened, the harness needs a results file.
[ -s "$results" ] || echo error > "$results"
exit $status
