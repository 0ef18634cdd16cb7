/* SPDX-License-Identifier: MIT */
/* Subcommands of the `shardbound` command; each parses its own options. */
#ifndef SB_CLI_COMMANDS_H
#define SB_CLI_COMMANDS_H

/* Each returns the process exit status: 0 success, 1 runtime failure,
 * 2 bad usage or bad input. argv[0] is the subcommand name. */
int sb_cmd_backends(int argc, char **argv);
int sb_cmd_bounds(int argc, char **argv);
int sb_cmd_mkmodel(int argc, char **argv);
int sb_cmd_bench(int argc, char **argv);
int sb_cmd_verify(int argc, char **argv);

#endif
