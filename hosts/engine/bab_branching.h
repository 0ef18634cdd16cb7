/* SPDX-License-Identifier: MIT */
/* Which ReLU a branch-and-bound domain splits next: BaBSR scores from the
 * spec bound's coefficients, optionally filtered by FSB (bounding both
 * children of the best few candidates). */
#ifndef SB_BAB_BRANCHING_H
#define SB_BAB_BRANCHING_H

#include "bab_domain.h"

G_BEGIN_DECLS

/* Sets d's branch (branch_node -1 when no ReLU input is unstable) from the
 * coefficients relu_A[r] ([S, B, N], NULL where none) of the ReLU outputs
 * in the lower bound of batch element b, and keeps the n_keep best
 * candidates, best first, for sb_bab_filter_branches (n_keep 0: none). */
void sb_bab_choose_branch(SbBab *bab, SbBabDomain *d, int b, int B,
                          double **relu_A, int n_keep);

/* FSB: for each parent, bounds both children of each of its candidates with
 * one batched CROWN pass (the parents' intermediate bounds, no
 * optimisation) and keeps the candidate whose worse child is best. */
gboolean sb_bab_filter_branches(SbBab *bab, SbBabDomain **parents,
                                int n_parents, GError **error);

G_END_DECLS

#endif
