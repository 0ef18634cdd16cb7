#!/bin/sh
# SPDX-License-Identifier: MIT
# The `shardbound` command as a user meets it: subcommands, JSON, results
# files, and a clear message with exit status 2 for every bad input.
set -u
cli=${SHARDBOUND_CLI:?run through make check}
data=${SHARDBOUND_TEST_DATA:?run through make check}
examples=${SHARDBOUND_EXAMPLES:?run through make check}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

check () { # NAME EXPECTED_STATUS PATTERN_IN_OUTPUT -- COMMAND...
  name=$1 want=$2 pattern=$3; shift 4
  "$@" > "$tmp/out" 2>&1
  got=$?
  if [ "$got" -eq "$want" ] && grep -q -- "$pattern" "$tmp/out"; then
    pass=$((pass + 1)); echo "PASS: $name"
  else
    fail=$((fail + 1)); echo "FAIL: $name (status $got, wanted $want and /$pattern/)"; sed 's/^/    /' "$tmp/out" | head -20
  fi
}

json_check () { # NAME FILE PYTHON: PYTHON's asserts hold for d, FILE's JSON
  name=$1 file=$2
  if python3 -c "import json, sys
d = json.load(open(sys.argv[1]))
$3" "$file"; then
    pass=$((pass + 1)); echo "PASS: $name"
  else
    fail=$((fail + 1)); echo "FAIL: $name"; head -c 2000 "$file"
  fi
}

net=$examples/mnist_fc/mnist-net_256x2.onnx
unsat=$examples/mnist_fc/prop_0_0.03.vnnlib
sat=$examples/mnist_fc/prop_1_0.03.vnnlib

check help_lists_subcommands 0 verify -- "$cli" --help
check unknown_subcommand_is_usage_error 2 frobnicate -- "$cli" frobnicate
check every_subcommand_has_help 0 MODEL.onnx -- "$cli" bounds --help
for verb in backends verify bounds mkmodel bench; do
  check "${verb}_help_usage_names_the_command" 0 "^  shardbound $verb \[OPTION" -- "$cli" "$verb" --help
done
check verify_has_help 0 results-file -- "$cli" verify --help
check backends_lists_cpu 0 cpu -- "$cli" backends
# Run from the build tree, the command finds the backends built beside it,
# and they their OpenBLAS module beside them.
check build_tree_run_needs_no_backend_path 0 '^unsat' -- \
  env -u SHARDBOUND_BACKEND_PATH -u LD_LIBRARY_PATH "$cli" verify "$net" "$unsat" --backend cpu --quiet --timeout 60

# A backend without its OpenBLAS module beside it, or with another library
# in its place, is refused with the reason. (LD_LIBRARY_PATH, which finds
# the module for test programs, would find this build's.)
mkdir -p "$tmp/nomodule" "$tmp/wrongmodule"
cp "$SHARDBOUND_BACKEND_PATH/shardbound-backend-cpu.so" "$tmp/nomodule/"
cp "$SHARDBOUND_BACKEND_PATH/shardbound-backend-cpu.so" "$tmp/wrongmodule/"
cp "$SHARDBOUND_TEST_FIXTURES/shardbound-backend-good.so" "$tmp/wrongmodule/shardbound-openblas.so"
check backend_without_openblas_module_is_refused 0 \
  "cpu.*refused.*cannot load OpenBLAS: .*nomodule/shardbound-openblas.so" -- \
  env -u LD_LIBRARY_PATH "$cli" backends --backend-path "$tmp/nomodule"
check backend_with_wrong_openblas_module_is_refused 0 \
  "cpu.*refused.*shardbound-openblas.so is not the OpenBLAS module" -- \
  env -u LD_LIBRARY_PATH "$cli" backends --backend-path "$tmp/wrongmodule"

# A broken backend on the path is listed as refused, and the command succeeds.
mkdir -p "$tmp/bad"
echo "not a shared object" > "$tmp/bad/shardbound-backend-broken.so"
check backends_shows_refusal_and_reason 0 "broken.so: refused" -- \
  "$cli" backends --backend-path "$SHARDBOUND_BACKEND_PATH:$tmp/bad"

