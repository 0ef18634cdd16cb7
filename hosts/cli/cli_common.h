/* SPDX-License-Identifier: MIT */
/* What the computing subcommands share: the backend-selection options and
 * loading a model with its property. */
#ifndef SB_CLI_COMMON_H
#define SB_CLI_COMMON_H

#include <glib.h>

#include "hosts/engine/bounds.h"
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

/* Everything a computing subcommand needs before it computes: the
 * session, joined as one process of the job when its ranks are processes
 * (cli_processes.h: *process is this process's index), then the model
 * (loaded by process 0 only, sb_graph_load_shared) and the property.
 * Returns 0, or the exit status with error set: 1 when the backend itself
 * failed, 2 for bad usage or input. */
int sb_cli_open_problem (const SbCliBackendOptions *o, const char *onnx, const char *vnnlib,
                         SbSessionSetup **setup, SbGraph **graph, SbProperty **property,
                         int *process, GError **error);

/* The network on the session's backend; with ranks that are processes the
 * host copy of the weights is dropped as soon as the backend holds them, so
 * that no process keeps the whole model. */
SbNetwork *sb_cli_network_new (SbSession *session, SbGraph *graph, GError **error);

/* Exit status for an error of setting up or computing: 1 when the
 * computation failed (a backend error, out of memory), 2 for the user's
 * choices and inputs (unknown backend, bad option, bad file, an input the
 * backend does not support). */
int sb_cli_error_status (const GError *error);

#endif
