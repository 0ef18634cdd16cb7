/* SPDX-License-Identifier: MIT */
/* Host configuration: which backend, where to find backends and what options
 * to pass them, layered as file < environment < command line. */
#include <string.h>

#include "plugin/shardbound-plugin.h"

#ifndef SB_BACKEND_DIR
#error "SB_BACKEND_DIR must name the installed backend directory"
#endif

/* Each layer is kept apart, so precedence does not depend on the order in
 * which a host happens to call the setters. */
enum { LAYER_FILE, LAYER_ENV, LAYER_CLI, N_LAYERS };

/* Key under which command-line options for "the selected backend" are kept
 * until a backend is actually opened; no real backend has an empty name. */
#define SELECTED_BACKEND ""

typedef struct {
  char *key;
  char *value;
} OptionPair;

/* What sb_config_get_options hands out: the array plus the strings it
 * points to, so it stays valid while other names are asked for. */
typedef struct {
  GArray *options;    /* sb_option */
  GPtrArray *strings; /* owned copies the options point into */
} OptionView;

struct _SbConfig {
  char *file;
  char *backend[N_LAYERS];
  char **path[N_LAYERS];
  GHashTable *file_options; /* backend name -> GPtrArray of OptionPair */
  GHashTable *cli_options;  /* backend name or SELECTED_BACKEND -> same */
  GHashTable *views;        /* backend name -> OptionView */
  char **default_path;
};

static void option_pair_free(gpointer data) {
  OptionPair *pair = data;
  g_free(pair->key);
  g_free(pair->value);
  g_free(pair);
}

static void option_view_free(gpointer data) {
  OptionView *view = data;
  g_array_unref(view->options);
  g_ptr_array_unref(view->strings);
  g_free(view);
}

static GHashTable *option_table_new(void) {
  return g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                               (GDestroyNotify)g_ptr_array_unref);
}

/* Where backends are found when nothing is configured. A program that runs
 * from the build tree libshardbound was built in (the `shardbound` command
 * before `make install`, a test) uses that tree's freshly built backends, as
 * GStreamer's and meson's uninstalled runs do; any other program uses the
 * installed directory. */
static char *default_backend_dir(void) {
#ifdef SB_BUILD_BACKEND_DIR
  g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
  g_autofree char *top = g_path_get_dirname(SB_BUILD_BACKEND_DIR);
  g_autofree char *prefix = g_path_get_dirname(top);
  if (exe != NULL && g_str_has_prefix(exe, prefix) &&
      exe[strlen(prefix)] == G_DIR_SEPARATOR &&
      g_file_test(SB_BUILD_BACKEND_DIR, G_FILE_TEST_IS_DIR))
    return g_strdup(SB_BUILD_BACKEND_DIR);
#endif
  return g_strdup(SB_BACKEND_DIR);
}

SbConfig *sb_config_new(void) {
  SbConfig *config = g_new0(SbConfig, 1);
  config->file_options = option_table_new();
  config->cli_options = option_table_new();
  config->views =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, option_view_free);
  config->default_path = g_new0(char *, 2);
  config->default_path[0] = default_backend_dir();
  return config;
}

void sb_config_free(SbConfig *config) {
  if (config == NULL)
    return;
  for (int i = 0; i < N_LAYERS; i++) {
    g_free(config->backend[i]);
    g_strfreev(config->path[i]);
  }
  g_free(config->file);
  g_hash_table_unref(config->file_options);
  g_hash_table_unref(config->cli_options);
  g_hash_table_unref(config->views);
  g_strfreev(config->default_path);
  g_free(config);
}

/* Any change may alter what sb_config_get_options returns. */
static void config_changed(SbConfig *config) {
  g_hash_table_remove_all(config->views);
}

static void option_list_set(GHashTable *table, const char *backend,
                            const char *key, const char *value) {
  GPtrArray *list = g_hash_table_lookup(table, backend);
  if (list == NULL) {
    list = g_ptr_array_new_with_free_func(option_pair_free);
    g_hash_table_insert(table, g_strdup(backend), list);
  }
  for (guint i = 0; i < list->len; i++) {
    OptionPair *pair = g_ptr_array_index(list, i);
    if (strcmp(pair->key, key) == 0) {
      g_free(pair->value);
      pair->value = g_strdup(value);
      return;
    }
  }
  OptionPair *pair = g_new(OptionPair, 1);
  pair->key = g_strdup(key);
  pair->value = g_strdup(value);
  g_ptr_array_add(list, pair);
}

