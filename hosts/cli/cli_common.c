/* SPDX-License-Identifier: MIT */
/* Backend-selection options and problem loading shared by bounds, verify
 * and bench. */
#include "config.h"

#include "cli_common.h"
#include "cli_processes.h"
#include "hosts/engine/graph_share.h"
#include "hosts/engine/onnx_import.h"

void
sb_cli_add_backend_options (GOptionContext *context, SbCliBackendOptions *o)
{
  GOptionEntry entries[] = {
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &o->backend,
      "Backend to run on (default: configured, else cuda if usable, else cpu)", "NAME" },
    { "ranks", 'P', 0, G_OPTION_ARG_INT, &o->ranks, "Number of ranks for a multi-rank backend", "P" },
    { "option", 'o', 0, G_OPTION_ARG_STRING_ARRAY, &o->options, "Backend option (repeatable)", "KEY=VALUE" },
    { "backend-path", 0, 0, G_OPTION_ARG_STRING, &o->backend_path, "Directories to search for backends",
      "DIR[:DIR]" },
    { "config", 0, 0, G_OPTION_ARG_FILENAME, &o->config_file, "Configuration file instead of the XDG one",
      "FILE" },
    { NULL }
  };
  /* In the main group, so that plain --help lists them. */
  g_option_context_add_main_entries (context, entries, NULL);
}

void
sb_cli_backend_options_clear (SbCliBackendOptions *o)
{
  g_clear_pointer (&o->backend, g_free);
  g_clear_pointer (&o->backend_path, g_free);
  g_clear_pointer (&o->config_file, g_free);
  g_clear_pointer (&o->options, g_strfreev);
}

SbSessionRequest
sb_cli_session_request (const SbCliBackendOptions *o)
{
  SbSessionRequest r = { o->backend, o->backend_path, o->config_file, o->ranks,
                         (const char *const *) o->options };
  return r;
}

/* Both files name themselves in their errors; the counts must agree. */
static gboolean
check_sizes (const char *onnx, const char *vnnlib, const SbGraph *g, const SbProperty *p,
             GError **error)
{
  if (p->n_inputs == g->input_size && p->n_outputs == g->output_size)
    return TRUE;
  g_set_error (error, SB_VNNLIB_ERROR, SB_VNNLIB_ERROR_INVALID,
               "%s declares %d inputs and %d outputs but %s has %" G_GINT64_FORMAT
               " inputs and %" G_GINT64_FORMAT " outputs",
               vnnlib, p->n_inputs, p->n_outputs, onnx, g->input_size, g->output_size);
  return FALSE;
}

gboolean
sb_cli_load_problem (const char *onnx, const char *vnnlib, SbGraph **graph,
                     SbProperty **property, GError **error)
{
  *graph = NULL;
  *property = NULL;
  /* Both loaders name the file in their errors. */
  g_autoptr (SbGraph) g = sb_onnx_load (onnx, error);
  if (g == NULL)
    return FALSE;
  g_autoptr (SbProperty) p = sb_vnnlib_load (vnnlib, error);
  if (p == NULL || !check_sizes (onnx, vnnlib, g, p, error))
    return FALSE;
  *graph = g_steal_pointer (&g);
  *property = g_steal_pointer (&p);
  return TRUE;
}

int
sb_cli_error_status (const GError *error)
{
  if (error->domain == SB_ENGINE_ERROR)
    return sb_engine_error_is_input (error) ? 2 : 1;
  return error->domain == SB_PLUGIN_ERROR && error->code == SB_PLUGIN_ERROR_BACKEND ? 1 : 2;
}

int
sb_cli_open_problem (const SbCliBackendOptions *o, const char *onnx, const char *vnnlib,
                     SbSessionSetup **setup, SbGraph **graph, SbProperty **property,
                     int *process, GError **error)
{
  *graph = NULL;
  *property = NULL;
  *process = 0;
  SbSessionRequest request = sb_cli_session_request (o);
  *setup = sb_session_setup (&request, error);
  if (*setup == NULL)
    return sb_cli_error_status (*error);
  SbSession *session = (*setup)->session;
  *process = sb_cli_join_processes (session);
  g_autoptr (SbGraph) g = sb_graph_load_shared (session, onnx, error);
  if (g == NULL)
    return sb_cli_error_status (*error);
  /* Small, and read by every process: no need to send it. */
  g_autoptr (SbProperty) p = sb_vnnlib_load (vnnlib, error);
  if (p == NULL || !check_sizes (onnx, vnnlib, g, p, error))
    return 2;
  *graph = g_steal_pointer (&g);
  *property = g_steal_pointer (&p);
  return 0;
}

SbNetwork *
sb_cli_network_new (SbSession *session, SbGraph *graph, GError **error)
{
  SbNetwork *net = sb_network_new (session, graph, error);
  if (net != NULL && sb_session_process_count (session) > 1)
    sb_graph_drop_weights (graph);
  return net;
}
