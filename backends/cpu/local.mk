# SPDX-License-Identifier: MIT
# The CPU reference backend.

backend_LTLIBRARIES += backends/shardbound-backend-cpu.la
backends_shardbound_backend_cpu_la_SOURCES = backends/cpu/backend_cpu.c
backends_shardbound_backend_cpu_la_LDFLAGS = $(SB_PLUGIN_FLAGS)
backends_shardbound_backend_cpu_la_LIBADD = backends/common/libsbdevice.la \
	-ldl -lm -lpthread

# The CUDA backend (backends/cuda/local.mk, inside `if HAVE_CUDA`) links this
# same libsbdevice.la and supplies only its SbDeviceOps table; it never carries
# operator code of its own.

# The CPU backend loaded as a plugin, as a host would.
check_PROGRAMS += tests/check-backend-cpu
tests_check_backend_cpu_SOURCES = tests/check-backend-cpu.c
tests_check_backend_cpu_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_backend_cpu_LDADD = $(GLIB_LIBS) $(CHECK_LIBS) -lm
