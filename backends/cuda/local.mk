# SPDX-License-Identifier: MIT
# The CUDA backend (built when configure finds nvcc and cuBLAS).

# Shipped whatever the configuration, so that `make dist` on a machine
# without CUDA still produces a tarball that builds the GPU backend.
EXTRA_DIST += backends/cuda/kernels.cu backends/cuda/kernels.h \
	backends/cuda/nvcc-wrapper.sh backends/cuda/device_cuda.h \
	backends/cuda/device_cuda.c backends/cuda/backend_cuda.c \
	backends/cuda/device_module_cuda.c backends/common/comm_nccl.c \
	tests/check-backend-cuda.c tests/cuda-ranks.c

if HAVE_CUDA
backend_LTLIBRARIES += backends/shardbound-backend-cuda.la
backends_shardbound_backend_cuda_la_SOURCES = \
	backends/cuda/device_cuda.h \
	backends/cuda/device_cuda.c \
	backends/cuda/kernels.h \
	backends/cuda/backend_cuda.c
backends_shardbound_backend_cuda_la_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS)
backends_shardbound_backend_cuda_la_LDFLAGS = $(SB_PLUGIN_FLAGS)
# kernels.lo is built by nvcc (rule below) and its host stubs are C++
# (thread-safe statics: ranks may launch from several threads), hence
# libstdc++; libsbdevice.la carries the operator code shared with the CPU
# backend (and, with it, the CPU device, which opens OpenBLAS itself).
backends_shardbound_backend_cuda_la_LIBADD = backends/cuda/kernels.lo \
	backends/common/libsbdevice.la $(CUDA_LIBS) -ldl -lstdc++ -lm -lpthread
EXTRA_backends_shardbound_backend_cuda_la_DEPENDENCIES = backends/cuda/kernels.lo

# The CUDA device (and, with NCCL, the NCCL communicator) for the device=cuda
# ranks of the multi-rank backends: a module they open beside themselves
# only when asked, so that they link no CUDA library and load without one.
# Its name is not a backend's, so the registry never loads it.
backend_LTLIBRARIES += backends/shardbound-device-cuda.la
backends_shardbound_device_cuda_la_SOURCES = \
	backends/cuda/device_cuda.h \
	backends/cuda/device_cuda.c \
	backends/cuda/kernels.h \
	backends/common/device_module.h \
	backends/cuda/device_module_cuda.c
if HAVE_NCCL
backends_shardbound_device_cuda_la_SOURCES += backends/common/comm_checks.c \
	backends/common/comm_wait.c backends/common/comm_join.c \
	backends/common/comm_nccl.c
endif
backends_shardbound_device_cuda_la_CPPFLAGS = $(AM_CPPFLAGS) $(CUDA_CFLAGS) \
	$(NCCL_CFLAGS)
backends_shardbound_device_cuda_la_LDFLAGS = -module -avoid-version \
	-no-undefined -shared -export-symbols-regex '^sb_device_module_get_v2$$'
# libsbdevice.la for the tracked buffers of the collectives' staging.
backends_shardbound_device_cuda_la_LIBADD = backends/cuda/kernels.lo \
	backends/common/libsbdevice.la $(NCCL_LIBS) $(CUDA_LIBS) \
	-ldl -lstdc++ -lm -lpthread
EXTRA_backends_shardbound_device_cuda_la_DEPENDENCIES = backends/cuda/kernels.lo

# nvcc through libtool, so that the object is PIC and lands in the .so like
# any other; the wrapper turns the gcc flags libtool adds into nvcc ones.
backends/cuda/kernels.lo: backends/cuda/kernels.cu backends/cuda/kernels.h \
		backends/common/device.h backends/common/relu_relax.h \
		backends/common/box.h \
		abi/shardbound.h
	@$(MKDIR_P) backends/cuda
	$(AM_V_GEN)$(LIBTOOL) $(AM_V_lt) --tag=CC $(AM_LIBTOOLFLAGS) \
	  $(LIBTOOLFLAGS) --mode=compile $(SHELL) \
	  $(top_srcdir)/backends/cuda/nvcc-wrapper.sh $(NVCC) $(DEFS) \
	  $(DEFAULT_INCLUDES) $(INCLUDES) $(AM_CPPFLAGS) $(CPPFLAGS) \
	  $(CUDA_CFLAGS) $(NVCCFLAGS) \
	  -c -o $@ $(srcdir)/backends/cuda/kernels.cu
CLEANFILES += backends/cuda/kernels.lo

# CPU and CUDA backends compared on random inputs, and fsdp/tp at
# device=cuda against both; skips (77) without a GPU.
check_PROGRAMS += tests/check-backend-cuda
tests_check_backend_cuda_SOURCES = tests/check-backend-cuda.c \
	tests/cuda-ranks.c tests/backend-testlib.c tests/backend-testlib.h
tests_check_backend_cuda_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
# The rank pool, to drive the communicators of the CUDA device module
# directly.
tests_check_backend_cuda_LDADD = backends/common/libsbranks.la \
	backends/common/libsbdevice.la $(CHECK_LIBS) -ldl -lm -lpthread
EXTRA_tests_check_backend_cuda_DEPENDENCIES = \
	backends/shardbound-backend-cpu.la backends/shardbound-backend-cuda.la \
	backends/shardbound-backend-fsdp.la backends/shardbound-backend-tp.la \
	backends/shardbound-device-cuda.la
endif
