/* SPDX-License-Identifier: MIT */
/* Per-rank memory of verification, phase by phase, and the per-rank limit
 * of branch-and-bound. */
#include "config.h"

#include "bounds.h"
#include "verify_memory.h"

static void merge_peaks(sb_memory_stats_v1 *into,
                        const sb_memory_stats_v1 *st) {
  into->baseline_bytes = st->baseline_bytes;
  into->total_current_bytes = st->total_current_bytes;
  into->device_used_bytes = st->device_used_bytes;
  into->total_peak_bytes = MAX(into->total_peak_bytes, st->total_peak_bytes);
  for (int c = 0; c < SB_MEM_CATEGORY_COUNT; c++) {
    into->current_bytes[c] = st->current_bytes[c];
    into->peak_bytes[c] = MAX(into->peak_bytes[c], st->peak_bytes[c]);
  }
}

gboolean sb_verify_memory_end_phase(SbNetwork *net, sb_memory_stats_v1 **phase,
                                    GError **error) {
  int ranks = sb_network_rank_count(net);
  if (*phase == NULL)
    *phase = g_new0(sb_memory_stats_v1, ranks);
  for (int r = 0; r < ranks; r++) {
    sb_memory_stats_v1 st;
    if (!sb_network_memory_stats(net, r, &st, error))
      return FALSE;
    merge_peaks(&(*phase)[r], &st);
    (*phase)[r].struct_size = st.struct_size;
  }
  return sb_net_check(net, SB_NET_BE(net)->memory_reset_peak(SB_NET_CTX(net)),
                      "memory_reset_peak", -1, error);
}

gboolean sb_verify_memory_over(SbNetwork *net, double limit_mib, int *rank,
                               double *mib, gboolean *over, GError **error) {
  *over = FALSE;
  int ranks = sb_network_rank_count(net);
  for (int r = 0; r < ranks && !*over; r++) {
    sb_memory_stats_v1 st;
    if (!sb_network_memory_stats(net, r, &st, error))
      return FALSE;
    double held = st.total_peak_bytes / 1048576.0;
    if (held > limit_mib) {
      *over = TRUE;
      *rank = r;
      *mib = held;
    }
  }
  return TRUE;
}
