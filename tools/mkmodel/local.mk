# SPDX-License-Identifier: MIT
# Synthetic test and bench networks (`shardbound mkmodel`, the ONNX tests):
# a small library over the engine's ONNX bindings, outside the engine.
noinst_LTLIBRARIES += tools/mkmodel/libsbmkmodel.la
tools_mkmodel_libsbmkmodel_la_SOURCES = \
	tools/mkmodel/onnx_writer.c tools/mkmodel/onnx_writer.h \
	tools/mkmodel/mkmodel.c tools/mkmodel/mkmodel.h
tools_mkmodel_libsbmkmodel_la_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(PROTOBUF_C_CFLAGS)
# Users link the engine after it (tools/mkmodel/libsbmkmodel.la
# hosts/engine/libsbengine.la): it is not copied in here.

# The generated ONNX bindings must exist before these compile.
tools/mkmodel/libsbmkmodel_la-onnx_writer.lo \
tools/mkmodel/libsbmkmodel_la-mkmodel.lo: hosts/engine/onnx.pb-c.h
