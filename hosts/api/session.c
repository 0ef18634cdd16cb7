/* SPDX-License-Identifier: MIT */
/* Sessions: a backend context opened with its options, and its memory
 * statistics per rank. */
#include "config.h"

#include "host-private.h"

ShardboundSession *shardbound_session_open(const char *backend, int ranks,
                                           const char *const *options,
                                           const char *backend_path,
                                           const char *config_file,
                                           GError **error) {
  if (ranks < 0) {
    g_set_error(
        error, SHARDBOUND_HOST_ERROR, SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
        "ranks must be 0 (the backend's default) or positive, not %d", ranks);
    return NULL;
  }
  SbSessionRequest request = {backend, backend_path, config_file, ranks,
                              options};
  GError *e = NULL;
  SbSessionSetup *setup = sb_session_setup(&request, &e);
  if (setup == NULL) {
    sb_host_propagate_error(error, e);
    return NULL;
  }
  ShardboundSession *session = g_new0(ShardboundSession, 1);
  session->setup = setup;
  return session;
}

void shardbound_session_close(ShardboundSession *session) {
  if (session == NULL)
    return;
  sb_session_setup_free(session->setup);
  g_free(session);
}

const char *shardbound_session_backend(const ShardboundSession *session) {
  return session->setup->session->name;
}

int shardbound_session_rank_count(const ShardboundSession *session) {
  const SbSession *s = session->setup->session;
  return s->be->rank_count(s->ctx);
}

int shardbound_session_process_index(const ShardboundSession *session) {
  return sb_session_process_index(session->setup->session);
}

int shardbound_session_process_count(const ShardboundSession *session) {
  return sb_session_process_count(session->setup->session);
}

/* Only loads and the ABI's async-signal-safe lost_rank: callable from a
 * signal handler. */
int shardbound_session_lost_rank(const ShardboundSession *session) {
  const SbSession *s = session->setup->session;
  if (!SB_HAS_MEMBER(s->be, sb_backend_v1, lost_rank) ||
      s->be->lost_rank == NULL)
    return -1;
  return s->be->lost_rank(s->ctx);
}

static const char *const category_names[SHARDBOUND_MEMORY_CATEGORIES] = {
    "weights", "gathered_weights", "coefficients", "bounds",
    "alpha",   "workspace",        "communication"};
G_STATIC_ASSERT((int)SHARDBOUND_MEMORY_CATEGORIES ==
                (int)SB_MEM_CATEGORY_COUNT);

const char *shardbound_memory_category_name(int category) {
  if (category < 0 || category >= SHARDBOUND_MEMORY_CATEGORIES)
    return NULL;
  return category_names[category];
}

gboolean shardbound_session_memory_reset(ShardboundSession *session,
                                         GError **error) {
  SbSession *s = session->setup->session;
  GError *e = NULL;
  if (!sb_session_check(s, s->be->memory_mark_baseline(s->ctx),
                        "memory baseline", &e) ||
      !sb_session_check(s, s->be->memory_reset_peak(s->ctx),
                        "memory peak reset", &e)) {
    sb_host_propagate_error(error, e);
    return FALSE;
  }
  return TRUE;
}

gboolean shardbound_session_memory_stats(ShardboundSession *session, int rank,
                                         ShardboundMemoryStats *stats,
                                         GError **error) {
  SbSession *s = session->setup->session;
  int ranks = s->be->rank_count(s->ctx);
  /* Callers built against 1.0 pass the struct without peak_rss_bytes. */
  const size_t size_1_0 = offsetof(ShardboundMemoryStats, peak_rss_bytes);
  if (stats == NULL || stats->struct_size < size_1_0) {
    g_set_error(
        error, SHARDBOUND_HOST_ERROR, SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
        "memory statistics: struct_size must be at least %zu", size_1_0);
    return FALSE;
  }
  if (rank < 0 || rank >= ranks) {
    g_set_error(error, SHARDBOUND_HOST_ERROR,
                SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
                "memory statistics: rank %d is not one of the session's %d",
                rank, ranks);
    return FALSE;
  }
  /* peak_rss_bytes stays -1 on a backend older than ABI 1.2. */
  sb_memory_stats_v1 st = {.struct_size = sizeof st, .peak_rss_bytes = -1};
  GError *e = NULL;
  if (!sb_session_check(s, s->be->memory_stats(s->ctx, rank, &st),
                        "memory statistics", &e)) {
    sb_host_propagate_error(error, e);
    return FALSE;
  }
  sb_host_memory_stats_from_backend(&st, stats);
  return TRUE;
}

void sb_host_memory_stats_from_backend(const sb_memory_stats_v1 *st,
                                       ShardboundMemoryStats *stats) {
  stats->baseline_bytes = st->baseline_bytes;
  stats->current_bytes = st->total_current_bytes;
  stats->peak_bytes = st->total_peak_bytes;
  stats->device_used_bytes = st->device_used_bytes;
  for (int c = 0; c < SHARDBOUND_MEMORY_CATEGORIES; c++) {
    stats->current_by_category[c] = st->current_bytes[c];
    stats->peak_by_category[c] = st->peak_bytes[c];
  }
  if (stats->struct_size >= sizeof *stats)
    stats->peak_rss_bytes = st->peak_rss_bytes;
}
