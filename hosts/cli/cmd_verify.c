/* SPDX-License-Identifier: MIT */
/* `shardbound verify`: complete verification of a VNNLIB property, printing
 * the VNN-COMP result word first and optionally writing a results file. */
#include "config.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "commands.h"
#include "cli_common.h"
#include "cli_processes.h"
#include "cli_json.h"

/* The last progress report of branch-and-bound: drawn as a line on a
 * terminal, and kept for --json, so that a run that ends undecided says
 * how far it got. */
typedef struct {
  gboolean draw, seen;
  int64_t done, left;
  double worst, seconds;
} Progress;

static void on_progress(void *user, int64_t done, int64_t left, double worst,
                        double seconds) {
  Progress *p = user;
  *p = (Progress){p->draw, TRUE, done, left, worst, seconds};
  if (!p->draw)
    return;
  fprintf(stderr,
          "\r  domains done %" G_GINT64_FORMAT ", left %" G_GINT64_FORMAT
          ", worst margin %.5g, %.1f s   ",
          (gint64)done, (gint64)left, worst, seconds);
  fflush(stderr);
}

/* A number, or null where it is not finite. */
static void json_number(GString *out, double v) {
  if (isfinite(v))
    g_string_append_printf(out, "%.9g", v);
  else
    g_string_append(out, "null");
}

/* "last_progress": the last report, or null when branch-and-bound made
 * none (decided at the root, or an error first). */
static void json_progress(GString *out, const Progress *p) {
  g_string_append(out, "  \"last_progress\": ");
  if (!p->seen) {
    g_string_append(out, "null,\n");
    return;
  }
  g_string_append_printf(out,
                         "{\"domains_done\": %" G_GINT64_FORMAT
                         ", \"domains_open\": %" G_GINT64_FORMAT
                         ", \"worst_margin\": ",
                         (gint64)p->done, (gint64)p->left);
  json_number(out, p->worst);
  g_string_append_printf(out, ", \"seconds\": %.6f},\n", p->seconds);
}

/* The results file: the answer word, and for sat the counterexample. */
static gboolean write_results(const char *path, const char *word,
                              const ShardboundVerdict *v,
                              const ShardboundNetwork *net, GError **error) {
  g_autoptr(GString) out = g_string_new(word);
  g_string_append_c(out, '\n');
  const float *x = v ? shardbound_verdict_input(v) : NULL;
  const double *y = v ? shardbound_verdict_output(v) : NULL;
  if (x != NULL && y != NULL) {
    int64_t n_in = shardbound_network_input_size(net),
            n_out = shardbound_network_output_size(net);
    g_string_append_c(out, '(');
    for (int64_t k = 0; k < n_in; k++)
      g_string_append_printf(out, "%s(X_%" G_GINT64_FORMAT " %.9g)\n",
                             k ? " " : "", k, (double)x[k]);
    for (int64_t k = 0; k < n_out; k++)
      g_string_append_printf(out, " (Y_%" G_GINT64_FORMAT " %.9g)%s", k, y[k],
                             k + 1 == n_out ? ")\n" : "\n");
  }
  return g_file_set_contents(path, out->str, out->len, error);
}

/* Whether the results file can be written, checked before the run rather
 * than found out after it (a timeout can be minutes). Every process checks
 * its own file system, with no collective, so a refusal can end the job
 * before its session exists. */
static gboolean results_file_writable(const char *path, GError **error) {
  g_autofree char *dir = g_path_get_dirname(path);
  const char *why = NULL;
  if (g_file_test(path, G_FILE_TEST_IS_DIR))
    why = "it is a directory";
  else if (!g_file_test(dir, G_FILE_TEST_IS_DIR))
    why = "its directory does not exist";
  else if (g_access(dir, W_OK) != 0)
    why = "its directory is not writable";
  else if (g_file_test(path, G_FILE_TEST_EXISTS) && g_access(path, W_OK) != 0)
    why = "it is not writable";
  if (why != NULL)
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_ACCES,
                "cannot write the results file %s: %s", path, why);
  return why == NULL;
}

/* One phase's statistics of a rank as `, "name": {...}`, or null when the
 * phase was not measured. */
