# SPDX-License-Identifier: MIT
# The TP (tensor-parallel) backend.

backend_LTLIBRARIES += backends/shardbound-backend-tp.la
backends_shardbound_backend_tp_la_SOURCES = \
	backends/tp/tp.h \
	backends/tp/tp_tensor.c \
	backends/tp/tp_conv.c \
	backends/tp/tp_layer.c \
	backends/tp/tp_concretize.c \
	backends/tp/tp_alpha.c \
	backends/tp/backend_tp.c
backends_shardbound_backend_tp_la_LDFLAGS = $(SB_PLUGIN_FLAGS)
backends_shardbound_backend_tp_la_LIBADD = backends/common/libsbranks.la \
	backends/common/libsbdevice.la -ldl -lm -lpthread

check_PROGRAMS += tests/check-tp
tests_check_tp_SOURCES = tests/check-tp.c $(BACKEND_TESTLIB)
tests_check_tp_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_tp_LDADD = $(CHECK_LIBS) -ldl -lm
# check-tp also compares the argument checks of cpu, fsdp and tp.
EXTRA_tests_check_tp_DEPENDENCIES = backends/shardbound-backend-cpu.la \
	backends/shardbound-backend-fsdp.la backends/shardbound-backend-tp.la
