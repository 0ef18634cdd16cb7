/* SPDX-License-Identifier: MIT */
/* Listing the backends of the search path, usable and refused. */
#include "config.h"

#include "host-private.h"

typedef struct {
  char *capabilities;
  char *abi;
} EntryText;

struct _ShardboundBackendList {
  SbConfig *config;
  SbRegistry *registry;
  EntryText *text; /* per registry entry */
  int count;
};

static const SbBackendEntry *entry(const ShardboundBackendList *list, int i) {
  if (list == NULL || i < 0 || i >= list->count)
    return NULL;
  return g_ptr_array_index(sb_registry_entries(list->registry), i);
}

ShardboundBackendList *shardbound_backend_list_new(const char *backend_path,
                                                   const char *config_file,
                                                   GError **error) {
  g_autoptr(SbConfig) config = sb_config_new();
  GError *e = NULL;
  if (config_file != NULL ? !sb_config_load_file(config, config_file, &e)
                          : !sb_config_load_default(config, &e)) {
    sb_host_propagate_error(error, e);
    return NULL;
  }
  sb_config_apply_environment(config);
  if (backend_path != NULL)
    sb_config_set_backend_path(config, backend_path);
  ShardboundBackendList *list = g_new0(ShardboundBackendList, 1);
  list->registry = sb_registry_new();
  sb_registry_load_config(list->registry, config);
  list->config = g_steal_pointer(&config);
  const GPtrArray *entries = sb_registry_entries(list->registry);
  list->count = (int)entries->len;
  list->text = g_new0(EntryText, list->count);
  for (int i = 0; i < list->count; i++) {
    const SbBackendEntry *b = g_ptr_array_index(entries, i);
    list->text[i].capabilities =
        b->desc != NULL ? sb_capabilities_to_string(b->desc->capabilities)
                        : g_strdup("");
    list->text[i].abi =
        b->abi_major != 0 ? g_strdup_printf("%u.%u", b->abi_major, b->abi_minor)
                          : g_strdup("");
  }
  return list;
}

void shardbound_backend_list_free(ShardboundBackendList *list) {
  if (list == NULL)
    return;
  for (int i = 0; i < list->count; i++) {
    g_free(list->text[i].capabilities);
    g_free(list->text[i].abi);
  }
  g_free(list->text);
  sb_registry_free(list->registry);
  sb_config_free(list->config);
  g_free(list);
}

int shardbound_backend_list_count(const ShardboundBackendList *list) {
  return list != NULL ? list->count : 0;
}

const char *shardbound_backend_list_name(const ShardboundBackendList *list,
                                         int i) {
  const SbBackendEntry *b = entry(list, i);
  return b != NULL ? b->name : NULL;
}

const char *shardbound_backend_list_path(const ShardboundBackendList *list,
                                         int i) {
  const SbBackendEntry *b = entry(list, i);
  return b != NULL ? b->path : NULL;
}

const char *shardbound_backend_list_refusal(const ShardboundBackendList *list,
                                            int i) {
  const SbBackendEntry *b = entry(list, i);
  return b != NULL && b->desc == NULL ? b->refusal : NULL;
}

const char *
shardbound_backend_list_capabilities(const ShardboundBackendList *list, int i) {
  return entry(list, i) != NULL ? list->text[i].capabilities : NULL;
}

const char *shardbound_backend_list_abi(const ShardboundBackendList *list,
                                        int i) {
  return entry(list, i) != NULL ? list->text[i].abi : NULL;
}

const char *shardbound_backend_list_version(const ShardboundBackendList *list,
                                            int i) {
  const SbBackendEntry *b = entry(list, i);
  return b != NULL && b->desc != NULL ? b->desc->version : NULL;
}

const char *
shardbound_backend_list_description(const ShardboundBackendList *list, int i) {
  const SbBackendEntry *b = entry(list, i);
  return b != NULL && b->desc != NULL ? b->desc->description : NULL;
}

const char *shardbound_backend_list_default(const ShardboundBackendList *list) {
  const char *name = sb_registry_default_name(list->registry);
  return sb_registry_lookup(list->registry, name) != NULL ? name : NULL;
}

const char *
shardbound_backend_list_config_file(const ShardboundBackendList *list) {
  return sb_config_get_file(list->config);
}

const char *const *
shardbound_backend_list_searched(const ShardboundBackendList *list) {
  return sb_registry_searched_dirs(list->registry);
}
