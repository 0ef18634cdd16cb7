/* SPDX-License-Identifier: MIT */
/* The building blocks of a bound computation, shared by the bounds of one
 * box (bounds.c) and the batched domains of branch-and-bound (bab_domain.c,
 * verify.c). */
#ifndef SB_BOUNDS_PRIVATE_H
#define SB_BOUNDS_PRIVATE_H

#include "crown_pass.h"

G_BEGIN_DECLS

/* Bounds [B, size] of every node's output for B batch elements. */
typedef struct {
  int n_nodes;
  int64_t B;
  sb_tensor **lo, **hi;
} SbNodeBounds;

/* Allocates every node's bounds and writes the input box (the same for
 * every batch element). */
gboolean sb_node_bounds_init(SbNetwork *net, SbNodeBounds *nb, int64_t B,
                             const double *x_lower, const double *x_upper,
                             GError **error);
void sb_node_bounds_clear(SbNetwork *net, SbNodeBounds *nb);

/* IBP of node i from its inputs' current bounds. */
gboolean sb_node_ibp(SbNetwork *net, SbNodeBounds *nb, int i, GError **error);

/* Whether node i's bounds are computed by CROWN: it feeds a ReLU and a ReLU
 * lies before it (otherwise IBP is already exact). */
gboolean sb_node_needs_crown(const SbNetwork *net, int i);

/* CROWN for node i's unstable neurons, and alpha-CROWN with `alpha`
 * (NULL: none), replacing their current bounds or, with intersect_ibp,
 * keeping the tighter. `extra` MAY carry beta terms. n_unstable (MAY be
 * NULL) is increased by the neurons still unstable. The neurons are
 * bounded in chunks of rows that fit net->tighten_pass_bytes; once
 * alpha's deadline has passed, the chunks left keep their current
 * bounds. */
gboolean sb_node_tighten(SbNetwork *net, SbNodeBounds *nb, int i,
                         const SbAlphaParams *alpha, gboolean intersect_ibp,
                         const SbPassConfig *extra, int *n_unstable,
                         GError **error);

/* Bounds of rows . y (rows [S, n_outputs], the same for every batch
 * element) into lower/upper [S*B] (s major), for the asked sides. With
 * alpha (alpha-CROWN, alpha->final_iterations steps; NULL: CROWN) the
 * arrays must hold starting values (e.g. -inf/+inf) and receive the best
 * bounds found. */
gboolean sb_output_pass(SbNetwork *net, SbNodeBounds *nb, const double *rows,
                        int64_t S, int sides, const SbAlphaParams *alpha,
                        const SbPassConfig *extra, double *lower, double *upper,
                        GError **error);

G_END_DECLS

#endif
