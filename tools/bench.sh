#!/bin/sh
# SPDX-License-Identifier: MIT
# Benchmark table and memory plot: time, per-rank baseline and per-rank peak
# of every available backend and rank count on a wide MLP and a ResNet.
#
# Usage: tools/bench.sh [BUILDDIR]   (default: the current directory)
# Writes $SRCDIR/docs/benchmarks.md and $SRCDIR/docs/memory-vs-ranks.png
# (the plot needs gnuplot; without it only the table is written).
# Environment: SB_BENCH_REPEAT (timed passes, default 1), SB_BENCH_OUT
# (directory for the generated models, default a temporary one),
# SB_BENCH_PROCESSES=0 (no process ranks under mpirun).
set -eu

builddir=$(cd "${1:-.}" && pwd)
srcdir=$(cd "$(dirname "$0")/.." && pwd)
sb="$builddir/hosts/cli/shardbound"
backends="$builddir/backends/.libs"
repeat=${SB_BENCH_REPEAT:-1}
[ -x "$sb" ] || { echo "bench.sh: $sb not built (make hosts/cli/shardbound)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "bench.sh: python3 is needed to format the table" >&2; exit 2; }

# One BLAS thread per rank: ranks are threads, and a multi-threaded BLAS
# under each of them would make timings depend on oversubscription.
OPENBLAS_NUM_THREADS=1
SHARDBOUND_BACKEND_PATH=$backends
export OPENBLAS_NUM_THREADS SHARDBOUND_BACKEND_PATH

out=${SB_BENCH_OUT:-}
if [ -n "$out" ]; then
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
"$sb" mkmodel --mlp 784,4096,4096,4096,4096,10 --seed 1 --eps 0.002 \
  -o "$out/wide.onnx" --property "$out/wide.vnnlib" >/dev/null
"$sb" mkmodel --resnet --seed 1 --eps 0.002 \
  -o "$out/resnet.onnx" --property "$out/resnet.vnnlib" >/dev/null

# backend:ranks pairs that this build and machine can run.
configs="cpu:1 fsdp:1 fsdp:2 fsdp:4"
[ -e "$backends/shardbound-backend-tp.so" ] && configs="$configs tp:2 tp:4"
if [ -e "$backends/shardbound-backend-cuda.so" ] && command -v nvidia-smi >/dev/null &&
   nvidia-smi -L >/dev/null 2>&1; then
  configs="$configs cuda:1"
fi

# Each run's peak resident set size over its whole life (loading included),
# per process, from time(1) when it is installed.
timer=
[ -x /usr/bin/time ] && timer=/usr/bin/time
# One line per run: the bench JSON of process 0 with "process_rss_bytes",
# the lifetime peak RSS of every process of the run (-1 without time(1)).
run_one () { # LABEL OUTFILE-PREFIX NP(0 = no mpirun) ARGS...
  label=$1 prefix=$2 np=$3; shift 3
  echo "bench.sh: $label" >&2
  rm -f "$prefix".rss.*
  if [ "$np" = 0 ]; then
    if [ -n "$timer" ]; then
      "$timer" -f %M -o "$prefix.rss.0" "$sb" bench "$@" >"$prefix.json"
    else "$sb" bench "$@" >"$prefix.json"; fi
  else
    # time(1) per process; Open MPI tells each process its rank.
    $mpirun -np "$np" --oversubscribe sh -c \
      'if [ -n "$1" ]; then t=$1; p=$2; shift 2; exec "$t" -f %M -o "$p.rss.$OMPI_COMM_WORLD_RANK" "$@"; else shift 2; exec "$@"; fi' \
      sh "$timer" "$prefix" "$sb" bench "$@" >"$prefix.json"
  fi || { echo "bench.sh: $label failed" >&2; exit 1; }
  python3 - "$prefix" "$np" >>"$results" <<'PY'
import glob, json, sys
r = json.loads(open(sys.argv[1] + ".json").read())
r["mpirun"] = int(sys.argv[2]) > 0
rss = [int(open(f).read().split()[-1]) * 1024 for f in sorted(glob.glob(sys.argv[1] + ".rss.*"))]
r["process_rss_bytes"] = rss or [-1]
print(json.dumps(r))
PY
}

results="$out/results.jsonl"
: >"$results"
for model in wide resnet; do
  for c in $configs; do
    be=${c%%:*}
    p=${c#*:}
    set -- "$out/$model.onnx" "$out/$model.vnnlib" --backend "$be" \
      --repeat "$repeat" --warmup 0 --json
    [ "$be" = cpu ] || [ "$be" = cuda ] || set -- "$@" --ranks "$p"
    run_one "$model on $be P=$p (threads)" "$out/run" 0 "$@"
  done
done

# Process ranks: the same backends with one rank per MPI process
# (comm=mpi), P = 1, 2, 4 under mpirun --oversubscribe.
# SB_BENCH_PROCESSES=0 leaves them out (a build without MPI refuses them).
mpirun=
if [ "${SB_BENCH_PROCESSES:-1}" != 0 ] && command -v mpirun >/dev/null; then
  mpirun=mpirun
  [ "$(id -u)" = 0 ] && mpirun="mpirun --allow-run-as-root"
fi
if [ -n "$mpirun" ]; then
  for model in wide resnet; do
    for be in fsdp tp; do
      for p in 1 2 4; do
        run_one "$model on $be P=$p (processes)" "$out/run" "$p" \
          "$out/$model.onnx" "$out/$model.vnnlib" --backend "$be" \
          --repeat "$repeat" --warmup 0 --json -o comm=mpi
      done
    done
  done
else
  echo "bench.sh: mpirun not found; no process ranks" >&2
fi

python3 - "$results" "$srcdir/docs/benchmarks.md" "$out/plot.dat" "$repeat" <<'PY'
import json, platform, sys
res = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
md, dat, repeat = sys.argv[2], sys.argv[3], sys.argv[4]
mib = lambda b: b / 1048576.0
rows, single, procs, single_rss = [], {}, [], {}
for r in res:
    model = r["model"].rsplit("/", 1)[-1]
    base = max(k["baseline_bytes"] for k in r["per_rank"])
    peak = max(k["peak_bytes"] for k in r["per_rank"])
    rss = r.get("process_rss_bytes", [-1])
    if r.get("mpirun"):
        # Process 0 loads the model; the others never hold all of it.
        procs.append((model, r["backend"], r["ranks"], r["median_seconds"], rss))
        continue
    if r["backend"] == "cpu":
        single[model] = (base, peak)
        single_rss[model] = rss[0]
    rows.append((model, r["backend"], r["ranks"], r["median_seconds"], base, peak, max(rss)))
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t") \
    if "model name" in open("/proc/cpuinfo").read() else platform.machine()
# The branch-and-bound section is tools/bench-bab.sh's: kept as it is.
import os
bab = ""
if os.path.exists(md) and "<!-- bab:begin -->" in open(md).read():
    bab = "<!-- bab:begin -->" + open(md).read().split("<!-- bab:begin -->", 1)[1]
with open(md, "w") as f:
    f.write("<!-- SPDX-License-Identifier: MIT -->\n")
    f.write("# Benchmarks: time and per-rank memory\n\n")
    f.write("Generated by `tools/bench.sh` (rerun: `make bench-fsdp` in a build "
            "directory, or `tools/bench.sh BUILDDIR`). CROWN bounds, "
            "`OPENBLAS_NUM_THREADS=1`, median of %s timed pass(es) after "
            "loading the model once, on %s. Memory is what each backend's "
            "tracked allocator counts per rank (the largest rank is shown): "
            "baseline = resident after loading the model, peak = high-water "
            "mark during the pass. Ratios are against the cpu backend on the "
            "same model.\n\n" % (repeat, cpu))
    f.write("Models: `shardbound mkmodel --mlp 784,4096,4096,4096,4096,10 --seed 1 "
            "--eps 0.002` (wide) and `shardbound mkmodel --resnet --seed 1 --eps 0.002` "
            "(resnet).\n\n")
    f.write("| model | backend | P | time (s) | baseline/rank (MiB) | peak/rank (MiB) "
            "| baseline vs single | peak vs single | process peak RSS (MiB) |\n")
    f.write("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    for m, be, p, t, b, pk, rss in rows:
        sb, sp = single.get(m, (0, 0))
        rb = "%.1f%%" % (100.0 * b / sb) if sb else "n/a"
        rp = "%.1f%%" % (100.0 * pk / sp) if sp else "n/a"
        f.write("| %s | %s | %d | %.2f | %.2f | %.2f | %s | %s | %s |\n"
                % (m, be, p, t, mib(b), mib(pk), rb, rp, "%.1f" % mib(rss) if rss > 0 else "n/a"))
    if procs:
        f.write("\n## Process ranks (`-o comm=mpi`, one rank per process)\n\n"
                "`mpirun -np P --oversubscribe shardbound bench ... -o comm=mpi`: "
                "every process's peak resident set size over its whole life "
                "(time(1)), against the single-process cpu run's "
                "(%s). Process 0 parses the model and hands "
                "each rank its part, so its peak includes loading (the ONNX "
                "parse holds the file, the decoded message and the graph at "
                "once); the other processes never hold the whole model.\n\n"
                % ", ".join("%s %.1f MiB" % (m, mib(v)) for m, v in sorted(single_rss.items()) if v > 0))
        f.write("| model | backend | P | time (s) | peak RSS per process (MiB) "
                "| largest other than 0 vs cpu | process 0 vs cpu |\n")
        f.write("|---|---|---:|---:|---|---:|---:|\n")
        for m, be, p, t, rss in procs:
            ref = single_rss.get(m, -1)
            others = max(rss[1:]) if len(rss) > 1 else -1
            pct = lambda v: "%.1f%%" % (100.0 * v / ref) if ref > 0 and v > 0 else "n/a"
            f.write("| %s | %s | %d | %.2f | %s | %s | %s |\n"
                    % (m, be, p, t, ", ".join("%.1f" % mib(v) for v in rss),
                       pct(others), pct(rss[0])))
    f.write("""
## What dominates the per-rank peak (wide MLP, CROWN, P=4)

From `shardbound bounds --json` (peak by category, rank 0, measured when
this text was written): weights shard 51.2 MiB (1/P of 204.5 MiB), one
gathered 4096x4096 layer 64 MiB (`gathered_weights`), CROWN coefficients
80 MiB (the spec rows of the intermediate-bound passes, split by rows
across ranks in whole 128-row blocks), workspace 51.2 MiB (mostly the live
rows of W that the zero-column skip of the linear backward multiplies: the
skip made CROWN ~1.4x faster and moved the FSDP P=4 peak ratio from 38.9%
to ~42%), bounds 0.3 MiB. Bounds (`output_*`, `spec_*`) are identical to the
cpu backend at every P (tests/check-multirank).

Why the gathered layer is not streamed in blocks: a blocked product issues
GEMMs of other shapes than the single-device operator, and BLAS picks its
kernel (small-matrix, direct, blocked) by shape, so the per-element
summation order changes. Bitwise identity holds because every backend runs
the same 128-row blocks through the shared operator
(`backends/common/op_linear.c`); streaming the weights as well would need
the same column blocking on one device. Until then the transient is one
whole layer per rank, and none with one rank (the shard is the layer and is
used in place).
""")
    if bab:
        f.write("\n" + bab)
with open(dat, "w") as f:
    # Blocks 0-3: wide/fsdp, resnet/fsdp, wide/tp, resnet/tp; P = 1 is the
    # cpu backend for both, so every curve starts at single-device memory.
    for be_want in ("fsdp", "tp"):
        for m in ("wide.onnx", "resnet.onnx"):
            f.write("# %s: P baseline_MiB peak_MiB (%s)\n" % (m, be_want))
            for mm, be, p, t, b, pk, rss in rows:
                if mm == m and (be == be_want and p > 1 or be == "cpu"):
                    f.write("%d %.3f %.3f\n" % (p, mib(b), mib(pk)))
            f.write("\n\n")
    # Blocks 4-5: wide/fsdp and wide/tp as processes: P, the largest
    # lifetime peak RSS of a process other than 0 (process 0 at P = 1).
    for be_want in ("fsdp", "tp"):
        f.write("# wide.onnx: P peak_rss_MiB (%s, processes)\n" % be_want)
        for mm, be, p, t, rss in procs:
            if mm == "wide.onnx" and be == be_want and max(rss) > 0:
                f.write("%d %.3f\n" % (p, mib(max(rss[1:]) if len(rss) > 1 else rss[0])))
        f.write("\n\n")
PY

if command -v gnuplot >/dev/null; then
  gnuplot -e "datafile='$out/plot.dat'; outfile='$srcdir/docs/memory-vs-ranks.png'" \
    "$srcdir/docs/plot-memory.gp"
  echo "bench.sh: wrote docs/benchmarks.md and docs/memory-vs-ranks.png" >&2
else
  echo "bench.sh: gnuplot not found; wrote docs/benchmarks.md only" >&2
fi
