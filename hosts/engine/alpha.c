/* SPDX-License-Identifier: MIT */
/* alpha-CROWN by projected Adam on the backend, gradients from the reverse
 * sweep of each pass (never numeric differences). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "alpha.h"
#include "lockstep.h"

void sb_alpha_set_clear(SbNetwork *net, SbAlphaSet *set) {
  for (int side = 0; side < 2; side++) {
    sb_tensor **arrays[4] = {set->alpha[side], set->grad[side], set->m[side],
                             set->v[side]};
    for (int a = 0; a < 4; a++) {
      if (arrays[a] == NULL)
        continue;
      for (int j = 0; j < set->n_nodes; j++)
        sb_net_tensor_free(net, arrays[a][j]);
      g_free(arrays[a]);
    }
    set->alpha[side] = set->grad[side] = set->m[side] = set->v[side] = NULL;
  }
  sb_tensor ***betas[4] = {&set->beta, &set->beta_grad, &set->beta_m,
                           &set->beta_v};
  for (int a = 0; a < 4; a++) {
    if (*betas[a] == NULL)
      continue;
    for (int j = 0; j < set->n_nodes; j++)
      sb_net_tensor_free(net, (*betas[a])[j]);
    g_clear_pointer(betas[a], g_free);
  }
}

gboolean sb_alpha_set_add_betas(SbNetwork *net, SbAlphaSet *set, int64_t S,
                                int64_t B, sb_tensor **split_sign,
                                GError **error) {
  int n = set->n_nodes;
  sb_tensor ***slots[4] = {&set->beta, &set->beta_grad, &set->beta_m,
                           &set->beta_v};
  for (int a = 0; a < 4; a++)
    *slots[a] = g_new0(sb_tensor *, n);
  for (int j = 0; j < n; j++) {
    if (split_sign[j] == NULL)
      continue;
    for (int a = 0; a < 4; a++)
      if (((*slots[a])[j] =
               sb_net_tensor_new(net, SB_MEM_ALPHA, S, B,
                                 sb_net_node_size(net, j), error)) == NULL)
        return FALSE;
  }
  return TRUE;
}

gboolean sb_alpha_set_init(SbNetwork *net, SbAlphaSet *set, int start,
                           int64_t S, int64_t B, int sides, sb_tensor **lo,
                           sb_tensor **hi, GError **error) {
  int n = sb_graph_n_nodes(net->graph);
  g_autofree gboolean *reached = g_new(gboolean, n);
  memset(set, 0, sizeof *set);
  set->n_nodes = n;
  if (!sb_net_require_vjp(net, error))
    return FALSE;
  sb_pass_ancestors(net, start, reached);
  for (int side = 0; side < 2; side++) {
    if (!(sides & (1 << side)))
      continue;
    set->alpha[side] = g_new0(sb_tensor *, n);
    set->grad[side] = g_new0(sb_tensor *, n);
    set->m[side] = g_new0(sb_tensor *, n);
    set->v[side] = g_new0(sb_tensor *, n);
    for (int j = 1; j < start; j++) {
      const SbNode *node = sb_graph_node(net->graph, j);
      if (!reached[j] || node->kind != SB_NODE_RELU)
        continue;
      int64_t N = node->size;
      sb_tensor **slots[4] = {set->alpha[side], set->grad[side], set->m[side],
                              set->v[side]};
      for (int a = 0; a < 4; a++)
        if ((slots[a][j] =
                 sb_net_tensor_new(net, SB_MEM_ALPHA, S, B, N, error)) == NULL)
          goto fail;
      int status = SB_NET_BE(net)->relu_init_alpha(
          SB_NET_CTX(net), lo[node->inputs[0]], hi[node->inputs[0]],
          set->alpha[side][j]);
      if (!sb_net_check(net, status, "relu_init_alpha", j, error))
        goto fail;
    }
  }
  return TRUE;
fail:
  sb_alpha_set_clear(net, set);
  return FALSE;
}

gboolean sb_alpha_optimize(SbNetwork *net, SbAlphaSet *set,
                           const SbAlphaParams *p, int start,
                           const sb_tensor *A_start, int64_t S, int64_t B,
                           sb_tensor **lo, sb_tensor **hi, int sides,
                           const SbPassConfig *extra, double *best_lower,
                           double *best_upper, GError **error) {
  int64_t rows = S * B;
  g_autofree double *l = g_new(double, rows);
  g_autofree double *u = g_new(double, rows);
  SbPassConfig cfg = {0};
  if (extra != NULL)
    cfg = *extra;
  cfg.sides = sides;
  cfg.alpha[0] = set->alpha[0];
  cfg.alpha[1] = set->alpha[1];
  cfg.beta[0] = set->beta;
  cfg.beta[1] = NULL;
  cfg.record = TRUE;
  double best_total = -INFINITY;
  int stale = 0;

  for (int step = 1; step <= MAX(p->iterations, 1); step++) {
    SbPassRecord rec;
    if (!sb_crown_pass(net, start, A_start, S, B, lo, hi, &cfg, &rec,
                       (sides & SB_SIDES_LOWER) ? l : NULL,
                       (sides & SB_SIDES_UPPER) ? u : NULL, error))
      return FALSE;
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
      if (sides & SB_SIDES_LOWER) {
        best_lower[r] = MAX(best_lower[r], l[r]);
        total += best_lower[r];
      }
      if (sides & SB_SIDES_UPPER) {
        best_upper[r] = MIN(best_upper[r], u[r]);
        total -= best_upper[r];
      }
    }
    /* Early stop once the bounds no longer improve. */
    stale =
        total > best_total + 1e-7 * MAX(1.0, fabs(best_total)) ? 0 : stale + 1;
    best_total = MAX(best_total, total);
    /* Checked every step: on deep networks one start node's steps are
     * the longest stretch of a verify run. By process 0's clock, and by
     * every process at every step: processes that stopped at different
     * steps would wait on each other's collectives for ever. */
    gboolean late = sb_net_deadline_passed(net, p->deadline);
    if (step == p->iterations || stale >= p->patience || late) {
      sb_pass_record_clear(net, &rec);
      break;
    }
    gboolean ok = TRUE;
    for (int side = 0; side < 2 && ok; side++) {
      if (!(sides & (1 << side)))
        continue;
      sb_tensor **beta_grad = side == SB_SIDE_LOWER ? set->beta_grad : NULL;
      ok = sb_crown_pass_gradient(net, &rec, side, lo, hi, &cfg,
                                  set->grad[side], beta_grad, error);
      sb_adam_args_v1 adam = {
          .struct_size = sizeof adam,
          .step = step,
          .learning_rate = (float)(p->learning_rate * pow(p->decay, step - 1)),
          .beta1 = 0.9f,
          .beta2 = 0.999f,
          .epsilon = 1e-8f,
          .maximize = side == SB_SIDE_LOWER,
          .clamp_min = 0.0f,
          .clamp_max = 1.0f};
      for (int j = 0; j < set->n_nodes && ok; j++) {
        if (set->alpha[side][j] == NULL)
          continue;
        int status = SB_NET_BE(net)->adam_step(
            SB_NET_CTX(net), set->alpha[side][j], set->grad[side][j],
            set->m[side][j], set->v[side][j], &adam);
        ok = sb_net_check(net, status, "adam_step", j, error);
      }
      /* Betas are Lagrange multipliers: any value >= 0 is sound. */
      adam.clamp_max = 1e30f;
      if (p->beta_learning_rate > 0)
        adam.learning_rate =
            (float)(p->beta_learning_rate * pow(p->decay, step - 1));
      for (int j = 0;
           j < set->n_nodes && ok && side == SB_SIDE_LOWER && set->beta; j++) {
        if (set->beta[j] == NULL)
          continue;
        int status = SB_NET_BE(net)->adam_step(
            SB_NET_CTX(net), set->beta[j], set->beta_grad[j], set->beta_m[j],
            set->beta_v[j], &adam);
        ok = sb_net_check(net, status, "adam_step (beta)", j, error);
      }
    }
    sb_pass_record_clear(net, &rec);
    if (!ok)
      return FALSE;
  }
  return TRUE;
}
