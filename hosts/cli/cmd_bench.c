/* SPDX-License-Identifier: MIT */
/* `shardbound bench`: times repeated bound passes on a model loaded once and
 * reports the median, the backend's per-rank memory and the process's peak
 * resident memory. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "commands.h"
#include "cli_common.h"
#include "cli_processes.h"

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int bench_main(int argc, char **argv, SbCliBackendOptions *bo) {
  g_autofree char *method_name = NULL;
  int repeat = 5, warmup = 1, floor_size = 0;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
      {"method", 'm', 0, G_OPTION_ARG_STRING, &method_name,
       "Bound method: ibp, crown or alpha-crown (default crown)", "METHOD"},
      {"repeat", 'n', 0, G_OPTION_ARG_INT, &repeat, "Timed passes (default 5)",
       "N"},
      {"warmup", 0, 0, G_OPTION_ARG_INT, &warmup,
       "Untimed passes first (default 1)", "N"},
      {"floor", 0, 0, G_OPTION_ARG_INT, &floor_size,
       "Also measure the backend's GEMM rate with an N x N x N product and "
       "report the pass's floor (its product FLOPs at that rate)",
       "N"},
      {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL},
      {NULL}};
  g_autoptr(GOptionContext) oc =
      g_option_context_new("MODEL.onnx PROPERTY.vnnlib");
  g_autoptr(GError) error = NULL;
  g_option_context_set_summary(oc,
                               "Time bound passes on a model loaded once "
                               "(median of --repeat runs) and report memory.");
  g_option_context_add_main_entries(oc, entries, NULL);
  sb_cli_add_backend_options(oc, bo);
  if (!g_option_context_parse(oc, &argc, &argv, &error)) {
    g_printerr("shardbound bench: %s\n", error->message);
    return 2;
  }
  ShardboundMethod method = SHARDBOUND_METHOD_CROWN;
  if (argc != 3 || repeat < 1 || warmup < 0 || floor_size < 0 ||
      (method_name != NULL &&
       !shardbound_method_parse(method_name, &method, NULL))) {
    g_printerr("shardbound bench: expected MODEL.onnx PROPERTY.vnnlib, "
               "--repeat >= 1, --warmup and --floor >= 0, and "
               "--method ibp|crown|alpha-crown (see --help)\n");
    return 2;
  }
  g_autoptr(ShardboundSession) session = NULL;
  g_auto(SbCliJoined) joined = 0;
  g_autoptr(ShardboundNetwork) net = NULL;
  g_autoptr(ShardboundProperty) prop = NULL;
  if ((session = sb_cli_open_session(bo, &error)) == NULL ||
      !sb_cli_load_problem(session, argv[1], argv[2], &net, &prop, &error) ||
      !shardbound_session_memory_reset(session, &error)) {
    g_printerr("shardbound bench: %s\n", error->message);
    return sb_cli_error_status(error);
  }

  g_autofree double *times = g_new(double, repeat);
  double flops_before = 0;
  for (int i = 0; i < warmup + repeat; i++) {
    if (i == warmup)
      flops_before = shardbound_network_product_flops(net);
    gint64 t0 = g_get_monotonic_time();
    g_autoptr(ShardboundBounds) b = shardbound_network_bounds(
        net, method, NULL, shardbound_property_region_lower(prop, 0),
        shardbound_property_region_upper(prop, 0),
        shardbound_property_atom_count(prop),
        shardbound_property_atom_rows(prop), &error);
    if (b == NULL) {
      g_printerr("shardbound bench: %s\n", error->message);
      return sb_cli_error_status(error);
    }
    if (i >= warmup)
      times[i - warmup] = (g_get_monotonic_time() - t0) / 1e6;
  }
  qsort(times, repeat, sizeof *times, compare_doubles);
  double median = repeat % 2
                      ? times[repeat / 2]
                      : 0.5 * (times[repeat / 2 - 1] + times[repeat / 2]);
  double flops =
      (shardbound_network_product_flops(net) - flops_before) / repeat;
  double rate = floor_size > 0
                    ? shardbound_session_gemm_rate(session, floor_size, &error)
                    : 0;
  if (floor_size > 0 && rate <= 0) {
    g_printerr("shardbound bench: %s\n",
               error ? error->message : "GEMM rate probe failed");
    return error ? sb_cli_error_status(error) : 1;
  }
  double floor_s = rate > 0 ? flops / rate : 0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  int n_ranks = shardbound_session_rank_count(session);
  const char *backend = shardbound_session_backend(session);
  const char *method_text = shardbound_method_name(method);

  if (json)
    printf("{\"model\": \"%s\", \"method\": \"%s\", \"backend\": \"%s\", "
           "\"ranks\": %d, "
           "\"processes\": %d, \"repeat\": %d, \"median_seconds\": %.6f, "
           "\"min_seconds\": %.6f, "
           "\"max_rss_bytes\": %ld, \"product_gflop\": %.3f, \"gemm_gflops\": "
           "%.1f, "
           "\"floor_seconds\": %.6f, \"per_rank\": [",
           argv[1], method_text, backend, n_ranks,
           shardbound_session_process_count(session), repeat, median, times[0],
           ru.ru_maxrss * 1024L, flops / 1e9, rate / 1e9, floor_s);
  else
    printf("%s: %s on %s (%d rank%s): median %.4f s, min %.4f s over %d runs; "
           "process peak RSS %.1f MiB\n",
           argv[1], method_text, backend, n_ranks, n_ranks > 1 ? "s" : "",
           median, times[0], repeat, ru.ru_maxrss / 1024.0);
  if (!json && rate > 0)
    printf("  products %.3f GFLOP per pass; GEMM rate %.1f GFLOP/s "
           "(%" G_GINT64_FORMAT "^3 probe); "
           "floor %.4f s; median/floor %.2f\n",
           flops / 1e9, rate / 1e9, (gint64)floor_size, floor_s,
           median / floor_s);
  for (int k = 0; k < n_ranks; k++) {
    ShardboundMemoryStats st = {.struct_size = sizeof st};
    if (!shardbound_session_memory_stats(session, k, &st, &error)) {
      g_printerr("shardbound bench: %s\n", error->message);
      return sb_cli_error_status(error);
    }
    if (json)
      printf("%s{\"rank\": %d, \"baseline_bytes\": %" G_GUINT64_FORMAT
             ", \"peak_bytes\": %" G_GUINT64_FORMAT
             ", \"peak_rss_bytes\": %" G_GINT64_FORMAT "}",
             k ? ", " : "", k, (guint64)st.baseline_bytes,
             (guint64)st.peak_bytes, (gint64)st.peak_rss_bytes);
    else
      printf("  rank %d: baseline %.2f MiB, peak %.2f MiB\n", k,
             st.baseline_bytes / 1048576.0, st.peak_bytes / 1048576.0);
  }
  if (json)
    printf("]}\n");
  return 0;
}

int sb_cmd_bench(int argc, char **argv) {
  SbCliBackendOptions bo = {0};
  int status = bench_main(argc, argv, &bo);
  sb_cli_backend_options_clear(&bo);
  return status;
}
