#!/bin/bash
# SPDX-License-Identifier: MIT
# VNN-COMP: install_tool.sh v1 -- in a checkout, installs dependencies and
# builds shardbound; installed (from a package, in $(pkgdatadir)/vnncomp),
# checks that the installed command finds its backends.
set -euo pipefail
if [ "${1:-}" != "v1" ]; then echo "expected API version v1, got '${1:-}'" >&2; exit 1; fi
top=$(cd "$(dirname "$0")/../.." && pwd)
if [ ! -f "$top/configure.ac" ]; then
  exec shardbound backends
fi
cd "$top"
sh tools/install-deps.sh
autoreconf -fi
./configure
make -j"$(nproc)"
SHARDBOUND_BACKEND_PATH="$top/backends/.libs" hosts/cli/shardbound backends
