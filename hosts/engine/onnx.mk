# SPDX-License-Identifier: MIT
# ONNX import (protobuf-c) and its tests.

# The C bindings of our ONNX subset are generated into the build tree, so a
# read-only source tree (make distcheck) never needs writing.
ONNX_PB_GENERATED = hosts/engine/onnx.pb-c.c hosts/engine/onnx.pb-c.h
EXTRA_DIST += hosts/engine/onnx.proto
BUILT_SOURCES += $(ONNX_PB_GENERATED)
CLEANFILES += $(ONNX_PB_GENERATED)

hosts/engine/onnx.pb-c.c: hosts/engine/onnx.proto
	$(AM_V_GEN)$(MKDIR_P) hosts/engine && \
	$(PROTOC_C) --proto_path=$(srcdir)/hosts/engine --c_out=hosts/engine \
		$(srcdir)/hosts/engine/onnx.proto
# protoc-c writes both files at once; recreate the pair if the header alone
# went missing.
hosts/engine/onnx.pb-c.h: hosts/engine/onnx.pb-c.c
	@test -f $@ || rm -f hosts/engine/onnx.pb-c.c
	@test -f $@ || $(MAKE) $(AM_MAKEFLAGS) hosts/engine/onnx.pb-c.c

hosts_engine_libsbengine_la_SOURCES += hosts/engine/onnx_import.c
nodist_hosts_engine_libsbengine_la_SOURCES = $(ONNX_PB_GENERATED)

# BUILT_SOURCES only applies to `make all/check`; building one target alone
# (make tests/check-onnx) still needs the generated header first.
hosts/engine/libsbengine_la-onnx_import.lo \
tests/check_onnx-check-onnx.$(OBJEXT): hosts/engine/onnx.pb-c.h

check_PROGRAMS += tests/check-onnx
tests_check_onnx_SOURCES = tests/check-onnx.c
tests_check_onnx_CPPFLAGS = $(AM_CPPFLAGS) -DSB_TOP_SRCDIR='"$(abs_top_srcdir)"'
tests_check_onnx_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(PROTOBUF_C_CFLAGS) $(CHECK_CFLAGS)
tests_check_onnx_LDADD = tools/mkmodel/libsbmkmodel.la hosts/engine/libsbengine.la $(GLIB_LIBS) $(PROTOBUF_C_LIBS) $(CHECK_LIBS) -lm
