#!/bin/bash
# SPDX-License-Identifier: MIT
# Packaging check (make check-packaging; CI): builds the Debian packages
# (tools/build-deb.sh: dpkg-buildpackage, lintian), makes a throw-away
# Debian root from Debian's mirror (mmdebstrap, same release as this
# machine, discarded at the end) and runs tests/packaging/installed-test.sh
# in it: install, `shardbound backends`, the README's main job, a C host
# compiled against libshardbound-dev picking up backend packages installed
# after it, and backend packages removed. Needs root (the root is a chroot).
# Environment: DEB_BUILD_OPTIONS (nocheck: skip the test suite inside the
# package build), SHARDBOUND_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mirror=${SHARDBOUND_DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$suite" ] || { echo "check-packaging: no VERSION_CODENAME in /etc/os-release" >&2; exit 1; }
SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

work=$(mktemp -d "${TMPDIR:-/tmp}/shardbound-pkgcheck.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
elapsed () { echo $(( $(date +%s) - started )); }

bash "$top/tools/build-deb.sh" "$work/out"
built=$(elapsed)

# The symbols guard bites: against the built library, dpkg-gensymbols
# (as dh_makeshlibs runs it, -c4) accepts debian/libshardbound0.symbols and
# rejects it with an exported symbol left out or a listed one gone.
symbols_check () {
  dpkg-gensymbols -plibshardbound0 -P"$work/lib" -c4 -v"$version" -I"$1" \
    -O"$work/symbols.out" -e"$work"/lib/usr/lib/*/libshardbound.so.0.*.* > "$work/gensymbols.log" 2>&1
}
symbols=$top/debian/libshardbound0.symbols
version=$(dpkg-deb -f "$work"/out/libshardbound0_*.deb Version)
dpkg-deb -x "$work"/out/libshardbound0_*.deb "$work/lib"
symbols_check "$symbols" || { cat "$work/gensymbols.log"; echo "check-packaging: the symbols file does not match" >&2; exit 1; }
first=$(awk '/@Base/ { print $1; exit }' "$symbols")
grep -v "^ $first " "$symbols" > "$work/symbols.missing"
sed "s/^ $first .*/&\n sb_symbol_gone@Base 0~/" "$symbols" > "$work/symbols.gone"
for mutant in missing gone; do
  if symbols_check "$work/symbols.$mutant"; then
    echo "check-packaging: dpkg-gensymbols accepted a symbols file with a symbol $mutant" >&2; exit 1
  fi
done
echo "check-packaging: symbols file matches; a symbol left out or gone fails the build"

# What goes into the root: the packages (not their debug symbols), the
# bundled example as input data, the host source and the test itself.
mkdir -p "$work/sbpkg/debs"
for deb in "$work"/out/*.deb; do
  case $deb in *-dbgsym_*) ;; *) cp "$deb" "$work/sbpkg/debs/" ;; esac
done
cp -r "$top/examples/mnist_fc" "$top/tests/packaging/swap-host.c" \
  "$top/tests/packaging/installed-test.sh" "$work/sbpkg/"

# The root has only Debian's packages (apt, a C compiler, pkg-config) until
# the test installs ours with apt, which pulls their declared dependencies
# from the mirror. Output /dev/null: nothing of it is kept.
echo "check-packaging: throw-away $suite root from $mirror"
$SUDO mmdebstrap --quiet --variant=apt --include=gcc,libc6-dev,pkg-config \
  --customize-hook="copy-in $work/sbpkg /tmp" \
  --customize-hook='chroot "$1" sh /tmp/sbpkg/installed-test.sh' \
  "$suite" /dev/null "deb $mirror $suite main"
echo "check-packaging: passed (package build and lintian ${built}s, installed test $(( $(elapsed) - built ))s, total $(elapsed)s)"
