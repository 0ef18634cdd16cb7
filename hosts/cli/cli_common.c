/* SPDX-License-Identifier: MIT */
/* Backend-selection options, sessions and problem loading shared by
 * bounds, verify and bench. */
#include "config.h"

#include "cli_common.h"
#include "cli_processes.h"

void sb_cli_add_backend_options(GOptionContext *context,
                                SbCliBackendOptions *o) {
  GOptionEntry entries[] = {
      {"backend", 'b', 0, G_OPTION_ARG_STRING, &o->backend,
       "Backend to run on (default: configured, else cuda if usable, else cpu)",
       "NAME"},
      {"ranks", 'P', 0, G_OPTION_ARG_INT, &o->ranks,
       "Number of ranks for a multi-rank backend", "P"},
      {"option", 'o', 0, G_OPTION_ARG_STRING_ARRAY, &o->options,
       "Backend option (repeatable)", "KEY=VALUE"},
      {"backend-path", 0, 0, G_OPTION_ARG_STRING, &o->backend_path,
       "Directories to search for backends", "DIR[:DIR]"},
      {"config", 0, 0, G_OPTION_ARG_FILENAME, &o->config_file,
       "Configuration file instead of the XDG one", "FILE"},
      {NULL}};
  /* In the main group, so that plain --help lists them. */
  g_option_context_add_main_entries(context, entries, NULL);
}

void sb_cli_backend_options_clear(SbCliBackendOptions *o) {
  g_clear_pointer(&o->backend, g_free);
  g_clear_pointer(&o->backend_path, g_free);
  g_clear_pointer(&o->config_file, g_free);
  g_clear_pointer(&o->options, g_strfreev);
}

ShardboundSession *sb_cli_open_session(const SbCliBackendOptions *o,
                                       GError **error) {
  ShardboundSession *session = shardbound_session_open(
      o->backend, o->ranks, (const char *const *)o->options, o->backend_path,
      o->config_file, error);
  if (session != NULL)
    sb_cli_join_processes(session);
  return session;
}

gboolean sb_cli_is_process_zero(const ShardboundSession *session) {
  return session == NULL || shardbound_session_process_index(session) == 0;
}

gboolean sb_cli_load_problem(ShardboundSession *session, const char *onnx,
                             const char *vnnlib, ShardboundNetwork **network,
                             ShardboundProperty **property, GError **error) {
  *network = NULL;
  *property = NULL;
  /* Both loaders name the file in their errors. */
  g_autoptr(ShardboundProperty) p = shardbound_property_load(vnnlib, error);
  if (p == NULL)
    return FALSE;
  g_autoptr(ShardboundNetwork) n =
      shardbound_network_load(session, onnx, error);
  if (n == NULL)
    return FALSE;
  if (!shardbound_property_check_network(p, n, error)) {
    g_prefix_error(error, "%s and %s: ", vnnlib, onnx);
    return FALSE;
  }
  *network = g_steal_pointer(&n);
  *property = g_steal_pointer(&p);
  return TRUE;
}

int sb_cli_error_status(const GError *error) {
  if (!g_error_matches(error, SHARDBOUND_HOST_ERROR, error->code))
    return 1;
  switch ((ShardboundHostError)error->code) {
  case SHARDBOUND_HOST_ERROR_BACKEND:
  case SHARDBOUND_HOST_ERROR_NO_MEMORY:
    return 1;
  default:
    return 2;
  }
}

gboolean sb_cli_setting_option(const char *option_name, const char *value,
                               gpointer data, GError **error) {
  const SbCliSettings *binding = data;
  const char *name =
      g_str_has_prefix(option_name, "--") ? option_name + 2 : option_name;
  const gboolean is_short = option_name[0] == '-' && option_name[1] != '-' &&
                            option_name[1] != '\0' && option_name[2] == '\0';
  for (const GOptionEntry *e = binding->entries; is_short && e && e->long_name;
       e++)
    if (e->short_name == option_name[1])
      name = e->long_name;
  for (const SbCliSetting *t = binding->table; t->option != NULL; t++)
    if (g_str_equal(t->option, name))
      return shardbound_settings_set(binding->settings, t->key,
                                     t->fixed ? t->fixed : value, error);
  g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
              "%s sets no setting (a bug)", option_name);
  return FALSE;
}

void sb_cli_add_setting_options(GOptionContext *context,
                                const GOptionEntry *entries,
                                SbCliSettings *binding) {
  binding->entries = entries;
  GOptionGroup *group = g_option_group_new(NULL, NULL, NULL, binding, NULL);
  g_option_group_add_entries(group, entries);
  g_option_context_set_main_group(context, group);
}
