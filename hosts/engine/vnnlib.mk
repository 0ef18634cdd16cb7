# SPDX-License-Identifier: MIT
# VNNLIB parser and its tests.
hosts_engine_libsbengine_la_SOURCES += hosts/engine/vnnlib.c

# The test compiles the parser directly so it does not depend on the rest of
# the engine library being buildable.
check_PROGRAMS += tests/check-vnnlib
tests_check_vnnlib_SOURCES = tests/check-vnnlib.c hosts/engine/vnnlib.c \
	hosts/engine/vnnlib.h hosts/engine/limits.c hosts/engine/limits.h \
	hosts/engine/heap_prefault.c hosts/engine/heap_prefault.h
tests_check_vnnlib_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_vnnlib_LDADD = $(GLIB_LIBS) $(CHECK_LIBS) -lm

EXTRA_DIST += tests/data/vnnlib-bad/unclosed.vnnlib
