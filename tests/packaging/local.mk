# SPDX-License-Identifier: MIT
# Debian packaging (debian/) and its check. `make check-packaging` builds the
# packages, runs lintian and tests the installed files in a throw-away
# Debian root (tools/check-packaging.sh). It needs root and Debian's mirror
# and takes minutes, so it is no part of `make check`; CI runs it after the
# suite with DEB_BUILD_OPTIONS=nocheck.
.PHONY: check-packaging
check-packaging:
	bash $(top_srcdir)/tools/check-packaging.sh

# The packaging is native: the release tarball is the Debian source.
EXTRA_DIST += debian tools/build-deb.sh tools/check-packaging.sh \
	tests/packaging/installed-test.sh tests/packaging/swap-host.c
