#!/bin/sh
# SPDX-License-Identifier: MIT
# Branch-and-bound benchmark: domains per second and per-rank memory
# (alpha bytes, peak) of `verify` against the number of fsdp ranks, on a
# VNN-COMP network and property that keep branch-and-bound busy for a fixed
# time: thread ranks P = 1, 2, 4 and, where comm=mpi is built and mpirun is
# found, MPI processes P = 2, 4.
#
# Usage: tools/bench-bab.sh [BUILDDIR]   (default: the current directory)
# Rewrites the branch-and-bound section of $SRCDIR/docs/benchmarks.md
# (between its bab markers; appended when absent) and writes
# $SRCDIR/docs/bab-vs-ranks.png (needs gnuplot).
# Every run stops after the same number of domains (not the same time), so
# with fsdp's bitwise-identical bounds every run walks the same tree: the
# rates compare equal work and the memory figures equal batches.
# The machine is shared and its speed drifts by tens of percent from one
# minute to the next: every configuration runs SB_BAB_ROUNDS times, the
# rounds one after the other over all configurations, and the table gives
# each rate's median and range.
# Environment: SB_BAB_DOMAINS (domains per run, default 20000), SB_BAB_ROUNDS
# (default 3), SB_BENCH_OUT (directory for the raw results, default a
# temporary one).
set -eu

