#!/bin/sh
# SPDX-License-Identifier: MIT
# Checks that every backend shared object given exports exactly the plugin
# ABI's entry symbol (docs/abi.md: "A v1 backend exports exactly one
# symbol, sb_backend_get_v1"), taken from abi/shardbound.h.
set -e
entry=$(sed -n 's/^#define SB_ENTRY_SYMBOL_V1 "\(.*\)"$/\1/p' abi/shardbound.h)
[ -n "$entry" ] || { echo "check-backend-exports: no SB_ENTRY_SYMBOL_V1 in abi/shardbound.h" >&2; exit 1; }
grep -q "$entry" docs/abi.md || { echo "check-backend-exports: docs/abi.md does not name $entry" >&2; exit 1; }
[ $# -gt 0 ] || { echo "check-backend-exports: no backend given" >&2; exit 1; }
for so in "$@"; do
  [ -f "$so" ] || { echo "check-backend-exports: $so: no such file" >&2; exit 1; }
  exported=$(nm -D --defined-only "$so" | awk '{ print $3 }' | sort | tr '\n' ' ')
  if [ "$exported" != "$entry " ]; then
    echo "check-backend-exports: $so exports '$exported', expected only $entry" >&2
    exit 1
  fi
  echo "check-backend-exports: $(basename "$so"): $entry"
done
