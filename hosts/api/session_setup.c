/* SPDX-License-Identifier: MIT */
/* Configuration, registry and backend context for a host session. */
#include "config.h"

#include "session_setup.h"

void sb_session_setup_free(SbSessionSetup *setup) {
  if (setup == NULL)
    return;
  g_clear_pointer(&setup->session, sb_session_close);
  g_clear_pointer(&setup->registry, sb_registry_free);
  g_clear_pointer(&setup->config, sb_config_free);
  g_free(setup);
}

SbSessionSetup *sb_session_setup(const SbSessionRequest *req, GError **error) {
  g_autoptr(SbSessionSetup) setup = g_new0(SbSessionSetup, 1);
  setup->config = sb_config_new();
  if (req->config_file != NULL) {
    if (!sb_config_load_file(setup->config, req->config_file, error))
      return NULL;
  } else if (!sb_config_load_default(setup->config, error))
    return NULL;
  sb_config_apply_environment(setup->config);
  if (req->backend_path != NULL)
    sb_config_set_backend_path(setup->config, req->backend_path);
  if (req->backend != NULL)
    sb_config_set_backend(setup->config, req->backend);
  for (const char *const *o = req->options; o != NULL && *o != NULL; o++)
    if (!sb_config_set_option_string(setup->config, *o, error))
      return NULL;

  setup->registry = sb_registry_new();
  sb_registry_load_config(setup->registry, setup->config);

  const char *name = sb_config_get_backend(setup->config);
  if (name == NULL)
    name = sb_registry_default_name(setup->registry);
  const SbBackendEntry *entry = sb_registry_lookup(setup->registry, name);
  if (entry != NULL && req->ranks > 0) {
    if (entry->desc->capabilities & SB_CAP_MULTI_RANK) {
      g_autofree char *p = g_strdup_printf("%d", req->ranks);
      sb_config_set_option(setup->config, name, "ranks", p);
    } else if (req->ranks != 1) {
      g_set_error(
          error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
          "backend '%s' runs on a single rank; --ranks %d needs a multi-rank "
          "backend such as fsdp or tp",
          name, req->ranks);
      return NULL;
    }
  }
  setup->session = sb_session_open(setup->registry, setup->config, name, error);
  if (setup->session == NULL)
    return NULL;
  return g_steal_pointer(&setup);
}
