/* SPDX-License-Identifier: MIT */
/* PGD on the unsafe region. Gradients come from the backend: a CROWN pass
 * whose "bounds" are the activations of the attacked points is exactly the
 * backpropagation of c.y (each ReLU is then the identity or zero), so the
 * same code runs on every backend and batches the restarts. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "attack.h"
#include "float_round.h"
#include "bounds_private.h"
#include "lockstep.h"

void sb_attack_params_init(SbAttackParams *p) {
  p->restarts = 32;
  p->steps = 40;
  p->rounds = 3;
  p->seed = 1;
}

float sb_float_in_range(double v, double lower, double upper) {
  float f = (float)v;
  if ((double)f < lower)
    f = sb_float_up(f);
  if ((double)f > upper)
    f = sb_float_down(f);
  return f;
}

double sb_point_margin(const SbProperty *prop, int region, const double *y) {
  const SbRegion *reg = &prop->regions[region];
  double margin = INFINITY;
  for (int j = 0; j < reg->n_disjuncts; j++) {
    double largest = -INFINITY;
    for (int a = reg->disjunct_start[j]; a < reg->disjunct_start[j + 1]; a++) {
      const SbAtom *atom = &prop->atoms[reg->atom_index[a]];
      double v = -atom->d;
      for (int o = 0; o < prop->n_outputs; o++)
        v += atom->c[o] * y[o];
      if (isnan(v) || v > largest) /* a NaN, once in, stays */
        largest = v;
    }
    if (largest < margin)
      margin = largest;
  }
  return margin;
}

gboolean sb_counterexample_check(const SbGraph *g, const SbProperty *prop,
                                 int region, const float *x, double *y_out) {
  const SbRegion *reg = &prop->regions[region];
  g_autofree double *y = g_new(double, g->output_size);
  for (int64_t k = 0; k < g->input_size; k++)
    if (!(x[k] >= reg->x_lower[k] && x[k] <= reg->x_upper[k])) {
      for (int64_t o = 0; y_out != NULL && o < g->output_size; o++)
        y_out[o] = NAN; /* no output of the box: no margin */
      return FALSE;
    }
  sb_graph_eval(g, x, y);
  if (y_out != NULL)
    memcpy(y_out, y, sizeof(double) * g->output_size);
  return sb_point_margin(prop, region, y) <= 0;
}

/* Activations of every node at the B points of nb->lo[0] (= nb->hi[0]);
 * lo and hi then share each node's tensor. */
static gboolean forward_points(SbNetwork *net, SbNodeBounds *nb,
                               GError **error) {
  for (int i = 1; i < nb->n_nodes; i++) {
    const SbNode *node = sb_graph_node(net->graph, i);
    const sb_tensor *in[SB_MAX_LAYER_INPUTS];
    for (int k = 0; k < node->n_inputs; k++)
      in[k] = nb->lo[node->inputs[k]];
    int status = SB_NET_BE(net)->layer_forward(SB_NET_CTX(net), net->layers[i],
                                               in, nb->lo[i]);
    if (!sb_net_check(net, status, "layer_forward", i, error))
      return FALSE;
  }
  return TRUE;
}

/* The attacked points of one round: random in the box; the first round
 * also tries the centre. */
static void random_starts(GRand *rng, const SbRegion *reg, int round, int64_t B,
                          int64_t n_in, double *x) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t k = 0; k < n_in; k++) {
      double l = reg->x_lower[k], u = reg->x_upper[k];
      x[b * n_in + k] = round == 0 && b == 0
                            ? 0.5 * (l + u)
                            : g_rand_double_range(rng, l, u + 1e-30);
    }
}

/* The values c.y of every atom at the B points x into value [S*B], and
 * their gradients w.r.t. the input into grad [S, B, n_in]. */
static gboolean atom_values_and_gradients(SbNetwork *net, SbNodeBounds *nb,
                                          const sb_tensor *A, int64_t S,
                                          const double *x, double *value,
                                          double *grad, GError **error) {
  const SbGraph *g = net->graph;
  int64_t B = nb->B;
  SbPassConfig cfg = {.sides = SB_SIDES_LOWER, .record = TRUE};
  SbPassRecord rec;
  if (!sb_net_tensor_write(net, nb->lo[0], B * g->input_size, x, error) ||
      !forward_points(net, nb, error) ||
      !sb_crown_pass(net, g->output, A, S, B, nb->lo, nb->lo, &cfg, &rec, value,
                     NULL, error))
    return FALSE;
  gboolean read = sb_net_tensor_read(net, rec.saved[SB_SIDE_LOWER][0],
                                     S * B * g->input_size, grad, error);
  sb_pass_record_clear(net, &rec);
  return read;
}

/* The atom of disjunct j furthest from holding at point b (-1 when the
 * disjunct has none), and that gap. */
static int worst_atom(const SbProperty *prop, const SbRegion *reg, int j,
                      const double *value, int64_t B, int64_t b,
                      double *gap_out) {
  int worst = -1;
  double worst_gap = -INFINITY;
  for (int a = reg->disjunct_start[j]; a < reg->disjunct_start[j + 1]; a++) {
    int atom = reg->atom_index[a];
    double gap = value[atom * B + b] - prop->atoms[atom].d;
    if (gap > worst_gap)
      worst_gap = gap, worst = atom;
  }
  *gap_out = worst_gap;
  return worst;
}

