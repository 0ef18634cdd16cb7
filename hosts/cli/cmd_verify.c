/* SPDX-License-Identifier: MIT */
/* `shardbound verify`: complete verification of a VNNLIB property, printing
 * the VNN-COMP result word first and optionally writing a results file. */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "commands.h"
#include "cli_common.h"
#include "cli_processes.h"
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

int
sb_cmd_verify (int argc, char **argv)
{
  g_autofree char *results_file = NULL, *branching = NULL;
  SbCliBackendOptions bo = { 0 };
  int batch = 0, max_domains = 0, iterations = 0, restarts = 0, steps = 0;
  double timeout = 0, max_memory = 0;
  gboolean quiet = FALSE, no_attack = FALSE, no_refine = FALSE;
  GOptionEntry entries[] = {
    { "timeout", 't', 0, G_OPTION_ARG_DOUBLE, &timeout, "Give up after S seconds (default: none)", "S" },
    { "results-file", 'r', 0, G_OPTION_ARG_FILENAME, &results_file, "Write a VNN-COMP results file", "FILE" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, "Domains split per branch-and-bound step (default 32)", "N" },
    { "max-domains", 0, 0, G_OPTION_ARG_INT, &max_domains, "Give up (unknown) beyond N open domains (default 200000)", "N" },
    { "max-memory", 0, 0, G_OPTION_ARG_DOUBLE, &max_memory, "Give up (unknown) when queued domains would hold more than MiB of host memory (default 4096)", "MIB" },
    { "branching", 0, 0, G_OPTION_ARG_STRING, &branching, "Branching heuristic: babsr (default) or fsb", "NAME" },
    { "iterations", 0, 0, G_OPTION_ARG_INT, &iterations, "alpha/beta steps per branch-and-bound batch (default 10)", "N" },
    { "attack-restarts", 0, 0, G_OPTION_ARG_INT, &restarts, "PGD: points attacked at once (default 32)", "N" },
    { "attack-steps", 0, 0, G_OPTION_ARG_INT, &steps, "PGD: steps per restart round (default 40)", "N" },
    { "no-refine", 0, 0, G_OPTION_ARG_NONE, &no_refine, "Keep the parent's intermediate bounds in new domains instead of recomputing them by CROWN", NULL },
    { "no-attack", 0, 0, G_OPTION_ARG_NONE, &no_attack, "Do not search for counterexamples by PGD", NULL },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress line", NULL },
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
  if (argc != 3 || timeout < 0 || max_memory < 0 || batch < 0 || max_domains < 0 || iterations < 0 || restarts < 0 || steps < 0)
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
  int process = 0;
  status = sb_cli_open_problem (&bo, argv[1], argv[2], &setup, &graph, &prop, &process, &error);
  if (status == 0
      && ((net = sb_cli_network_new (setup->session, graph, &error)) == NULL
          || !sb_verify (net, prop, &params, &outcome, &error)))
    status = sb_cli_error_status (error);
  if (params.progress != NULL)
    fprintf (stderr, "\r%60s\r", "");
  printf ("%s\n", sb_result_to_string (status == 0 ? outcome.result : SB_RESULT_ERROR));
  fflush (stdout); /* the result word comes first, before any diagnostics */
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
  /* Process 0 alone writes files. */
  if (results_file != NULL && process == 0)
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
  sb_cli_leave_processes ();
  return status;
}
