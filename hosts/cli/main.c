/* SPDX-License-Identifier: MIT */
/* The `shardbound` command: dispatches to one subcommand per verb. */
#include "config.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "abi/shardbound.h"
#include "commands.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} SbCommand;

/* New verbs (verify, ...) are one line here and one function in
 * commands.h. */
static const SbCommand commands[] = {
    {"backends", sb_cmd_backends,
     "list installed backends, and the refused ones with the reason"},
    {"verify", sb_cmd_verify,
     "decide a VNNLIB property (unsat, sat, unknown, timeout)"},
    {"bounds", sb_cmd_bounds,
     "bounds of a network's outputs over a VNNLIB input box"},
    {"mkmodel", sb_cmd_mkmodel, "write a synthetic ONNX model"},
    {"bench", sb_cmd_bench, "time bound propagation on a model"},
};

static void print_usage(FILE *out) {
  fprintf(out, "Usage: shardbound COMMAND [OPTIONS...]\n"
               "\n"
               "Commands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out,
          "\n"
          "Options:\n"
          "  -h, --help     show this help\n"
          "  --version      show the version and the backend ABI version\n"
          "\n"
          "Run 'shardbound COMMAND --help' for the options of a command.\n"
          "Configuration: $XDG_CONFIG_HOME/shardbound/shardbound.conf; see\n"
          "the configuration document installed with shardbound.\n");
}

int main(int argc, char **argv) {
  const SbCommand *command = NULL;
  for (gsize i = 0; argc >= 2 && i < G_N_ELEMENTS(commands); i++)
    if (strcmp(argv[1], commands[i].name) == 0)
      command = &commands[i];
  /* GOption names the program in a command's usage line (--help):
   * "shardbound verify", not "shardbound". Set once, before any thread.
   * (Option errors carry the command's own "shardbound VERB:" prefix.) */
  if (command != NULL) {
    g_autofree char *prgname = g_strdup_printf("shardbound %s", command->name);
    g_set_prgname(prgname);
    return command->run(argc - 1, argv + 1);
  }
  g_set_prgname("shardbound");
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const char *verb = argv[1];
  if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 ||
      strcmp(verb, "help") == 0) {
    print_usage(stdout);
    return 0;
  }
  if (strcmp(verb, "--version") == 0) {
    printf("shardbound %s (backend ABI %d.%d)\n", PACKAGE_VERSION, SB_ABI_MAJOR,
           SB_ABI_MINOR);
    return 0;
  }
  fprintf(stderr, "shardbound: unknown command '%s'\n", verb);
  fprintf(stderr, "Commands:");
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
    fprintf(stderr, " %s", commands[i].name);
  fprintf(stderr, "\nRun 'shardbound --help' for usage.\n");
  return 2;
}
