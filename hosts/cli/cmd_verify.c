/* SPDX-License-Identifier: MIT */
/* `shardbound verify`: complete verification of a VNNLIB property, printing
 * the VNN-COMP result word first and optionally writing a results file. */
#include "config.h"

#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "commands.h"
#include "cli_common.h"
#include "cli_json.h"
#include "hosts/engine/verify.h"

static void
print_progress (void *user, int64_t done, int64_t left, double worst, double seconds)
{
  fprintf (stderr, "\r  domains done %" G_GINT64_FORMAT ", left %" G_GINT64_FORMAT
                   ", worst margin %.5g, %.1f s   ",
           (gint64) done, (gint64) left, worst, seconds);
  fflush (stderr);
}

static gboolean
write_results (const char *path, const SbVerifyOutcome *o, const SbGraph *g, GError **error)
{
  g_autoptr (GString) out = g_string_new (sb_result_to_string (o->result));
  g_string_append_c (out, '\n');
  if (o->result == SB_RESULT_SAT)
    {
      g_string_append_c (out, '(');
      for (int64_t k = 0; k < g->input_size; k++)
        g_string_append_printf (out, "%s(X_%" G_GINT64_FORMAT " %.9g)\n", k ? " " : "", k, (double) o->x[k]);
      for (int64_t k = 0; k < g->output_size; k++)
        g_string_append_printf (out, " (Y_%" G_GINT64_FORMAT " %.9g)%s", k, o->y[k],
                                k + 1 == g->output_size ? ")\n" : "\n");
    }
  return g_file_set_contents (path, out->str, out->len, error);
}

/* One phase's statistics of every rank, or null. */
static void
json_phase (GString *out, const char *name, const sb_memory_stats_v1 *phase, int r)
{
  g_string_append_printf (out, ", \"%s\": ", name);
  if (phase == NULL)
    {
      g_string_append (out, "null");
      return;
    }
  g_string_append_c (out, '{');
  sb_json_memory_stats (out, &phase[r]);
  g_string_append_c (out, '}');
}

/* The --json object: the answer, times, domains and per-rank memory (the
 * root phase, branch-and-bound, and their peaks together), with the
 * process's peak RSS, which thread ranks share. */
static void
print_json (const SbVerifyOutcome *o, int status, const GError *error, SbNetwork *net,
            const char *backend, const char *model, const char *property, double max_memory_mib)
{
  g_autoptr (GString) out = g_string_new ("{\n  \"answer\": ");
  sb_json_string (out, sb_result_to_string (status == 0 ? o->result : SB_RESULT_ERROR));
  if (status != 0 || o->reason != NULL)
    {
      g_string_append (out, ",\n  \"reason\": ");
      sb_json_string (out, status != 0 ? (error ? error->message : "failed") : o->reason);
    }
  g_string_append (out, ",\n  \"backend\": ");
  sb_json_string (out, backend != NULL ? backend : "");
  g_string_append (out, ",\n  \"model\": ");
  sb_json_string (out, model);
  g_string_append (out, ",\n  \"property\": ");
  sb_json_string (out, property);
  g_string_append_printf (out, ",\n  \"seconds\": %.6f,\n  \"domains\": %" G_GINT64_FORMAT
                               ",\n  \"branch_and_bound\": {\"domains\": %" G_GINT64_FORMAT
                               ", \"seconds\": %.6f},\n",
                          o->seconds, (gint64) o->domains, (gint64) o->domains, o->bab_seconds);
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  g_string_append_printf (out, "  \"memory\": {\"process_peak_rss_bytes\": %ld, "
                               "\"max_memory_mib_per_rank\": %g, \"per_rank\": [",
                          ru.ru_maxrss * 1024L, max_memory_mib);
  int ranks = net != NULL && o->root_memory != NULL ? sb_network_rank_count (net) : 0;
  for (int r = 0; r < ranks; r++)
    {
      /* The whole run: baseline and the larger of the two phases' peaks. */
      sb_memory_stats_v1 all = o->root_memory[r];
      if (o->bab_memory != NULL)
        {
          all = o->bab_memory[r];
          all.total_peak_bytes = MAX (all.total_peak_bytes, o->root_memory[r].total_peak_bytes);
          for (int c = 0; c < SB_MEM_CATEGORY_COUNT; c++)
            all.peak_bytes[c] = MAX (all.peak_bytes[c], o->root_memory[r].peak_bytes[c]);
        }
      g_string_append_printf (out, "%s\n    {\"rank\": %d, ", r ? "," : "", r);
      sb_json_memory_stats (out, &all);
      json_phase (out, "root", o->root_memory, r);
      json_phase (out, "bab", o->bab_memory, r);
      g_string_append (out, "}");
    }
  g_string_append (out, "\n  ]}\n}\n");
  fputs (out->str, stdout);
}

