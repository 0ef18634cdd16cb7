#!/bin/sh
# SPDX-License-Identifier: MIT
# GPU benchmark: IBP, CROWN and alpha-CROWN passes on mnist 256x4 (the
# 256x6 network is not bundled), a 784-4096x4-10 MLP and a ResNet from
# mkmodel, each compared with its floor: the FLOPs of its matrix products
# at the cuBLAS SGEMM rate measured in the same run (an 8192^3 product
# through the backend).
#
# Usage: tools/bench-gpu.sh [BUILDDIR] [OUT.md]
# Environment: SB_BENCH_BACKEND (default cuda; cpu works for a dry run),
# SB_BENCH_FLOOR_N (probe size, default 8192).
set -eu
builddir=$(cd "${1:-.}" && pwd)
srcdir=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$srcdir/docs/bench-gpu.md}
sb="$builddir/hosts/cli/shardbound"
backend=${SB_BENCH_BACKEND:-cuda}
n=${SB_BENCH_FLOOR_N:-8192}
export SHARDBOUND_BACKEND_PATH="$builddir/backends/.libs"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$sb" mkmodel --mlp 784,4096,4096,4096,4096,10 --seed 1 --eps 0.002 \
  -o "$tmp/wide.onnx" --property "$tmp/wide.vnnlib" >/dev/null
"$sb" mkmodel --resnet --seed 1 --eps 0.002 -o "$tmp/resnet.onnx" --property "$tmp/resnet.vnnlib" >/dev/null
data=$srcdir/tests/data
{
  echo "# GPU speed against the hardware floor ($backend backend)"
  echo
  echo "\`tools/bench-gpu.sh\`; device: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | grep . || echo "none found (dry run on $backend)")."
  echo "floor = FLOPs of the pass's matrix products / SGEMM rate measured by an ${n}^3 product through the backend in the same run."
  echo
  echo "| model | method | median (ms) | product GFLOP | SGEMM GFLOP/s | floor (ms) | median / floor |"
  echo "|---|---|---|---|---|---|---|"
  for spec in "mnist 256x4:$data/onnx/mnist-net_256x4.onnx:$data/vnnlib/prop_0_0.03.vnnlib" \
              "784-4096x4-10:$tmp/wide.onnx:$tmp/wide.vnnlib" \
              "resnet (mkmodel):$tmp/resnet.onnx:$tmp/resnet.vnnlib"; do
    name=${spec%%:*}; rest=${spec#*:}; model=${rest%%:*}; prop=${rest#*:}
    for method in ibp crown alpha-crown; do
      json=$("$sb" bench "$model" "$prop" --backend "$backend" --method "$method" --repeat 5 \
             --floor "$n" --json)
      python3 - "$name" "$method" "$json" <<'PY'
import json, sys
name, method, d = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
m, f = d["median_seconds"] * 1e3, d["floor_seconds"] * 1e3
print(f"| {name} | {method} | {m:.2f} | {d['product_gflop']:.2f} | {d['gemm_gflops']:.0f} | {f:.3f} | {m / f if f else float('nan'):.1f} |")
PY
    done
  done
} > "$out"
cat "$out"