/* sb_point_margin of point b from the backend's atom values. */
static double values_margin(const SbProperty *prop, const SbRegion *reg,
                            const double *value, int64_t B, int64_t b) {
  double margin = INFINITY, gap;
  for (int j = 0; j < reg->n_disjuncts; j++)
    if (worst_atom(prop, reg, j, value, B, b, &gap) >= 0 && gap < margin)
      margin = gap;
  return margin;
}

/* One PGD step on point b: when its attacked disjunct already seems to
 * hold, the point is checked exactly (TRUE, x_out filled, on success);
 * otherwise, or after a failed check, a signed-gradient step pushes the
 * worst atom down. */
static gboolean pgd_step_point(SbNetwork *net, const SbProperty *prop,
                               int region, const double *value,
                               const double *grad, int64_t B, int64_t b,
                               double step_size, double *x, float *x_out) {
  const SbRegion *reg = &prop->regions[region];
  int64_t n_in = net->graph->input_size;
  /* Restart b attacks disjunct b mod n: the atom furthest from holding is
   * the one to push down. */
  double worst_gap;
  int worst = worst_atom(prop, reg, (int)(b % reg->n_disjuncts), value, B, b,
                         &worst_gap);
  if (worst < 0)
    return FALSE;
  double *xb = x + b * n_in;
  if (worst_gap <= 1e-6 * MAX(1.0, fabs(prop->atoms[worst].d))) {
    for (int64_t k = 0; k < n_in; k++)
      x_out[k] = sb_float_in_range(xb[k], reg->x_lower[k], reg->x_upper[k]);
    if (sb_net_counterexample_check(net, prop, region, x_out, NULL))
      return TRUE;
  }
  const double *gr = grad + (worst * B + b) * n_in;
  for (int64_t k = 0; k < n_in; k++) {
    double l = reg->x_lower[k], u = reg->x_upper[k];
    double d = gr[k] > 0 ? -1 : gr[k] < 0 ? 1 : 0;
    xb[k] = CLAMP(xb[k] + d * step_size * (u - l), l, u);
  }
  return FALSE;
}

gboolean sb_attack_pgd(SbNetwork *net, const SbProperty *prop, int region,
                       const SbAttackParams *p, gint64 deadline, float *x_out,
                       double *margin_out, GError **error) {
  const SbGraph *g = net->graph;
  const SbRegion *reg = &prop->regions[region];
  int n = sb_graph_n_nodes(g);
  int64_t B = MAX(p->restarts, 1), n_in = g->input_size;
  int64_t S = prop->n_atoms;
  g_autofree double *x = g_new(double, B *n_in);
  g_autofree double *rows = NULL;
  g_autofree double *value = g_new(double, S *B);
  g_autofree double *grad = g_new(double, S *B *n_in);
  g_autofree float *candidate = g_new(float, n_in);
  g_autofree double *best_x = g_new(double, n_in);
  g_autofree double *y = g_new(double, g->output_size);
  double best = INFINITY; /* best_x's margin by the backend */
  g_autofree sb_tensor **lo = g_new0(sb_tensor *, n);
  SbNodeBounds nb = {n, B, lo, lo};
  sb_tensor *A = NULL;
  gboolean found = FALSE, ok = FALSE;

  if (margin_out != NULL)
    *margin_out = INFINITY;
  if (reg->n_disjuncts == 0 || S == 0)
    return FALSE;
  GRand *rng = g_rand_new_with_seed(p->seed + (guint32)region);
  for (int i = 0; i < n; i++)
    if ((lo[i] = sb_net_tensor_new(net, SB_MEM_BOUNDS, B,
                                   sb_net_node_size(net, i), 0, error)) == NULL)
      goto out;
  rows = sb_property_spec_rows(prop);
  if ((A = sb_spec_tensor_new(net, rows, S, B, g->output_size, error)) == NULL)
    goto out;

  for (int round = 0; round < p->rounds && !found; round++) {
    random_starts(rng, reg, round, B, n_in, x);
    for (int step = 0; step < p->steps && !found; step++) {
      if (sb_net_deadline_passed(net, deadline))
        goto done;
      if (!atom_values_and_gradients(net, &nb, A, S, x, value, grad, error))
        goto out;
      double step_size = 0.25 * pow(0.9, step);
      for (int64_t b = 0; b < B && !found; b++) {
        double m = values_margin(prop, reg, value, B, b);
        if (m < best) {
          best = m;
          memcpy(best_x, x + b * n_in, sizeof(double) * n_in);
        }
        found = pgd_step_point(net, prop, region, value, grad, B, b, step_size,
                               x, candidate);
      }
    }
  }
done:
  /* The margin reported is the float64 check's, of the counterexample or
   * else of the point the backend saw closest (which may itself turn out
   * to be one). */
  if (!found && best < INFINITY)
    for (int64_t k = 0; k < n_in; k++)
      candidate[k] =
          sb_float_in_range(best_x[k], reg->x_lower[k], reg->x_upper[k]);
  if (found || best < INFINITY) {
    found = sb_net_counterexample_check(net, prop, region, candidate, y);
    if (margin_out != NULL)
      *margin_out = sb_point_margin(prop, region, y);
  }
  if (found)
    memcpy(x_out, candidate, sizeof(float) * n_in);
  ok = TRUE;
out:
  sb_net_tensor_free(net, A);
  for (int i = 0; i < n; i++)
    sb_net_tensor_free(net, lo[i]);
  g_rand_free(rng);
  return ok && found;
}