/* Splits a colon-separated list, dropping empty entries; relative entries
 * are resolved against `base_dir` when one is given. NULL when empty. */
static char **split_path_list(const char *path_list, const char *base_dir) {
  if (path_list == NULL)
    return NULL;
  g_auto(GStrv) parts = g_strsplit(path_list, G_SEARCHPATH_SEPARATOR_S, -1);
  GPtrArray *dirs = g_ptr_array_new();
  for (char **p = parts; *p != NULL; p++) {
    g_strstrip(*p);
    if (**p == '\0')
      continue;
    if (base_dir != NULL && !g_path_is_absolute(*p))
      g_ptr_array_add(dirs, g_build_filename(base_dir, *p, NULL));
    else
      g_ptr_array_add(dirs, g_strdup(*p));
  }
  if (dirs->len == 0) {
    g_ptr_array_free(dirs, TRUE);
    return NULL;
  }
  g_ptr_array_add(dirs, NULL);
  return (char **)g_ptr_array_free(dirs, FALSE);
}

/* Whether GKeyFile accepts the first n_lines of lines. */
static gboolean prefix_parses(char **lines, guint n_lines) {
  g_autoptr(GString) prefix = g_string_new(NULL);
  for (guint i = 0; i < n_lines; i++) {
    g_string_append(prefix, lines[i]);
    g_string_append_c(prefix, '\n');
  }
  g_autoptr(GKeyFile) probe = g_key_file_new();
  return g_key_file_load_from_data(probe, prefix->str, prefix->len,
                                   G_KEY_FILE_NONE, NULL);
}

/* GKeyFile names the offending text but not its line number. It parses
 * line by line and stops at the first bad one, so a prefix parses exactly
 * when it ends before that line: a binary search over prefix lengths finds
 * it in O(n log n), where trying every prefix would be quadratic in the
 * file's length (a fuzzer's megabyte-long file took minutes). */
static guint find_malformed_line(const char *data) {
  g_auto(GStrv) lines = g_strsplit(data, "\n", -1);
  guint good = 0, bad = g_strv_length(lines); /* prefix lengths */
  if (prefix_parses(lines, bad))
    return 0;
  while (bad - good > 1) {
    guint mid = good + (bad - good) / 2;
    if (prefix_parses(lines, mid))
      good = mid;
    else
      bad = mid;
  }
  return bad;
}

/* The string value of group/key, or NULL with an error naming the file,
 * group and key. GLib 2.74 mis-handles a value ending in a lone backslash
 * after an invalid escape: it sets one GError over another (warning on
 * stderr) and returns a string as well as the error. Such values are
 * refused here first, and any error counts as failure. */
static char *get_string_value(GKeyFile *kf, const char *path, const char *group,
                              const char *key, GError **error) {
  g_autofree char *raw = g_key_file_get_value(kf, group, key, NULL);
  size_t len = raw != NULL ? strlen(raw) : 0, backslashes = 0;
  while (backslashes < len && raw[len - 1 - backslashes] == '\\')
    backslashes++;
  if (backslashes % 2 == 1) {
    g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                "%s: [%s] %s: the value ends with an escape character "
                "(a lone backslash)",
                path, group, key);
    return NULL;
  }
  GError *local = NULL;
  char *value = g_key_file_get_string(kf, group, key, &local);
  if (local != NULL) {
    g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                "%s: [%s] %s: %s", path, group, key, local->message);
    g_error_free(local);
    g_free(value);
    return NULL;
  }
  return value;
}

