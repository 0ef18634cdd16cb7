/* SPDX-License-Identifier: MIT */
/* Discovers backend shared objects on the search path and, when one is
 * needed, validates it and records it as accepted or refused, never
 * stopping at a bad one. A command opens only the backend it runs on: a
 * trial of every backend would load every runtime (CUDA's alone costs
 * tens of milliseconds and hundreds of megabytes on a machine without a
 * GPU). */
#include <gmodule.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/shardbound-plugin.h"
#include "plugin/validate.h"

#define FILE_PREFIX "shardbound-backend-"
#define FILE_SUFFIX "." G_MODULE_SUFFIX

/* Room for a backend's context_create error text in trial creation. */
#define TRIAL_ERROR_SIZE 512

struct _SbRegistry {
  sb_host_v1 host;
  GPtrArray *entries;    /* SbBackendEntry*, discovery order */
  GPtrArray *dirs;       /* char*, NULL-terminated: directories scanned */
  GHashTable *seen_dirs; /* canonical directory names already scanned */
};

static void probe_entry(SbRegistry *registry, SbBackendEntry *entry);

static void host_log(void *user_data, sb_log_level level, const char *message) {
  if (message == NULL)
    return;
  /* G_LOG_LEVEL_ERROR would abort the host: a backend's error is reported,
   * and the status it returns decides what happens next. */
  switch (level) {
  case SB_LOG_ERROR:
    g_log("shardbound", G_LOG_LEVEL_WARNING, "backend error: %s", message);
    break;
  case SB_LOG_WARNING:
    g_log("shardbound", G_LOG_LEVEL_WARNING, "%s", message);
    break;
  case SB_LOG_INFO:
    g_log("shardbound", G_LOG_LEVEL_INFO, "%s", message);
    break;
  default:
    g_log("shardbound", G_LOG_LEVEL_DEBUG, "%s", message);
    break;
  }
}

static void entry_free(gpointer data) {
  SbBackendEntry *entry = data;
  g_free(entry->name);
  g_free(entry->path);
  g_free(entry->refusal);
  g_free(entry);
}

SbRegistry *sb_registry_new(void) {
  SbRegistry *registry = g_new0(SbRegistry, 1);
  registry->host.struct_size = sizeof(sb_host_v1);
  registry->host.abi_major = SB_ABI_MAJOR;
  registry->host.abi_minor = SB_ABI_MINOR;
  registry->host.log = host_log;
  registry->host.user_data = registry;
  registry->entries = g_ptr_array_new_with_free_func(entry_free);
  registry->dirs = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(registry->dirs, NULL);
  registry->seen_dirs =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  return registry;
}

/* Accepted modules stay resident (descriptors point into them), so freeing
 * the registry releases only its own bookkeeping. */
void sb_registry_free(SbRegistry *registry) {
  if (registry == NULL)
    return;
  g_ptr_array_unref(registry->entries);
  g_ptr_array_unref(registry->dirs);
  g_hash_table_unref(registry->seen_dirs);
  g_free(registry);
}

const sb_host_v1 *sb_registry_host(const SbRegistry *registry) {
  g_return_val_if_fail(registry != NULL, NULL);
  return &registry->host;
}

/* Lookups take a const registry because, to the caller, finding a backend
 * changes nothing; opening files on first use is the registry's own
 * bookkeeping. */
static SbRegistry *mutable_registry(const SbRegistry *registry) {
  return (SbRegistry *)registry;
}

const GPtrArray *sb_registry_entries(const SbRegistry *registry) {
  g_return_val_if_fail(registry != NULL, NULL);
  for (guint i = 0; i < registry->entries->len; i++)
    probe_entry(mutable_registry(registry),
                g_ptr_array_index(registry->entries, i));
  return registry->entries;
}

const char *const *sb_registry_searched_dirs(const SbRegistry *registry) {
  g_return_val_if_fail(registry != NULL, NULL);
  return (const char *const *)registry->dirs->pdata;
}

const SbBackendEntry *sb_registry_lookup(const SbRegistry *registry,
                                         const char *name) {
  g_return_val_if_fail(registry != NULL && name != NULL, NULL);
  for (guint i = 0; i < registry->entries->len; i++) {
    SbBackendEntry *entry = g_ptr_array_index(registry->entries, i);
    if (strcmp(entry->name, name) != 0)
      continue;
    probe_entry(mutable_registry(registry), entry);
    if (entry->desc != NULL)
      return entry;
  }
  return NULL;
}

/* Whether this machine has an NVIDIA driver at all: its control node on
 * Linux, or WSL's GPU node. Without either no CUDA context can be created,
 * so choosing the default need not load the CUDA runtime to find that out
 * (about 70 ms and 200 MB of resident memory). */
