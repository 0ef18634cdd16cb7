# SPDX-License-Identifier: MIT
# The engine library: graph IR, ONNX import, VNNLIB, bound propagation.
noinst_LTLIBRARIES += hosts/engine/libsbengine.la
hosts_engine_libsbengine_la_SOURCES = \
	hosts/engine/engine_error.c hosts/engine/engine_error.h \
	hosts/engine/graph.c hosts/engine/graph.h \
	hosts/engine/graph_share.c hosts/engine/graph_share.h \
	hosts/engine/lockstep.c hosts/engine/lockstep.h \
	hosts/engine/onnx_import.h \
	hosts/engine/vnnlib.h \
	hosts/engine/bounds.c hosts/engine/bounds.h hosts/engine/bounds_private.h \
	hosts/engine/network.c hosts/engine/network.h \
	hosts/engine/crown_pass.c hosts/engine/crown_pass.h \
	hosts/engine/alpha.c hosts/engine/alpha.h \
	hosts/engine/attack.c hosts/engine/attack.h \
	hosts/engine/bab_domain.c hosts/engine/bab_domain.h hosts/engine/float_round.h \
	hosts/engine/bab_heap.c hosts/engine/bab_heap.h \
	hosts/engine/bab_branching.c hosts/engine/bab_branching.h \
	hosts/engine/verify.c hosts/engine/verify.h \
	hosts/engine/problem.c hosts/engine/problem.h \
	hosts/engine/limits.c hosts/engine/limits.h \
	hosts/engine/heap_prefault.c hosts/engine/heap_prefault.h \
	hosts/engine/verify_memory.c hosts/engine/verify_memory.h
hosts_engine_libsbengine_la_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS) $(PROTOBUF_C_CFLAGS)
hosts_engine_libsbengine_la_LIBADD = plugin/libshardbound.la $(GLIB_LIBS) $(PROTOBUF_C_LIBS) -lm