int
sb_cmd_verify (int argc, char **argv)
{
  g_autofree char *results_file = NULL, *branching = NULL;
  SbCliBackendOptions bo = { 0 };
  int batch = 0, max_domains = 0, iterations = 0, restarts = 0, steps = 0;
  double timeout = 0, max_memory = 0, bab_time = 0;
  gboolean quiet = FALSE, no_attack = FALSE, no_refine = FALSE, json = FALSE;
  GOptionEntry entries[] = {
    { "timeout", 't', 0, G_OPTION_ARG_DOUBLE, &timeout, "Give up after S seconds (default: none)", "S" },
    { "results-file", 'r', 0, G_OPTION_ARG_FILENAME, &results_file, "Write a VNN-COMP results file", "FILE" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, "Domains split per branch-and-bound step (default 32)", "N" },
    { "max-domains", 0, 0, G_OPTION_ARG_INT, &max_domains, "Give up (unknown) beyond N open domains (default 200000)", "N" },
    { "max-memory", 0, 0, G_OPTION_ARG_DOUBLE, &max_memory, "Per rank: give up (unknown) when a rank's backend memory in branch-and-bound, or the queued domains' host memory, would pass MiB (default 4096)", "MIB" },
    { "bab-time", 0, 0, G_OPTION_ARG_DOUBLE, &bab_time, "Stop branch-and-bound (timeout) after S seconds of it per region, the root not counted: a fixed budget for benchmarks", "S" },
    { "branching", 0, 0, G_OPTION_ARG_STRING, &branching, "Branching heuristic: babsr (default) or fsb", "NAME" },
    { "iterations", 0, 0, G_OPTION_ARG_INT, &iterations, "alpha/beta steps per branch-and-bound batch (default 10)", "N" },
    { "attack-restarts", 0, 0, G_OPTION_ARG_INT, &restarts, "PGD: points attacked at once (default 32)", "N" },
    { "attack-steps", 0, 0, G_OPTION_ARG_INT, &steps, "PGD: steps per restart round (default 40)", "N" },
    { "no-refine", 0, 0, G_OPTION_ARG_NONE, &no_refine, "Keep the parent's intermediate bounds in new domains instead of recomputing them by CROWN", NULL },
    { "no-attack", 0, 0, G_OPTION_ARG_NONE, &no_attack, "Do not search for counterexamples by PGD", NULL },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress line", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object instead of the result word: answer, seconds, domains, per-rank memory", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("MODEL.onnx PROPERTY.vnnlib");
  g_autoptr (GError) error = NULL;
  g_option_context_set_summary (
      oc, "Decide a property: prints unsat (proven), sat (counterexample found and checked), "
          "unknown, timeout or error as the first line.\n"
          "Exit status: 0 when a result word was produced, 1 on a backend error, 2 on bad usage or input.");
  g_option_context_add_main_entries (oc, entries, NULL);
  sb_cli_add_backend_options (oc, &bo);
  if (!g_option_context_parse (oc, &argc, &argv, &error))
    {
      printf ("error\n");
      g_printerr ("shardbound verify: %s\n", error->message);
      sb_cli_backend_options_clear (&bo);
      return 2;
    }
  SbVerifyParams params;
  sb_verify_params_init (&params);
  params.timeout = timeout;
  params.bab_time = bab_time;
  params.attack = !no_attack;
  params.refine_intermediate = !no_refine;
  if (batch > 0)
    params.batch = batch;
  if (max_domains > 0)
    params.max_domains = max_domains;
  if (max_memory > 0)
    params.max_memory_mib = max_memory;
  if (iterations > 0)
    params.bab_iterations = iterations;
  if (restarts > 0)
    params.attack_params.restarts = restarts;
  if (steps > 0)
    params.attack_params.steps = steps;
  if (branching != NULL && g_strcmp0 (branching, "babsr") != 0)
    {
      if (g_strcmp0 (branching, "fsb") != 0)
        {
          printf ("error\n");
          g_printerr ("shardbound verify: unknown branching '%s' (expected babsr or fsb)\n", branching);
          sb_cli_backend_options_clear (&bo);
          return 2;
        }
      params.branching = SB_BRANCH_FSB;
    }
  if (argc != 3 || timeout < 0 || max_memory < 0 || bab_time < 0 || batch < 0 || max_domains < 0 || iterations < 0 || restarts < 0 || steps < 0)
    {
      printf ("error\n");
      g_printerr ("shardbound verify: expected MODEL.onnx PROPERTY.vnnlib and non-negative numbers "
                  "(see --help)\n");
      sb_cli_backend_options_clear (&bo);
      return 2;
    }
  if (!quiet && isatty (fileno (stderr)))
    params.progress = print_progress;

  SbVerifyOutcome outcome = { .result = SB_RESULT_ERROR };
  int status = 0;
  g_autoptr (SbGraph) graph = NULL;
  g_autoptr (SbProperty) prop = NULL;
  g_autoptr (SbSessionSetup) setup = NULL;
  g_autoptr (SbNetwork) net = NULL;
  if (!sb_cli_load_problem (argv[1], argv[2], &graph, &prop, &error))
    status = 2;
  else
    {
      SbSessionRequest request = sb_cli_session_request (&bo);
      setup = sb_session_setup (&request, &error);
      if (setup == NULL)
        status = sb_cli_error_status (error);
      /* Memory is measured from the loaded model on. */
      else if ((net = sb_network_new (setup->session, graph, &error)) == NULL
               || !sb_network_memory_reset (net, &error)
               || !sb_verify (net, prop, &params, &outcome, &error))
        status = sb_cli_error_status (error);
    }
  if (params.progress != NULL)
    fprintf (stderr, "\r%60s\r", "");
  if (json)
    print_json (&outcome, status, error, net, setup != NULL ? setup->session->name : bo.backend,
                argv[1], argv[2], params.max_memory_mib);
  else
    printf ("%s\n", sb_result_to_string (status == 0 ? outcome.result : SB_RESULT_ERROR));
  fflush (stdout); /* the result comes first, before any diagnostics */
  if (status != 0)
    g_printerr ("shardbound verify: %s\n", error ? error->message : "failed");
  else
    {
      if (outcome.reason != NULL)
        g_printerr ("shardbound verify: %s\n", outcome.reason);
      if (!quiet)
        g_printerr ("%.2f s, %" G_GINT64_FORMAT " branch-and-bound domains\n", outcome.seconds,
                    (gint64) outcome.domains);
    }
  if (results_file != NULL)
    {
      if (status != 0)
        outcome.result = SB_RESULT_ERROR;
      g_autoptr (GError) write_error = NULL;
      if (!write_results (results_file, &outcome, graph, &write_error))
        {
          g_printerr ("shardbound verify: %s\n", write_error->message);
          status = status ? status : 1;
        }
    }
  sb_verify_outcome_clear (&outcome);
  sb_cli_backend_options_clear (&bo);
  return status;
}