static gboolean gpu_driver_present(void) {
  static const char *const nodes[] = {"/dev/nvidiactl", "/dev/dxg"};
  for (gsize i = 0; i < G_N_ELEMENTS(nodes); i++)
    if (g_file_test(nodes[i], G_FILE_TEST_EXISTS))
      return TRUE;
  return FALSE;
}

/* cuda when it works here, else cpu. Asking for cuda by name still opens
 * it, so its own refusal (no device, no driver) reaches the user. */
const char *sb_registry_default_name(const SbRegistry *registry) {
  return gpu_driver_present() && sb_registry_lookup(registry, "cuda") != NULL
             ? "cuda"
             : "cpu";
}

/* Runs the backend's code: the entry, then a trial context. Returns NULL
 * when accepted, else the refusal; *ran_code says whether any of the
 * backend's functions were called. */
static char *probe_module(SbRegistry *registry, GModule *module,
                          const char *path, const char *name,
                          SbBackendEntry *entry, gboolean *ran_code) {
  *ran_code = FALSE;
  gpointer symbol = NULL;
  if (!g_module_symbol(module, SB_ENTRY_SYMBOL_V1, &symbol) || symbol == NULL)
    return sb_refusal_new(
        path, FALSE, 0, 0,
        "no entry symbol " SB_ENTRY_SYMBOL_V1
        " (a backend for another ABI major, or not a shardbound backend)",
        "rebuild the backend against shardbound ABI 1.x, "
        "exporting " SB_ENTRY_SYMBOL_V1);

  sb_backend_get_v1_fn get = (sb_backend_get_v1_fn)symbol;
  const sb_backend_v1 *desc = NULL;
  *ran_code = TRUE;
  int status = get(&registry->host, &desc);
  if (status != SB_OK) {
    g_autofree char *problem =
        g_strdup_printf(SB_ENTRY_SYMBOL_V1 " failed with status %d (%s)",
                        status, sb_status_to_string(status));
    return sb_refusal_new(path, FALSE, 0, 0, problem,
                          "see the backend's log messages above, or "
                          "remove it from the search path");
  }

  char *refusal = sb_descriptor_validate(desc, path, name, &entry->abi_major,
                                         &entry->abi_minor);
  if (refusal != NULL)
    return refusal;

  /* A backend that cannot create a context on this machine (no GPU, no
   * driver) is refused now, so the default falls back to one that works. */
  char error[TRIAL_ERROR_SIZE] = "";
  sb_context *ctx = NULL;
  status =
      desc->context_create(&registry->host, NULL, 0, &ctx, error, sizeof error);
  error[sizeof error - 1] = '\0';
  if (status != SB_OK || ctx == NULL) {
    g_autofree char *problem =
        status != SB_OK
            ? g_strdup_printf("trial context_create failed: %s: %s",
                              sb_status_to_string(status),
                              error[0] != '\0' ? error : "no message")
            : g_strdup("trial context_create returned SB_OK but no "
                       "context");
    return sb_refusal_new(path, TRUE, entry->abi_major, entry->abi_minor,
                          problem,
                          "provide what the backend needs on this machine "
                          "(device, driver, libraries) or remove it from "
                          "the search path");
  }
  desc->context_destroy(ctx);

  if (desc->abi_minor > SB_ABI_MINOR)
    g_debug("%s: built for ABI %u.%u, newer than the host's %d.%d; the "
            "members it appended are ignored",
            path, desc->abi_major, desc->abi_minor, SB_ABI_MAJOR, SB_ABI_MINOR);
  entry->desc = desc;
  return NULL;
}

/* Records a file found on the search path without opening it: a backend's
 * code (and the runtimes it links, such as CUDA's) is loaded only when the
 * backend is asked for by name or the whole list is wanted. */
static void load_file(SbRegistry *registry, const char *dir,
                      const char *file_name) {
  SbBackendEntry *entry = g_new0(SbBackendEntry, 1);
  entry->name =
      g_strndup(file_name + strlen(FILE_PREFIX),
                strlen(file_name) - strlen(FILE_PREFIX) - strlen(FILE_SUFFIX));
  entry->path = g_build_filename(dir, file_name, NULL);
  g_ptr_array_add(registry->entries, entry);
}

/* The accepted entry of that name discovered before `entry`, probing the
 * earlier ones as needed so that the first working copy wins. */
