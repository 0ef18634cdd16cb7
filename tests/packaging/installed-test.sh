#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs inside the throw-away Debian root made by tools/check-packaging.sh,
# as root, with the packages in DIR/debs, the bundled example in
# DIR/mnist_fc and swap-host.c in DIR (DIR: this script's folder). Everything
# runs from the installed files only: no environment variable, no
# configuration file, no build tree points the host at its backends.
#   1. install libshardbound0, libshardbound-host0, libshardbound-dev,
#      shardbound and
#      shardbound-backend-cpu; `shardbound backends` lists cpu alone from
#      the installed backend directory; the README's main job (verify on
#      examples/mnist_fc) prints unsat, also through the installed VNN-COMP
#      run_instance.sh;
#   2. compile swap-host against libshardbound-dev: exact on cpu, and fsdp
#      is not found;
#   3. install the multi-rank backend packages: the same binary, unchanged,
#      runs on fsdp (2 ranks) with the same box as cpu;
#   4. remove shardbound-backend-tp, then shardbound-backend-fsdp: the host
#      keeps working and `shardbound backends` no longer lists them;
#   5. install python3-shardbound: the Python package lists the installed
#      backends and decides the main job through libshardbound-host;
#   6. where the CUDA backend package was built, installing it adds cuda to
#      `shardbound backends` (accepted, or refused with the reason on a
#      machine without a usable GPU) and verify still runs.
set -eu
dir=$(cd "$(dirname "$0")" && pwd)
debs=$dir/debs
example=$dir/mnist_fc
work=$(mktemp -d)
unset SHARDBOUND_BACKEND SHARDBOUND_BACKEND_PATH LD_LIBRARY_PATH XDG_CONFIG_HOME
export HOME=/root DEBIAN_FRONTEND=noninteractive

started=$(date +%s)
step () { printf '\n==> [%ss] %s\n' $(( $(date +%s) - started )) "$*"; }
fail () { echo "installed-test: FAIL: $*" >&2; exit 1; }
deb () {
  set -- "$debs/$1"_*.deb
  [ -f "$1" ] || fail "no package $1"
  echo "$1"
}
# The root is thrown away: dpkg need not sync every file it writes.
apt_install () {
  apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-unsafe-io "$@" > "$work/apt.log" 2>&1 \
    || { cat "$work/apt.log"; fail "apt-get install $*"; }
}
apt_remove () {
  apt-get remove -y -q -o Dpkg::Options::=--force-unsafe-io "$@" > "$work/apt.log" 2>&1 \
    || { cat "$work/apt.log"; fail "apt-get remove $*"; }
}
# Accepted backends of `shardbound backends`, one name a line.
listed_backends () {
  shardbound backends | sed -n '/^Backends/,/^$/p' \
    | awk 'NR > 2 && NF >= 5 { sub(/\*$/, "", $1); print $1 }' | sort | tr '\n' ' '
}
expect_backends () {
  got=$(listed_backends)
  [ "$got" = "$*" ] || { shardbound backends; fail "backends listed: '$got', expected '$*'"; }
  echo "shardbound backends lists: $got"
}
readme_job () {
  shardbound verify "$example/mnist-net_256x2.onnx" \
    "$example/prop_0_0.03.vnnlib" --timeout 120 --quiet "$@" > "$work/verify.out" \
    || { cat "$work/verify.out"; fail "shardbound verify $*"; }
  [ "$(head -n 1 "$work/verify.out")" = unsat ] \
    || { cat "$work/verify.out"; fail "verify $* did not print unsat"; }
  echo "verify mnist-net_256x2 prop_0_0.03 $*: unsat"
}
# The box lines of two swap-host runs must be identical.
same_box () {
  a=$(grep '^box:' "$1") b=$(grep '^box:' "$2")
  [ "$a" = "$b" ] || fail "boxes differ: '$a' and '$b'"
}

