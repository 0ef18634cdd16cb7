#!/bin/sh
# SPDX-License-Identifier: MIT
# Ranks as MPI processes (comm=mpi) under mpirun -np 2 and -np 4: the
# communicator itself, bounds equal to the cpu backend's (FSDP bitwise, TP
# to 1e-5 x max(1,|b|)), verify answers and domain counts equal to thread
# ranks', and a process killed mid-run ending every other one promptly,
# with status 1 and the lost rank named.
set -u
mpirun=${SHARDBOUND_MPIRUN:-}
[ -n "$mpirun" ] || mpirun=$(command -v mpirun || true)
if [ -z "$mpirun" ]; then
  echo "SKIP: mpirun not found (install openmpi-bin)"
  exit 77
fi
cli=${SHARDBOUND_CLI:?run through make check}
data=${SHARDBOUND_TEST_DATA:?run through make check}
tests=${SHARDBOUND_TEST_PROGRAMS:?run through make check}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok () { pass=$((pass + 1)); echo "PASS: $1"; }
ko () { fail=$((fail + 1)); echo "FAIL: $1"; [ -f "$tmp/out" ] && sed 's/^/    /' "$tmp/out" | tail -20; }

# mpirun refuses root unless told; CI runs as root.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# OpenBLAS's float results depend on its thread count, and mpirun binds
# each process to a core: every run here, mpirun or not, uses one thread.
OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM OPENBLAS_NUM_THREADS
mpi () { # NP COMMAND...
  np=$1; shift
  timeout 300 "$mpirun" -np "$np" --oversubscribe "$@"
}

net2=$data/onnx/mnist-net_256x2.onnx
prop2=$data/vnnlib/prop_0_0.03.vnnlib

if [ "${SHARDBOUND_HAVE_MPI:-no}" != yes ]; then
  # A build without MPI refuses comm=mpi and says why.
  "$cli" bounds "$net2" "$prop2" --backend fsdp -o comm=mpi > "$tmp/out" 2>&1
  if [ $? -ne 0 ] && grep -q "no MPI" "$tmp/out"; then ok refuses_comm_mpi_without_mpi
  else ko refuses_comm_mpi_without_mpi; fi
  [ "$fail" -eq 0 ]; exit
fi

# ---- the communicator -------------------------------------------------------
for np in 2 4; do
  if mpi $np "$tests/check-comm-mpi" > "$tmp/out" 2>&1; then ok "comm_mpi_collectives_np$np"
  else ko "comm_mpi_collectives_np$np"; fi
done

# ---- bounds equal to the cpu backend's ----------------------------------------
# compare.py CPU.json OTHER.json TOLERANCE: 0 means bitwise (%.9g prints a
# float exactly), else |a-b| <= tol * max(1, |a|) everywhere.
cat > "$tmp/compare.py" <<'EOF'
import json, sys
a, b, tol = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3])
for key in ("output_lower", "output_upper", "spec_lower", "spec_upper"):
    x, y = a[key], b[key]
    assert len(x) == len(y), key
    for i, (u, v) in enumerate(zip(x, y)):
        if tol == 0:
            assert u == v, "%s[%d]: %r != %r" % (key, i, u, v)
        else:
            assert abs(u - v) <= tol * max(1.0, abs(u)), "%s[%d]: %r vs %r" % (key, i, u, v)
ranks = b["memory"]["per_rank"]
assert len(ranks) == b["ranks"], "one memory entry per rank"
assert all(r["peak_rss_bytes"] > 0 for r in ranks), "peak RSS of every process"
EOF