static gboolean load_host_group(SbConfig *config, GKeyFile *kf,
                                const char *path, GError **error) {
  g_auto(GStrv) keys = g_key_file_get_keys(kf, "host", NULL, NULL);
  g_autofree char *dir = g_path_get_dirname(path);
  for (char **k = keys; k != NULL && *k != NULL; k++) {
    g_autofree char *value = get_string_value(kf, path, "host", *k, error);
    if (value == NULL)
      return FALSE;
    g_strstrip(value);
    if (strcmp(*k, "backend") == 0) {
      if (*value == '\0') {
        g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                    "%s: [host] backend is empty; give a backend "
                    "name such as cpu or remove the key",
                    path);
        return FALSE;
      }
      g_free(config->backend[LAYER_FILE]);
      config->backend[LAYER_FILE] = g_steal_pointer(&value);
    } else if (strcmp(*k, "backend_path") == 0) {
      g_strfreev(config->path[LAYER_FILE]);
      config->path[LAYER_FILE] = split_path_list(value, dir);
    } else {
      /* A typo here would otherwise silently do nothing. */
      g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                  "%s: unknown key '%s' in group [host]; known keys "
                  "are backend and backend_path",
                  path, *k);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean load_backend_group(SbConfig *config, GKeyFile *kf,
                                   const char *path, const char *group,
                                   GError **error) {
  g_autofree char *name = g_strstrip(g_strdup(group + strlen("backend")));
  if (*name == '\0') {
    g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                "%s: group [%s] names no backend; write [backend NAME], "
                "e.g. [backend cpu]",
                path, group);
    return FALSE;
  }
  g_auto(GStrv) keys = g_key_file_get_keys(kf, group, NULL, NULL);
  for (char **k = keys; k != NULL && *k != NULL; k++) {
    g_autofree char *value = get_string_value(kf, path, group, *k, error);
    if (value == NULL)
      return FALSE;
    option_list_set(config->file_options, name, *k, g_strstrip(value));
  }
  return TRUE;
}

gboolean sb_config_load_file(SbConfig *config, const char *path,
                             GError **error) {
  g_return_val_if_fail(config != NULL && path != NULL, FALSE);
  g_autofree char *data = NULL;
  gsize length = 0;
  GError *local = NULL;
  if (!g_file_get_contents(path, &data, &length, &local)) {
    g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                "cannot read configuration file %s: %s", path, local->message);
    g_error_free(local);
    return FALSE;
  }
  g_autoptr(GKeyFile) kf = g_key_file_new();
  if (!g_key_file_load_from_data(kf, data, length, G_KEY_FILE_NONE, &local)) {
    guint line = find_malformed_line(data);
    if (line > 0)
      g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                  "%s:%u: malformed configuration file: %s", path, line,
                  local->message);
    else
      g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                  "%s: malformed configuration file: %s", path, local->message);
    g_error_free(local);
    return FALSE;
  }

  g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
  for (char **g = groups; *g != NULL; g++) {
    gboolean ok;
    if (strcmp(*g, "host") == 0)
      ok = load_host_group(config, kf, path, error);
    else if (g_str_has_prefix(*g, "backend ") || strcmp(*g, "backend") == 0)
      ok = load_backend_group(config, kf, path, *g, error);
    else {
      g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                  "%s: unknown group [%s]; expected [host] or "
                  "[backend NAME]",
                  path, *g);
      ok = FALSE;
    }
    if (!ok) {
      config_changed(config);
      return FALSE;
    }
  }
  g_free(config->file);
  config->file = g_strdup(path);
  config_changed(config);
  return TRUE;
}

/* XDG_CONFIG_HOME is read here rather than through g_get_user_config_dir
 * alone, because GLib caches that value for the life of the process. */
static char *default_config_path(void) {
  const char *xdg = g_getenv("XDG_CONFIG_HOME");
  const char *base =
      (xdg != NULL && g_path_is_absolute(xdg)) ? xdg : g_get_user_config_dir();
  return g_build_filename(base, "shardbound", "shardbound.conf", NULL);
}

gboolean sb_config_load_default(SbConfig *config, GError **error) {
  g_return_val_if_fail(config != NULL, FALSE);
  g_autofree char *path = default_config_path();
  if (!g_file_test(path, G_FILE_TEST_EXISTS))
    return TRUE;
  return sb_config_load_file(config, path, error);
}

void sb_config_apply_environment(SbConfig *config) {
  g_return_if_fail(config != NULL);
  /* An empty variable counts as unset, as a shell user expects. */
  const char *backend = g_getenv("SHARDBOUND_BACKEND");
  g_free(config->backend[LAYER_ENV]);
  config->backend[LAYER_ENV] =
      (backend != NULL && *backend != '\0') ? g_strdup(backend) : NULL;
  g_strfreev(config->path[LAYER_ENV]);
  config->path[LAYER_ENV] =
      split_path_list(g_getenv("SHARDBOUND_BACKEND_PATH"), NULL);
  config_changed(config);
}