static gboolean json_phase(GString *out, const char *name,
                           const ShardboundVerdict *v, int rank,
                           ShardboundVerifyPhase phase, GError **error) {
  g_string_append_printf(out, ", \"%s\": ", name);
  if (!shardbound_verdict_has_memory(v, phase)) {
    g_string_append(out, "null");
    return TRUE;
  }
  ShardboundMemoryStats st = {.struct_size = sizeof st};
  if (!shardbound_verdict_memory(v, rank, phase, &st, error))
    return FALSE;
  g_string_append_c(out, '{');
  sb_json_memory_stats(out, &st);
  g_string_append_c(out, '}');
  return TRUE;
}

/* The --json object: the answer, times, domains and per-rank memory (the
 * root phase, branch-and-bound, and their peaks together), with the
 * process's peak RSS, which thread ranks share. v is NULL on an error,
 * whose message is the reason. */
static gboolean print_json(const ShardboundVerdict *v, const GError *failure,
                           const char *backend, const char *model,
                           const char *property,
                           const ShardboundSettings *settings,
                           const Progress *progress, GError **error) {
  g_autofree char *max_memory =
      shardbound_settings_get(settings, "max_memory_mib", error);
  if (max_memory == NULL)
    return FALSE;
  g_autoptr(GString) out = g_string_new("{\n  \"answer\": ");
  sb_json_string(out, v != NULL
                          ? shardbound_answer_name(shardbound_verdict_answer(v))
                          : "error");
  const char *reason = v != NULL
                           ? shardbound_verdict_reason(v)
                           : (failure != NULL ? failure->message : "failed");
  if (reason != NULL) {
    g_string_append(out, ",\n  \"reason\": ");
    sb_json_string(out, reason);
  }
  g_string_append(out, ",\n  \"backend\": ");
  sb_json_string(out, backend != NULL ? backend : "");
  g_string_append(out, ",\n  \"model\": ");
  sb_json_string(out, model);
  g_string_append(out, ",\n  \"property\": ");
  sb_json_string(out, property);
  int64_t domains = v != NULL ? shardbound_verdict_domains(v) : 0;
  g_string_append_printf(
      out,
      ",\n  \"seconds\": %.6f,\n  \"domains\": %" G_GINT64_FORMAT
      ",\n  \"branch_and_bound\": {\"domains\": %" G_GINT64_FORMAT
      ", \"seconds\": %.6f, \"tightening_domains\": %" G_GINT64_FORMAT "},\n",
      v != NULL ? shardbound_verdict_seconds(v) : 0.0, (gint64)domains,
      (gint64)domains, v != NULL ? shardbound_verdict_bab_seconds(v) : 0.0,
      (gint64)(v != NULL ? shardbound_verdict_tighten_domains(v) : 0));
  json_progress(out, progress);
  g_string_append(out, "  \"found_margin\": ");
  json_number(out, v != NULL ? shardbound_verdict_found_margin(v) : INFINITY);
  g_string_append(out, ",\n");
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  g_string_append_printf(out,
                         "  \"memory\": {\"process_peak_rss_bytes\": %ld, "
                         "\"max_memory_mib_per_rank\": %g, \"per_rank\": [",
                         ru.ru_maxrss * 1024L,
                         g_ascii_strtod(max_memory, NULL));
  int ranks =
      v != NULL && shardbound_verdict_has_memory(v, SHARDBOUND_VERIFY_PHASE_ALL)
          ? shardbound_verdict_rank_count(v)
          : 0;
  for (int r = 0; r < ranks; r++) {
    ShardboundMemoryStats all = {.struct_size = sizeof all};
    if (!shardbound_verdict_memory(v, r, SHARDBOUND_VERIFY_PHASE_ALL, &all,
                                   error))
      return FALSE;
    g_string_append_printf(out, "%s\n    {\"rank\": %d, ", r ? "," : "", r);
    sb_json_memory_stats(out, &all);
    if (!json_phase(out, "root", v, r, SHARDBOUND_VERIFY_PHASE_ROOT, error) ||
        !json_phase(out, "bab", v, r, SHARDBOUND_VERIFY_PHASE_BAB, error))
      return FALSE;
    g_string_append(out, "}");
  }
  g_string_append(out, "\n  ]}\n}\n");
  fputs(out->str, stdout);
  return TRUE;
}