multiarch=$(gcc -print-multiarch)
backenddir=/usr/lib/$multiarch/shardbound/backends
[ ! -e "$HOME/.config/shardbound" ] || fail "a user configuration exists"
# mmdebstrap's hooks run before it empties the package lists; a root kept
# from an earlier run needs them again.
if ! ls /var/lib/apt/lists/*_Packages > /dev/null 2>&1; then
  apt-get update -q > "$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get update"; }
fi

step "install libshardbound0 libshardbound-host0 libshardbound-dev shardbound shardbound-backend-cpu"
apt_install "$(deb libshardbound0)" "$(deb libshardbound-host0)" \
  "$(deb libshardbound-dev)" "$(deb shardbound)" "$(deb shardbound-backend-cpu)"
[ "$(command -v shardbound)" = /usr/bin/shardbound ] || fail "shardbound is not /usr/bin/shardbound"
ls "$backenddir"
[ -f /usr/share/man/man1/shardbound.1.gz ] || fail "no man page"
zcat /usr/share/man/man1/shardbound.1.gz | grep -q "$backenddir" \
  || fail "the man page does not name $backenddir"

step "shardbound backends (installed backend directory, nothing configured)"
shardbound backends | tee "$work/backends.out"
grep -q "^Search path: *$backenddir\$" "$work/backends.out" \
  || fail "the search path is not $backenddir"
expect_backends "cpu "

step "README main job from the installed files"
readme_job
/usr/share/shardbound/vnncomp/run_instance.sh v1 mnist_fc \
  "$example/mnist-net_256x2.onnx" "$example/prop_0_0.03.vnnlib" \
  "$work/results.txt" 120 || fail "run_instance.sh"
[ "$(head -n 1 "$work/results.txt")" = unsat ] || fail "run_instance.sh wrote $(cat "$work/results.txt")"
echo "run_instance.sh: unsat"

step "compile swap-host against libshardbound-dev, cpu backend only"
# shellcheck disable=SC2046
gcc -std=c11 -Wall -Wextra -Werror -o "$work/swap-host" "$dir/swap-host.c" \
  $(pkg-config --cflags --libs shardbound)
sum=$(sha256sum < "$work/swap-host")
"$work/swap-host" cpu | tee "$work/cpu.out" || fail "swap-host cpu"
if "$work/swap-host" fsdp 2 > "$work/fsdp.out" 2>&1; then
  fail "swap-host ran on fsdp before its package was installed"
fi
cat "$work/fsdp.out"
grep -q "no backend named 'fsdp'" "$work/fsdp.out" || fail "no clear error for the missing fsdp"

step "install shardbound-backend-fsdp shardbound-backend-tp; the same binary on fsdp"
apt_install "$(deb shardbound-backend-fsdp)" "$(deb shardbound-backend-tp)"
[ "$(sha256sum < "$work/swap-host")" = "$sum" ] || fail "swap-host changed"
"$work/swap-host" fsdp 2 | tee "$work/fsdp.out" || fail "swap-host fsdp 2"
grep -q '^backend: fsdp .* 2 rank(s)$' "$work/fsdp.out" || fail "swap-host did not run fsdp on 2 ranks"
same_box "$work/cpu.out" "$work/fsdp.out"
"$work/swap-host" tp 2 > "$work/tp.out" || { cat "$work/tp.out"; fail "swap-host tp 2"; }
same_box "$work/cpu.out" "$work/tp.out"
echo "swap-host: cpu, fsdp and tp give the same exact box"
expect_backends "cpu fsdp tp "
readme_job --backend fsdp --ranks 2

step "remove shardbound-backend-tp"
apt_remove shardbound-backend-tp
[ ! -e "$backenddir/shardbound-backend-tp.so" ] || fail "tp is still installed"
expect_backends "cpu fsdp "
"$work/swap-host" fsdp 2 > "$work/fsdp.out" || { cat "$work/fsdp.out"; fail "swap-host fsdp after removing tp"; }
same_box "$work/cpu.out" "$work/fsdp.out"
readme_job

step "remove shardbound-backend-fsdp"
apt_remove shardbound-backend-fsdp
expect_backends "cpu "
"$work/swap-host" cpu > "$work/cpu2.out" || fail "swap-host cpu after removing fsdp"
same_box "$work/cpu.out" "$work/cpu2.out"
if "$work/swap-host" fsdp 2 > "$work/fsdp.out" 2>&1; then
  fail "swap-host still ran on fsdp after its package was removed"
fi
grep -q "no backend named 'fsdp'" "$work/fsdp.out" || fail "no clear error for the removed fsdp"
echo "swap-host: cpu exact, fsdp reported missing"
readme_job

step "install python3-shardbound; bounds through the Python package"
apt_install "$(deb python3-shardbound)"
python3 - "$example" <<'PYTHON' || fail "python3-shardbound"
import sys
import shardbound
names = [b.name for b in shardbound.backends() if b.usable]
assert names == ["cpu"], names
with shardbound.Session(backend="cpu") as s:
    r = s.verify(sys.argv[1] + "/mnist-net_256x2.onnx",
                 sys.argv[1] + "/prop_0_0.03.vnnlib", timeout=120)
print("python3-shardbound:", shardbound.LIBRARY_PATH, names, r.answer)
assert r.answer == "unsat", r.answer
PYTHON

if ls "$debs"/shardbound-backend-cuda_*.deb > /dev/null 2>&1; then
  step "install shardbound-backend-cuda"
  apt_install "$(deb shardbound-backend-cuda)"
  shardbound backends | tee "$work/backends.out"
  grep -Eq '^  cuda\*? |^  cuda: ' "$work/backends.out" \
    || fail "cuda is neither accepted nor refused with a reason"
  readme_job
  apt_remove shardbound-backend-cuda
  expect_backends "cpu "
fi

rm -rf "$work"
printf '\ninstalled-test: all checks passed in %ss\n' $(( $(date +%s) - started ))
