# SPDX-License-Identifier: MIT
# Code shared by the backends: operators, the CPU device, the ABI glue of
# single-device backends, and the ranks and communicators of multi-rank ones.

# Device-independent operator code, the tracked allocator, the ABI glue of
# single-device backends and the CPU device. Backends must not use GLib.
noinst_LTLIBRARIES += backends/common/libsbdevice.la
backends_common_libsbdevice_la_SOURCES = \
	backends/common/device.h \
	backends/common/device_cpu.h \
	backends/common/device_cpu.c \
	backends/common/blas_cpu.h \
	backends/common/blas_cpu.c \
	backends/common/openblas_module.h \
	backends/common/beside_self.h \
	backends/common/beside_self.c \
	backends/common/conv_cpu.h \
	backends/common/conv_cpu.c \
	backends/common/gemm_cpu.h \
	backends/common/gemm_cpu.c \
	backends/common/cpu_parts.h \
	backends/common/cpu_parts.c \
	backends/common/cpu_clones.h \
	backends/common/relu_relax.h \
	backends/common/box.h \
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
	backends/common/abi_checks.h \
	backends/common/abi_checks.c \
	backends/common/single_backend.h \
	backends/common/single_backend.c
backends_common_libsbdevice_la_CFLAGS = $(AM_CFLAGS) $(KERNEL_CFLAGS) $(OPENBLAS_CFLAGS)

# OpenBLAS for the CPU device, in a module of the backends' own beside them
# (why: blas_cpu.c). Its name is not a backend's, so the registry never
# loads it. With OpenBLAS's static archive, libtool warns that linking one
# into a shared library is not portable: it is position-independent here.
backend_LTLIBRARIES += backends/shardbound-openblas.la
backends_shardbound_openblas_la_SOURCES = backends/common/openblas_module.h \
	backends/common/openblas_module.c
backends_shardbound_openblas_la_CFLAGS = $(AM_CFLAGS) $(OPENBLAS_CFLAGS)
backends_shardbound_openblas_la_LDFLAGS = -module -avoid-version \
	-no-undefined -shared \
	-export-symbols-regex '^sb_openblas_module_get_v1$$'
backends_shardbound_openblas_la_LIBADD = $(OPENBLAS_MODULE_LIBS)

# Rank pools, communicators and the ABI plumbing of a context over them,
# shared by the multi-rank backends (FSDP, TP). Backends must not use GLib.
noinst_LTLIBRARIES += backends/common/libsbranks.la
backends_common_libsbranks_la_SOURCES = \
	backends/common/comm.h \
	backends/common/comm_checks.c \
	backends/common/comm_wait.h \
	backends/common/comm_wait.c \
	backends/common/spin_wait.h \
	backends/common/spin_wait.c \
	backends/common/comm_join.h \
	backends/common/comm_join.c \
	backends/common/comm_loopback.c \
	backends/common/comm_mpi.c \
	backends/common/comm_nccl_mpi.h \
	backends/common/comm_nccl_mpi.c \
	backends/common/comm_nccl.h \
	backends/common/device_module.h \
	backends/common/device_module.c \
	backends/common/ranks.h \
	backends/common/ranks.c \
	backends/common/rank_backend.h \
	backends/common/rank_backend.c \
	backends/common/rank_checks.h \
	backends/common/rank_checks.c
backends_common_libsbranks_la_CFLAGS = $(AM_CFLAGS) $(MPI_CFLAGS)
backends_common_libsbranks_la_LIBADD = $(MPI_LIBS)

# The communicators on their own.
check_PROGRAMS += tests/check-comm
tests_check_comm_SOURCES = tests/check-comm.c
tests_check_comm_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_comm_LDADD = backends/common/libsbranks.la \
	backends/common/libsbdevice.la $(CHECK_LIBS) -ldl -lm -lpthread

# The conv operator's products through the CPU kernels and through im2col,
# sgemm and col2im (the path of devices without the kernels).
check_PROGRAMS += tests/check-conv
tests_check_conv_SOURCES = tests/check-conv.c
tests_check_conv_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_conv_LDADD = backends/common/libsbdevice.la \
	$(CHECK_LIBS) -ldl -lm -lpthread

# The CPU device's products, split across threads by the backend.
check_PROGRAMS += tests/check-gemm-cpu
tests_check_gemm_cpu_SOURCES = tests/check-gemm-cpu.c
tests_check_gemm_cpu_CFLAGS = $(AM_CFLAGS) $(OPENBLAS_CFLAGS) $(CHECK_CFLAGS)
tests_check_gemm_cpu_LDADD = backends/common/libsbdevice.la \
	$(CHECK_LIBS) -ldl -lm -lpthread

# How the CPU device opens OpenBLAS; this program does not link it, and
# exports its xerbla_ as a host's function of the same name would be.
check_PROGRAMS += tests/check-blas-cpu
tests_check_blas_cpu_SOURCES = tests/check-blas-cpu.c
tests_check_blas_cpu_CFLAGS = $(AM_CFLAGS) $(OPENBLAS_CFLAGS) $(CHECK_CFLAGS)
tests_check_blas_cpu_LDFLAGS = -Wl,--export-dynamic-symbol=xerbla_
tests_check_blas_cpu_LDADD = backends/common/libsbdevice.la $(CHECK_LIBS) \
	-ldl -lm -lpthread

# The CPU device's column gather, on the masked AVX-512 path where the CPU
# has it.
check_PROGRAMS += tests/check-device-cpu
tests_check_device_cpu_SOURCES = tests/check-device-cpu.c
tests_check_device_cpu_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_device_cpu_LDADD = backends/common/libsbdevice.la \
	$(CHECK_LIBS) -ldl -lm -lpthread

# The ReLU relaxation with an indicator term, the step cutting planes
# need (relu_relax.h).
check_PROGRAMS += tests/check-relu-relax
tests_check_relu_relax_SOURCES = tests/check-relu-relax.c
tests_check_relu_relax_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(CHECK_CFLAGS)
tests_check_relu_relax_LDADD = $(GLIB_LIBS) $(CHECK_LIBS) -lm

# The threads that run the CPU device's parts, kept between calls.
check_PROGRAMS += tests/check-cpu-parts
tests_check_cpu_parts_SOURCES = tests/check-cpu-parts.c
tests_check_cpu_parts_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_cpu_parts_LDADD = backends/common/libsbdevice.la \
	$(CHECK_LIBS) -ldl -lm -lpthread

# The bounded wait, the agreed making of a device communicator and the
# choice of each rank's GPU, on the CPU.
check_PROGRAMS += tests/check-comm-wait
tests_check_comm_wait_SOURCES = tests/check-comm-wait.c
tests_check_comm_wait_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_comm_wait_LDADD = backends/common/libsbranks.la \
	backends/common/libsbdevice.la $(CHECK_LIBS) -ldl -lm -lpthread
