#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the Debian packages of this tree in a scratch copy
# (dpkg-buildpackage -us -uc -b), checks them with lintian (any error fails;
# each override is justified in debian/*.lintian-overrides) and leaves the
# .deb, .changes, .buildinfo and lintian.log files in OUTDIR.
# Usage: tools/build-deb.sh [OUTDIR]   (default: build-deb/ in this tree)
# The CUDA backend package (build profile pkg.shardbound.cuda) is built when
# nvcc is on PATH. DEB_BUILD_OPTIONS is passed on: nocheck skips the test
# suite (CI, after `make check`); parallel=N defaults to the number of CPUs.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$top/build-deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(sed -n 's/^AC_INIT(\[shardbound\], \[\([^]]*\)\].*/\1/p' "$top/configure.ac")
deb_version=$(cd "$top" && dpkg-parsechangelog -S Version)
if [ "$version" != "${deb_version%%-*}" ]; then
  echo "build-deb: configure.ac says $version but debian/changelog says $deb_version: add a changelog entry (dch -v)" >&2
  exit 1
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/shardbound-deb.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
src=$scratch/shardbound-$version
mkdir "$src"
# The sources only: tracked files and new ones git does not ignore, so that
# a configured or built checkout leaves its outputs behind.
if git -C "$top" rev-parse --git-dir > /dev/null 2>&1; then
  (cd "$top" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -C "$src" -xf -
else
  cp -a "$top/." "$src"
fi

profiles=()
if command -v nvcc > /dev/null 2>&1; then
  profiles=(-Ppkg.shardbound.cuda)
  echo "build-deb: nvcc found ($(command -v nvcc)): building shardbound-backend-cuda"
fi
check_builddeps=()
if [ ${#profiles[@]} -gt 0 ] && ! dpkg -S "$(readlink -f "$(command -v nvcc)")" > /dev/null 2>&1; then
  # CUDA installed by NVIDIA's installer is no Debian package, so the
  # profile's nvidia-cuda-toolkit build dependency cannot be met: check
  # the others, then build without dpkg's check.
  (cd "$src" && dpkg-checkbuilddeps)
  check_builddeps=(-d)
fi
case " ${DEB_BUILD_OPTIONS:-} " in
  *" parallel="*) ;;
  *) export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }parallel=$(nproc)" ;;
esac

echo "build-deb: dpkg-buildpackage -us -uc -b ${profiles[*]} ${check_builddeps[*]} (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS) in $src"
(cd "$src" && dpkg-buildpackage -us -uc -b "${profiles[@]}" "${check_builddeps[@]}") \
  > "$out/build.log" 2>&1 || { tail -n 60 "$out/build.log"; echo "build-deb: dpkg-buildpackage failed (log: $out/build.log)" >&2; exit 1; }
grep -E '^check-backend-exports:|^dpkg-gensymbols: warning' "$out/build.log" || true

rm -f "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
cp "$scratch"/*.deb "$scratch"/*.changes "$scratch"/*.buildinfo "$out"/
changes=$(ls "$out"/*.changes)
echo "build-deb: packages in $out:"
for deb in "$out"/*.deb; do
  printf '  %-48s %7s KiB file, %6s KiB installed\n' "$(basename "$deb")" \
    $(( $(stat -c %s "$deb") / 1024 )) "$(dpkg-deb -f "$deb" Installed-Size)"
done

# lintian: errors fail, everything else is reported; -I shows the
# informational tags too, --show-overrides the overridden ones (O:). Errors
# are counted here: lintian 2.116 exits non-zero for an overridden error
# once --show-overrides is given.
lintian -I --show-overrides --fail-on none "$changes" > "$out/lintian.log" 2>&1 \
  || { cat "$out/lintian.log"; echo "build-deb: lintian did not run" >&2; exit 1; }
grep -v '^N: ' "$out/lintian.log" | grep -v 'running with root privileges' || true
count () { grep -c "^$1: " "$out/lintian.log" || true; }
echo "build-deb: lintian: $(count E) errors, $(count W) warnings, $(count I) info, $(count P) pedantic, $(count O) overridden"
if [ "$(count E)" != 0 ]; then
  echo "build-deb: lintian found errors" >&2
  exit 1
fi