static const SbBackendEntry *earlier_accepted(SbRegistry *registry,
                                              const SbBackendEntry *entry) {
  for (guint i = 0; i < registry->entries->len; i++) {
    SbBackendEntry *other = g_ptr_array_index(registry->entries, i);
    if (other == entry)
      break;
    if (strcmp(other->name, entry->name) != 0)
      continue;
    probe_entry(registry, other);
    if (other->desc != NULL)
      return other;
  }
  return NULL;
}

/* Opens and validates one discovered file, once; afterwards the entry is
 * either accepted (desc) or refused (refusal). */
static void probe_entry(SbRegistry *registry, SbBackendEntry *entry) {
  if (entry->probed)
    return;
  entry->probed = TRUE;

  if (entry->name[0] == '\0') {
    entry->refusal = sb_refusal_new(
        entry->path, FALSE, 0, 0, "the file name carries no backend name",
        "rename the file to shardbound-backend-NAME." G_MODULE_SUFFIX);
    return;
  }
  const SbBackendEntry *first = earlier_accepted(registry, entry);
  if (first != NULL) {
    g_autofree char *problem =
        g_strdup_printf("duplicate backend '%s', already loaded from %s",
                        entry->name, first->path);
    entry->refusal = sb_refusal_new(
        entry->path, FALSE, 0, 0, problem,
        "remove one of the two copies, or order the search path so the "
        "wanted one comes first");
    return;
  }
  if (!g_file_test(entry->path, G_FILE_TEST_IS_REGULAR)) {
    entry->refusal =
        sb_refusal_new(entry->path, FALSE, 0, 0, "not a regular file",
                       "remove it from the backend directory");
    return;
  }

  GModule *module = g_module_open(entry->path, G_MODULE_BIND_LOCAL);
  if (module == NULL) {
    g_autofree char *problem =
        g_strdup_printf("not a loadable shared object: %s", g_module_error());
    entry->refusal = sb_refusal_new(
        entry->path, FALSE, 0, 0, problem,
        "remove the file, or rebuild it as a shardbound backend for this "
        "machine");
    return;
  }
  gboolean ran_code = FALSE;
  entry->refusal = probe_module(registry, module, entry->path, entry->name,
                                entry, &ran_code);
  /* Once the backend's code has run, it may have left threads or handlers
   * behind, so only a module that never ran is unloaded. */
  if (entry->refusal == NULL || ran_code)
    g_module_make_resident(module);
  else
    g_module_close(module);
}

static int compare_names(gconstpointer a, gconstpointer b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void sb_registry_load_dir(SbRegistry *registry, const char *dir) {
  g_return_if_fail(registry != NULL && dir != NULL);
  /* The same directory twice on the path would otherwise refuse every
   * backend in it as a duplicate of itself. */
  char *real = realpath(dir, NULL);
  g_autofree char *canonical =
      real != NULL ? g_strdup(real) : g_canonicalize_filename(dir, NULL);
  free(real);
  if (!g_hash_table_add(registry->seen_dirs, g_strdup(canonical)))
    return;
  g_ptr_array_insert(registry->dirs, registry->dirs->len - 1, g_strdup(dir));

  GError *error = NULL;
  GDir *handle = g_dir_open(dir, 0, &error);
  if (handle == NULL) {
    /* A missing directory on the path is normal (an uninstalled build);
     * one that exists but cannot be read is worth saying. */
    if (g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_debug("backend directory %s: %s", dir, error->message);
    else
      g_warning("cannot scan backend directory %s: %s", dir, error->message);
    g_error_free(error);
    return;
  }
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  const char *file_name;
  while ((file_name = g_dir_read_name(handle)) != NULL)
    if (g_str_has_prefix(file_name, FILE_PREFIX) &&
        g_str_has_suffix(file_name, FILE_SUFFIX) &&
        strlen(file_name) >= strlen(FILE_PREFIX) + strlen(FILE_SUFFIX))
      g_ptr_array_add(names, g_strdup(file_name));
  g_dir_close(handle);

  /* Directory order is arbitrary; sorting keeps listings and the choice
   * between duplicates reproducible. */
  g_ptr_array_sort(names, compare_names);
  for (guint i = 0; i < names->len; i++)
    load_file(registry, dir, g_ptr_array_index(names, i));
}

void sb_registry_load_config(SbRegistry *registry, const SbConfig *config) {
  g_return_if_fail(registry != NULL);
  const char *const *dirs =
      config != NULL ? sb_config_get_backend_path(config) : NULL;
  g_autoptr(SbConfig) defaults = NULL;
  if (dirs == NULL || dirs[0] == NULL) {
    defaults = sb_config_new();
    dirs = sb_config_get_backend_path(defaults);
  }
  for (; *dirs != NULL; dirs++)
    sb_registry_load_dir(registry, *dirs);
}