void sb_config_set_backend(SbConfig *config, const char *name) {
  g_return_if_fail(config != NULL);
  g_free(config->backend[LAYER_CLI]);
  config->backend[LAYER_CLI] =
      (name != NULL && *name != '\0') ? g_strdup(name) : NULL;
  config_changed(config);
}

void sb_config_set_backend_path(SbConfig *config, const char *path_list) {
  g_return_if_fail(config != NULL);
  g_strfreev(config->path[LAYER_CLI]);
  config->path[LAYER_CLI] = split_path_list(path_list, NULL);
  config_changed(config);
}

gboolean sb_config_set_option_string(SbConfig *config, const char *key_value,
                                     GError **error) {
  g_return_val_if_fail(config != NULL, FALSE);
  const char *eq = key_value != NULL ? strchr(key_value, '=') : NULL;
  if (eq == NULL || eq == key_value) {
    g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                "invalid option '%s': expected key=value, e.g. -o ranks=4",
                key_value != NULL ? key_value : "(null)");
    return FALSE;
  }
  g_autofree char *key = g_strstrip(g_strndup(key_value, eq - key_value));
  if (*key == '\0') {
    g_set_error(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG,
                "invalid option '%s': the key before '=' is empty", key_value);
    return FALSE;
  }
  sb_config_set_option(config, NULL, key, eq + 1);
  return TRUE;
}

void sb_config_set_option(SbConfig *config, const char *backend,
                          const char *key, const char *value) {
  g_return_if_fail(config != NULL && key != NULL && value != NULL);
  option_list_set(config->cli_options,
                  backend != NULL ? backend : SELECTED_BACKEND, key, value);
  config_changed(config);
}

const char *sb_config_get_backend(const SbConfig *config) {
  g_return_val_if_fail(config != NULL, NULL);
  for (int i = N_LAYERS - 1; i >= 0; i--)
    if (config->backend[i] != NULL)
      return config->backend[i];
  return NULL;
}

const char *const *sb_config_get_backend_path(const SbConfig *config) {
  g_return_val_if_fail(config != NULL, NULL);
  for (int i = N_LAYERS - 1; i >= 0; i--)
    if (config->path[i] != NULL)
      return (const char *const *)config->path[i];
  return (const char *const *)config->default_path;
}

const char *sb_config_get_file(const SbConfig *config) {
  g_return_val_if_fail(config != NULL, NULL);
  return config->file;
}

static void view_overlay(OptionView *view, GPtrArray *list) {
  for (guint i = 0; list != NULL && i < list->len; i++) {
    OptionPair *pair = g_ptr_array_index(list, i);
    char *value = g_strdup(pair->value);
    g_ptr_array_add(view->strings, value);
    gboolean replaced = FALSE;
    for (guint j = 0; j < view->options->len && !replaced; j++) {
      sb_option *opt = &g_array_index(view->options, sb_option, j);
      if (strcmp(opt->key, pair->key) == 0) {
        opt->value = value;
        replaced = TRUE;
      }
    }
    if (!replaced) {
      char *key = g_strdup(pair->key);
      g_ptr_array_add(view->strings, key);
      sb_option opt = {key, value};
      g_array_append_val(view->options, opt);
    }
  }
}

const sb_option *sb_config_get_options(SbConfig *config, const char *name,
                                       size_t *n_options) {
  g_return_val_if_fail(config != NULL && name != NULL, NULL);
  OptionView *view = g_hash_table_lookup(config->views, name);
  if (view == NULL) {
    view = g_new(OptionView, 1);
    view->options = g_array_new(FALSE, FALSE, sizeof(sb_option));
    view->strings = g_ptr_array_new_with_free_func(g_free);
    view_overlay(view, g_hash_table_lookup(config->file_options, name));
    view_overlay(view, g_hash_table_lookup(config->cli_options, name));
    /* -o options belong to the backend being opened: the chosen one, or
     * whichever default the host picks when none was chosen. */
    const char *chosen = sb_config_get_backend(config);
    if (chosen == NULL || strcmp(chosen, name) == 0)
      view_overlay(view,
                   g_hash_table_lookup(config->cli_options, SELECTED_BACKEND));
    g_hash_table_insert(config->views, g_strdup(name), view);
  }
  if (n_options != NULL)
    *n_options = view->options->len;
  return view->options->len > 0 ? (const sb_option *)view->options->data : NULL;
}
