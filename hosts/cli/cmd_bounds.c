/* SPDX-License-Identifier: MIT */
/* `shardbound bounds`: bounds of a network's outputs and of a property's
 * atoms, as text or as the JSON object of DESIGN.md section 6. */
#include "config.h"

#include <stdio.h>

#include "commands.h"
#include "cli_common.h"
#include "cli_processes.h"
#include "cli_json.h"

static gboolean json_memory(GString *out, ShardboundSession *session,
                            GError **error) {
  int ranks = shardbound_session_rank_count(session);
  g_string_append(out, "  \"memory\": {\"per_rank\": [");
  for (int r = 0; r < ranks; r++) {
    ShardboundMemoryStats st = {.struct_size = sizeof st};
    if (!shardbound_session_memory_stats(session, r, &st, error))
      return FALSE;
    g_string_append_printf(
        out,
        "%s\n    {\"rank\": %d, \"peak_rss_bytes\": %" G_GINT64_FORMAT ", ",
        r ? "," : "", r, (gint64)st.peak_rss_bytes);
    sb_json_memory_stats(out, &st);
    g_string_append(out, "}");
  }
  g_string_append(out, "\n  ]}\n");
  return TRUE;
}

static void print_text(const ShardboundBounds *b,
                       const ShardboundProperty *prop, int region,
                       const char *method, const char *backend,
                       double seconds) {
  printf("method %s, backend %s, %.3f s\n", method, backend, seconds);
  printf("%-8s %16s %16s\n", "output", "lower", "upper");
  const double *lo = shardbound_bounds_output_lower(b),
               *hi = shardbound_bounds_output_upper(b);
  for (int i = 0; i < shardbound_bounds_output_count(b); i++)
    printf("Y_%-6d %16.8g %16.8g\n", i, lo[i], hi[i]);
  int n_specs = shardbound_bounds_spec_count(b);
  if (n_specs > 0) {
    const double *sl = shardbound_bounds_spec_lower(b),
                 *su = shardbound_bounds_spec_upper(b);
    const double *d = shardbound_property_atom_rhs(prop);
    printf("%-8s %16s %16s %12s\n", "atom", "lower(c.y)", "upper(c.y)", "d");
    for (int k = 0; k < n_specs; k++)
      printf("%-8d %16.8g %16.8g %12.6g%s\n", k, sl[k], su[k], d[k],
             sl[k] > d[k] ? "  (never holds)" : "");
    printf("property %s on this box (by these bounds alone)\n",
           shardbound_property_proven(prop, region, sl) ? "holds"
                                                        : "is not proven");
  }
}

/* Computes and prints; returns the exit status. */
static int run_bounds(ShardboundSession *session, ShardboundNetwork *net,
                      const ShardboundProperty *prop, ShardboundMethod method,
                      const ShardboundSettings *settings, gboolean json,
                      char **argv) {
  g_autoptr(GError) error = NULL;
  const int region = 0;
  if (!shardbound_session_memory_reset(session, &error)) {
    g_printerr("shardbound bounds: %s\n", error->message);
    return sb_cli_error_status(error);
  }
  g_autoptr(ShardboundBounds) b = shardbound_network_bounds(
      net, method, settings, shardbound_property_region_lower(prop, region),
      shardbound_property_region_upper(prop, region),
      shardbound_property_atom_count(prop), shardbound_property_atom_rows(prop),
      &error);
  if (b == NULL) {
    g_printerr("shardbound bounds: %s\n", error->message);
    return sb_cli_error_status(error);
  }
  double seconds = shardbound_bounds_seconds(b);
  int n_regions = shardbound_property_region_count(prop);
  if (n_regions > 1)
    g_printerr("shardbound bounds: the property has %d input regions; bounds "
               "are for the first\n",
               n_regions);
  const char *backend = shardbound_session_backend(session);

  if (!json) {
    print_text(b, prop, region, shardbound_method_name(method), backend,
               seconds);
    return 0;
  }
  g_autoptr(GString) out = g_string_new("{\n  \"method\": ");
  sb_json_string(out, shardbound_method_name(method));
  g_string_append(out, ",\n  \"backend\": ");
  sb_json_string(out, backend);
  g_string_append_printf(out, ",\n  \"ranks\": %d,\n  \"model\": ",
                         shardbound_session_rank_count(session));
  sb_json_string(out, argv[1]);
  g_string_append(out, ",\n  \"property\": ");
  sb_json_string(out, argv[2]);
  g_string_append_printf(out, ",\n  \"regions\": %d,\n", n_regions);
  int n_out = shardbound_bounds_output_count(b),
      n_specs = shardbound_bounds_spec_count(b);
  sb_json_doubles(out, "output_lower", shardbound_bounds_output_lower(b),
                  n_out);
  sb_json_doubles(out, "output_upper", shardbound_bounds_output_upper(b),
                  n_out);
  sb_json_doubles(out, "spec_lower", shardbound_bounds_spec_lower(b), n_specs);
  sb_json_doubles(out, "spec_upper", shardbound_bounds_spec_upper(b), n_specs);
  g_string_append_printf(out, "  \"spec_rhs\": [");
  const double *d = shardbound_property_atom_rhs(prop);
  for (int k = 0; k < shardbound_property_atom_count(prop); k++)
    g_string_append_printf(out, "%s%.9g", k ? ", " : "", d[k]);
  g_string_append_printf(
      out,
      "],\n  \"proven\": %s,\n  \"unstable_relus\": %d,\n  \"seconds\": "
      "%.6f,\n",
      shardbound_property_proven(prop, region, shardbound_bounds_spec_lower(b))
          ? "true"
          : "false",
      shardbound_bounds_unstable_relus(b), seconds);
  if (!json_memory(out, session, &error)) {
    g_printerr("shardbound bounds: %s\n", error->message);
    return sb_cli_error_status(error);
  }
  g_string_append(out, "}\n");
  fputs(out->str, stdout);
  return 0;
}