check bounds_json_has_contract_keys 0 '"spec_lower"' -- "$cli" bounds "$net" "$unsat" --json
"$cli" bounds "$net" "$unsat" --json > "$tmp/b.json" 2>/dev/null
json_check bounds_json_is_valid_and_complete "$tmp/b.json" '
for k in ("method", "backend", "ranks", "output_lower", "output_upper", "spec_lower", "spec_upper", "seconds"):
    assert k in d, k
r = d["memory"]["per_rank"][0]
assert r["baseline_bytes"] > 0 and r["peak_bytes"] >= r["baseline_bytes"]
assert len(d["spec_lower"]) == 9 and len(d["output_lower"]) == 10
assert all(l <= u for l, u in zip(d["output_lower"], d["output_upper"]))
'

check directory_as_model_is_named 2 'is a directory' -- "$cli" bounds "$examples/mnist_fc" "$unsat"
check bench_refuses_negative_floor 2 'floor >= 0' -- "$cli" bench "$net" "$unsat" --floor -5
check verify_proves_unsat_instance 0 '^unsat' -- "$cli" verify "$net" "$unsat" --quiet --timeout 60
# A setting's short option (-t) sets it as its long one does: a 1 us
# timeout stops a proof that otherwise takes a fraction of a second.
check verify_short_timeout_option 0 '^timeout' -- "$cli" verify "$net" "$unsat" --quiet -t 0.000001
check verify_short_timeout_checks_value 2 "setting 'timeout'" -- "$cli" verify "$net" "$unsat" --quiet -t -1
# A results file that cannot be written is refused before the run (status
# 2, no answer word), not after it.
check verify_refuses_results_file_in_missing_directory 2 'its directory does not exist' -- "$cli" verify "$net" "$unsat" --quiet -r "$tmp/missing/res.txt"
check verify_refuses_directory_as_results_file 2 'it is a directory' -- "$cli" verify "$net" "$unsat" --quiet -r "$tmp"
check verify_finds_sat_instance 0 '^sat' -- "$cli" verify "$net" "$sat" --quiet --timeout 60 -r "$tmp/res.txt"
if head -n 1 "$tmp/res.txt" | grep -qx sat && grep -q '^((X_0 ' "$tmp/res.txt" && grep -q '(Y_9 .*))$' "$tmp/res.txt"; then
  pass=$((pass + 1)); echo "PASS: verify_writes_vnncomp_counterexample"
else fail=$((fail + 1)); echo "FAIL: verify_writes_vnncomp_counterexample"; cat "$tmp/res.txt"; fi

# verify --json: the answer, times, domains and every rank's memory (root
# phase and branch-and-bound), with the process's peak RSS.
"$cli" verify "$net" "$unsat" --quiet --timeout 60 --json --backend fsdp --ranks 2 > "$tmp/v.json" 2>/dev/null
json_check verify_json_is_valid_and_complete "$tmp/v.json" '
assert d["answer"] == "unsat" and d["backend"] == "fsdp", d["answer"]
assert d["seconds"] > 0 and d["domains"] >= 1
assert d["branch_and_bound"]["domains"] == d["domains"]
assert d["branch_and_bound"]["tightening_domains"] == 0  # decided before
assert d["found_margin"] > 0  # the attack checked its best point: no counterexample
m = d["memory"]
assert m["process_peak_rss_bytes"] > 0 and m["max_memory_mib_per_rank"] == 4096
assert [r["rank"] for r in m["per_rank"]] == [0, 1]
for r in m["per_rank"]:
    assert r["peak_bytes"] >= r["baseline_bytes"] > 0
    assert r["peak_bytes"] == max(r["root"]["peak_bytes"], r["bab"]["peak_bytes"])
    assert "alpha" in r["by_category"] and "peak" in r["bab"]["by_category"]["alpha"]
'
# An undecided search reports how far it got: its last progress report.
"$cli" verify "$data/onnx/mnist-net_256x4.onnx" "$data/vnnlib/prop_2_0.05.vnnlib" \
  --quiet --json --bab-domains 64 --no-attack > "$tmp/t.json" 2>/dev/null
