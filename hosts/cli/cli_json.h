/* SPDX-License-Identifier: MIT */
/* JSON output shared by the subcommands' --json: strings, number arrays
 * and the per-rank memory statistics of a backend. */
#ifndef SB_CLI_JSON_H
#define SB_CLI_JSON_H

#include <glib.h>

#include "abi/shardbound.h"

/* A quoted, escaped JSON string. */
void sb_json_string (GString *out, const char *text);

/* `  "key": [v0, v1, ...],` with non-finite values as null. */
void sb_json_doubles (GString *out, const char *key, const double *v, int n);

/* One rank's statistics as the members (no braces) `"baseline_bytes": ..,
 * "peak_bytes": .., "current_bytes": .., "device_used_bytes": ..,
 * "by_category": {"weights": {"current": .., "peak": ..}, ...}`. */
void sb_json_memory_stats (GString *out, const sb_memory_stats_v1 *st);

#endif
