/* SPDX-License-Identifier: MIT */
/* `shardbound bounds`: bounds of a network's outputs and of a property's
 * atoms, as text or as the JSON object of DESIGN.md section 6. */
#include "config.h"

#include <math.h>
#include <stdio.h>

#include "commands.h"
#include "hosts/engine/bounds.h"
#include "cli_common.h"
#include "cli_processes.h"

static const char *const category_names[SB_MEM_CATEGORY_COUNT] = {
  "weights", "gathered_weights", "coefficients", "bounds", "alpha", "workspace", "communication"
};

static void
json_doubles (GString *out, const char *key, const double *v, int n)
{
  g_string_append_printf (out, "  \"%s\": [", key);
  for (int i = 0; i < n; i++)
    {
      if (!isfinite (v[i]))
        g_string_append_printf (out, "%s%s", i ? ", " : "", "null");
      else
        g_string_append_printf (out, "%s%.9g", i ? ", " : "", v[i]);
    }
  g_string_append (out, "],\n");
}

static void
json_string (GString *out, const char *text)
{
  g_string_append_c (out, '"');
  for (const char *p = text; *p; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_printf (out, "\\%c", *p);
      else if ((unsigned char) *p < 0x20)
        g_string_append_printf (out, "\\u%04x", *p);
      else
        g_string_append_c (out, *p);
    }
  g_string_append_c (out, '"');
}

static gboolean
json_memory (GString *out, SbNetwork *net, GError **error)
{
  int ranks = sb_network_rank_count (net);
  g_string_append (out, "  \"memory\": {\"per_rank\": [");
  for (int r = 0; r < ranks; r++)
    {
      sb_memory_stats_v1 st;
      if (!sb_network_memory_stats (net, r, &st, error))
        return FALSE;
      g_string_append_printf (out,
                              "%s\n    {\"rank\": %d, \"baseline_bytes\": %" G_GUINT64_FORMAT
                              ", \"peak_bytes\": %" G_GUINT64_FORMAT
                              ", \"current_bytes\": %" G_GUINT64_FORMAT
                              ", \"device_used_bytes\": %" G_GINT64_FORMAT
                              ", \"peak_rss_bytes\": %" G_GINT64_FORMAT ", \"by_category\": {",
                              r ? "," : "", r, (guint64) st.baseline_bytes,
                              (guint64) st.total_peak_bytes, (guint64) st.total_current_bytes,
                              (gint64) st.device_used_bytes, (gint64) st.peak_rss_bytes);
      for (int c = 0; c < SB_MEM_CATEGORY_COUNT; c++)
        g_string_append_printf (out, "%s\"%s\": {\"current\": %" G_GUINT64_FORMAT
                                ", \"peak\": %" G_GUINT64_FORMAT "}",
                                c ? ", " : "", category_names[c],
                                (guint64) st.current_bytes[c], (guint64) st.peak_bytes[c]);
      g_string_append (out, "}}");
    }
  g_string_append (out, "\n  ]}\n");
  return TRUE;
}

static void
print_text (const SbBoundsResult *r, const SbProperty *prop, int region,
            const char *method, const char *backend, double seconds)
{
  printf ("method %s, backend %s, %.3f s\n", method, backend, seconds);
  printf ("%-8s %16s %16s\n", "output", "lower", "upper");
  for (int i = 0; i < r->n_outputs; i++)
    printf ("Y_%-6d %16.8g %16.8g\n", i, r->output_lower[i], r->output_upper[i]);
  if (r->n_specs > 0)
    {
      printf ("%-8s %16s %16s %12s\n", "atom", "lower(c.y)", "upper(c.y)", "d");
      for (int k = 0; k < r->n_specs; k++)
        printf ("%-8d %16.8g %16.8g %12.6g%s\n", k, r->spec_lower[k], r->spec_upper[k],
                prop->atoms[k].d, r->spec_lower[k] > prop->atoms[k].d ? "  (never holds)" : "");
      printf ("property %s on this box (by these bounds alone)\n",
              sb_region_proven (prop, region, r->spec_lower) ? "holds" : "is not proven");
    }
}

