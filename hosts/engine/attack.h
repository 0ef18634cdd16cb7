/* SPDX-License-Identifier: MIT */
/* Looking for counterexamples: PGD on the unsafe region, with gradients
 * from the backend, and an exact check of every candidate. */
#ifndef SB_ATTACK_H
#define SB_ATTACK_H

#include "bounds.h"
#include "vnnlib.h"

G_BEGIN_DECLS

typedef struct {
  int restarts; /* points attacked at once (batch) */
  int steps;    /* PGD steps per round */
  int rounds;   /* rounds of random restarts */
  guint32 seed;
} SbAttackParams;

void sb_attack_params_init(SbAttackParams *params);

/* The float32 nearest v that stays inside [lower, upper] when rounding
 * would leave it (a counterexample must lie in the box exactly). */
float sb_float_in_range(double v, double lower, double upper);

/* How far the output y is from region r's unsafe set: the least, over the
 * disjuncts, of the largest c.y - d of their atoms. <= 0 exactly when y
 * satisfies every atom of some disjunct; a NaN atom never satisfies its
 * disjunct. Branch-and-bound's margins bound this from below. */
double sb_point_margin(const SbProperty *prop, int region, const double *y);

/* TRUE when x (float32, graph->input_size) lies in region r's box and its
 * output y satisfies every atom of some disjunct (checked in float64). */
gboolean sb_counterexample_check(const SbGraph *graph, const SbProperty *prop,
                                 int region, const float *x, double *y_out);

/* PGD over region r. Returns TRUE and fills x (input_size floats) when a
 * checked counterexample was found; FALSE with *error unset when none was;
 * FALSE with *error set when the backend failed. Stops early at deadline
 * (monotonic microseconds, 0 for none). *margin (MAY be NULL) receives the
 * sb_point_margin of the best point it reached, from the float64 check
 * (INFINITY when it evaluated none): an upper bound on the region's least
 * margin. */
gboolean sb_attack_pgd(SbNetwork *net, const SbProperty *prop, int region,
                       const SbAttackParams *params, gint64 deadline, float *x,
                       double *margin, GError **error);

G_END_DECLS

#endif
