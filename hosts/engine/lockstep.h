/* SPDX-License-Identifier: MIT */
/* Decisions every process of a session takes alike when its ranks are
 * processes (docs/embedding.md): what depends on a clock or on a file only
 * process 0 reads is decided there and broadcast. With one process each is
 * the plain local decision. */
#ifndef SB_LOCKSTEP_H
#define SB_LOCKSTEP_H

#include "attack.h"
#include "network.h"

G_BEGIN_DECLS

/* TRUE when the deadline (monotonic microseconds, 0 for none) has passed
 * by process 0's clock. Collective when deadline > 0; a failed broadcast
 * counts as passed (the communicator is gone: stop). */
gboolean sb_net_deadline_passed(SbNetwork *net, gint64 deadline);

/* sb_counterexample_check on the network's graph. When the host copy of
 * the weights was dropped (sb_graph_drop_weights), process 0 reads the
 * model file again for the float64 check and sends the verdict and y;
 * a model it cannot read confirms nothing (FALSE). */
gboolean sb_net_counterexample_check(SbNetwork *net, const SbProperty *prop,
                                     int region, const float *x, double *y_out);

G_END_DECLS

#endif
