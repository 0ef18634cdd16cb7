/* SPDX-License-Identifier: MIT */
/* One CROWN backward pass from a start node to the input, optionally with
 * alpha slopes and beta split multipliers, and its reverse (gradient) sweep. */
#ifndef SB_CROWN_PASS_H
#define SB_CROWN_PASS_H

#include "network.h"

G_BEGIN_DECLS

enum {
  SB_SIDES_LOWER = 1 << SB_SIDE_LOWER,
  SB_SIDES_UPPER = 1 << SB_SIDE_UPPER,
  SB_SIDES_BOTH = SB_SIDES_LOWER | SB_SIDES_UPPER
};

/* What one pass uses besides the bounds. Arrays are indexed by node and may
 * be NULL; an entry NULL means "none for that node". */
typedef struct {
  int sides;            /* SB_SIDES_* */
  sb_tensor **alpha[2]; /* per side: [S,B,N] lower slopes of ReLU node j */
  sb_tensor *
      *beta[2]; /* per side: [S,B,N] multipliers at node j (a ReLU input) */
  sb_tensor **split_sign; /* per node: [B,N] split signs (see beta_apply) */
  gboolean record;        /* keep what the gradient sweep needs */
} SbPassConfig;

/* What a recorded pass kept: the coefficients every node passed backwards
 * (A w.r.t. its output, after beta terms) per side; entries may alias
 * between sides while they were shared. */
typedef struct {
  int start;
  int64_t S, B;
  int sides;
  sb_tensor **saved[2];
  const sb_tensor *borrowed; /* the caller's start tensor: never freed */
} SbPassRecord;

/* Bounds of A_start . z_start over the input box, where z_start is the
 * output of node `start` and A_start is [S, B, size(start)] (lent; not
 * modified). lo/hi: per-node bounds [B, size] for every node before start
 * (ReLU inputs must be set). out_lower/out_upper receive [S*B] values (s
 * major) for the sides asked for; either may be NULL when its side is not.
 * With cfg->record, *record must be given and is filled; release it with
 * sb_pass_record_clear. */
gboolean sb_crown_pass(SbNetwork *net, int start, const sb_tensor *A_start,
                       int64_t S, int64_t B, sb_tensor **lo, sb_tensor **hi,
                       const SbPassConfig *cfg, SbPassRecord *record,
                       double *out_lower, double *out_upper, GError **error);

/* Gradients of sum(bound of `side`) over the pass's [S,B] results with
 * respect to the alphas and betas of cfg, written into grad_alpha[j] /
 * grad_beta[j] (preallocated like cfg's tensors; entries NULL where cfg has
 * none). */
gboolean sb_crown_pass_gradient(SbNetwork *net, const SbPassRecord *record,
                                int side, sb_tensor **lo, sb_tensor **hi,
                                const SbPassConfig *cfg, sb_tensor **grad_alpha,
                                sb_tensor **grad_beta, GError **error);

void sb_pass_record_clear(SbNetwork *net, SbPassRecord *record);

/* Marks in `mask` (n_nodes entries) the nodes whose coefficients a pass from
 * `start` reaches: start and all its ancestors. */
void sb_pass_ancestors(const SbNetwork *net, int start, gboolean *mask);

G_END_DECLS

#endif
