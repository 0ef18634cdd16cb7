#!/bin/sh
# SPDX-License-Identifier: MIT
# For a session with a GPU: every auto_LiRPA golden of tests/data through
# the shardbound command on the cuda backend, and on fsdp and tp with their
# ranks on the GPU (-o device=cuda, P = 1..4 sharing it over the loopback
# communicator, and P = 1 over NCCL), and as MPI processes (mpirun -np P
# -o comm=mpi -o device=cuda: NCCL between the processes, its id sent over
# MPI; P = 1, and 2 where two GPUs are visible). Checks, for IBP and CROWN:
#   cuda against the golden: 1e-4 (absolute or relative, the larger);
#   fsdp against cuda: the same printed bounds (9 significant digits, which
#     tell float32 values apart);
#   tp against cuda: relative 1e-5, magnitudes below 1 counted as 1.
# Prints one line per run and exits 1 if anything differs or fails.
#
# Usage: tools/check-gpu-goldens.sh [BUILDDIR]
# Environment: SB_GOLDEN_RANKS (default "1 2 3 4"), SB_GOLDEN_NCCL_RANKS
# (default "1"; "1 2" etc. on a machine with that many GPUs),
# SB_GOLDEN_MPI_RANKS (default "1", "1 2" with two GPUs; empty skips).
# With mpirun and exactly one GPU it also checks that mpirun -np 2 (two
# processes, one GPU: NCCL refuses) fails alike on both processes.
set -eu
builddir=$(cd "${1:-.}" && pwd)
srcdir=$(cd "$(dirname "$0")/.." && pwd)
sb="$builddir/hosts/cli/shardbound"
data="$srcdir/tests/data"
export SHARDBOUND_BACKEND_PATH="$builddir/backends/.libs"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
mpirun=$(command -v mpirun || true)
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
mpi_ranks="1"
[ "${gpus:-0}" -ge 2 ] && mpi_ranks="1 2"
[ -n "$mpirun" ] || mpi_ranks=""
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
launch=""
for golden in "$data"/goldens/*.json; do
  name=$(basename "$golden" .json)
  set -- $(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["onnx"], d["vnnlib"])' "$golden")
  onnx="$data/onnx/$1"; prop="$data/vnnlib/$2"
  for method in ibp crown; do
    run() { # NAME ARGS...: bounds --json into $tmp/NAME.json
      out="$tmp/$1.json"; shift
      $launch "$sb" bounds "$onnx" "$prop" --method "$method" --json "$@" >"$out" 2>"$tmp/err" || {
        echo "FAIL $name $method $*: $(tail -n 1 "$tmp/err")"; failed=1; return 1; }
    }
    run cuda --backend cuda || continue
    runs=""
    for p in ${SB_GOLDEN_RANKS-1 2 3 4}; do
      run "fsdp-$p" --backend fsdp --ranks "$p" -o device=cuda && runs="$runs fsdp-$p"
      run "tp-$p" --backend tp --ranks "$p" -o device=cuda && runs="$runs tp-$p"
    done
    for p in ${SB_GOLDEN_NCCL_RANKS-1}; do
      run "fsdp-nccl-$p" --backend fsdp --ranks "$p" -o device=cuda -o comm=nccl &&
        runs="$runs fsdp-nccl-$p"
      run "tp-nccl-$p" --backend tp --ranks "$p" -o device=cuda -o comm=nccl &&
        runs="$runs tp-nccl-$p"
    done
    for p in ${SB_GOLDEN_MPI_RANKS-$mpi_ranks}; do
      launch="timeout 600 $mpirun -np $p --oversubscribe"
      run "fsdp-mpi-$p" --backend fsdp -o device=cuda -o comm=mpi &&
        runs="$runs fsdp-mpi-$p"
      run "tp-mpi-$p" --backend tp -o device=cuda -o comm=mpi &&
        runs="$runs tp-mpi-$p"
      launch=""
    done
    python3 - "$golden" "$method" "$tmp" $runs <<'PY' || failed=1
import json, sys
golden, method, tmp, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
g = json.load(open(golden))["methods"]["IBP" if method == "ibp" else "CROWN"]
keys = ("output_lower", "output_upper", "spec_lower", "spec_upper")
cuda_text = open(f"{tmp}/cuda.json").read()
cuda = json.loads(cuda_text)
name = golden.rsplit("/", 1)[-1][:-5]
bad = 0
def report(what, worst, ok):
    global bad
    bad |= not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name} {method} {what}: worst {worst:.3g}")
def worst(a, b, rel_floor):
    w = 0.0
    for k in keys:
        for x, y in zip(a[k], b[k]):
            w = max(w, abs(x - y) / max(rel_floor, abs(x)))
    return w
w = worst(g, cuda, 1.0)
report("cuda vs golden", w, w <= 1e-4)
for r in runs:
    d = json.loads(open(f"{tmp}/{r}.json").read())
    if r.startswith("fsdp"):
        same = all(json.dumps(d[k]) == json.dumps(cuda[k]) for k in keys)
        report(f"{r} vs cuda (printed bits)", worst(cuda, d, 1.0), same)
    else:
        w = worst(cuda, d, 1.0)
        report(f"{r} vs cuda", w, w <= 1e-5)
sys.exit(1 if bad else 0)
PY
  done
done
# Two processes on one GPU: NCCL refuses a communicator with two ranks on
# one device; both processes must fail at once, alike, naming a rank.
if [ -n "$mpirun" ] && [ "${gpus:-0}" -eq 1 ]; then
  onnx="$data/onnx/mnist-net_256x2.onnx" prop="$data/vnnlib/prop_0_0.03.vnnlib"
  timeout 300 "$mpirun" -np 2 --oversubscribe sh -c 'p=$1/p$OMPI_COMM_WORLD_RANK; shift
    "$@" > "$p.out" 2> "$p.err"; echo $? > "$p.st"' sh "$tmp" \
    "$sb" bounds "$onnx" "$prop" --backend fsdp -o device=cuda -o comm=mpi
  job=$?
  if [ $job -ne 124 ] && [ "$(cat "$tmp/p0.st")" != 0 ] &&
     [ "$(cat "$tmp/p0.st")" = "$(cat "$tmp/p1.st")" ] &&
     cmp -s "$tmp/p0.err" "$tmp/p1.err" && grep -q 'fsdp: rank [0-9]*: ' "$tmp/p0.err"; then
    echo "ok   mpirun -np 2 on one GPU refused alike: $(tail -n 1 "$tmp/p0.err")"
  else
    echo "FAIL mpirun -np 2 on one GPU (mpirun $job): $(tail -n 1 "$tmp/p0.err" 2>/dev/null) / $(tail -n 1 "$tmp/p1.err" 2>/dev/null)"
    failed=1
  fi
fi
exit $failed
