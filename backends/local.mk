# SPDX-License-Identifier: MIT
# Backends, their shared device code and their tests.

# Device-independent operator code, the tracked allocator, the ABI glue of
# single-device backends and the CPU device. Backends must not use GLib.
noinst_LTLIBRARIES += backends/common/libsbdevice.la
backends_common_libsbdevice_la_SOURCES = \
	backends/common/device.h \
	backends/common/device_cpu.h \
	backends/common/device_cpu.c \
	backends/common/tracked_alloc.h \
	backends/common/tracked_alloc.c \
	backends/common/tensor.h \
	backends/common/layer.h \
	backends/common/layer.c \
	backends/common/op_linear.c \
	backends/common/op_conv.c \
	backends/common/op_affine.c \
	backends/common/op_add.c \
	backends/common/op_relu.c \
	backends/common/concretize.c \
	backends/common/single_backend.h \
	backends/common/single_backend.c
backends_common_libsbdevice_la_CFLAGS = $(AM_CFLAGS) $(OPENBLAS_CFLAGS)

# The CPU reference backend, always built.
backend_LTLIBRARIES += backends/shardbound-backend-cpu.la
backends_shardbound_backend_cpu_la_SOURCES = backends/cpu/backend_cpu.c
backends_shardbound_backend_cpu_la_LDFLAGS = $(SB_PLUGIN_FLAGS)
backends_shardbound_backend_cpu_la_LIBADD = backends/common/libsbdevice.la \
	$(OPENBLAS_LIBS) -lm -lpthread

# The CUDA backend (backends/cuda.mk, inside `if HAVE_CUDA`) links this same
# libsbdevice.la and supplies only its SbDeviceOps table; it never carries
# operator code of its own.

# The CPU backend loaded as a plugin, as a host would.
check_PROGRAMS += tests/check-backend-cpu
tests_check_backend_cpu_SOURCES = tests/check-backend-cpu.c
tests_check_backend_cpu_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_backend_cpu_LDADD = $(GLIB_LIBS) $(CHECK_LIBS) -lm
