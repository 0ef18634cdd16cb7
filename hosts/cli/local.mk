# SPDX-License-Identifier: MIT
# The `shardbound` command.
bin_PROGRAMS += hosts/cli/shardbound
hosts_cli_shardbound_SOURCES = \
	hosts/cli/main.c hosts/cli/commands.h \
	hosts/cli/cli_common.c hosts/cli/cli_common.h \
	hosts/cli/cli_processes.c hosts/cli/cli_processes.h \
	hosts/cli/cli_json.c hosts/cli/cli_json.h \
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

# The man page, generated from the command's --help by help2man (configure
# checks for it) with the hand-written sections of shardbound.h2m.in; built
# here, never distributed, so it always matches the command it documents.
man1_MANS = hosts/cli/shardbound.1
hosts/cli/shardbound.1: hosts/cli/shardbound$(EXEEXT) \
		$(srcdir)/hosts/cli/shardbound.h2m.in $(srcdir)/hosts/cli/mkman.sh
	$(AM_V_GEN)$(SHELL) $(srcdir)/hosts/cli/mkman.sh '$(HELP2MAN)' \
	  hosts/cli/shardbound$(EXEEXT) $(srcdir)/hosts/cli/shardbound.h2m.in \
	  $@ '$(VERSION)' '$(backenddir)' '$(pkgdatadir)' '$(docdir)'
CLEANFILES += hosts/cli/shardbound.1
EXTRA_DIST += hosts/cli/shardbound.h2m.in hosts/cli/mkman.sh
