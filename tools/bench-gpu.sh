#!/bin/sh
# SPDX-License-Identifier: MIT
# GPU benchmark: IBP, CROWN and alpha-CROWN passes on mnist 256x4 (the
# 256x6 network is not bundled), a 784-4096x4-10 MLP and a ResNet from
# mkmodel, each compared with its floor: the FLOPs of its matrix products
# at the cuBLAS SGEMM rate measured in the same run (an 8192^3 product
# through the backend).
#
# The multi-rank backends run the same passes with their ranks on the same
# device kind (-o device=cuda: P ranks sharing the GPU over the loopback
# communicator, or one GPU each with comm=nccl), against the floor measured
# by the single-device backend.
#
# Usage: tools/bench-gpu.sh [BUILDDIR] [OUT.md]
# Environment: SB_BENCH_BACKEND (default cuda; cpu works for a dry run),
# SB_BENCH_FLOOR_N (probe size, default 8192), SB_BENCH_RANKS (multi-rank
# rows as BACKEND:P[:COMM], default "fsdp:1 fsdp:2 fsdp:4 tp:1 tp:2 tp:4";
# e.g. add fsdp:1:nccl, or fsdp:4:nccl on a machine with 4 GPUs; empty for
# none).
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
ranks=${SB_BENCH_RANKS-"fsdp:1 fsdp:2 fsdp:4 tp:1 tp:2 tp:4"}
# One table row from a bench --json answer; the floor's SGEMM rate comes
# from the row itself or, for ranks, from the single-device row.
row() {
  python3 - "$@" <<'PY'
import json, sys
name, method, label, d = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
rate = float(sys.argv[5]) if len(sys.argv) > 5 else d["gemm_gflops"]
m = d["median_seconds"] * 1e3
f = d["product_gflop"] / rate * 1e3 if rate > 0 else float("nan")
print(f"| {name} | {method} | {label} | {m:.2f} | {d['product_gflop']:.2f} | {rate:.0f} | {f:.3f} | {m / f if f else float('nan'):.1f} |")
PY
}
{
  echo "# GPU speed against the hardware floor ($backend backend)"
  echo
  echo "\`tools/bench-gpu.sh\`; device: $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | grep . || echo "none found (dry run on $backend)")."
  echo "floor = FLOPs of the pass's matrix products / SGEMM rate measured by an ${n}^3 product through the $backend backend in the same run; the multi-rank rows (ranks on device=$backend) use the same rate."
  echo
  echo "| model | method | backend (ranks) | median (ms) | product GFLOP | SGEMM GFLOP/s | floor (ms) | median / floor |"
  echo "|---|---|---|---|---|---|---|---|"
  for spec in "mnist 256x4:$data/onnx/mnist-net_256x4.onnx:$data/vnnlib/prop_0_0.03.vnnlib" \
              "784-4096x4-10:$tmp/wide.onnx:$tmp/wide.vnnlib" \
              "resnet (mkmodel):$tmp/resnet.onnx:$tmp/resnet.vnnlib"; do
    name=${spec%%:*}; rest=${spec#*:}; model=${rest%%:*}; prop=${rest#*:}
    for method in ibp crown alpha-crown; do
      json=$("$sb" bench "$model" "$prop" --backend "$backend" --method "$method" --repeat 5 \
             --floor "$n" --json)
      row "$name" "$method" "$backend" "$json"
      rate=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["gemm_gflops"])' "$json")
      for cfg in $ranks; do
        be=${cfg%%:*}; rest=${cfg#*:}; p=${rest%%:*}
        comm=loopback; [ "$rest" = "$p" ] || comm=${rest#*:}
        label="$be ($p, $comm)"
        if json=$("$sb" bench "$model" "$prop" --backend "$be" --ranks "$p" \
                  -o device="$backend" -o comm="$comm" --method "$method" \
                  --repeat 5 --json 2>"$tmp/err"); then
          row "$name" "$method" "$label" "$json" "$rate"
        else
          echo "| $name | $method | $label | failed: $(tail -n 1 "$tmp/err" | tr '|' '/') | | | | |"
        fi
      done
    done
  done
} > "$out"
cat "$out"
