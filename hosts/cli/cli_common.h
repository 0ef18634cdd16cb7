/* SPDX-License-Identifier: MIT */
/* What the computing subcommands share: the backend-selection options, a
 * session, loading a model with its property, and exit statuses. Every
 * subcommand computes through the public host API (shardbound-host.h). */
#ifndef SB_CLI_COMMON_H
#define SB_CLI_COMMON_H

#include <glib.h>

#include "hosts/api/shardbound-host.h"

typedef struct {
  char *backend;
  char *backend_path;
  char *config_file;
  char **options;
  int ranks;
} SbCliBackendOptions;

/* Adds --backend, --ranks, --option, --backend-path and --config, filling
 * *o. */
void sb_cli_add_backend_options(GOptionContext *context,
                                SbCliBackendOptions *o);
void sb_cli_backend_options_clear(SbCliBackendOptions *o);
/* The session those options describe. With ranks that are processes
 * (comm=mpi under mpirun) the command joins the job as one of them
 * (cli_processes.h): declare a g_auto (SbCliJoined) after the session so
 * that it leaves before the session closes. */
ShardboundSession *sb_cli_open_session(const SbCliBackendOptions *o,
                                       GError **error);
/* TRUE on the process that writes files: process 0, or any process before
 * a session exists. */
gboolean sb_cli_is_process_zero(const ShardboundSession *session);

/* Loads PROPERTY.vnnlib, then MODEL.onnx onto the session, and checks that
 * their input and output counts agree. Errors name the file. */
gboolean sb_cli_load_problem(ShardboundSession *session, const char *onnx,
                             const char *vnnlib, ShardboundNetwork **network,
                             ShardboundProperty **property, GError **error);

/* Command-line options that are host API settings: the API checks their
 * values and names the setting in its errors. An option maps to a
 * setting key, with a fixed value for a flag (--no-attack: attack=false). */
typedef struct {
  const char *option; /* long name without "--" */
  const char *key;
  const char *fixed; /* the value a flag sets, or NULL: the argument */
} SbCliSetting;

typedef struct {
  ShardboundSettings *settings;
  const SbCliSetting *table; /* ends with { NULL } */
  /* Set by sb_cli_add_setting_options: GLib names a short option "-t" to
   * the callback, and these give its long name. */
  const GOptionEntry *entries;
} SbCliSettings;

/* Makes `entries` (G_OPTION_ARG_CALLBACK with sb_cli_setting_option)
 * the context's main group, applying them to binding->settings. Add it
 * before any other main entries. */
void sb_cli_add_setting_options(GOptionContext *context,
                                const GOptionEntry *entries,
                                SbCliSettings *binding);
gboolean sb_cli_setting_option(const char *option_name, const char *value,
                               gpointer binding, GError **error);

/* Exit status for an error: 1 when the computation failed (a backend
 * error, out of memory), 2 for the user's choices and inputs (unknown
 * backend, bad option, bad file, an input the backend does not support). */
int sb_cli_error_status(const GError *error);

#endif
