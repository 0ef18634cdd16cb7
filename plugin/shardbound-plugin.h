/* SPDX-License-Identifier: MIT */
/* libshardbound: how a host finds, validates, configures and opens backends. */
#ifndef SHARDBOUND_PLUGIN_H
#define SHARDBOUND_PLUGIN_H

#include <glib.h>
#include "abi/shardbound.h"

G_BEGIN_DECLS

#define SB_PLUGIN_ERROR (sb_plugin_error_quark())
GQuark sb_plugin_error_quark(void);
typedef enum {
  SB_PLUGIN_ERROR_NOT_FOUND, /* no backend of that name */
  SB_PLUGIN_ERROR_REFUSED,   /* the backend exists but was refused */
  SB_PLUGIN_ERROR_CONFIG,    /* bad configuration file / option */
  SB_PLUGIN_ERROR_BACKEND    /* a backend call returned an error status */
} SbPluginError;

/* ---- configuration ------------------------------------------------------
 * Precedence: built-in defaults < configuration file < environment
 * (SHARDBOUND_BACKEND_PATH, SHARDBOUND_BACKEND) < command line.
 * File: $XDG_CONFIG_HOME/shardbound/shardbound.conf (g_get_user_config_dir),
 * a GKeyFile with a [host] group (keys: backend, backend_path) and one
 * [backend NAME] group per backend whose keys are passed to it as options. */
typedef struct _SbConfig SbConfig;

SbConfig *sb_config_new(void);
void sb_config_free(SbConfig *config);
/* Loads one file; a missing default file is not an error, a malformed one
 * is (the message names the file and line). */
gboolean sb_config_load_file(SbConfig *config, const char *path,
                             GError **error);
gboolean sb_config_load_default(SbConfig *config, GError **error);
void sb_config_apply_environment(SbConfig *config);
/* Command-line overrides. */
void sb_config_set_backend(SbConfig *config, const char *name);
void sb_config_set_backend_path(SbConfig *config, const char *path_list);
/* "key=value" for the selected backend (-o on the command line). */
gboolean sb_config_set_option_string(SbConfig *config, const char *key_value,
                                     GError **error);
void sb_config_set_option(SbConfig *config, const char *backend,
                          const char *key, const char *value);
/* NULL when none was chosen anywhere (the host picks the default). */
const char *sb_config_get_backend(const SbConfig *config);
/* Directories to search, in order (NULL-terminated, owned by config). */
const char *const *sb_config_get_backend_path(const SbConfig *config);
/* Options for backend `name`: file group overlaid with command-line ones.
 * Ownership: the array and strings belong to config; valid until the next
 * change to config. */
const sb_option *sb_config_get_options(SbConfig *config, const char *name,
                                       size_t *n_options);

/* ---- registry -----------------------------------------------------------*/
typedef struct {
  char *name; /* from the file name shardbound-backend-NAME.so */
  char *path;
  const sb_backend_v1 *desc; /* NULL when refused */
  char *refusal; /* why it was refused (names file, versions, remedy) */
  guint abi_major, abi_minor; /* as declared by the backend (0 if unknown) */
  gboolean probed; /* opened and validated yet; until then desc and refusal
                      are both NULL */
} SbBackendEntry;

typedef struct _SbRegistry SbRegistry;

SbRegistry *sb_registry_new(void);
void sb_registry_free(SbRegistry *registry);
/* The host description handed to every backend (logs through g_log). */
const sb_host_v1 *sb_registry_host(const SbRegistry *registry);
/* Scans one directory for shardbound-backend-*.so and records every file
 * found without opening it. A file is opened and validated (accepted or
 * refused, never failing on a bad backend) the first time its name is looked
 * up, or when sb_registry_entries lists them all. */
void sb_registry_load_dir(SbRegistry *registry, const char *dir);
/* Scans every directory of the configured search path. When none is
 * configured: the backends of the build tree when the running program is
 * part of that build tree (an uninstalled run), else the installed
 * $(pkglibdir)/backends. */
void sb_registry_load_config(SbRegistry *registry, const SbConfig *config);
/* All entries, accepted and refused, in discovery order (SbBackendEntry*);
 * opens and validates every file not probed yet. */
const GPtrArray *sb_registry_entries(const SbRegistry *registry);
/* Accepted backend of that name, or NULL; opens only the files of that
 * name. */
const SbBackendEntry *sb_registry_lookup(const SbRegistry *registry,
                                         const char *name);
/* Name of the default backend: "cuda" when accepted, else "cpu". Opens the
 * cuda backend to find out only on a machine with an NVIDIA driver
 * (/dev/nvidiactl or WSL's /dev/dxg). */
const char *sb_registry_default_name(const SbRegistry *registry);

/* ---- opening a backend --------------------------------------------------*/
/* A backend context with its descriptor. */
typedef struct {
  const sb_backend_v1 *be;
  sb_context *ctx;
  char *name;
} SbSession;

/* Finds `name` (NULL: config's choice, else the default) and creates a
 * context with the configured options. Errors name the backend. */
SbSession *sb_session_open(SbRegistry *registry, SbConfig *config,
                           const char *name, GError **error);
void sb_session_close(SbSession *session);
/* Turns a failed status into a GError: "<backend>: <what>: <status
 * string>: <last_error>". Returns FALSE when status != SB_OK. */
gboolean sb_session_check(SbSession *session, int status, const char *what,
                          GError **error);

/* Ranks that are processes (ABI 1.2, docs/embedding.md): this process's
 * index (0 prints and writes) and the number of processes that run the
 * session's ranks; 0 and 1 for a backend older than 1.2. */
int sb_session_process_index(SbSession *session);
int sb_session_process_count(SbSession *session);
/* buf [bytes] of every process := process 0's; TRUE at once with one
 * process. Collective: every process calls it at the same point. */
gboolean sb_session_broadcast(SbSession *session, void *buf, gsize bytes,
                              GError **error);

/* ---- configuration and registry introspection, for `shardbound backends` */
/* The configuration file that was loaded, or NULL when none was. */
const char *sb_config_get_file(const SbConfig *config);
/* Directories scanned so far, in order (NULL-terminated, owned by registry). */
const char *const *sb_registry_searched_dirs(const SbRegistry *registry);
/* Comma-separated names of the SB_CAP_* flags set in `caps` ("linear,relu"),
 * unknown bits as one hexadecimal mask, "none" for 0. Free with g_free. */
char *sb_capabilities_to_string(guint64 caps);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SbConfig, sb_config_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SbRegistry, sb_registry_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SbSession, sb_session_close)

G_END_DECLS

#endif
