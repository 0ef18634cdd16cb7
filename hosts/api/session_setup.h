/* SPDX-License-Identifier: MIT */
/* Opening a backend as a host does: configuration, registry, backend
 * choice and a context with the requested options (behind
 * shardbound_session_open). */
#ifndef SB_SESSION_SETUP_H
#define SB_SESSION_SETUP_H

#include <glib.h>
#include "plugin/shardbound-plugin.h"

G_BEGIN_DECLS

typedef struct {
  const char *backend;        /* NULL: configured, else the default */
  const char *backend_path;   /* NULL: configured search path */
  const char *config_file;    /* NULL: the XDG configuration file */
  int ranks;                  /* 0: the backend's default */
  const char *const *options; /* NULL-terminated "key=value", or NULL */
} SbSessionRequest;

typedef struct {
  SbConfig *config;
  SbRegistry *registry;
  SbSession *session;
} SbSessionSetup;

/* Errors: SB_PLUGIN_ERROR_CONFIG for bad options or files,
 * SB_PLUGIN_ERROR_NOT_FOUND / _REFUSED for the backend choice,
 * SB_PLUGIN_ERROR_BACKEND when the backend itself failed. */
SbSessionSetup *sb_session_setup(const SbSessionRequest *request,
                                 GError **error);
void sb_session_setup_free(SbSessionSetup *setup);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SbSessionSetup, sb_session_setup_free)

G_END_DECLS

#endif