builddir=$(cd "${1:-.}" && pwd)
srcdir=$(cd "$(dirname "$0")/.." && pwd)
sb="$builddir/hosts/cli/shardbound"
bab_domains=${SB_BAB_DOMAINS:-20000}
rounds=${SB_BAB_ROUNDS:-3}
[ -x "$sb" ] || { echo "bench-bab.sh: $sb not built (make hosts/cli/shardbound)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "bench-bab.sh: python3 is needed to format the table" >&2; exit 2; }

# One BLAS thread per rank (ranks are threads, or processes bound to cores).
OPENBLAS_NUM_THREADS=1
SHARDBOUND_BACKEND_PATH="$builddir/backends/.libs"
# mpirun refuses root unless told.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS SHARDBOUND_BACKEND_PATH \
  OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM

out=${SB_BENCH_OUT:-}
if [ -n "$out" ]; then
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
# Not the wide MLP whose weights dominate: here a domain costs little, so
# within the run's time the queue grows past the first batches (1, 2, 4 ...
# domains, too few to split across ranks) and full batches are measured.
model="tests/data/onnx/mnist-net_256x4.onnx"
property="tests/data/vnnlib/prop_0_0.05.vnnlib"
mpirun=
if grep -q '^#define HAVE_MPI 1' "$builddir/config.h" 2>/dev/null; then
  mpirun=$(command -v mpirun || true)
fi
load_before=$(cut -d' ' -f1 /proc/loadavg)
results="$out/bab.jsonl"
: >"$results"
# One verify run: BATCH P KIND LAUNCHER... (the command before shardbound's
# arguments) -- EXTRA... (options after them); its JSON line into results.
run () {
  batch=$1 p=$2 kind=$3; shift 3
  launcher=
  while [ "$1" != -- ]; do launcher="$launcher $1"; shift; done
  shift
  echo "bench-bab.sh: round $round, batch $batch on fsdp P=$p ($kind)" >&2
  # shellcheck disable=SC2086
  line=$($launcher "$sb" verify "$srcdir/$model" "$srcdir/$property" \
    --backend fsdp --json --quiet --no-attack --batch "$batch" \
    --bab-domains "$bab_domains" "$@" | tr -d '\n')
  [ -n "$line" ] || { echo "bench-bab.sh: batch $batch on fsdp P=$p ($kind) failed" >&2; exit 1; }
  printf '{"batch": %s, "ranks": "%s", "round": %s, "run": %s}\n' "$batch" "$kind" "$round" "$line" >>"$results"
}
round=0
while [ "$round" -lt "$rounds" ]; do
  round=$((round + 1))
  for batch in 64 256; do
    # fsdp with one rank is the single device: one rank holds everything
    # and computes bitwise what the cpu backend computes.
    for p in 1 2 4; do
      run "$batch" "$p" threads -- --ranks "$p"
    done
    if [ -n "$mpirun" ]; then
      for p in 2 4; do
        run "$batch" "$p" processes "$mpirun" -np "$p" --oversubscribe -- -o comm=mpi
      done
    fi
  done
done
load_after=$(cut -d' ' -f1 /proc/loadavg)

python3 - "$results" "$srcdir/docs/benchmarks.md" "$out/bab.dat" \
  "$model" "$property" "$bab_domains" "$load_before" "$load_after" <<'PY'
import json, os, sys
src, md, dat, model, prop, domains, l0, l1 = sys.argv[1:9]
runs = [json.loads(l) for l in open(src) if l.strip()]
mib = lambda b: b / 1048576.0
rows, by_config = [], {}
for r in runs:
    v = r["run"]
    bab = v["branch_and_bound"]
    ranks = v["memory"]["per_rank"]
    alpha = max(k["bab"]["by_category"]["alpha"]["peak"] for k in ranks)
    peak = max(k["bab"]["peak_bytes"] for k in ranks)
    rate = bab["domains"] / bab["seconds"] if bab["seconds"] > 0 else 0.0
    key = (r["batch"], r["ranks"], len(ranks))
    if key not in by_config:
        by_config[key] = dict(batch=r["batch"], kind=r["ranks"], P=len(ranks),
                              answer=v["answer"], domains=bab["domains"],
                              rates=[], seconds=[], alpha=alpha, peak=peak,
                              rss=v["memory"]["process_peak_rss_bytes"])
        rows.append(by_config[key])
    x = by_config[key]
    # Every round walks the same tree: a different one is a bug, not noise.
    if (v["answer"], bab["domains"]) != (x["answer"], x["domains"]):
        sys.exit("bench-bab.sh: rounds of %s disagree (%s, %d domains against %s, %d)"
                 % (key, v["answer"], bab["domains"], x["answer"], x["domains"]))
    x["rates"].append(rate)
    x["seconds"].append(bab["seconds"])
    x["alpha"], x["peak"] = max(x["alpha"], alpha), max(x["peak"], peak)
    x["rss"] = max(x["rss"], v["memory"]["process_peak_rss_bytes"])
median = lambda v: sorted(v)[len(v) // 2] if len(v) % 2 else 0.5 * (sorted(v)[len(v) // 2 - 1] + sorted(v)[len(v) // 2])
for x in rows:
    x["rate"], x["range"] = median(x["rates"]), (min(x["rates"]), max(x["rates"]))
    x["seconds"] = median(x["seconds"])
single = {(x["batch"]): x for x in rows if x["P"] == 1}
p1 = single
text = ["<!-- bab:begin -->", "## Branch-and-bound: domains per second and per-rank memory", "",
        "Generated by `tools/bench-bab.sh` (part of `make bench`). Network "
        "`%s`, property `%s` (VNN-COMP mnist_fc); `shardbound verify --backend "
        "fsdp --no-attack --batch N --bab-domains %s --json` (every run "
        "stops after the same domains, the same tree since fsdp's bounds are "
        "bitwise identical at every P; rates are over branch-and-bound's "
        "time, the root's attack-free alpha-CROWN not counted), with `--ranks P` (threads of one process) or under "
        "`mpirun -np P` with `-o comm=mpi` (processes). "
        "`OPENBLAS_NUM_THREADS=1` on this 2-core machine; load average %s "
        "before and %s after the runs. Each configuration ran %d times, the "
        "rounds interleaved over all configurations; BaB seconds and domains/s "
        "are medians (the range in brackets), `vs P=1` the ratio of medians. "
        "Memory is the branch-and-bound phase's "
        "tracked peak of the largest rank (its peak is reset when branch-and-bound "
        "starts): `alpha` is the slopes, betas, their Adam state and gradients; "
        "`peak` everything the rank allocated; process RSS is rank 0's "
        "process. Ratios and rates are against fsdp with one rank, the single "
        "device (bitwise the cpu backend's computation)."
        % (model, prop, domains, l0, l1, len(rows[0]["rates"]) if rows else 0), "",
        "| batch | ranks | P | answer | domains | BaB s | domains/s | vs P=1 "
        "| alpha/rank (MiB) | alpha vs single | peak/rank (MiB) | peak vs single "
        "| process RSS (MiB) |",
        "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for x in rows:
    s, q = single.get(x["batch"]), p1.get(x["batch"])
    pct = lambda a, b: "%.1f%%" % (100.0 * a / b) if b else "n/a"
    speed = "%.2fx" % (x["rate"] / q["rate"]) if q and q["rate"] > 0 else "n/a"
    text.append("| %d | %s | %d | %s | %d | %.1f | %.1f (%.1f-%.1f) | %s | %.2f | %s | %.2f | %s | %.0f |" % (
        x["batch"], x["kind"], x["P"], x["answer"], x["domains"], x["seconds"],
        x["rate"], x["range"][0], x["range"][1], speed, mib(x["alpha"]), pct(x["alpha"], s["alpha"] if s else 0),
        mib(x["peak"]), pct(x["peak"], s["peak"] if s else 0), mib(x["rss"])))
text += ["", "![domains per second and per-rank peak against ranks](bab-vs-ranks.png)",
         "<!-- bab:end -->", ""]
section = "\n".join(text)
old = open(md).read() if os.path.exists(md) else ""
if "<!-- bab:begin -->" in old:
    head, rest = old.split("<!-- bab:begin -->", 1)
    tail = rest.split("<!-- bab:end -->", 1)[1].lstrip("\n")
    new = head + section + tail
else:
    new = old.rstrip("\n") + "\n\n" + section
open(md, "w").write(new)
with open(dat, "w") as f:
    for b in (64, 256):
        f.write("# batch %d, thread ranks: P domains_per_s alpha_MiB peak_MiB\n" % b)
        for x in rows:
            if x["batch"] == b and (x["kind"] == "threads" or x["P"] == 1):
                f.write("%d %.4f %.3f %.3f\n" % (x["P"], x["rate"], mib(x["alpha"]), mib(x["peak"])))
        f.write("\n\n")
PY

if command -v gnuplot >/dev/null; then
  gnuplot -e "datafile='$out/bab.dat'; outfile='$srcdir/docs/bab-vs-ranks.png'" \
    "$srcdir/docs/plot-bab.gp"
  echo "bench-bab.sh: wrote docs/benchmarks.md and docs/bab-vs-ranks.png" >&2
else
  echo "bench-bab.sh: gnuplot not found; wrote docs/benchmarks.md only" >&2
fi
