#!/bin/sh
# SPDX-License-Identifier: MIT
# CPU speed of one CROWN pass (model loaded once, median of repeats), as the
# engine issue measured auto_LiRPA: mnist_fc 256x2 and 256x4, cifar10
# resnet_2b, and a random 784-4096x4-10 MLP (eps 0.002 box).
#
# Usage: tools/bench-cpu.sh [BUILDDIR] [OUT.md]
# Environment: OPENBLAS_NUM_THREADS (default 2, as auto_LiRPA was measured).
set -eu
builddir=$(cd "${1:-.}" && pwd)
srcdir=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$srcdir/docs/bench-cpu.md}
sb="$builddir/hosts/cli/shardbound"
export SHARDBOUND_BACKEND_PATH="$builddir/backends/.libs"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-2}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
data=$srcdir/tests/data
"$sb" mkmodel --mlp 784,4096,4096,4096,4096,10 --seed 1 --eps 0.002 \
  -o "$tmp/wide.onnx" --property "$tmp/wide.vnnlib" >/dev/null

row () { # NAME MODEL PROPERTY REPEAT AUTO_LIRPA_MS
  json=$("$sb" bench "$2" "$3" --method crown --repeat "$4" --json)
  python3 - "$1" "$5" "$json" <<'PY'
import json, sys
name, ref, d = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ms = d["median_seconds"] * 1e3
print(f"| {name} | {ms:.1f} | {ref} | {d['max_rss_bytes'] / 2**20:.0f} | {d['per_rank'][0]['peak_bytes'] / 2**20:.1f} |")
PY
}
{
  echo "# CPU speed of CROWN (cpu backend)"
  echo
  echo "\`tools/bench-cpu.sh\` on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"
  echo "OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS; model loaded once, median of repeated CROWN passes"
  echo "(output bounds and the property's spec). auto_LiRPA column: the figures quoted in the engine issue"
  echo "(PyTorch 1.13, CPU, 2 threads, same machine type)."
  echo
  echo "| model | shardbound median (ms) | auto_LiRPA (ms) | process peak RSS (MiB) | backend peak (MiB) |"
  echo "|---|---|---|---|---|"
  row "mnist 256x2" "$data/onnx/mnist-net_256x2.onnx" "$data/vnnlib/prop_0_0.03.vnnlib" 21 "~16"
  row "mnist 256x4" "$data/onnx/mnist-net_256x4.onnx" "$data/vnnlib/prop_0_0.03.vnnlib" 21 "25-75"
  row "resnet_2b" "$data/onnx/resnet_2b.onnx" "$data/vnnlib/prop_0_eps_0.008.vnnlib" 5 "260-290"
  row "784-4096x4-10 MLP" "$tmp/wide.onnx" "$tmp/wide.vnnlib" 3 "9000 (2.4 GiB peak RSS)"
  # The sections written by hand below the table (from the first "## "
  # heading on) are kept.
  if [ -f "$out" ]; then
    echo
    sed -n '/^## /,$p' "$out"
  fi
} > "$tmp/out.md"
mv "$tmp/out.md" "$out"
cat "$out"