bounds_case () { # NAME MODEL PROP METHOD NPS
  name=$1 model=$2 prop=$3 method=$4 nps=$5
  if ! "$cli" bounds "$model" "$prop" --method "$method" --json > "$tmp/cpu.json" 2> "$tmp/out"; then
    ko "${name}_cpu_runs"; return
  fi
  for np in $nps; do
    for be in fsdp tp; do
      tol=0; [ $be = tp ] && tol=1e-5
      if mpi $np "$cli" bounds "$model" "$prop" --method "$method" --json \
           --backend $be -o comm=mpi > "$tmp/mpi.json" 2> "$tmp/out" &&
         python3 "$tmp/compare.py" "$tmp/cpu.json" "$tmp/mpi.json" $tol >> "$tmp/out" 2>&1; then
        ok "${name}_${method}_${be}_np${np}_equals_cpu"
      else ko "${name}_${method}_${be}_np${np}_equals_cpu"; fi
    done
  done
}

bounds_case mnist256x2 "$net2" "$prop2" crown "2 4"
bounds_case mnist256x2 "$net2" "$prop2" alpha-crown "2"
bounds_case mnist256x4 "$data/onnx/mnist-net_256x4.onnx" "$data/vnnlib/prop_1_0.03.vnnlib" ibp "2"
bounds_case bn_resnet "$data/onnx/bn_resnet.onnx" "$data/vnnlib/bn_resnet_prop.vnnlib" crown "2 4"
bounds_case cifar_base_kw "$data/onnx/cifar_base_kw.onnx" \
  "$data/vnnlib/cifar_base_kw-img2578-eps0.021176470588235297.vnnlib" crown "2"

# Only process 0 prints.
mpi 2 "$cli" bounds "$net2" "$prop2" --backend fsdp -o comm=mpi > "$tmp/out" 2>&1
if [ "$(grep -c '^property holds' "$tmp/out")" = 1 ]; then ok only_process_0_prints
else ko only_process_0_prints; fi

# ranks must match the job: a usage error (status 2).
mpi 2 "$cli" bounds "$net2" "$prop2" --backend fsdp --ranks 3 -o comm=mpi > "$tmp/out" 2>&1
st=$?
if [ $st -eq 2 ] && grep -q "ranks=3 but the MPI job has 2 processes" "$tmp/out"; then ok ranks_must_match_the_job
else ko ranks_must_match_the_job; fi

# GPU ranks as processes (-o device=cuda: NCCL between the processes' GPUs,
# its id broadcast over MPI). Where the job cannot have one GPU per process
# (no GPU, or only one; no CUDA or NCCL in the build), every process
# refuses alike: the same message naming a rank and the reason, the same
# non-zero status, and no hang. With two GPUs or more, FSDP's bounds are
# the cuda backend's, bit for bit.
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
each_process () { # COMMAND...: each process's stdout, stderr and status in $tmp/pRANK.{out,err,st}
  rm -f "$tmp"/p[0-9]*.out "$tmp"/p[0-9]*.err "$tmp"/p[0-9]*.st
  mpi 2 sh -c 'p=$1/p$OMPI_COMM_WORLD_RANK; shift; "$@" > "$p.out" 2> "$p.err"
               echo $? > "$p.st"' sh "$tmp" "$@"
}
for be in fsdp tp; do
  name=comm_mpi_device_cuda_${be}
  if [ "${gpus:-0}" -ge 2 ]; then
    if "$cli" bounds "$net2" "$prop2" --json --backend cuda > "$tmp/cuda.json" 2> "$tmp/out" &&
       each_process "$cli" bounds "$net2" "$prop2" --json --backend $be -o comm=mpi -o device=cuda &&
       [ "$(cat "$tmp/p0.st")" = 0 ] && [ "$(cat "$tmp/p1.st")" = 0 ] &&
       python3 "$tmp/compare.py" "$tmp/cuda.json" "$tmp/p0.out" "$([ $be = tp ] && echo 1e-5 || echo 0)" > "$tmp/out" 2>&1
    then ok "${name}_np2_equals_cuda"; else ko "${name}_np2_equals_cuda"; fi
    continue
  fi
  each_process "$cli" bounds "$net2" "$prop2" --backend $be -o comm=mpi -o device=cuda
  job=$?
  cat "$tmp"/p[01].err > "$tmp/out" 2>/dev/null
  st0=$(cat "$tmp/p0.st" 2>/dev/null) st1=$(cat "$tmp/p1.st" 2>/dev/null)
  reason="rank [0-9]+: "
  [ "${gpus:-0}" -eq 0 ] && reason="rank 0: option device='cuda' is not available"
  if [ $job -ne 124 ] && [ -n "$st0" ] && [ "$st0" != 0 ] && [ "$st0" = "$st1" ] &&
     cmp -s "$tmp/p0.err" "$tmp/p1.err" &&
     grep -Eq "^shardbound bounds: $be: .*$be: $reason" "$tmp/p0.err"; then
    ok "${name}_without_a_gpu_each_refuses_alike"
  else echo "    status: $st0 / $st1 (mpirun: $job)"; ko "${name}_without_a_gpu_each_refuses_alike"; fi
