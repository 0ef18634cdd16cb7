# SPDX-License-Identifier: MIT
# libshardbound (plugin/): backend discovery, loading and validation, and
# its tests.

lib_LTLIBRARIES += plugin/libshardbound.la
plugin_libshardbound_la_SOURCES = \
	plugin/shardbound-plugin.h \
	plugin/validate.h \
	plugin/error.c \
	plugin/capabilities.c \
	plugin/config.c \
	plugin/validate.c \
	plugin/registry.c \
	plugin/session.c
plugin_libshardbound_la_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) \
	-DSB_BACKEND_DIR=\"$(backenddir)\" \
	-DSB_BUILD_BACKEND_DIR=\"$(abs_top_builddir)/backends/.libs\"
plugin_libshardbound_la_LIBADD = $(GLIB_LIBS)
plugin_libshardbound_la_LDFLAGS = -version-info 0:0:0 -no-undefined

# Installed as <shardbound/shardbound-plugin.h> next to <shardbound/shardbound.h>
# (abi/local.mk): the tree's include of "abi/shardbound.h" becomes a sibling
# include, so outside users need only -I$(includedir).
nodist_sbinclude_HEADERS = plugin/installed/shardbound-plugin.h
plugin/installed/shardbound-plugin.h: plugin/shardbound-plugin.h
	$(AM_V_GEN)$(MKDIR_P) plugin/installed && \
	sed -e 's|#include "abi/shardbound.h"|#include "shardbound.h"|' \
	    $(srcdir)/plugin/shardbound-plugin.h > $@-t && mv $@-t $@
BUILT_SOURCES += plugin/installed/shardbound-plugin.h
CLEANFILES += plugin/installed/shardbound-plugin.h

# pkg-config file, generated here so configure.ac needs no change.
pkgconfigdir = $(libdir)/pkgconfig
pkgconfig_DATA = plugin/shardbound.pc
plugin/shardbound.pc: plugin/shardbound.pc.in Makefile
	$(AM_V_GEN)$(MKDIR_P) plugin && \
	sed -e 's|@prefix[@]|$(prefix)|g' -e 's|@exec_prefix[@]|$(exec_prefix)|g' \
	    -e 's|@libdir[@]|$(libdir)|g' -e 's|@includedir[@]|$(includedir)|g' \
	    -e 's|@backenddir[@]|$(backenddir)|g' -e 's|@VERSION[@]|$(VERSION)|g' \
	    $(srcdir)/plugin/shardbound.pc.in > $@-t && mv $@-t $@
EXTRA_DIST += plugin/shardbound.pc.in
CLEANFILES += plugin/shardbound.pc

dist_doc_DATA += docs/abi.md docs/configuration.md docs/writing-a-backend.md \
	docs/embedding.md

# ---- tests -----------------------------------------------------------------
check_PROGRAMS += tests/check-abi tests/check-loader tests/check-config
tests_check_abi_SOURCES = tests/check-abi.c
tests_check_abi_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_abi_LDADD = $(CHECK_LIBS)

tests_check_loader_SOURCES = tests/check-loader.c
tests_check_loader_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_loader_LDADD = plugin/libshardbound.la $(GLIB_LIBS) $(CHECK_LIBS)

tests_check_config_SOURCES = tests/check-config.c
tests_check_config_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_config_LDADD = plugin/libshardbound.la $(GLIB_LIBS) $(CHECK_LIBS)

# Loader fixtures: one source, one -D knob set per broken backend.
FIXTURE_SOURCE = tests/fixtures/fixture-backend.c
check_LTLIBRARIES += \
	tests/fixtures/shardbound-backend-good.la \
	tests/fixtures/shardbound-backend-noentry.la \
	tests/fixtures/shardbound-backend-wrongmajor.la \
	tests/fixtures/shardbound-backend-short.la \
	tests/fixtures/shardbound-backend-nullop.la \
	tests/fixtures/shardbound-backend-misnamed.la \
	tests/fixtures/shardbound-backend-entryfails.la \
	tests/fixtures/shardbound-backend-createfails.la \
	tests/fixtures/shardbound-backend-newer.la
tests_fixtures_shardbound_backend_good_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_good_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_noentry_la_SOURCES = $(FIXTURE_SOURCE)
# It exports only a v2 entry: an empty export list is no valid version script.
tests_fixtures_shardbound_backend_noentry_la_LDFLAGS = -module -avoid-version \
	-no-undefined -shared -rpath /nowhere \
	-export-symbols-regex '^sb_backend_get_v2$$'
tests_fixtures_shardbound_backend_noentry_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=noentry -DFIXTURE_NO_ENTRY
tests_fixtures_shardbound_backend_wrongmajor_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_wrongmajor_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_wrongmajor_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=wrongmajor -DFIXTURE_ABI_MAJOR=2
tests_fixtures_shardbound_backend_short_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_short_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_short_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=short -DFIXTURE_SHORT_STRUCT
tests_fixtures_shardbound_backend_nullop_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_nullop_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_nullop_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=nullop -DFIXTURE_NULL_OP
tests_fixtures_shardbound_backend_misnamed_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_misnamed_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_misnamed_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=other
tests_fixtures_shardbound_backend_entryfails_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_entryfails_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_entryfails_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=entryfails -DFIXTURE_ENTRY_FAILS
tests_fixtures_shardbound_backend_createfails_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_createfails_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_createfails_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=createfails -DFIXTURE_CREATE_FAILS
tests_fixtures_shardbound_backend_newer_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_newer_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_newer_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=newer -DFIXTURE_NEWER_MINOR

# An ABI 1.0 backend (must still load) and a 1.1 backend with a NULL 1.1
# function (must be refused naming it).
check_LTLIBRARIES += tests/fixtures/shardbound-backend-abi10.la \
	tests/fixtures/shardbound-backend-nullvjp.la
tests_fixtures_shardbound_backend_abi10_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_abi10_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_abi10_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=abi10 -DFIXTURE_ABI_1_0
tests_fixtures_shardbound_backend_nullvjp_la_SOURCES = $(FIXTURE_SOURCE)
tests_fixtures_shardbound_backend_nullvjp_la_LDFLAGS = $(SB_FIXTURE_FLAGS)
tests_fixtures_shardbound_backend_nullvjp_la_CPPFLAGS = $(AM_CPPFLAGS) \
	-DFIXTURE_NAME=nullvjp -DFIXTURE_NULL_VJP