json_check verify_json_says_how_far_an_undecided_search_got "$tmp/t.json" '
assert d["answer"] == "timeout", d["answer"]
p = d["last_progress"]
assert p["domains_done"] == d["domains"] == 64, p
assert p["domains_open"] > 0 and p["worst_margin"] < 0 and p["seconds"] > 0, p
'
json_check verify_json_has_no_progress_when_the_root_decided "$tmp/v.json" '
assert d["answer"] == "unsat" and d["last_progress"] is None, d["last_progress"]
'
# Even a search stopped before its first step reports the root's margin.
"$cli" verify "$data/onnx/mnist-net_256x4.onnx" "$data/vnnlib/prop_2_0.05.vnnlib" \
  --quiet --json --bab-domains 1 --no-attack > "$tmp/t1.json" 2>/dev/null
json_check verify_json_reports_a_search_stopped_before_its_first_step "$tmp/t1.json" '
assert d["answer"] == "timeout", d["answer"]
p = d["last_progress"]
assert p["domains_done"] == d["domains"] and p["domains_open"] == 1, p
assert p["worst_margin"] < 0, p
'
check verify_summary_gives_an_undecided_search_its_worst_margin 0 \
  "64 branch-and-bound domains, worst margin -" -- \
  "$cli" verify "$data/onnx/mnist-net_256x4.onnx" "$data/vnnlib/prop_2_0.05.vnnlib" \
  --bab-domains 64 --no-attack
# And how far from a counterexample: the least margin found at an input.
check verify_summary_gives_an_undecided_search_the_least_margin_found 0 \
  "64 branch-and-bound domains, worst margin -[0-9.]*, least margin found [0-9]" -- \
  "$cli" verify "$data/onnx/mnist-net_256x4.onnx" "$data/vnnlib/prop_2_0.05.vnnlib" \
  --bab-domains 64
"$cli" verify "$net" "$sat" --quiet --json > "$tmp/s.json" 2>/dev/null
json_check verify_json_gives_a_counterexample_its_margin "$tmp/s.json" '
assert d["answer"] == "sat" and d["found_margin"] <= 0, d["found_margin"]
'
check verify_help_says_max_memory_is_per_rank 0 "Per rank" -- "$cli" verify --help

# Bad input: exit status 2 and a message naming the problem.
head -c 5000 "$net" > "$tmp/truncated.onnx"
check truncated_onnx_is_rejected 2 "truncated.onnx" -- "$cli" bounds "$tmp/truncated.onnx" "$unsat"
printf '(declare-const X_0 Real)\n(assert (<= X_0 1)\n' > "$tmp/bad.vnnlib"
check malformed_vnnlib_is_rejected 2 "line" -- "$cli" bounds "$net" "$tmp/bad.vnnlib"
check missing_file_is_rejected 2 "nope.onnx" -- "$cli" bounds "$tmp/nope.onnx" "$unsat"
check unknown_method_is_rejected 2 "unknown method" -- "$cli" bounds "$net" "$unsat" --method deeppoly
check unknown_backend_lists_available 2 "cpu" -- "$cli" bounds "$net" "$unsat" --backend nosuch
check unknown_backend_option_is_named 2 "frobnicate" -- "$cli" bounds "$net" "$unsat" -o frobnicate=1
check ranks_on_single_rank_backend_is_rejected 2 "single rank" -- "$cli" bounds "$net" "$unsat" --backend cpu --ranks 4
check mismatched_property_is_rejected 2 "inputs" -- "$cli" bounds "$data/onnx/cifar_base_kw.onnx" "$unsat"
check verify_bad_usage_prints_error_word 2 "^error" -- "$cli" verify "$net"
check verify_rejects_negative_tighten_layers 2 "tighten_layers" -- \
  "$cli" verify "$net" "$unsat" --tighten-layers -1
check verify_rejects_negative_tighten_min_gain 2 "tighten_min_gain" -- \
  "$cli" verify "$net" "$unsat" --tighten-min-gain -0.5

# A backend that cannot run the model's operators: the engine's "unsupported"
# is the user's choice to change (status 2), named with the backend's reason.
fixtures=${SHARDBOUND_TEST_FIXTURES:?run through make check}
check unsupported_by_backend_is_input_error 2 "layer_create.*unsupported.*no layers" -- \
  "$cli" bounds "$net" "$unsat" --backend good --backend-path "$fixtures"
check verify_unsupported_by_backend_prints_error_word 2 "^error" -- \
  "$cli" verify "$net" "$unsat" --backend good --backend-path "$fixtures"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