int sb_cmd_verify(int argc, char **argv) {
  g_autofree char *results_file = NULL;
  SbCliBackendOptions bo = {0};
  gboolean quiet = FALSE, json = FALSE;
  g_autoptr(ShardboundSettings) settings = shardbound_settings_new();
  static const SbCliSetting table[] = {
      {"timeout", "timeout", NULL},
      {"bab-time", "bab_time", NULL},
      {"bab-domains", "bab_domains", NULL},
      {"batch", "batch", NULL},
      {"max-domains", "max_domains", NULL},
      {"max-memory", "max_memory_mib", NULL},
      {"branching", "branching", NULL},
      {"iterations", "bab_iterations", NULL},
      {"lr-alpha", "bab_lr_alpha", NULL},
      {"lr-beta", "bab_lr_beta", NULL},
      {"fsb-candidates", "fsb_candidates", NULL},
      {"attack-restarts", "attack_restarts", NULL},
      {"attack-steps", "attack_steps", NULL},
      {"tighten-layers", "tighten_layers", NULL},
      {"tighten-domains", "tighten_domains", NULL},
      {"tighten-after", "tighten_after", NULL},
      {"tighten-min-gain", "tighten_min_gain", NULL},
      {"refine", "refine_intermediate", "true"},
      {"no-refine", "refine_intermediate", "false"},
      {"warm-betas", "warm_betas", "true"},
      {"cold-betas", "warm_betas", "false"},
      {"no-attack", "attack", "false"},
      {NULL}};
  SbCliSettings binding = {settings, table};
  GOptionEntry setting_entries[] = {
      {"timeout", 't', 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Give up after S seconds (default, and 0: none)", "S"},
      {"bab-time", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Stop branch-and-bound (timeout) after S seconds of it per region, the "
       "root not counted: a fixed budget for benchmarks",
       "S"},
      {"bab-domains", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Stop branch-and-bound (timeout) after N domains of it per region: a "
       "fixed amount of work for benchmarks",
       "N"},
      {"batch", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Domains split per branch-and-bound step (default 32)", "N"},
      {"max-domains", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Give up (unknown) beyond N open domains (default 200000)", "N"},
      {"max-memory", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Per rank: give up (unknown) when a rank's backend memory in "
       "branch-and-bound, or the queued domains' host memory, would pass MiB "
       "(default 4096; 0: no limit)",
       "MIB"},
      {"branching", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Branching heuristic: babsr (default) or fsb", "NAME"},
      {"iterations", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "alpha/beta steps per branch-and-bound batch (default 20)", "N"},
      {"lr-alpha", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Step size of the slopes in branch-and-bound (default: alpha-CROWN's, "
       "0.5)",
       "LR"},
      {"lr-beta", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Step size of the split multipliers (betas) in branch-and-bound "
       "(default: the slopes')",
       "LR"},
      {"fsb-candidates", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "FSB: branching candidates bounded per domain (default 3)", "N"},
      {"attack-restarts", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "PGD: points attacked at once (default 32)", "N"},
      {"attack-steps", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "PGD: steps per restart round (default 40)", "N"},
      {"tighten-layers", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "When branch-and-bound is still undecided after --tighten-after "
       "domains, tighten the unstable neurons of the first N ReLU layers "
       "whose inputs CROWN bounds, each by a branch-and-bound of its own, "
       "and start again (default 3; 0: none)",
       "N"},
      {"tighten-domains", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Domains per tightened bound (default 128)", "N"},
      {"tighten-after", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Tighten once a region's branch-and-bound has taken N domains without "
       "a decision (default 20000; 0: before it branches)",
       "N"},
      {"tighten-min-gain", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "Leave a layer's tightening after 16 neurons when they narrowed by "
       "less than F of their widths, and go on with the paused search when "
       "no layer was tightened whole (default 0.025; 0: tighten every layer "
       "whole)",
       "F"},
      {"refine", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
       sb_cli_setting_option,
       "Recompute the intermediate bounds of new domains by CROWN after the "
       "earliest split (tighter, but about 10x the cost of a domain on "
       "oval21's base network)",
       NULL},
      {"no-refine", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
       sb_cli_setting_option,
       "Keep the parent's intermediate bounds in new domains (the default)",
       NULL},
      {"warm-betas", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
       sb_cli_setting_option,
       "Start a new domain's betas from its parent's optimised ones (its new "
       "split's at 0; the default)",
       NULL},
      {"cold-betas", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
       sb_cli_setting_option,
       "Start every domain's betas from 0 instead (docs/verification.md "
       "compares)",
       NULL},
      {"no-attack", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
       sb_cli_setting_option, "Do not search for counterexamples by PGD", NULL},
      {NULL}};
  GOptionEntry entries[] = {
      {"results-file", 'r', 0, G_OPTION_ARG_FILENAME, &results_file,
       "Write a VNN-COMP results file", "FILE"},
      {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress line", NULL},
      {"json", 0, 0, G_OPTION_ARG_NONE, &json,
       "Print one JSON object instead of the result word: answer, seconds, "
       "domains, per-rank memory",
       NULL},
      {NULL}};
  g_autoptr(GOptionContext) oc =
      g_option_context_new("MODEL.onnx PROPERTY.vnnlib");
  g_autoptr(GError) error = NULL;
  g_option_context_set_summary(
      oc, "Decide a property: prints unsat (proven), sat (counterexample found "
          "and checked), "
          "unknown, timeout or error as the first line.\n"
          "Exit status: 0 when a result word was produced, 1 on a backend "
          "error, 2 on bad usage or input.");
  sb_cli_add_setting_options(oc, setting_entries, &binding);
  g_option_context_add_main_entries(oc, entries, NULL);
  sb_cli_add_backend_options(oc, &bo);
  if (!g_option_context_parse(oc, &argc, &argv, &error) || argc != 3 ||
      (results_file != NULL && !results_file_writable(results_file, &error))) {
    printf("error\n");
    g_printerr("shardbound verify: %s\n",
               error ? error->message
                     : "expected MODEL.onnx PROPERTY.vnnlib (see --help)");
    sb_cli_backend_options_clear(&bo);
    return 2;
  }
  Progress progress = {.draw = !quiet && isatty(fileno(stderr))};
  if (!quiet || json)
    shardbound_settings_set_progress(settings, on_progress, &progress);

  int status = 0;
  g_autoptr(ShardboundSession) session = NULL;
  g_auto(SbCliJoined) joined = 0;
  g_autoptr(ShardboundNetwork) net = NULL;
  g_autoptr(ShardboundProperty) prop = NULL;
  g_autoptr(ShardboundVerdict) verdict = NULL;
  if ((session = sb_cli_open_session(&bo, &error)) == NULL ||
      !sb_cli_load_problem(session, argv[1], argv[2], &net, &prop, &error)
      /* Memory is measured from the loaded model on. */
      || !shardbound_session_memory_reset(session, &error) ||
      (verdict = shardbound_verify(net, prop, settings, &error)) == NULL)
    status = sb_cli_error_status(error);
  if (progress.draw)
    fprintf(stderr, "\r%60s\r", "");
  const char *word =
      verdict ? shardbound_answer_name(shardbound_verdict_answer(verdict))
              : "error";
  if (json) {
    g_autoptr(GError) json_error = NULL;
    const char *backend =
        session != NULL ? shardbound_session_backend(session) : bo.backend;
    if (!print_json(verdict, error, backend, argv[1], argv[2], settings,
                    &progress, &json_error)) {
      printf("{\"answer\": \"error\"}\n");
      g_printerr("shardbound verify: %s\n", json_error->message);
      status = status ? status : sb_cli_error_status(json_error);
    }
  } else
    printf("%s\n", word);
  fflush(stdout); /* the result comes first, before any diagnostics */
  if (verdict == NULL)
    g_printerr("shardbound verify: %s\n", error->message);
  else {
    if (shardbound_verdict_reason(verdict) != NULL)
      g_printerr("shardbound verify: %s\n", shardbound_verdict_reason(verdict));
    /* An undecided search also says how far it stopped from a proof (the
     * worst margin) and from a counterexample (the least one found). */
    ShardboundAnswer answer = shardbound_verdict_answer(verdict);
    gboolean undecided =
        answer != SHARDBOUND_ANSWER_SAT && answer != SHARDBOUND_ANSWER_UNSAT;
    double found = shardbound_verdict_found_margin(verdict);
    g_autofree char *worst =
        undecided && progress.seen
            ? g_strdup_printf(", worst margin %.5g", progress.worst)
            : g_strdup("");
    g_autofree char *least =
        undecided && isfinite(found)
            ? g_strdup_printf(", least margin found %.5g", found)
            : g_strdup("");
    if (!quiet)
      g_printerr("%.2f s, %" G_GINT64_FORMAT " branch-and-bound domains%s%s\n",
                 shardbound_verdict_seconds(verdict),
                 (gint64)shardbound_verdict_domains(verdict), worst, least);
  }
  /* Process 0 alone writes files. */
  if (results_file != NULL && sb_cli_is_process_zero(session)) {
    g_autoptr(GError) write_error = NULL;
    if (!write_results(results_file, word, verdict, net, &write_error)) {
      g_printerr("shardbound verify: %s\n", write_error->message);
      status = status ? status : 1;
    }
  }
  sb_cli_backend_options_clear(&bo);
  return status;
}
