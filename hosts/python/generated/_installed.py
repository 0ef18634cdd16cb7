# SPDX-License-Identifier: MIT
"""Written by make: where libshardbound-host was installed."""
LIBDIR = "/usr/local/lib"
