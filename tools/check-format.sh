#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks that every C, header and CUDA source git tracks is laid out as
# .clang-format says (CI runs it); `tools/check-format.sh --fix` rewrites
# the ones that are not. Needs clang-format 14 (Debian's clang-format
# package): other versions lay out some constructs differently.
set -eu
cd "$(dirname "$0")/.."
fmt=${CLANG_FORMAT:-clang-format}
command -v "$fmt" > /dev/null || { echo "check-format: $fmt not found (install clang-format)" >&2; exit 2; }
case $("$fmt" --version) in
  *" version 14."*) ;;
  *) echo "check-format: $("$fmt" --version) is not clang-format 14" >&2; exit 2 ;;
esac
files=$(git ls-files '*.c' '*.h' '*.cu')
if [ "${1:-}" = --fix ]; then
  # shellcheck disable=SC2086
  "$fmt" -i $files
  exit 0
fi
# shellcheck disable=SC2086
if ! "$fmt" --dry-run -Werror $files 2> /tmp/check-format.$$; then
  grep -o '^[^:]*\.[chu]*:' /tmp/check-format.$$ | sort -u | sed 's/:$//; s/^/check-format: not formatted: /'
  rm -f /tmp/check-format.$$
  echo "check-format: run tools/check-format.sh --fix" >&2
  exit 1
fi
rm -f /tmp/check-format.$$
echo "check-format: $(echo "$files" | wc -l) files formatted as .clang-format says"
