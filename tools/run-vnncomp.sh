#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs `shardbound verify` on the instances of a VNN-COMP benchmark folder
# and compares every answer with the published outcomes: a markdown table
# per network and per instance, with a "contradictions" column (our unsat
# where the published answer is sat, or the reverse) that must stay 0, and
# for an undecided instance the worst margin its search left and the least
# margin it found at an input.
#
#   tools/run-vnncomp.sh BENCHMARK [BUILD_DIR] [CAP] [OUT.md]
#
# BENCHMARK is a folder holding instances.csv, onnx/ and vnnlib/ (the
# VNN-COMP layout), or the name of one under /work/shared/data. Published
# outcomes come from its reference_results.csv, else from
# tools/vnncomp-references/NAME.csv (columns onnx, vnnlib, result, ...).
# CAP (seconds) caps each instance's own timeout; 0 keeps the benchmark's.
# Environment: INSTANCES, an extended regex that selects lines of
# instances.csv (default: all); SHARDBOUND_VERIFY_OPTIONS, extra verify
# options. Exits 1 when an answer contradicts a published one.
set -eu
usage="usage: tools/run-vnncomp.sh BENCHMARK [BUILD_DIR] [CAP] [OUT.md]"
data=${1:?$usage}
[ -d "$data" ] || data=/work/shared/data/$data
[ -f "$data/instances.csv" ] || { echo "run-vnncomp: no instances.csv in $data" >&2; exit 2; }
name=$(basename "$data")
build=${2:-.}
cap=${3:-0}
out=${4:-docs/vnncomp-$name-results.md}
srcdir=$(cd "$(dirname "$0")/.." && pwd)
cli="$build/hosts/cli/shardbound"
export SHARDBOUND_BACKEND_PATH="${SHARDBOUND_BACKEND_PATH:-$build/backends/.libs}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# An instance's published outcome: the folder's own reference_results.csv,
# else tools/vnncomp-references/NAME.csv (which also covers networks the
# folder's file leaves out, such as mnist_fc's 256x6). Both are read as
# one file, in that order; ref_names lists them for the report.
refs="$tmp/references"
ref_names=
: > "$refs"
for f in "$data/reference_results.csv" "$srcdir/tools/vnncomp-references/$name.csv"; do
  if [ -f "$f" ]; then
    { cat "$f"; echo; } >> "$refs" # a file may lack its last newline
    ref_names="$ref_names\`${f#"$srcdir"/}\` "
  fi
done

rows="$tmp/rows"
: > "$rows"
# Some benchmarks' instances.csv have CRLF line ends (cifar10_resnet does).
tr -d '\r' < "$data/instances.csv" | grep -E "${INSTANCES:-.}" | while IFS=, read -r onnx vnnlib timeout; do
  timeout=$(printf '%.0f' "$timeout")
  if [ "$cap" -gt 0 ] && [ "$timeout" -gt "$cap" ]; then timeout=$cap; fi
  start=$(date +%s%N)
  # The answer, and for an undecided search the worst margin it left
  # (last_progress) and the least one it found (found_margin): how far
  # from a proof and from a counterexample it stopped.
  # shellcheck disable=SC2086
  "$cli" verify "$data/$onnx" "$data/$vnnlib" --timeout "$timeout" --quiet --json \
    ${SHARDBOUND_VERIFY_OPTIONS:-} > "$tmp/verify.json" 2>/dev/null || true
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  read -r result margin found <<EOF_JSON
$(python3 -c '
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError:
    print("error - -"); sys.exit()
undecided = d["answer"] not in ("sat", "unsat")
p = d.get("last_progress")
m = p.get("worst_margin") if p and undecided else None
f = d.get("found_margin") if undecided else None
print(d["answer"], *("-" if v is None else "%.4g" % v for v in (m, f)))
' "$tmp/verify.json")
EOF_JSON
  ref=- ref_s=-
  if [ -n "$ref_names" ]; then
    line=$(grep -F "$(basename "$onnx"),$(basename "$vnnlib")," "$refs" | head -n 1 || true)
    ref=$(echo "$line" | cut -d, -f3)
    ref=${ref:--}
    ref_s=$(echo "$line" | cut -d, -f4)
    ref_s=${ref_s:--}
  fi
  verdict=ok
  if { [ "$result" = unsat ] && [ "$ref" = sat ]; } || { [ "$result" = sat ] && [ "$ref" = unsat ]; }; then
    verdict=CONTRADICTS
  fi
  printf '%s,%s,%s,%s,%d.%03d,%s,%s,%s,%s,%s\n' "$(basename "$onnx" .onnx)" "$(basename "$vnnlib" .vnnlib)" \
    "$timeout" "$result" $((ms / 1000)) $((ms % 1000)) "$ref" "$verdict" "$ref_s" "$margin" "$found" | tee -a "$rows"
done

{
  echo "# $name (VNN-COMP): shardbound verify on the CPU backend"
  echo
  echo "Machine: $(nproc) cores, $(uname -m), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo "Command: \`tools/run-vnncomp.sh $data $build $cap\`${INSTANCES:+ with INSTANCES='$INSTANCES'}"
  if [ "$cap" -gt 0 ]; then
    echo "(per-instance timeout from instances.csv, capped at ${cap} s;"
  else
    echo "(per-instance timeout from instances.csv;"
  fi
  echo "OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-unset})."
  if [ -n "$ref_names" ]; then
    echo "Published outcomes (alpha-beta-CROWN), first file that has the instance:"
    echo "$ref_names"
  else
    echo "No published per-instance outcomes are stored for $name: the contradictions"
    echo "column cannot compare answers; every sat answer was re-checked by verify's"
    echo "forward pass."
  fi
  echo
  echo "| network | decided | unsat | sat | timeout | unknown | median s (decided) | published decided | contradictions |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for net in $(cut -d, -f1 "$rows" | sort -u); do
    med=$(awk -F, -v net="$net" '$1 == net && ($4 == "unsat" || $4 == "sat") { print $5 }' "$rows" | sort -n |
          awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
    awk -F, -v net="$net" -v med="$med" '
      $1 == net { n++; if ($4 == "unsat") u++; else if ($4 == "sat") s++; else if ($4 == "timeout") t++; else k++;
                  if ($6 == "sat" || $6 == "unsat") p++; if ($7 != "ok") c++ }
      END { printf "| %s | %d/%d | %d | %d | %d | %d | %s | %d | %d |\n", net, u + s, n, u, s, t, k, med, p, c }' "$rows"
  done
  echo
  cat <<'EOT'
Worst margin: for an undecided instance, the lowest margin among the
open domains at the last report of branch-and-bound (`last_progress`
of `verify --json`); a proof needs every margin above 0. Least found:
the least margin at an input checked by a forward pass (`found_margin`);
a counterexample needs one at most 0.
EOT
  echo
  echo "| network | property | timeout | shardbound | seconds | worst margin | least found | published | published s | check |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  awk -F, '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $9, $10, $6, $8, $7 }' "$rows"
} > "$out"
echo "wrote $out"
if grep -q CONTRADICTS "$rows"; then exit 1; fi
