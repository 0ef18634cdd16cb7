/* SPDX-License-Identifier: MIT */
/* JSON output shared by the subcommands' --json: strings, number arrays
 * and one rank's memory statistics as the host API gives them. */
#ifndef SB_CLI_JSON_H
#define SB_CLI_JSON_H

#include <glib.h>

#include "hosts/api/shardbound-host.h"

/* A quoted, escaped JSON string. */
void sb_json_string(GString *out, const char *text);

/* `  "key": [v0, v1, ...],` with non-finite values as null. */
void sb_json_doubles(GString *out, const char *key, const double *v, int n);

/* One rank's statistics as the members (no braces) `"baseline_bytes": ..,
 * "peak_bytes": .., "current_bytes": .., "device_used_bytes": ..,
 * "by_category": {"weights": {"current": .., "peak": ..}, ...}`. */
void sb_json_memory_stats(GString *out, const ShardboundMemoryStats *st);

#endif
