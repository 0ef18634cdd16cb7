#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs `shardbound verify` on the VNN-COMP 2022 mnist_fc instances (256x2 and
# 256x4) and compares every answer with the published reference results.
#
#   tools/run-mnist-fc.sh DATA_DIR [BUILD_DIR] [MAX_TIMEOUT] [OUT.md]
#
# DATA_DIR holds instances.csv, reference_results.csv, onnx/ and vnnlib/
# (the VNN-COMP benchmark folder). MAX_TIMEOUT (seconds) caps each
# instance's own timeout; 0 keeps the benchmark's. Extra verify options can
# be passed in SHARDBOUND_VERIFY_OPTIONS.
set -eu
data=${1:?usage: tools/run-mnist-fc.sh DATA_DIR [BUILD_DIR] [MAX_TIMEOUT] [OUT.md]}
build=${2:-.}
cap=${3:-0}
out=${4:-docs/mnist-fc-results.md}
cli="$build/hosts/cli/shardbound"
export SHARDBOUND_BACKEND_PATH="${SHARDBOUND_BACKEND_PATH:-$build/backends/.libs}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rows="$tmp/rows"
: > "$rows"
grep -E '256x(2|4)' "$data/instances.csv" | while IFS=, read -r onnx vnnlib timeout; do
  timeout=$(printf '%.0f' "$timeout")
  if [ "$cap" -gt 0 ] && [ "$timeout" -gt "$cap" ]; then timeout=$cap; fi
  start=$(date +%s%N)
  # shellcheck disable=SC2086
  result=$("$cli" verify "$data/$onnx" "$data/$vnnlib" --timeout "$timeout" --quiet \
           ${SHARDBOUND_VERIFY_OPTIONS:-} 2>/dev/null | head -n 1) || true
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  ref=$(grep -F "$(basename "$onnx"),$(basename "$vnnlib")," "$data/reference_results.csv" | cut -d, -f3)
  verdict=ok
  if { [ "$result" = unsat ] && [ "$ref" = sat ]; } || { [ "$result" = sat ] && [ "$ref" = unsat ]; }; then
    verdict=CONTRADICTS
  fi
  printf '%s,%s,%s,%s,%d.%03d,%s,%s\n' "$(basename "$onnx" .onnx)" "$(basename "$vnnlib" .vnnlib)" \
    "$timeout" "$result" $((ms / 1000)) $((ms % 1000)) "$ref" "$verdict" | tee -a "$rows"
done

{
  echo "# mnist_fc (VNN-COMP 2022): shardbound verify on the CPU backend"
  echo
  echo "Machine: $(nproc) cores, $(uname -m). Command: \`tools/run-mnist-fc.sh $data $build $cap\`"
  echo "(per-instance timeout from instances.csv, capped at ${cap}s when non-zero)."
  echo
  echo "| network | decided | unsat | sat | timeout | unknown | median s (decided) | contradictions |"
  echo "|---|---|---|---|---|---|---|---|"
  for net in mnist-net_256x2 mnist-net_256x4; do
    med=$(awk -F, -v net="$net" '$1 == net && ($4 == "unsat" || $4 == "sat") { print $5 }' "$rows" | sort -n |
          awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    awk -F, -v net="$net" -v med="$med" '
      $1 == net { n++; if ($4 == "unsat") u++; else if ($4 == "sat") s++; else if ($4 == "timeout") t++; else k++;
                  if ($7 != "ok") c++ }
      END { printf "| %s | %d/%d | %d | %d | %d | %d | %s | %d |\n", net, u + s, n, u, s, t, k, med, c }' "$rows"
  done
  echo
  echo "| network | property | timeout | shardbound | seconds | reference (alpha-beta-CROWN) | check |"
  echo "|---|---|---|---|---|---|---|"
  awk -F, '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7 }' "$rows"
} > "$out"
echo "wrote $out"
if grep -q CONTRADICTS "$rows"; then exit 1; fi
