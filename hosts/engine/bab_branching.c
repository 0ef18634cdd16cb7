/* SPDX-License-Identifier: MIT */
/* Branching heuristics of branch-and-bound: BaBSR and FSB. */
#include "config.h"

#include <math.h>

#include "bab_branching.h"

/* Branching scores from the coefficients of the ReLU outputs in the spec's
 * lower bound: an unstable neuron whose triangle relaxation costs the bound
 * most (-min(A,0) * intercept, summed over atoms) is split first. */
void sb_bab_choose_branch(SbBab *bab, SbBabDomain *d, int b, int B,
                          double **relu_A, int n_keep) {
  double best = -1;
  d->branch_node = -1;
  g_clear_pointer(&d->candidates, g_free);
  d->n_candidates = 0;
  g_autofree double *top_score = g_new(double, MAX(n_keep, 1));
  g_autofree int64_t *top = g_new(int64_t, 2 * MAX(n_keep, 1));
  int n_top = 0;
  for (int r = 0; r < bab->n_ri; r++) {
    int i = bab->ri_node[r];
    const double *A = relu_A[r];
    if (A == NULL)
      continue;
    int64_t N = sb_net_node_size(bab->net, i);
    const float *l = d->bounds + bab->ri_offset[r], *u = l + bab->R;
    for (int64_t k = 0; k < N; k++) {
      if (!(l[k] < 0 && u[k] > 0))
        continue;
      double t = -(double)l[k] * u[k] / ((double)u[k] - l[k]), score = 0,
             mass = 0;
      for (int s = 0; s < bab->S; s++) {
        double a = A[((int64_t)s * B + b) * N + k];
        score += -MIN(a, 0.0) * t;
        mass += fabs(a);
      }
      score += 1e-6 * mass * ((double)u[k] - l[k]);
      if (score > best) {
        best = score;
        d->branch_node = i;
        d->branch_neuron = k;
      }
      /* Keep the n_keep best for FSB, best first. */
      if (n_keep == 0 || (n_top == n_keep && score <= top_score[n_keep - 1]))
        continue;
      int pos = n_top < n_keep ? n_top++ : n_keep - 1;
      for (; pos > 0 && top_score[pos - 1] < score; pos--) {
        top_score[pos] = top_score[pos - 1];
        top[2 * pos] = top[2 * pos - 2];
        top[2 * pos + 1] = top[2 * pos - 1];
      }
      top_score[pos] = score;
      top[2 * pos] = i;
      top[2 * pos + 1] = k;
    }
  }
  if (n_keep > 0 && n_top > 0) {
    d->candidates = g_memdup2(top, sizeof(int64_t) * 2 * n_top);
    d->n_candidates = n_top;
  }
}

gboolean sb_bab_filter_branches(SbBab *bab, SbBabDomain **parents,
                                int n_parents, GError **error) {
  SbNetwork *net = bab->net;
  GPtrArray *trial =
      g_ptr_array_new_with_free_func((GDestroyNotify)sb_bab_domain_free);
  gboolean ok = FALSE;
  for (int p = 0; p < n_parents; p++)
    for (int c = 0; c < parents[p]->n_candidates; c++)
      for (int sgn = -1; sgn <= 1; sgn += 2)
        g_ptr_array_add(trial,
                        sb_bab_domain_new_child(
                            bab, parents[p], (int)parents[p]->candidates[2 * c],
                            parents[p]->candidates[2 * c + 1], sgn));
  int B = (int)trial->len;
  if (B == 0) {
    g_ptr_array_unref(trial);
    return TRUE;
  }
  const SbRegion *reg = &bab->prop->regions[bab->region];
  int n = sb_graph_n_nodes(net->graph), out = bab->out_node;
  SbNodeBounds nb = {0};
  SbAlphaSet set = {0};
  g_autofree sb_tensor **sign = g_new0(sb_tensor *, n);
  g_autofree double *lower = g_new(double, (int64_t)bab->S *B);
  g_autofree double *one = NULL;
  SbBabDomain **doms = (SbBabDomain **)trial->pdata;
  sb_tensor *A = NULL;
  /* Each trial child is bounded with its parent's optimised slopes (and
   * betas, when they are inherited): CROWN's default slopes would judge
   * the candidates by a much looser bound than the one the child gets. */
  if (!sb_node_bounds_init(net, &nb, B, reg->x_lower, reg->x_upper, error) ||
      !sb_bab_domains_load_bounds(bab, &nb, doms, B, error) ||
      !sb_bab_domains_split_signs(bab, doms, B, sign, error) ||
      !sb_bab_domains_inherited_set(bab, &set, &nb, doms, B, sign,
                                    bab->warm_betas, error) ||
      (A = sb_spec_tensor_new(bab->net, bab->rows, bab->S, B, bab->n_out,
                              error)) == NULL)
    goto out;
  SbPassConfig cfg = {.sides = SB_SIDES_LOWER, .split_sign = sign};
  cfg.alpha[0] = set.alpha[0];
  cfg.beta[0] = set.beta;
  if (!sb_crown_pass(net, out, A, bab->S, B, nb.lo, nb.hi, &cfg, NULL, lower,
                     NULL, error))
    goto out;
  int t = 0;
  one = g_new(double, bab->S);
  for (int p = 0; p < n_parents; p++) {
    double best = -INFINITY;
    for (int c = 0; c < parents[p]->n_candidates; c++) {
      double worst = INFINITY;
      for (int side = 0; side < 2; side++, t++) {
        for (int s = 0; s < bab->S; s++)
          one[s] = lower[(int64_t)s * B + t];
        worst = MIN(worst, sb_bab_margin(bab, one));
      }
      if (worst > best) {
        best = worst;
        parents[p]->branch_node = (int)parents[p]->candidates[2 * c];
        parents[p]->branch_neuron = parents[p]->candidates[2 * c + 1];
      }
    }
  }
  ok = TRUE;
out:
  sb_alpha_set_clear(net, &set);
  sb_net_tensor_free(net, A);
  for (int i = 0; i < n; i++)
    sb_net_tensor_free(net, sign[i]);
  sb_node_bounds_clear(net, &nb);
  g_ptr_array_unref(trial);
  return ok;
}
