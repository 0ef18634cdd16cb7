/* SPDX-License-Identifier: MIT */
/* Private to libshardbound: checking a backend descriptor against ABI v1 and
 * wording refusals. G_GNUC_INTERNAL keeps these out of the library's
 * exported symbols, which debian/libshardbound0.symbols pins to the public
 * API of shardbound-plugin.h. */
#ifndef SB_PLUGIN_VALIDATE_H
#define SB_PLUGIN_VALIDATE_H

#include "plugin/shardbound-plugin.h"

G_BEGIN_DECLS

/* A refusal message: "<path>: refused: <problem> (backend ABI M.m, host ABI
 * 1.0); <remedy>". The backend's versions are left out when `versions_known`
 * is FALSE. Free with g_free. */
G_GNUC_INTERNAL
char *sb_refusal_new(const char *path, gboolean versions_known, guint major,
                     guint minor, const char *problem, const char *remedy);

/* Checks the static parts of `desc` (sizes, versions, function pointers,
 * name against `file_name`, the NAME of shardbound-backend-NAME.so).
 * Returns NULL when acceptable, else a refusal from sb_refusal_new. Sets
 * `major` and `minor` to the declared versions when they are readable (else 0).
 */
G_GNUC_INTERNAL
char *sb_descriptor_validate(const sb_backend_v1 *desc, const char *path,
                             const char *file_name, guint *major, guint *minor);

G_END_DECLS

#endif
