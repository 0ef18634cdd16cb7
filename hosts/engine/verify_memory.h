/* SPDX-License-Identifier: MIT */
/* Per-rank memory of verification, phase by phase (the root's bounds,
 * branch-and-bound), and the per-rank limit of branch-and-bound. */
#ifndef SB_VERIFY_MEMORY_H
#define SB_VERIFY_MEMORY_H

#include "network.h"

G_BEGIN_DECLS

/* Ends a phase: every rank's statistics since the last phase change are
 * merged into *phase ([rank count], allocated on first use, peaks kept as
 * the maximum over the calls: one phase of each region), and the peaks
 * restart for the next phase. */
gboolean sb_verify_memory_end_phase(SbNetwork *net, sb_memory_stats_v1 **phase,
                                    GError **error);

/* Whether some rank's peak since the last phase change exceeds limit_mib
 * (> 0): *rank and *mib name the first such rank and its peak. */
gboolean sb_verify_memory_over(SbNetwork *net, double limit_mib, int *rank,
                               double *mib, gboolean *over, GError **error);

G_END_DECLS

#endif
