# SPDX-License-Identifier: MIT
# libFuzzer harnesses (docs/fuzzing.md). Built by clang in fuzz/build with
# their own makefile, never by `make all` or `make check`:
#   make fuzz [FUZZ_SECONDS=60]   builds and runs each harness that long
#   make fuzz-build               builds them only
FUZZ_SECONDS = 60
FUZZ_CC = clang-14
FUZZ_MAKE = $(MAKE) -f $(srcdir)/fuzz/Makefile.fuzz \
	srcdir=$(abs_top_srcdir) confdir=$(abs_top_builddir) \
	builddir=$(abs_top_builddir)/fuzz/build PROTOC_C='$(PROTOC_C)' \
	FUZZ_CC='$(FUZZ_CC)' cli=$(abs_top_builddir)/hosts/cli/shardbound \
	OPENBLAS_MODULE_LIBS='$(OPENBLAS_MODULE_LIBS)' \
	BACKEND_SRC='$(backends_common_libsbdevice_la_SOURCES) $(backends_shardbound_backend_cpu_la_SOURCES)'

.PHONY: fuzz fuzz-build
fuzz-build: config.h
	$(FUZZ_MAKE) all
# The CLI generates small seed networks (fuzz/seeds.sh).
fuzz: config.h hosts/cli/shardbound$(EXEEXT) backends/shardbound-backend-cpu.la
	$(FUZZ_MAKE) run FUZZ_SECONDS=$(FUZZ_SECONDS)

clean-local: clean-fuzz
.PHONY: clean-fuzz
clean-fuzz:
	-rm -rf fuzz/build

EXTRA_DIST += fuzz/Makefile.fuzz fuzz/seeds.sh fuzz/fuzz_common.h \
	fuzz/fuzz_onnx.c fuzz/fuzz_vnnlib.c fuzz/fuzz_config.c fuzz/fuzz_load.c \
	fuzz/onnx.dict fuzz/vnnlib.dict fuzz/config.dict
