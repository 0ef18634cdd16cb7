# SPDX-License-Identifier: MIT
# libshardbound-host: the public host API over the engine (docs/host-api.md).
# The engine is a convenience library linked in; only shardbound_* symbols
# are exported, so the engine's internals stay private.
lib_LTLIBRARIES += hosts/api/libshardbound-host.la
hosts_api_libshardbound_host_la_SOURCES = \
	hosts/api/shardbound-host.h hosts/api/host-private.h \
	hosts/api/version.c \
	hosts/api/error.c \
	hosts/api/backends.c \
	hosts/api/session_setup.c hosts/api/session_setup.h \
	hosts/api/session.c \
	hosts/api/gemm_rate.c \
	hosts/api/settings.c \
	hosts/api/network.c \
	hosts/api/bounds.c \
	hosts/api/property.c \
	hosts/api/verdict.c
hosts_api_libshardbound_host_la_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS)
hosts_api_libshardbound_host_la_LIBADD = hosts/engine/libsbengine.la plugin/libshardbound.la $(GLIB_LIBS)
# current:revision:age (libtool): bump current and age when calls are added,
# reset age when one is removed or changes meaning.
hosts_api_libshardbound_host_la_LDFLAGS = -version-info 0:0:0 -no-undefined \
	-export-symbols-regex '^shardbound_'

# Installed as <shardbound/shardbound-host.h>, beside the ABI header.
sbinclude_HEADERS += hosts/api/shardbound-host.h

pkgconfig_DATA += hosts/api/shardbound-host.pc
hosts/api/shardbound-host.pc: hosts/api/shardbound-host.pc.in Makefile
	$(AM_V_GEN)$(MKDIR_P) hosts/api && \
	sed -e 's|@prefix[@]|$(prefix)|g' -e 's|@exec_prefix[@]|$(exec_prefix)|g' \
	    -e 's|@libdir[@]|$(libdir)|g' -e 's|@includedir[@]|$(includedir)|g' \
	    -e 's|@VERSION[@]|$(VERSION)|g' \
	    $(srcdir)/hosts/api/shardbound-host.pc.in > $@-t && mv $@-t $@
EXTRA_DIST += hosts/api/shardbound-host.pc.in
CLEANFILES += hosts/api/shardbound-host.pc

dist_doc_DATA += docs/host-api.md docs/python.md

# ---- tests -----------------------------------------------------------------
# Only the public header and the library, as an outside program.
check_PROGRAMS += tests/check-host-api
tests_check_host_api_SOURCES = tests/check-host-api.c
tests_check_host_api_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(JSON_GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_host_api_LDADD = hosts/api/libshardbound-host.la $(JSON_GLIB_LIBS) $(GLIB_LIBS) $(CHECK_LIBS) -lm
