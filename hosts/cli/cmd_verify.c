/* SPDX-License-Identifier: MIT */
/* `shardbound verify`: complete verification of a VNNLIB property, printing
 * the VNN-COMP result word first and optionally writing a results file. */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "commands.h"
#include "cli_common.h"
#include "cli_processes.h"

static void
print_progress (void *user, int64_t done, int64_t left, double worst, double seconds)
{
  fprintf (stderr, "\r  domains done %" G_GINT64_FORMAT ", left %" G_GINT64_FORMAT
                   ", worst margin %.5g, %.1f s   ",
           (gint64) done, (gint64) left, worst, seconds);
  fflush (stderr);
}

/* The results file: the answer word, and for sat the counterexample. */
static gboolean
write_results (const char *path, const char *word, const ShardboundVerdict *v,
               const ShardboundNetwork *net, GError **error)
{
  g_autoptr (GString) out = g_string_new (word);
  g_string_append_c (out, '\n');
  const float *x = v ? shardbound_verdict_input (v) : NULL;
  const double *y = v ? shardbound_verdict_output (v) : NULL;
  if (x != NULL && y != NULL)
    {
      int64_t n_in = shardbound_network_input_size (net), n_out = shardbound_network_output_size (net);
      g_string_append_c (out, '(');
      for (int64_t k = 0; k < n_in; k++)
        g_string_append_printf (out, "%s(X_%" G_GINT64_FORMAT " %.9g)\n", k ? " " : "", k, (double) x[k]);
      for (int64_t k = 0; k < n_out; k++)
        g_string_append_printf (out, " (Y_%" G_GINT64_FORMAT " %.9g)%s", k, y[k],
                                k + 1 == n_out ? ")\n" : "\n");
    }
  return g_file_set_contents (path, out->str, out->len, error);
}

int
sb_cmd_verify (int argc, char **argv)
{
  g_autofree char *results_file = NULL;
  SbCliBackendOptions bo = { 0 };
  gboolean quiet = FALSE;
  g_autoptr (ShardboundSettings) settings = shardbound_settings_new ();
  static const SbCliSetting table[] = {
    { "timeout", "timeout", NULL },
    { "batch", "batch", NULL },
    { "max-domains", "max_domains", NULL },
    { "max-memory", "max_memory_mib", NULL },
    { "branching", "branching", NULL },
    { "iterations", "bab_iterations", NULL },
    { "attack-restarts", "attack_restarts", NULL },
    { "attack-steps", "attack_steps", NULL },
    { "no-refine", "refine_intermediate", "false" },
    { "no-attack", "attack", "false" },
    { NULL }
  };
  SbCliSettings binding = { settings, table };
  GOptionEntry setting_entries[] = {
    { "timeout", 't', 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "Give up after S seconds (default: none)", "S" },
    { "batch", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "Domains split per branch-and-bound step (default 32)", "N" },
    { "max-domains", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "Give up (unknown) beyond N open domains (default 200000)", "N" },
    { "max-memory", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "Give up (unknown) when queued domains would hold more than MiB of host memory (default 4096)", "MIB" },
    { "branching", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "Branching heuristic: babsr (default) or fsb", "NAME" },
    { "iterations", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "alpha/beta steps per branch-and-bound batch (default 10)", "N" },
    { "attack-restarts", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "PGD: points attacked at once (default 32)", "N" },
    { "attack-steps", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "PGD: steps per restart round (default 40)", "N" },
    { "no-refine", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "Keep the parent's intermediate bounds in new domains instead of recomputing them by CROWN", NULL },
    { "no-attack", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, sb_cli_setting_option, "Do not search for counterexamples by PGD", NULL },
    { NULL }
  };
  GOptionEntry entries[] = {
    { "results-file", 'r', 0, G_OPTION_ARG_FILENAME, &results_file, "Write a VNN-COMP results file", "FILE" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress line", NULL },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("MODEL.onnx PROPERTY.vnnlib");
  g_autoptr (GError) error = NULL;
  g_option_context_set_summary (
      oc, "Decide a property: prints unsat (proven), sat (counterexample found and checked), "
          "unknown, timeout or error as the first line.\n"
          "Exit status: 0 when a result word was produced, 1 on a backend error, 2 on bad usage or input.");
  sb_cli_add_setting_options (oc, setting_entries, &binding);
  g_option_context_add_main_entries (oc, entries, NULL);
  sb_cli_add_backend_options (oc, &bo);
  if (!g_option_context_parse (oc, &argc, &argv, &error) || argc != 3)
    {
      printf ("error\n");
      g_printerr ("shardbound verify: %s\n",
                  error ? error->message : "expected MODEL.onnx PROPERTY.vnnlib (see --help)");
      sb_cli_backend_options_clear (&bo);
      return 2;
    }
  if (!quiet && isatty (fileno (stderr)))
    shardbound_settings_set_progress (settings, print_progress, NULL);

  int status = 0;
  g_autoptr (ShardboundSession) session = NULL;
  g_auto (SbCliJoined) joined = 0;
  g_autoptr (ShardboundNetwork) net = NULL;
  g_autoptr (ShardboundProperty) prop = NULL;
  g_autoptr (ShardboundVerdict) verdict = NULL;
  if ((session = sb_cli_open_session (&bo, &error)) == NULL
      || !sb_cli_load_problem (session, argv[1], argv[2], &net, &prop, &error)
      || (verdict = shardbound_verify (net, prop, settings, &error)) == NULL)
    status = sb_cli_error_status (error);
  if (!quiet && isatty (fileno (stderr)))
    fprintf (stderr, "\r%60s\r", "");
  const char *word = verdict ? shardbound_answer_name (shardbound_verdict_answer (verdict)) : "error";
  printf ("%s\n", word);
  fflush (stdout); /* the result word comes first, before any diagnostics */
  if (verdict == NULL)
    g_printerr ("shardbound verify: %s\n", error->message);
  else
    {
      if (shardbound_verdict_reason (verdict) != NULL)
        g_printerr ("shardbound verify: %s\n", shardbound_verdict_reason (verdict));
      if (!quiet)
        g_printerr ("%.2f s, %" G_GINT64_FORMAT " branch-and-bound domains\n",
                    shardbound_verdict_seconds (verdict), (gint64) shardbound_verdict_domains (verdict));
    }
  /* Process 0 alone writes files. */
  if (results_file != NULL && sb_cli_is_process_zero (session))
    {
      g_autoptr (GError) write_error = NULL;
      if (!write_results (results_file, word, verdict, net, &write_error))
        {
          g_printerr ("shardbound verify: %s\n", write_error->message);
          status = status ? status : 1;
        }
    }
  sb_cli_backend_options_clear (&bo);
  return status;
}
