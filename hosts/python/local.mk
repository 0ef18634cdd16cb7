# SPDX-License-Identifier: MIT
# The Python package `shardbound` (docs/python.md): pure Python over
# libshardbound-host by ctypes, installed in $(pythondir)/shardbound.
if HAVE_PYTHON
shardbounddir = $(pythondir)/shardbound
shardbound_PYTHON = \
	hosts/python/shardbound/__init__.py \
	hosts/python/shardbound/_arrays.py \
	hosts/python/shardbound/_library.py \
	hosts/python/shardbound/errors.py \
	hosts/python/shardbound/lirpa.py \
	hosts/python/shardbound/session.py
# Where the installed package finds the installed library (a build-tree
# package finds the tree's own, see _library.py).
nodist_shardbound_PYTHON = hosts/python/generated/_installed.py
hosts/python/generated/_installed.py: Makefile
	$(AM_V_GEN)$(MKDIR_P) hosts/python/generated && \
	printf '%s\n' '# SPDX-License-Identifier: MIT' \
	  '"""Written by make: where libshardbound-host was installed."""' \
	  'LIBDIR = "$(libdir)"' > $@-t && mv $@-t $@
CLEANFILES += hosts/python/generated/_installed.py
endif
EXTRA_DIST += tools/bench-python.py