int sb_cmd_bounds(int argc, char **argv) {
  g_autofree char *method_name = NULL;
  SbCliBackendOptions bo = {0};
  gboolean json = FALSE;
  g_autoptr(ShardboundSettings) settings = shardbound_settings_new();
  static const SbCliSetting table[] = {
      {"intersect-ibp", "intersect_ibp", "true"},
      {"iterations", "iterations", NULL},
      {"final-iterations", "final_iterations", NULL},
      {"lr", "lr", NULL},
      {"patience", "patience", NULL},
      {NULL}};
  SbCliSettings binding = {settings, table};
  GOptionEntry setting_entries[] = {
      {"intersect-ibp", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK,
       sb_cli_setting_option,
       "Keep the tighter of CROWN and IBP intermediate bounds (default: "
       "CROWN's, as auto_LiRPA)",
       NULL},
      {"iterations", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "alpha-CROWN: Adam steps per start node (default 20)", "N"},
      {"final-iterations", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "alpha-CROWN: Adam steps for the outputs and the spec (default 50)",
       "N"},
      {"lr", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "alpha-CROWN: learning rate (default 0.5)", "X"},
      {"patience", 0, 0, G_OPTION_ARG_CALLBACK, sb_cli_setting_option,
       "alpha-CROWN: stop after N steps without improvement (default 5)", "N"},
      {NULL}};
  GOptionEntry entries[] = {
      {"method", 'm', 0, G_OPTION_ARG_STRING, &method_name,
       "Bound method: ibp, crown or alpha-crown (default crown)", "METHOD"},
      {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL},
      {NULL}};
  g_autoptr(GOptionContext) oc =
      g_option_context_new("MODEL.onnx PROPERTY.vnnlib");
  g_autoptr(GError) error = NULL;
  g_option_context_set_summary(oc,
                               "Compute bounds of the network outputs and of "
                               "every atom of the property's unsafe region.");
  sb_cli_add_setting_options(oc, setting_entries, &binding);
  g_option_context_add_main_entries(oc, entries, NULL);
  sb_cli_add_backend_options(oc, &bo);
  gboolean parsed = g_option_context_parse(oc, &argc, &argv, &error);
  g_autoptr(ShardboundSession) session = NULL;
  g_auto(SbCliJoined) joined = 0;
  g_autoptr(ShardboundNetwork) net = NULL;
  g_autoptr(ShardboundProperty) prop = NULL;
  ShardboundMethod method = SHARDBOUND_METHOD_CROWN;
  int status = 0;
  if (!parsed) {
    g_printerr("shardbound bounds: %s\n", error->message);
    status = 2;
  } else if (argc != 3) {
    g_printerr("shardbound bounds: expected MODEL.onnx and PROPERTY.vnnlib "
               "(see --help)\n");
    status = 2;
  } else if ((method_name != NULL &&
              !shardbound_method_parse(method_name, &method, &error)) ||
             (session = sb_cli_open_session(&bo, &error)) == NULL ||
             !sb_cli_load_problem(session, argv[1], argv[2], &net, &prop,
                                  &error)) {
    g_printerr("shardbound bounds: %s\n", error->message);
    status = sb_cli_error_status(error);
  } else
    status = run_bounds(session, net, prop, method, settings, json, argv);
  sb_cli_backend_options_clear(&bo);
  return status;
}
