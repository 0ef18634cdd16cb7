/* SPDX-License-Identifier: MIT */
/* JSON output shared by the subcommands' --json. */
#include "config.h"

#include <math.h>

#include "cli_json.h"

void sb_json_string(GString *out, const char *text) {
  g_string_append_c(out, '"');
  for (const char *p = text; *p; p++) {
    if (*p == '"' || *p == '\\')
      g_string_append_printf(out, "\\%c", *p);
    else if ((unsigned char)*p < 0x20)
      g_string_append_printf(out, "\\u%04x", *p);
    else
      g_string_append_c(out, *p);
  }
  g_string_append_c(out, '"');
}

void sb_json_doubles(GString *out, const char *key, const double *v, int n) {
  g_string_append_printf(out, "  \"%s\": [", key);
  for (int i = 0; i < n; i++) {
    if (!isfinite(v[i]))
      g_string_append_printf(out, "%s%s", i ? ", " : "", "null");
    else
      g_string_append_printf(out, "%s%.9g", i ? ", " : "", v[i]);
  }
  g_string_append(out, "],\n");
}

void sb_json_memory_stats(GString *out, const ShardboundMemoryStats *st) {
  g_string_append_printf(
      out,
      "\"baseline_bytes\": %" G_GUINT64_FORMAT
      ", \"peak_bytes\": %" G_GUINT64_FORMAT
      ", \"current_bytes\": %" G_GUINT64_FORMAT
      ", \"device_used_bytes\": %" G_GINT64_FORMAT ", \"by_category\": {",
      (guint64)st->baseline_bytes, (guint64)st->peak_bytes,
      (guint64)st->current_bytes, (gint64)st->device_used_bytes);
  for (int c = 0; c < SHARDBOUND_MEMORY_CATEGORIES; c++)
    g_string_append_printf(out,
                           "%s\"%s\": {\"current\": %" G_GUINT64_FORMAT
                           ", \"peak\": %" G_GUINT64_FORMAT "}",
                           c ? ", " : "", shardbound_memory_category_name(c),
                           (guint64)st->current_by_category[c],
                           (guint64)st->peak_by_category[c]);
  g_string_append(out, "}");
}
