/* SPDX-License-Identifier: MIT */
/* What the computing subcommands share: the backend-selection options and
 * loading a model with its property. */
#ifndef SB_CLI_COMMON_H
#define SB_CLI_COMMON_H

#include <glib.h>

#include "hosts/engine/engine_error.h"
#include "hosts/engine/graph.h"
#include "session_setup.h"
#include "hosts/engine/vnnlib.h"

typedef struct {
  char *backend;
  char *backend_path;
  char *config_file;
  char **options;
  int ranks;
} SbCliBackendOptions;

/* Adds --backend, --ranks, --option, --backend-path and --config, filling
 * *o. */
void sb_cli_add_backend_options (GOptionContext *context, SbCliBackendOptions *o);
void sb_cli_backend_options_clear (SbCliBackendOptions *o);
/* The session request those options describe (borrows their strings). */
SbSessionRequest sb_cli_session_request (const SbCliBackendOptions *o);

/* Loads MODEL.onnx and PROPERTY.vnnlib and checks that their input and
 * output counts agree. Errors name the file. */
gboolean sb_cli_load_problem (const char *onnx, const char *vnnlib, SbGraph **graph,
                              SbProperty **property, GError **error);

/* Exit status for an error of setting up or computing: 1 when the
 * computation failed (a backend error, out of memory), 2 for the user's
 * choices and inputs (unknown backend, bad option, bad file, an input the
 * backend does not support). */
int sb_cli_error_status (const GError *error);

#endif
