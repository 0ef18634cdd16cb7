/* SPDX-License-Identifier: MIT */
/* `shardbound bench`: times repeated bound passes on a model loaded once and
 * reports the median, the backend's per-rank memory and the process's peak
 * resident memory. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "commands.h"
#include "hosts/engine/bounds.h"
#include "hosts/engine/onnx_import.h"
#include "hosts/engine/session_setup.h"
#include "hosts/engine/vnnlib.h"

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

int
sb_cmd_bench (int argc, char **argv)
{
  g_autofree char *method_name = NULL;
  g_autofree char *backend = NULL;
  g_autofree char *backend_path = NULL;
  g_auto (GStrv) options = NULL;
  int ranks = 0, repeat = 5, warmup = 1;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "method", 'm', 0, G_OPTION_ARG_STRING, &method_name, "Bound method: ibp, crown or alpha-crown (default crown)", "METHOD" },
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend, "Backend to run on", "NAME" },
    { "ranks", 'P', 0, G_OPTION_ARG_INT, &ranks, "Number of ranks for a multi-rank backend", "P" },
    { "option", 'o', 0, G_OPTION_ARG_STRING_ARRAY, &options, "Backend option (repeatable)", "KEY=VALUE" },
    { "backend-path", 0, 0, G_OPTION_ARG_STRING, &backend_path, "Directories to search for backends", "DIR[:DIR]" },
    { "repeat", 'n', 0, G_OPTION_ARG_INT, &repeat, "Timed passes (default 5)", "N" },
    { "warmup", 0, 0, G_OPTION_ARG_INT, &warmup, "Untimed passes first (default 1)", "N" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("MODEL.onnx PROPERTY.vnnlib");
  g_autoptr (GError) error = NULL;
  g_option_context_set_summary (oc, "Time bound passes on a model loaded once (median of --repeat runs) and report memory.");
  g_option_context_add_main_entries (oc, entries, NULL);
  if (!g_option_context_parse (oc, &argc, &argv, &error))
    {
      g_printerr ("shardbound bench: %s\n", error->message);
      return 2;
    }
  SbMethod method = SB_METHOD_CROWN;
  if (argc != 3 || repeat < 1 || warmup < 0
      || (method_name != NULL && !sb_method_from_string (method_name, &method)))
    {
      g_printerr ("shardbound bench: expected MODEL.onnx PROPERTY.vnnlib, --repeat >= 1 and "
                  "--method ibp|crown|alpha-crown (see --help)\n");
      return 2;
    }
  g_autoptr (SbGraph) graph = sb_onnx_load (argv[1], &error);
  g_autoptr (SbProperty) prop = graph ? sb_vnnlib_load (argv[2], &error) : NULL;
  if (prop == NULL)
    {
      g_printerr ("shardbound bench: %s\n", error->message);
      return 2;
    }
  if (prop->n_inputs != graph->input_size || prop->n_outputs != graph->output_size)
    {
      g_printerr ("shardbound bench: property and model sizes differ\n");
      return 2;
    }
  SbSessionRequest request = { backend, backend_path, NULL, ranks, (const char *const *) options };
  g_autoptr (SbSessionSetup) setup = sb_session_setup (&request, &error);
  g_autoptr (SbNetwork) net = setup ? sb_network_new (setup->session, graph, &error) : NULL;
  if (net == NULL)
    {
      g_printerr ("shardbound bench: %s\n", error->message);
      return 1;
    }
  SbSession *session = setup->session;
  session->be->memory_mark_baseline (session->ctx);
  session->be->memory_reset_peak (session->ctx);

  g_autofree double *rows = sb_property_spec_rows (prop);
  SbSpec spec = { prop->n_atoms, rows };
  g_autofree double *times = g_new (double, repeat);
  SbBoundsResult r;
  for (int i = 0; i < warmup + repeat; i++)
    {
      gint64 t0 = g_get_monotonic_time ();
      if (!sb_network_compute_bounds (net, method, prop->regions[0].x_lower,
                                      prop->regions[0].x_upper, &spec, &r, &error))
        {
          g_printerr ("shardbound bench: %s\n", error->message);
          return 1;
        }
      if (i >= warmup)
        times[i - warmup] = (g_get_monotonic_time () - t0) / 1e6;
      sb_bounds_result_clear (&r);
    }
  qsort (times, repeat, sizeof *times, compare_doubles);
  double median = repeat % 2 ? times[repeat / 2] : 0.5 * (times[repeat / 2 - 1] + times[repeat / 2]);
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  int n_ranks = session->be->rank_count (session->ctx);

  if (json)
    printf ("{\"model\": \"%s\", \"method\": \"%s\", \"backend\": \"%s\", \"ranks\": %d, "
            "\"repeat\": %d, \"median_seconds\": %.6f, \"min_seconds\": %.6f, "
            "\"max_rss_bytes\": %ld, \"per_rank\": [",
            argv[1], sb_method_to_string (method), session->name, n_ranks, repeat, median,
            times[0], ru.ru_maxrss * 1024L);
  else
    printf ("%s: %s on %s (%d rank%s): median %.4f s, min %.4f s over %d runs; process peak RSS %.1f MiB\n",
            argv[1], sb_method_to_string (method), session->name, n_ranks, n_ranks > 1 ? "s" : "",
            median, times[0], repeat, ru.ru_maxrss / 1024.0);
  for (int k = 0; k < n_ranks; k++)
    {
      sb_memory_stats_v1 st = { .struct_size = sizeof st };
      if (session->be->memory_stats (session->ctx, k, &st) != SB_OK)
        continue;
      if (json)
        printf ("%s{\"rank\": %d, \"baseline_bytes\": %" G_GUINT64_FORMAT ", \"peak_bytes\": %" G_GUINT64_FORMAT "}",
                k ? ", " : "", k, (guint64) st.baseline_bytes, (guint64) st.total_peak_bytes);
      else
        printf ("  rank %d: baseline %.2f MiB, peak %.2f MiB\n", k, st.baseline_bytes / 1048576.0,
                st.total_peak_bytes / 1048576.0);
    }
  if (json)
    printf ("]}\n");
  return 0;
}
