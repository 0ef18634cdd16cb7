/* SPDX-License-Identifier: MIT */
/* What every harness shares: libFuzzer's entry points and the rule that a
 * rejected input must come back as exactly one GError of the expected
 * domain, never as a crash, a GLib critical or an error without message. */
#ifndef SB_FUZZ_COMMON_H
#define SB_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <glib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A GLib critical or warning is a bug the input found: abort (which
 * libFuzzer catches, unlike GLib's own breakpoint trap), so the input is
 * kept. Debug and info messages are dropped. */
static void sb_fuzz_log_handler(const gchar *domain, GLogLevelFlags level,
                                const gchar *message, gpointer data) {
  if (level &
      (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING)) {
    g_printerr("%s: %s\n", domain != NULL ? domain : "shardbound", message);
    abort();
  }
}

/* Called by each harness's LLVMFuzzerInitialize. Also lowers the memory
 * limit of one declaration (hosts/engine/limits.h) to 64 MiB unless it is
 * set, so that everything the limit admits, several arrays of it at once,
 * stays inside libFuzzer's 2 GiB malloc limit: a report of that limit is
 * then a real finding (an allocation the limit does not cover). */
static inline void sb_fuzz_init(void) {
  g_log_set_default_handler(sb_fuzz_log_handler, NULL);
  g_setenv("SHARDBOUND_MAX_BYTES", "64M", FALSE);
}

/* `ok` is what the call returned; on failure the error must be set, in
 * `domain`, and have a message. Frees the error. */
static inline void sb_fuzz_expect(gboolean ok, GError *error, GQuark domain) {
  if (ok ? error != NULL
         : error == NULL || error->domain != domain || error->message == NULL ||
               error->message[0] == '\0')
    abort();
  g_clear_error(&error);
}

#endif