done

# Out of memory on one rank (injected in the middle of the pass): every
# process fails with the same message naming the rank, status 1, and only
# process 0 says so.
for be in fsdp tp; do
  mpi 2 "$cli" bounds "$net2" "$prop2" --backend $be -o comm=mpi -o fail_rank=1 -o fail_at=40 \
    > "$tmp/out" 2>&1
  st=$?
  if [ $st -eq 1 ] && [ "$(grep -c 'rank 1: injected fault.*out of memory' "$tmp/out")" -eq 1 ]; then
    ok "out_of_memory_on_rank_1_fails_every_process_${be}"
  else ko "out_of_memory_on_rank_1_fails_every_process_${be}"; fi
done

# ---- verify: the same answer and the same number of domains --------------------
verify_case () { # NAME PROP BACKEND NP [NET [OPTION...]]
  name=$1 prop=$2 be=$3 np=$4 net=${5:-$net2}
  shift 4; [ $# -gt 0 ] && shift
  "$cli" verify "$net" "$prop" --timeout 300 --backend $be --ranks $np "$@" \
    > "$tmp/threads" 2>&1
  mpi $np "$cli" verify "$net" "$prop" --timeout 300 --backend $be -o comm=mpi "$@" \
    -r "$tmp/results.txt" > "$tmp/out" 2>&1
  # mpirun forwards stdout and stderr separately, so their order varies:
  # the answer line and the domains line are compared as a set.
  want=$(tr '\r' '\n' < "$tmp/threads" | grep -E '^(unsat|sat|unknown|timeout|error)$|branch-and-bound domains' | sed 's/^[0-9.]* s, //' | sort)
  got=$(tr '\r' '\n' < "$tmp/out" | grep -E '^(unsat|sat|unknown|timeout|error)$|branch-and-bound domains' | sed 's/^[0-9.]* s, //' | sort)
  if [ -n "$want" ] && [ "$want" = "$got" ]; then ok "verify_${name}_${be}_np${np}_equals_threads"
  else echo "    threads: $want"; echo "    mpi: $got"; ko "verify_${name}_${be}_np${np}_equals_threads"; fi
}
verify_case prop3_0.05 "$data/vnnlib/prop_3_0.05.vnnlib" fsdp 2
verify_case prop3_0.05 "$data/vnnlib/prop_3_0.05.vnnlib" tp 4
# Betas warm-started from the parent are read back from the ranks like the
# slopes: every process must keep the same ones (mnist 256x4 needs about a
# hundred domains here, where 256x2 decides at the root).
verify_case prop3_0.05_warm_betas "$data/vnnlib/prop_3_0.05.vnnlib" fsdp 2 \
  "$data/onnx/mnist-net_256x4.onnx" --warm-betas
# The root's intermediate bounds tightened by searches of their own, at
# once: thousands of small searches whose deadline checks must agree on
# every process (11 domains after them here, against about a hundred).
verify_case prop3_0.05_tightened "$data/vnnlib/prop_3_0.05.vnnlib" fsdp 2 \
  "$data/onnx/mnist-net_256x4.onnx" --tighten-after 0 --tighten-layers 1 \
  --tighten-domains 16
# sat: the counterexample is checked in float64 by process 0, which reads
# the model again (no process keeps its weights), and written by it alone.
verify_case prop1_0.03 "$data/vnnlib/prop_1_0.03.vnnlib" fsdp 2
if head -n 1 "$tmp/results.txt" | grep -qx sat && grep -q '^((X_0 ' "$tmp/results.txt"; then
  ok verify_sat_results_file_written_by_process_0
else ko verify_sat_results_file_written_by_process_0; fi

# ---- a process killed mid-run ----------------------------------------------------
# A run long enough to be caught in the middle however fast the machine:
# a PGD attack of 20000 steps on an unsat instance (it finds nothing) takes
# minutes, where the instance alone is proven in seconds. Rank 1's process
# is killed once every process is running; the others
# must be gone within 30 s, each saying that rank 1 was lost, exit status
# 1, and no process of the job may remain.
long_prop=$data/vnnlib/prop_3_0.05.vnnlib
cp "$net2" "$tmp/killed.onnx"
killed_case () { # NAME [MPIRUN OPTION...]
  name=$1; shift
  "$mpirun" -np 3 --oversubscribe "$@" "$cli" verify "$tmp/killed.onnx" "$long_prop" --timeout 600 \
    --backend fsdp -o comm=mpi --batch 1 --iterations 50 --attack-steps 20000 > "$tmp/out" 2>&1 &
  job=$!
  victim=
  for _ in $(seq 1 100); do
    sleep 0.2
    # The process of rank 1: Open MPI exports its rank to each process.
    for pid in $(pgrep -f "$tmp/killed.onnx" || true); do
      if tr '\0' '\n' < /proc/$pid/environ 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then victim=$pid; fi
    done
    [ -n "$victim" ] && break
  done
  # Each process catches mpirun's SIGTERM (to name the lost rank) only once
  # its session is open: killing rank 1 at a fixed time after its start
  # could, on a loaded machine, find a survivor still starting, which then
  # died of the SIGTERM without a word. So wait until all three catch it
  # (SigCgt bit 15), then let the run get going.
  for _ in $(seq 1 300); do
    ready=0
    for pid in $(pgrep -f "$tmp/killed.onnx" || true); do
      tr '\0' '\n' < /proc/$pid/environ 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=' || continue
      cgt=$(awk '/^SigCgt:/ {print $2}' /proc/$pid/status 2>/dev/null)
      [ -n "$cgt" ] && [ $((0x$cgt & 0x4000)) -ne 0 ] && ready=$((ready + 1))
    done
    [ $ready -ge 3 ] && break
    sleep 0.2
  done
  sleep 2
  [ -n "$victim" ] && kill -9 "$victim"
  waited=0
  while kill -0 $job 2>/dev/null && [ $waited -lt 60 ]; do sleep 1; waited=$((waited + 1)); done
  left=$(pgrep -f "$tmp/killed.onnx" | wc -l)
  wait $job 2>/dev/null
  # The survivors' last lines can reach the file a moment after mpirun has
  # returned (seen once in CI: one line at the check, both a second later).
  for _ in $(seq 1 50); do
    [ "$(grep -c 'rank 1 was lost' "$tmp/out")" -ge 2 ] && break
    sleep 0.1
  done
  if [ -n "$victim" ] && [ $waited -le 30 ] && [ "$left" -eq 0 ] &&
     [ "$(grep -c 'rank 1 was lost' "$tmp/out")" -eq 2 ]; then ok "$name"
  else echo "    victim=$victim waited=${waited}s left=$left"; ko "$name"; fi
}
killed_case killed_process_stops_the_job_naming_it
# Peers on other hosts are watched through a socket each (closed by the
# kernel when the process ends): SB_TEST_REMOTE_PEERS=1 treats every peer
# as remote, so that only the sockets can name the lost rank here.
killed_case killed_remote_process_is_named_through_its_socket -x SB_TEST_REMOTE_PEERS=1

echo "# check-mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
