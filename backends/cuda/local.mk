# SPDX-License-Identifier: MIT
# The CUDA backend (built when configure finds nvcc and cuBLAS).

# Shipped whatever the configuration, so that `make dist` on a machine
# without CUDA still produces a tarball that builds the GPU backend.
EXTRA_DIST += backends/cuda/kernels.cu backends/cuda/kernels.h \
	backends/cuda/nvcc-wrapper.sh backends/cuda/device_cuda.h \
	backends/cuda/device_cuda.c backends/cuda/backend_cuda.c \
	tests/check-backend-cuda.c

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
# backend (and, with it, the CPU device, hence OpenBLAS).
backends_shardbound_backend_cuda_la_LIBADD = backends/cuda/kernels.lo \
	backends/common/libsbdevice.la $(CUDA_LIBS) $(OPENBLAS_LIBS) \
	-lstdc++ -lm -lpthread
EXTRA_backends_shardbound_backend_cuda_la_DEPENDENCIES = backends/cuda/kernels.lo

# nvcc through libtool, so that the object is PIC and lands in the .so like
# any other; the wrapper turns the gcc flags libtool adds into nvcc ones.
backends/cuda/kernels.lo: backends/cuda/kernels.cu backends/cuda/kernels.h \
		backends/common/device.h backends/common/relu_relax.h \
		abi/shardbound.h
	@$(MKDIR_P) backends/cuda
	$(AM_V_GEN)$(LIBTOOL) $(AM_V_lt) --tag=CC $(AM_LIBTOOLFLAGS) \
	  $(LIBTOOLFLAGS) --mode=compile $(SHELL) \
	  $(top_srcdir)/backends/cuda/nvcc-wrapper.sh $(NVCC) $(DEFS) \
	  $(DEFAULT_INCLUDES) $(INCLUDES) $(AM_CPPFLAGS) $(CPPFLAGS) \
	  $(CUDA_CFLAGS) $(NVCCFLAGS) \
	  -c -o $@ $(srcdir)/backends/cuda/kernels.cu
CLEANFILES += backends/cuda/kernels.lo

# CPU and CUDA backends compared on random inputs; skips (77) without a GPU.
check_PROGRAMS += tests/check-backend-cuda
tests_check_backend_cuda_SOURCES = tests/check-backend-cuda.c
tests_check_backend_cuda_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_check_backend_cuda_LDADD = $(CHECK_LIBS) -ldl -lm
endif