/* Computes and prints; returns the exit status. */
static int
run_bounds (SbSession *session, const SbGraph *graph, const SbProperty *prop,
            const SbBoundsOptions *options, gboolean json, char **argv)
{
  g_autoptr (GError) error = NULL;

  g_autoptr (SbNetwork) net = sb_cli_network_new (session, (SbGraph *) graph, &error);
  if (net == NULL || !sb_network_memory_reset (net, &error))
    {
      g_printerr ("shardbound bounds: %s\n", error->message);
      return sb_cli_error_status (error);
    }

  g_autofree double *rows = sb_property_spec_rows (prop);
  SbSpec spec = { prop->n_atoms, rows };
  SbBoundsResult result;
  const int region = 0;
  gint64 t0 = g_get_monotonic_time ();
  if (!sb_network_compute_bounds (net, options, prop->regions[region].x_lower,
                                  prop->regions[region].x_upper, &spec, &result, &error))
    {
      g_printerr ("shardbound bounds: %s\n", error->message);
      return sb_cli_error_status (error);
    }
  double seconds = (g_get_monotonic_time () - t0) / 1e6;
  if (prop->n_regions > 1)
    g_printerr ("shardbound bounds: the property has %d input regions; bounds are for the first\n",
                prop->n_regions);

  if (!json)
    {
      print_text (&result, prop, region, sb_method_to_string (options->method), session->name, seconds);
    }
  else
    {
      g_autoptr (GString) out = g_string_new ("{\n  \"method\": ");
      json_string (out, sb_method_to_string (options->method));
      g_string_append (out, ",\n  \"backend\": ");
      json_string (out, session->name);
      g_string_append_printf (out, ",\n  \"ranks\": %d,\n  \"model\": ", sb_network_rank_count (net));
      json_string (out, argv[1]);
      g_string_append (out, ",\n  \"property\": ");
      json_string (out, argv[2]);
      g_string_append_printf (out, ",\n  \"regions\": %d,\n", prop->n_regions);
      json_doubles (out, "output_lower", result.output_lower, result.n_outputs);
      json_doubles (out, "output_upper", result.output_upper, result.n_outputs);
      json_doubles (out, "spec_lower", result.spec_lower, result.n_specs);
      json_doubles (out, "spec_upper", result.spec_upper, result.n_specs);
      g_string_append_printf (out, "  \"spec_rhs\": [");
      for (int k = 0; k < prop->n_atoms; k++)
        g_string_append_printf (out, "%s%.9g", k ? ", " : "", prop->atoms[k].d);
      g_string_append_printf (out, "],\n  \"proven\": %s,\n  \"unstable_relus\": %d,\n  \"seconds\": %.6f,\n",
                              sb_region_proven (prop, region, result.spec_lower) ? "true" : "false",
                              result.n_unstable, seconds);
      if (!json_memory (out, net, &error))
        {
          g_printerr ("shardbound bounds: %s\n", error->message);
          sb_bounds_result_clear (&result);
          return sb_cli_error_status (error);
        }
      g_string_append (out, "}\n");
      fputs (out->str, stdout);
    }
  sb_bounds_result_clear (&result);
  return 0;
}

int
sb_cmd_bounds (int argc, char **argv)
{
  g_autofree char *method_name = NULL;
  SbCliBackendOptions bo = { 0 };
  gboolean json = FALSE;
  SbBoundsOptions options;
  sb_bounds_options_init (&options);
  SbAlphaParams *alpha = &options.alpha;
  GOptionEntry entries[] = {
    { "method", 'm', 0, G_OPTION_ARG_STRING, &method_name, "Bound method: ibp, crown or alpha-crown (default crown)", "METHOD" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL },
    { "intersect-ibp", 0, 0, G_OPTION_ARG_NONE, &options.intersect_ibp, "Keep the tighter of CROWN and IBP intermediate bounds (default: CROWN's, as auto_LiRPA)", NULL },
    { "iterations", 0, 0, G_OPTION_ARG_INT, &alpha->iterations, "alpha-CROWN: Adam steps per start node (default 20)", "N" },
    { "final-iterations", 0, 0, G_OPTION_ARG_INT, &alpha->final_iterations, "alpha-CROWN: Adam steps for the outputs and the spec (default 50)", "N" },
    { "lr", 0, 0, G_OPTION_ARG_DOUBLE, &alpha->learning_rate, "alpha-CROWN: learning rate (default 0.5)", "X" },
    { "patience", 0, 0, G_OPTION_ARG_INT, &alpha->patience, "alpha-CROWN: stop after N steps without improvement (default 5)", "N" },
    { NULL }
  };
  g_autoptr (GOptionContext) oc = g_option_context_new ("MODEL.onnx PROPERTY.vnnlib");
  g_autoptr (GError) error = NULL;
  g_option_context_set_summary (oc, "Compute bounds of the network outputs and of every atom of the property's unsafe region.");
  g_option_context_add_main_entries (oc, entries, NULL);
  sb_cli_add_backend_options (oc, &bo);
  gboolean parsed = g_option_context_parse (oc, &argc, &argv, &error);
  g_autoptr (SbSessionSetup) setup = NULL;
  g_autoptr (SbGraph) graph = NULL;
  g_autoptr (SbProperty) prop = NULL;
  int status = 0;
  if (!parsed)
    {
      g_printerr ("shardbound bounds: %s\n", error->message);
      status = 2;
      goto out;
    }
  if (argc != 3)
    {
      g_printerr ("shardbound bounds: expected MODEL.onnx and PROPERTY.vnnlib (see --help)\n");
      status = 2;
      goto out;
    }
  if (method_name != NULL && !sb_method_from_string (method_name, &options.method))
    {
      g_printerr ("shardbound bounds: unknown method '%s' (expected ibp, crown or alpha-crown)\n", method_name);
      status = 2;
      goto out;
    }
  int process;
  status = sb_cli_open_problem (&bo, argv[1], argv[2], &setup, &graph, &prop, &process, &error);
  if (status != 0)
    {
      g_printerr ("shardbound bounds: %s\n", error->message);
      goto out;
    }
  status = run_bounds (setup->session, graph, prop, &options, json, argv);
out:
  sb_cli_backend_options_clear (&bo);
  sb_cli_leave_processes ();
  return status;
}
