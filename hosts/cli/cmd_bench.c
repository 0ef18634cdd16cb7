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
#include "cli_common.h"
#include "cli_processes.h"

/* The backend's matrix-product rate (FLOP/s), measured through the ABI: a
 * CROWN backward step of n unit-free rows through an n x n linear layer is
 * one n^3 GEMM on every backend. */
static double
measure_gemm_rate (SbSession *s, int64_t n, GError **error)
{
  const sb_backend_v1 *be = s->be;
  g_autofree float *w = g_new (float, n * n);
  GRand *rng = g_rand_new_with_seed (7);
  for (int64_t i = 0; i < n * n; i++)
    w[i] = (float) g_rand_double_range (rng, -1, 1);
  g_rand_free (rng);
  sb_layer_desc_v1 desc = { .struct_size = sizeof desc, .kind = SB_LAYER_LINEAR,
                            .in_size = n, .out_size = n, .weight = w };
  sb_layer *layer = NULL;
  sb_tensor *A = NULL, *A_in = NULL, *bias = NULL;
  int64_t shape[3] = { n, 1, n };
  double best = 0;
  int status = be->layer_create (s->ctx, &desc, &layer);
  if (status == SB_OK)
    status = be->tensor_create (s->ctx, SB_MEM_COEFFICIENTS, 3, shape, &A);
  if (status == SB_OK)
    status = be->tensor_create (s->ctx, SB_MEM_COEFFICIENTS, 3, shape, &A_in);
  if (status == SB_OK)
    status = be->tensor_create (s->ctx, SB_MEM_COEFFICIENTS, 2, shape, &bias);
  if (status == SB_OK)
    status = be->tensor_write (s->ctx, A, 0, n * n, SB_DTYPE_F32, w);
  sb_backward_args_v1 args = { .struct_size = sizeof args, .side = SB_SIDE_LOWER, .A_out = A,
                               .A_in = { A_in }, .bias = bias };
  for (int rep = 0; rep < 4 && status == SB_OK; rep++)
    {
      gint64 t0 = g_get_monotonic_time ();
      status = be->layer_backward (s->ctx, layer, &args);
      float probe;
      if (status == SB_OK) /* a read waits for asynchronous devices */
        status = be->tensor_read (s->ctx, A_in, 0, 1, SB_DTYPE_F32, &probe);
      double t = (g_get_monotonic_time () - t0) / 1e6;
      if (rep > 0 && t > 0)
        best = MAX (best, 2.0 * n * n * n / t);
    }
  sb_session_check (s, status, "GEMM rate probe", error);
  if (bias) be->tensor_free (s->ctx, bias);
  if (A_in) be->tensor_free (s->ctx, A_in);
  if (A) be->tensor_free (s->ctx, A);
  if (layer) be->layer_free (s->ctx, layer);
  return status == SB_OK ? best : 0;
}

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static int
bench_main (int argc, char **argv, SbCliBackendOptions *bo)
{
  g_autofree char *method_name = NULL;
  int repeat = 5, warmup = 1, floor_size = 0;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "method", 'm', 0, G_OPTION_ARG_STRING, &method_name, "Bound method: ibp, crown or alpha-crown (default crown)", "METHOD" },
    { "repeat", 'n', 0, G_OPTION_ARG_INT, &repeat, "Timed passes (default 5)", "N" },
    { "warmup", 0, 0, G_OPTION_ARG_INT, &warmup, "Untimed passes first (default 1)", "N" },
    { "floor", 0, 0, G_OPTION_ARG_INT, &floor_size, "Also measure the backend's GEMM rate with an N x N x N product and report the pass's floor (its product FLOPs at that rate)", "N" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("MODEL.onnx PROPERTY.vnnlib");
  g_autoptr (GError) error = NULL;
  g_option_context_set_summary (oc, "Time bound passes on a model loaded once (median of --repeat runs) and report memory.");
  g_option_context_add_main_entries (oc, entries, NULL);
  sb_cli_add_backend_options (oc, bo);
  if (!g_option_context_parse (oc, &argc, &argv, &error))
    {
      g_printerr ("shardbound bench: %s\n", error->message);
      return 2;
    }
  SbBoundsOptions options;
  sb_bounds_options_init (&options);
  if (argc != 3 || repeat < 1 || warmup < 0
      || (method_name != NULL && !sb_method_from_string (method_name, &options.method)))
    {
      g_printerr ("shardbound bench: expected MODEL.onnx PROPERTY.vnnlib, --repeat >= 1 and "
                  "--method ibp|crown|alpha-crown (see --help)\n");
      return 2;
    }
  g_autoptr (SbGraph) graph = NULL;
  g_autoptr (SbProperty) prop = NULL;
  g_autoptr (SbSessionSetup) setup = NULL;
  g_auto (SbCliJoined) joined = 0;
  int process;
  int status = sb_cli_open_problem (bo, argv[1], argv[2], &setup, &graph, &prop, &process, &error);
  if (status != 0)
    {
      g_printerr ("shardbound bench: %s\n", error->message);
      return status;
    }
  g_autoptr (SbNetwork) net = sb_cli_network_new (setup->session, graph, &error);
  if (net == NULL || !sb_network_memory_reset (net, &error))
    {
      g_printerr ("shardbound bench: %s\n", error->message);
      return sb_cli_error_status (error);
    }
  SbSession *session = setup->session;

  g_autofree double *rows = sb_property_spec_rows (prop);
  SbSpec spec = { prop->n_atoms, rows };
  g_autofree double *times = g_new (double, repeat);
  SbBoundsResult r;
  double flops_before = 0;
  for (int i = 0; i < warmup + repeat; i++)
    {
      if (i == warmup)
        flops_before = sb_network_product_flops (net);
      gint64 t0 = g_get_monotonic_time ();
      if (!sb_network_compute_bounds (net, &options, prop->regions[0].x_lower,
                                      prop->regions[0].x_upper, &spec, &r, &error))
        {
          g_printerr ("shardbound bench: %s\n", error->message);
          return sb_cli_error_status (error);
        }
      if (i >= warmup)
        times[i - warmup] = (g_get_monotonic_time () - t0) / 1e6;
      sb_bounds_result_clear (&r);
    }
  qsort (times, repeat, sizeof *times, compare_doubles);
  double median = repeat % 2 ? times[repeat / 2] : 0.5 * (times[repeat / 2 - 1] + times[repeat / 2]);
  double flops = (sb_network_product_flops (net) - flops_before) / repeat;
  double rate = floor_size > 0 ? measure_gemm_rate (session, floor_size, &error) : 0;
  if (floor_size > 0 && rate <= 0)
    {
      g_printerr ("shardbound bench: %s\n", error ? error->message : "GEMM rate probe failed");
      return 1;
    }
  double floor_s = rate > 0 ? flops / rate : 0;
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  int n_ranks = sb_network_rank_count (net);

  if (json)
    printf ("{\"model\": \"%s\", \"method\": \"%s\", \"backend\": \"%s\", \"ranks\": %d, "
            "\"processes\": %d, \"repeat\": %d, \"median_seconds\": %.6f, \"min_seconds\": %.6f, "
            "\"max_rss_bytes\": %ld, \"product_gflop\": %.3f, \"gemm_gflops\": %.1f, "
            "\"floor_seconds\": %.6f, \"per_rank\": [",
            argv[1], sb_method_to_string (options.method), session->name, n_ranks,
            sb_session_process_count (session), repeat, median,
            times[0], ru.ru_maxrss * 1024L, flops / 1e9, rate / 1e9, floor_s);
  else
    printf ("%s: %s on %s (%d rank%s): median %.4f s, min %.4f s over %d runs; process peak RSS %.1f MiB\n",
            argv[1], sb_method_to_string (options.method), session->name, n_ranks, n_ranks > 1 ? "s" : "",
            median, times[0], repeat, ru.ru_maxrss / 1024.0);
  if (!json && rate > 0)
    printf ("  products %.3f GFLOP per pass; GEMM rate %.1f GFLOP/s (%" G_GINT64_FORMAT "^3 probe); "
            "floor %.4f s; median/floor %.2f\n",
            flops / 1e9, rate / 1e9, (gint64) floor_size, floor_s, median / floor_s);
  for (int k = 0; k < n_ranks; k++)
    {
      sb_memory_stats_v1 st;
      if (!sb_network_memory_stats (net, k, &st, &error))
        {
          g_printerr ("shardbound bench: %s\n", error->message);
          return sb_cli_error_status (error);
        }
      if (json)
        printf ("%s{\"rank\": %d, \"baseline_bytes\": %" G_GUINT64_FORMAT ", \"peak_bytes\": %" G_GUINT64_FORMAT
                ", \"peak_rss_bytes\": %" G_GINT64_FORMAT "}",
                k ? ", " : "", k, (guint64) st.baseline_bytes, (guint64) st.total_peak_bytes,
                (gint64) st.peak_rss_bytes);
      else
        printf ("  rank %d: baseline %.2f MiB, peak %.2f MiB\n", k, st.baseline_bytes / 1048576.0,
                st.total_peak_bytes / 1048576.0);
    }
  if (json)
    printf ("]}\n");
  return 0;
}

int
sb_cmd_bench (int argc, char **argv)
{
  SbCliBackendOptions bo = { 0 };
  int status = bench_main (argc, argv, &bo);
  sb_cli_backend_options_clear (&bo);
  return status;
}
