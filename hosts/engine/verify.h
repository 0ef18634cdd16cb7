/* SPDX-License-Identifier: MIT */
/* Complete verification: attack, alpha-CROWN, then beta-CROWN
 * branch-and-bound over ReLU splits. */
#ifndef SB_VERIFY_H
#define SB_VERIFY_H

#include "attack.h"
#include "bounds.h"
#include "vnnlib.h"

G_BEGIN_DECLS

typedef enum {
  SB_RESULT_UNSAT,   /* the property holds (no counterexample exists) */
  SB_RESULT_SAT,     /* a counterexample was found and checked */
  SB_RESULT_UNKNOWN, /* gave up: domain or memory limit, nothing to split */
  SB_RESULT_TIMEOUT,
  SB_RESULT_ERROR
} SbResult;

const char *sb_result_to_string(SbResult result);

typedef enum { SB_BRANCH_BABSR, SB_BRANCH_FSB } SbBranching;

typedef struct {
  double timeout;        /* seconds, <= 0 for none */
  int batch;             /* domains split per BaB step */
  int max_domains;       /* queue limit; beyond it: unknown */
  double max_memory_mib; /* per rank: the backend memory a rank may hold
                            in branch-and-bound, and the host memory of
                            the queued domains; beyond it: unknown (<= 0:
                            no limit) */
  double bab_time;       /* seconds of branch-and-bound per region, then
                            timeout (<= 0: none): a fixed budget for
                            benchmarks, the root not counted */
  int bab_domains;       /* domains evaluated in branch-and-bound per
                            region, then timeout (<= 0: none): a fixed
                            amount of work for benchmarks, the same on
                            any machine and at any number of ranks */
  SbBranching branching;
  int fsb_candidates;  /* FSB: candidates evaluated per domain */
  int bab_iterations;  /* alpha/beta steps per BaB batch */
  double bab_lr_alpha; /* their step sizes in BaB; <= 0: alpha's */
  double bab_lr_beta;
  SbAlphaParams alpha; /* alpha-CROWN of the root's intermediate bounds;
                          its step size and patience also drive BaB's
                          alpha/beta steps */
  gboolean refine_intermediate; /* recompute intermediate bounds of every
                                   new domain by CROWN (tighter, costlier;
                                   off by default) */
  int tighten_layers;           /* once a region's branch-and-bound has taken
                                   tighten_after domains undecided: the first
                                   tighten_layers ReLU inputs that CROWN bounds get
                                   each unstable neuron's bounds from a search of
                                   their own, and the search starts again (0: none;
                                   docs/verification.md) */
  int tighten_domains;          /* domains per such search */
  int tighten_after;       /* domains of a region's branch-and-bound before its
                              root is tightened (0: before it branches) */
  double tighten_min_gain; /* a layer whose first neurons' tightening
                              narrowed them by less than this fraction of
                              their widths is left there (0: never) */
  gboolean warm_betas;     /* a new domain's betas start from its parent's
                              optimised ones (its new split's at 0), not
                              all from 0 */
  gboolean attack;
  SbAttackParams attack_params;
  /* Progress callback (MAY be NULL), called about once per BaB step. */
  void (*progress)(void *user, int64_t done, int64_t left, double worst,
                   double seconds);
  void *progress_user;
} SbVerifyParams;

void sb_verify_params_init(SbVerifyParams *params);

typedef struct {
  SbResult result;
  int region;              /* SAT: the region of the counterexample */
  float *x;                /* SAT: the input (input_size), g_free */
  double *y;               /* SAT: the output (output_size), g_free */
  int64_t domains;         /* BaB domains evaluated */
  int64_t tighten_domains; /* of the searches that tightened the roots'
                              intermediate bounds (not in domains) */
  double seconds;
  double bab_seconds; /* of which in branch-and-bound */
  char *reason;       /* UNKNOWN / ERROR: why */
  /* The least sb_point_margin over the inputs checked in float64 (the
   * attack's best point and branch-and-bound's minimisers, every region
   * searched): an upper bound on the property's least margin, as
   * branch-and-bound's worst margin is a lower bound. INFINITY when none
   * was checked. */
  double found_margin;
  /* Per rank (sb_network_rank_count), g_free: the backend's memory in the
   * root phase (attack, root bounds) and in branch-and-bound, peaks the
   * maximum over regions; bab_memory NULL when no region branched. */
  sb_memory_stats_v1 *root_memory;
  sb_memory_stats_v1 *bab_memory;
} SbVerifyOutcome;

void sb_verify_outcome_clear(SbVerifyOutcome *outcome);

/* Verifies every region of the property. Intermediate bounds are always
 * the tighter of CROWN and IBP. FALSE only on an error (SB_ENGINE_ERROR),
 * which is also reported as SB_RESULT_ERROR in outcome. */
gboolean sb_verify(SbNetwork *net, const SbProperty *prop,
                   const SbVerifyParams *params, SbVerifyOutcome *outcome,
                   GError **error);

/* The root bounds verify branches from on one region (its intermediate
 * bounds alpha-CROWN's intersected with IBP's) and, with
 * params->tighten_layers, tightened as verify tightens them (at once,
 * whatever tighten_after). lower[i] and upper[i] receive node i's bounds
 * (g_new, node i's size each) for every node i. For tests and reports. */
gboolean sb_verify_root_bounds(SbNetwork *net, const SbProperty *prop,
                               int region, const SbVerifyParams *params,
                               double **lower, double **upper, GError **error);

G_END_DECLS

#endif
