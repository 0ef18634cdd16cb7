#!/bin/sh
# SPDX-License-Identifier: MIT
# Seeds one harness's corpus: seeds.sh HARNESS SRCDIR OUTDIR [CLI]
# from the repository's test data and examples; with CLI (the shardbound
# command of the gcc build), also small generated networks, which fuzz far
# faster than the VNN-COMP models.
set -e
h=$1 src=$2 out=$3 cli=$4
mkdir -p "$out"
small=$(mktemp -d)
trap 'rm -rf "$small"' EXIT
if [ -n "$cli" ] && [ -x "$cli" ]; then
  "$cli" mkmodel --mlp 4,8,3 --seed 1 --eps 0.1 -o "$small/mlp.onnx" --property "$small/mlp.vnnlib" >/dev/null
  "$cli" mkmodel --resnet --input 1x4x4 --channels 2 --blocks 1 --classes 3 --seed 2 --eps 0.1 \
    -o "$small/resnet.onnx" --property "$small/resnet.vnnlib" >/dev/null
fi

# The load harness's input: a 4-byte little-endian model length, the model,
# then the property (fuzz/fuzz_load.c).
pair () {
  n=$(wc -c < "$1")
  printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((n & 255)) $((n >> 8 & 255)) \
    $((n >> 16 & 255)) $((n >> 24 & 255)))" > "$3"
  cat "$1" "$2" >> "$3"
}

case $h in
  onnx)
    cp "$src"/tests/data/onnx/*.onnx "$out"/
    for f in "$small"/*.onnx; do if [ -f "$f" ]; then cp "$f" "$out"/; fi; done ;;
  vnnlib)
    cp "$src"/tests/data/vnnlib/*.vnnlib "$src"/tests/data/vnnlib-bad/*.vnnlib "$out"/
    for f in "$small"/*.vnnlib; do if [ -f "$f" ]; then cp "$f" "$out"/; fi; done ;;
  config)
    printf '[host]\nbackend = cpu\nbackend_path = backends:/usr/lib\n' > "$out"/host.conf
    printf '[backend cpu]\nthreads = 2\n\n[backend fsdp]\nranks = 4\nmemory = 1G\n' > "$out"/backends.conf
    printf '# comment\n[host]\nbackend=tp\n[backend tp]\nranks=2\n' > "$out"/comment.conf ;;
  load)
    pair "$src"/tests/data/onnx/mnist-net_256x2.onnx "$src"/tests/data/vnnlib/prop_0_0.03.vnnlib "$out"/mnist.bin
    for m in mlp resnet; do
      if [ -f "$small/$m.onnx" ]; then pair "$small/$m.onnx" "$small/$m.vnnlib" "$out/$m.bin"; fi
    done ;;
  *) echo "seeds.sh: unknown harness $h" >&2; exit 1 ;;
esac
