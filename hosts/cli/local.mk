# SPDX-License-Identifier: MIT
# The `shardbound` command.
bin_PROGRAMS += hosts/cli/shardbound
hosts_cli_shardbound_SOURCES = \
	hosts/cli/main.c hosts/cli/commands.h \
	hosts/cli/cli_common.c hosts/cli/cli_common.h \
	hosts/cli/cli_processes.c hosts/cli/cli_processes.h \
	hosts/cli/cmd_backends.c \
	hosts/cli/cmd_bounds.c \
	hosts/cli/cmd_mkmodel.c \
	hosts/cli/cmd_bench.c \
	hosts/cli/cmd_verify.c
hosts_cli_shardbound_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS)
# Every computing subcommand goes through the public host API; only
# mkmodel, which writes models rather than verifying them, uses its own
# library (over the engine's ONNX bindings).
hosts_cli_shardbound_LDADD = hosts/api/libshardbound-host.la \
	tools/mkmodel/libsbmkmodel.la hosts/engine/libsbengine.la $(GLIB_LIBS)
