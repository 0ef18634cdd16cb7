/* SPDX-License-Identifier: MIT */
/* alpha-CROWN: optimising the ReLU lower slopes of one CROWN pass. */
#ifndef SB_ALPHA_H
#define SB_ALPHA_H

#include "crown_pass.h"

G_BEGIN_DECLS

/* The slopes (and their Adam state) of the ReLUs a pass from one start node
 * reaches, per side: alpha[side][j] is [S,B,N_j] or NULL. */
typedef struct {
  int n_nodes;
  sb_tensor **alpha[2], **grad[2], **m[2], **v[2];
  /* beta-CROWN multipliers of split neurons at ReLU inputs (lower side
   * only), present after sb_alpha_set_add_betas. */
  sb_tensor **beta, **beta_grad, **beta_m, **beta_v;
} SbAlphaSet;

/* Allocates slopes for every ReLU before `start` that a pass reaches, set to
 * the CROWN defaults for the current bounds lo/hi. */
gboolean sb_alpha_set_init(SbNetwork *net, SbAlphaSet *set, int start,
                           int64_t S, int64_t B, int sides, sb_tensor **lo,
                           sb_tensor **hi, GError **error);
void sb_alpha_set_clear(SbNetwork *net, SbAlphaSet *set);
/* Adds zero betas [S,B,N_j] for every node j with split_sign[j] set. */
gboolean sb_alpha_set_add_betas(SbNetwork *net, SbAlphaSet *set, int64_t S,
                                int64_t B, sb_tensor **split_sign,
                                GError **error);

/* Optimises the slopes of `set` (initialised) for the pass from `start`,
 * params->iterations Adam steps at most,
 * with A_start [S,B,size]: maximises the lower bounds and minimises the
 * upper bounds of the asked sides, keeping the best value of every row in
 * best_lower / best_upper ([S*B], which the caller initialises, e.g. to
 * -inf/+inf). `extra` may carry split signs: with betas in the set, they
 * are optimised together with the slopes (lower side). Its alpha and beta
 * arrays are ignored: the set's are used.
 * Every iterate is a sound bound, so the best is too. */
gboolean sb_alpha_optimize(SbNetwork *net, SbAlphaSet *set,
                           const SbAlphaParams *params, int start,
                           const sb_tensor *A_start, int64_t S, int64_t B,
                           sb_tensor **lo, sb_tensor **hi, int sides,
                           const SbPassConfig *extra, double *best_lower,
                           double *best_upper, GError **error);

G_END_DECLS

#endif
