# SPDX-License-Identifier: MIT
# The FSDP (fully sharded) backend and the tests shared with TP.

backend_LTLIBRARIES += backends/shardbound-backend-fsdp.la
backends_shardbound_backend_fsdp_la_SOURCES = \
	backends/fsdp/fsdp.h \
	backends/fsdp/fsdp_tensor.c \
	backends/fsdp/fsdp_views.c \
	backends/fsdp/fsdp_layer.c \
	backends/fsdp/fsdp_gather.c \
	backends/fsdp/backend_fsdp.c
backends_shardbound_backend_fsdp_la_LDFLAGS = $(SB_PLUGIN_FLAGS)
backends_shardbound_backend_fsdp_la_LIBADD = backends/common/libsbranks.la \
	backends/common/libsbdevice.la -ldl -lm -lpthread

# Backend loading, random layer graphs and CPU comparisons shared by
# check-fsdp and check-tp.
BACKEND_TESTLIB = tests/backend-testlib.c tests/backend-testlib.h

check_PROGRAMS += tests/check-fsdp
tests_check_fsdp_SOURCES = tests/check-fsdp.c $(BACKEND_TESTLIB)
tests_check_fsdp_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_fsdp_LDADD = $(CHECK_LIBS) -ldl -lm
EXTRA_tests_check_fsdp_DEPENDENCIES = backends/shardbound-backend-cpu.la \
	backends/shardbound-backend-fsdp.la

# The benchmark table and memory plot (docs/benchmarks.md,
# docs/memory-vs-ranks.png); takes a few minutes.
EXTRA_DIST += tools/bench.sh docs/plot-memory.gp
.PHONY: bench-fsdp
bench-fsdp: hosts/cli/shardbound backends/shardbound-backend-cpu.la \
	backends/shardbound-backend-fsdp.la
	$(SHELL) $(top_srcdir)/tools/bench.sh $(abs_top_builddir)

# device=, devices= and comm= of both multi-rank backends, on any machine.
check_PROGRAMS += tests/check-rank-devices
tests_check_rank_devices_SOURCES = tests/check-rank-devices.c $(BACKEND_TESTLIB)
tests_check_rank_devices_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_rank_devices_LDADD = $(CHECK_LIBS) -ldl -lm
EXTRA_tests_check_rank_devices_DEPENDENCIES = \
	backends/shardbound-backend-fsdp.la backends/shardbound-backend-tp.la
