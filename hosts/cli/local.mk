# SPDX-License-Identifier: MIT
# The `shardbound` command.
bin_PROGRAMS += hosts/cli/shardbound
hosts_cli_shardbound_SOURCES = \
	hosts/cli/main.c hosts/cli/commands.h \
	hosts/cli/cli_common.c hosts/cli/cli_common.h \
	hosts/cli/session_setup.c hosts/cli/session_setup.h \
	hosts/cli/cli_processes.c hosts/cli/cli_processes.h \
	hosts/cli/cmd_backends.c \
	hosts/cli/cmd_bounds.c \
	hosts/cli/cmd_mkmodel.c \
	hosts/cli/cmd_bench.c \
	hosts/cli/cmd_verify.c
hosts_cli_shardbound_CFLAGS = $(AM_CFLAGS) $(GLIB_CFLAGS)
hosts_cli_shardbound_LDADD = tools/mkmodel/libsbmkmodel.la hosts/engine/libsbengine.la plugin/libshardbound.la $(GLIB_LIBS)
