/* SPDX-License-Identifier: MIT */
/* Opening a backend by name with its configured options, and turning its
 * status codes into GErrors at the boundary. */
#include <string.h>

#include "plugin/shardbound-plugin.h"

/* "cpu, tp" or "none"; with the directories searched when none. */
static char *describe_available(SbRegistry *registry) {
  GString *out = g_string_new(NULL);
  const GPtrArray *entries = sb_registry_entries(registry);
  for (guint i = 0; i < entries->len; i++) {
    const SbBackendEntry *entry = g_ptr_array_index(entries, i);
    if (entry->desc == NULL)
      continue;
    g_string_append_printf(out, "%s%s", out->len > 0 ? ", " : "", entry->name);
  }
  if (out->len == 0) {
    g_autofree char *dirs = g_strjoinv(
        G_SEARCHPATH_SEPARATOR_S, (char **)sb_registry_searched_dirs(registry));
    g_string_append_printf(out,
                           "none (searched: %s; set "
                           "SHARDBOUND_BACKEND_PATH or [host] "
                           "backend_path)",
                           *dirs != '\0' ? dirs : "nothing");
  }
  return g_string_free(out, FALSE);
}

static const SbBackendEntry *find_refused(SbRegistry *registry,
                                          const char *name) {
  const GPtrArray *entries = sb_registry_entries(registry);
  for (guint i = 0; i < entries->len; i++) {
    const SbBackendEntry *entry = g_ptr_array_index(entries, i);
    if (entry->desc == NULL && strcmp(entry->name, name) == 0)
      return entry;
  }
  return NULL;
}

SbSession *sb_session_open(SbRegistry *registry, SbConfig *config,
                           const char *name, GError **error) {
  g_return_val_if_fail(registry != NULL, NULL);
  if (name == NULL && config != NULL)
    name = sb_config_get_backend(config);
  if (name == NULL)
    name = sb_registry_default_name(registry);

  const SbBackendEntry *entry = sb_registry_lookup(registry, name);
  if (entry == NULL) {
    g_autofree char *available = describe_available(registry);
    const SbBackendEntry *refused = find_refused(registry, name);
    if (refused != NULL)
      g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_REFUSED,
                  "backend '%s' was refused: %s; available backends: %s", name,
                  refused->refusal, available);
    else
      g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_NOT_FOUND,
                  "no backend named '%s'; available backends: %s", name,
                  available);
    return NULL;
  }

  size_t n_options = 0;
  const sb_option *options =
      config != NULL ? sb_config_get_options(config, name, &n_options) : NULL;
  char message[512] = "";
  sb_context *ctx = NULL;
  int status =
      entry->desc->context_create(sb_registry_host(registry), options,
                                  n_options, &ctx, message, sizeof message);
  message[sizeof message - 1] = '\0';
  if (status != SB_OK || ctx == NULL) {
    /* A rejected option is the user's to fix, anything else the
     * backend's or the machine's. */
    g_set_error(error, SB_PLUGIN_ERROR,
                status == SB_ERR_INVALID_ARGUMENT ? SB_PLUGIN_ERROR_CONFIG
                                                  : SB_PLUGIN_ERROR_BACKEND,
                "%s: context_create: %s: %s", name,
                sb_status_to_string(status != SB_OK ? status : SB_ERR_INTERNAL),
                message[0] != '\0' ? message : "no context returned");
    return NULL;
  }

  SbSession *session = g_new0(SbSession, 1);
  session->be = entry->desc;
  session->ctx = ctx;
  session->name = g_strdup(name);
  return session;
}

void sb_session_close(SbSession *session) {
  if (session == NULL)
    return;
  if (session->ctx != NULL)
    session->be->context_destroy(session->ctx);
  g_free(session->name);
  g_free(session);
}

gboolean sb_session_check(SbSession *session, int status, const char *what,
                          GError **error) {
  g_return_val_if_fail(session != NULL, FALSE);
  if (status == SB_OK)
    return TRUE;
  const char *detail = session->be->last_error(session->ctx);
  if (detail != NULL && detail[0] != '\0')
    g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_BACKEND,
                "%s: %s: %s: %s", session->name, what,
                sb_status_to_string(status), detail);
  else
    g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_BACKEND, "%s: %s: %s",
                session->name, what, sb_status_to_string(status));
  return FALSE;
}

static void process_info(SbSession *session, int32_t *index, int32_t *count) {
  *index = 0;
  *count = 1;
  if (SB_HAS_MEMBER(session->be, sb_backend_v1, process_info) &&
      session->be->process_info(session->ctx, index, count) != SB_OK) {
    *index = 0;
    *count = 1;
  }
}

int sb_session_process_index(SbSession *session) {
  int32_t index, count;
  process_info(session, &index, &count);
  return index;
}

int sb_session_process_count(SbSession *session) {
  int32_t index, count;
  process_info(session, &index, &count);
  return count;
}

gboolean sb_session_broadcast(SbSession *session, void *buf, gsize bytes,
                              GError **error) {
  if (sb_session_process_count(session) <= 1)
    return TRUE;
  return sb_session_check(session,
                          session->be->broadcast_host(session->ctx, buf, bytes),
                          "broadcast_host", error);
}
