/* SPDX-License-Identifier: MIT */
/* Complete verification of a property and its verdict. */
#include "config.h"

#include "host-private.h"

struct _ShardboundVerdict {
  SbVerifyOutcome outcome;
  int ranks; /* of outcome.root_memory and .bab_memory */
};

const char *shardbound_answer_name(ShardboundAnswer answer) {
  switch (answer) {
  case SHARDBOUND_ANSWER_UNSAT:
    return "unsat";
  case SHARDBOUND_ANSWER_SAT:
    return "sat";
  case SHARDBOUND_ANSWER_UNKNOWN:
    return "unknown";
  case SHARDBOUND_ANSWER_TIMEOUT:
    return "timeout";
  }
  return NULL;
}

ShardboundVerdict *shardbound_verify(ShardboundNetwork *network,
                                     const ShardboundProperty *property,
                                     const ShardboundSettings *settings,
                                     GError **error) {
  g_return_val_if_fail(network != NULL && property != NULL, NULL);
  if (!shardbound_property_check_network(property, network, error))
    return NULL;
  g_autoptr(ShardboundSettings) defaults =
      settings == NULL ? shardbound_settings_new() : NULL;
  if (settings == NULL)
    settings = defaults;
  SbVerifyParams params = settings->verify;
  params.alpha = settings->bounds.alpha;
  ShardboundVerdict *v = g_new0(ShardboundVerdict, 1);
  v->outcome.result = SB_RESULT_ERROR;
  v->outcome.region = -1;
  GError *e = NULL;
  if (!sb_verify(network->net, property->prop, &params, &v->outcome, &e) ||
      v->outcome.result == SB_RESULT_ERROR) {
    if (e == NULL)
      g_set_error(&e, SHARDBOUND_HOST_ERROR, SHARDBOUND_HOST_ERROR_BACKEND,
                  "verification failed: %s",
                  v->outcome.reason ? v->outcome.reason : "no reason given");
    shardbound_verdict_free(v);
    sb_host_propagate_error(error, e);
    return NULL;
  }
  v->ranks = sb_network_rank_count(network->net);
  return v;
}

void shardbound_verdict_free(ShardboundVerdict *v) {
  if (v == NULL)
    return;
  sb_verify_outcome_clear(&v->outcome);
  g_free(v);
}

ShardboundAnswer shardbound_verdict_answer(const ShardboundVerdict *v) {
  switch (v->outcome.result) {
  case SB_RESULT_UNSAT:
    return SHARDBOUND_ANSWER_UNSAT;
  case SB_RESULT_SAT:
    return SHARDBOUND_ANSWER_SAT;
  case SB_RESULT_TIMEOUT:
    return SHARDBOUND_ANSWER_TIMEOUT;
  default:
    return SHARDBOUND_ANSWER_UNKNOWN;
  }
}

const float *shardbound_verdict_input(const ShardboundVerdict *v) {
  return v->outcome.result == SB_RESULT_SAT ? v->outcome.x : NULL;
}

const double *shardbound_verdict_output(const ShardboundVerdict *v) {
  return v->outcome.result == SB_RESULT_SAT ? v->outcome.y : NULL;
}

int shardbound_verdict_region(const ShardboundVerdict *v) {
  return v->outcome.result == SB_RESULT_SAT ? v->outcome.region : -1;
}

const char *shardbound_verdict_reason(const ShardboundVerdict *v) {
  return v->outcome.reason;
}

int64_t shardbound_verdict_domains(const ShardboundVerdict *v) {
  return v->outcome.domains;
}

double shardbound_verdict_seconds(const ShardboundVerdict *v) {
  return v->outcome.seconds;
}

double shardbound_verdict_bab_seconds(const ShardboundVerdict *v) {
  return v->outcome.bab_seconds;
}

int64_t shardbound_verdict_tighten_domains(const ShardboundVerdict *v) {
  return v->outcome.tighten_domains;
}

double shardbound_verdict_found_margin(const ShardboundVerdict *v) {
  return v->outcome.found_margin;
}

int shardbound_verdict_rank_count(const ShardboundVerdict *v) {
  return v->ranks;
}

static const sb_memory_stats_v1 *phase_stats(const ShardboundVerdict *v,
                                             ShardboundVerifyPhase phase) {
  switch (phase) {
  case SHARDBOUND_VERIFY_PHASE_ALL:
    return v->outcome.root_memory;
  case SHARDBOUND_VERIFY_PHASE_ROOT:
    return v->outcome.root_memory;
  case SHARDBOUND_VERIFY_PHASE_BAB:
    return v->outcome.bab_memory;
  }
  return NULL;
}

gboolean shardbound_verdict_has_memory(const ShardboundVerdict *v,
                                       ShardboundVerifyPhase phase) {
  return phase_stats(v, phase) != NULL;
}

gboolean shardbound_verdict_memory(const ShardboundVerdict *v, int rank,
                                   ShardboundVerifyPhase phase,
                                   ShardboundMemoryStats *stats,
                                   GError **error) {
  if (stats == NULL || stats->struct_size < sizeof *stats) {
    g_set_error(error, SHARDBOUND_HOST_ERROR,
                SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
                "verdict memory: struct_size must be at least %zu",
                sizeof(ShardboundMemoryStats));
    return FALSE;
  }
  if (rank < 0 || rank >= v->ranks) {
    g_set_error(error, SHARDBOUND_HOST_ERROR,
                SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
                "verdict memory: rank %d is not one of the session's %d", rank,
                v->ranks);
    return FALSE;
  }
  if (!shardbound_verdict_has_memory(v, phase)) {
    g_set_error(
        error, SHARDBOUND_HOST_ERROR, SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
        "verdict memory: phase %d was not measured%s", (int)phase,
        phase == SHARDBOUND_VERIFY_PHASE_BAB ? " (no region branched)" : "");
    return FALSE;
  }
  sb_memory_stats_v1 st = phase_stats(v, phase)[rank];
  /* The whole run: branch-and-bound's baseline and current bytes, the
   * larger of the two phases' peaks. */
  if (phase == SHARDBOUND_VERIFY_PHASE_ALL && v->outcome.bab_memory != NULL) {
    const sb_memory_stats_v1 *root = &v->outcome.root_memory[rank];
    st = v->outcome.bab_memory[rank];
    st.total_peak_bytes = MAX(st.total_peak_bytes, root->total_peak_bytes);
    for (int c = 0; c < SB_MEM_CATEGORY_COUNT; c++)
      st.peak_bytes[c] = MAX(st.peak_bytes[c], root->peak_bytes[c]);
  }
  sb_host_memory_stats_from_backend(&st, stats);
  return TRUE;
}
