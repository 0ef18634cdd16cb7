/* SPDX-License-Identifier: MIT */
/* Branch-and-bound domains: creation, and moving their bounds between the
 * host copies they are queued with and a batch's backend tensors. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "alpha.h"
#include "bab_domain.h"
#include "float_round.h"

double sb_bab_margin(const SbBab *bab, const double *spec_lower) {
  double m = INFINITY;
  for (int j = 0; j < bab->n_open; j++) {
    double best = -INFINITY;
    for (int a = bab->open_start[j]; a < bab->open_start[j + 1]; a++)
      best = MAX(best, spec_lower[a] - bab->rhs[a]);
    m = MIN(m, best);
  }
  return m;
}

/* A domain is one allocation: the struct, then its spec bounds, splits,
 * ReLU-input bounds, and room for the slopes and betas it will be given.
 * A queue of a few hundred thousand domains is freed in a fraction of the
 * time six blocks each took, which keeps a timeout's teardown short. The
 * slopes and betas stay NULL (CROWN's defaults, zeros) until set; they
 * point into that room. */
static SbBabDomain *domain_alloc(const SbBab *bab, int n_splits) {
  int64_t betas = bab->warm_betas ? (int64_t)bab->S * n_splits : 0;
  gsize bytes =
      sizeof(SbBabDomain) + sizeof(double) * bab->S +
      sizeof(SbBabSplit) * n_splits +
      sizeof(float) * (2 * bab->R + (int64_t)bab->S * bab->alpha_size + betas);
  SbBabDomain *d = g_malloc(bytes);
  memset(d, 0, sizeof(SbBabDomain));
  d->spec_lower = (double *)(d + 1);
  d->splits = (SbBabSplit *)(d->spec_lower + bab->S);
  d->bounds = (float *)(d->splits + n_splits);
  d->n_splits = n_splits;
  d->branch_node = -1;
  return d;
}

static float *alpha_room(const SbBab *bab, SbBabDomain *d) {
  return bab->alpha_size > 0 ? d->bounds + 2 * bab->R : NULL;
}

static float *beta_room(const SbBab *bab, SbBabDomain *d) {
  return bab->warm_betas && d->n_splits > 0
             ? d->bounds + 2 * bab->R + (int64_t)bab->S * bab->alpha_size
             : NULL;
}

SbBabDomain *sb_bab_domain_new_root(const SbBab *bab) {
  SbBabDomain *root = domain_alloc(bab, 0);
  for (int s = 0; s < bab->S; s++)
    root->spec_lower[s] = -INFINITY;
  return root;
}

SbBabDomain *sb_bab_domain_new_child(const SbBab *bab,
                                     const SbBabDomain *parent, int node,
                                     int64_t neuron, int sign) {
  SbBabDomain *c = domain_alloc(bab, parent->n_splits + 1);
  memcpy(c->bounds, parent->bounds, sizeof(float) * 2 * bab->R);
  memcpy(c->spec_lower, parent->spec_lower, sizeof(double) * bab->S);
  if (parent->alpha != NULL) {
    c->alpha = alpha_room(bab, c);
    memcpy(c->alpha, parent->alpha, sizeof(float) * bab->S * bab->alpha_size);
  }
  if (parent->n_splits > 0)
    memcpy(c->splits, parent->splits, sizeof(SbBabSplit) * parent->n_splits);
  c->splits[parent->n_splits] = (SbBabSplit){node, neuron, sign};
  if (parent->beta != NULL) {
    /* [S, n_splits] rows, one column longer: the new split starts at 0. */
    c->beta = beta_room(bab, c);
    for (int64_t s = 0; s < bab->S; s++) {
      memcpy(c->beta + s * c->n_splits, parent->beta + s * parent->n_splits,
             sizeof(float) * parent->n_splits);
      c->beta[s * c->n_splits + parent->n_splits] = 0;
    }
  }
  return c;
}

void sb_bab_domain_free(SbBabDomain *d) {
  if (d == NULL)
    return;
  g_free(d->candidates);
  g_free(d);
}

gboolean sb_bab_domains_load_bounds(SbBab *bab, SbNodeBounds *nb,
                                    SbBabDomain **doms, int B, GError **error) {
  for (int r = 0; r < bab->n_ri; r++) {
    int i = bab->ri_node[r];
    int64_t N = sb_net_node_size(bab->net, i);
    g_autofree double *l = g_new(double, B *N);
    g_autofree double *u = g_new(double, B *N);
    for (int b = 0; b < B; b++) {
      const float *src = doms[b]->bounds + bab->ri_offset[r];
      for (int64_t k = 0; k < N; k++) {
        l[b * N + k] = src[k];
        u[b * N + k] = src[bab->R + k];
      }
      for (int s = 0; s < doms[b]->n_splits; s++) {
        const SbBabSplit *sp = &doms[b]->splits[s];
        if (sp->node != i)
          continue;
        if (sp->sign < 0)
          l[b * N + sp->neuron] = MAX(l[b * N + sp->neuron], 0.0);
        else
          u[b * N + sp->neuron] = MIN(u[b * N + sp->neuron], 0.0);
      }
    }
    if (!sb_net_tensor_write(bab->net, nb->lo[i], B * N, l, error) ||
        !sb_net_tensor_write(bab->net, nb->hi[i], B * N, u, error))
      return FALSE;
  }
  return TRUE;
}

gboolean sb_bab_domains_store_bounds(SbBab *bab, SbNodeBounds *nb,
                                     SbBabDomain **doms, int B, gboolean *empty,
                                     GError **error) {
  for (int r = 0; r < bab->n_ri; r++) {
    int i = bab->ri_node[r];
    int64_t N = sb_net_node_size(bab->net, i);
    g_autofree float *l = g_new(float, B *N);
    g_autofree float *u = g_new(float, B *N);
    if (!sb_net_tensor_read_floats(bab->net, nb->lo[i], B * N, l, error) ||
        !sb_net_tensor_read_floats(bab->net, nb->hi[i], B * N, u, error))
      return FALSE;
    for (int b = 0; b < B; b++) {
      float *dst = doms[b]->bounds + bab->ri_offset[r];
      for (int64_t k = 0; k < N; k++) {
        /* A split can make a neuron's bounds cross: no input of the
         * box satisfies the domain's splits, so it is verified. */
        if (l[b * N + k] > u[b * N + k])
          empty[b] = TRUE;
        /* Round outwards: stored bounds must stay sound. */
        dst[k] = sb_float_down(l[b * N + k]);
        dst[bab->R + k] = sb_float_up(u[b * N + k]);
      }
    }
  }
  return TRUE;
}

gboolean sb_bab_domains_split_signs(SbBab *bab, SbBabDomain **doms, int B,
                                    sb_tensor **sign, GError **error) {
  for (int r = 0; r < bab->n_ri; r++) {
    int i = bab->ri_node[r];
    int64_t N = sb_net_node_size(bab->net, i);
    g_autofree double *v = NULL;
    for (int b = 0; b < B; b++)
      for (int s = 0; s < doms[b]->n_splits; s++)
        if (doms[b]->splits[s].node == i) {
          if (v == NULL)
            v = g_new0(double, B *N);
          v[b * N + doms[b]->splits[s].neuron] = doms[b]->splits[s].sign;
        }
    if (v == NULL)
      continue;
    if ((sign[i] = sb_net_tensor_new(bab->net, SB_MEM_BOUNDS, B, N, 0,
                                     error)) == NULL ||
        !sb_net_tensor_write(bab->net, sign[i], B * N, v, error))
      return FALSE;
  }
  return TRUE;
}

gboolean sb_bab_domains_exchange_alphas(SbBab *bab, SbAlphaSet *set,
                                        SbBabDomain **doms, int B,
                                        gboolean save, GError **error) {
  SbNetwork *net = bab->net;
  int64_t offset = 0, S = bab->S;
  gboolean any = save;
  for (int b = 0; b < B && !any; b++)
    any = doms[b]->alpha != NULL;
  if (!any)
    return TRUE;
  for (int j = 0; j < set->n_nodes; j++) {
    if (set->alpha[SB_SIDE_LOWER] == NULL ||
        set->alpha[SB_SIDE_LOWER][j] == NULL)
      continue;
    int64_t N = sb_net_node_size(net, j);
    g_autofree double *buf = g_new(double, S *B *N);
    if (!sb_net_tensor_read(net, set->alpha[SB_SIDE_LOWER][j], S * B * N, buf,
                            error))
      return FALSE;
    for (int b = 0; b < B; b++) {
      SbBabDomain *d = doms[b];
      if (save && d->alpha == NULL)
        d->alpha = alpha_room(bab, d);
      if (d->alpha == NULL)
        continue;
      for (int64_t s = 0; s < S; s++)
        for (int64_t k = 0; k < N; k++) {
          float *a = &d->alpha[s * bab->alpha_size + offset + k];
          double *t = &buf[(s * B + b) * N + k];
          if (save)
            *a = (float)*t;
          else
            *t = *a;
        }
    }
    if (!save && !sb_net_tensor_write(net, set->alpha[SB_SIDE_LOWER][j],
                                      S * B * N, buf, error))
      return FALSE;
    offset += N;
  }
  return TRUE;
}

gboolean sb_bab_domains_exchange_betas(SbBab *bab, SbAlphaSet *set,
                                       SbBabDomain **doms, int B, gboolean save,
                                       GError **error) {
  SbNetwork *net = bab->net;
  int64_t S = bab->S;
  gboolean any = save;
  for (int b = 0; b < B && !any; b++)
    any = doms[b]->beta != NULL;
  if (!any || set->beta == NULL)
    return TRUE;
  for (int j = 0; j < set->n_nodes; j++) {
    if (set->beta[j] == NULL)
      continue;
    int64_t N = sb_net_node_size(net, j);
    /* Read back (save) as the alphas are, so that every process keeps the
     * same values; loaded into zeros, where no domain splits. */
    g_autofree double *buf =
        save ? g_new(double, S *B *N) : g_new0(double, S *B *N);
    if (save && !sb_net_tensor_read(net, set->beta[j], S * B * N, buf, error))
      return FALSE;
    for (int b = 0; b < B; b++) {
      SbBabDomain *d = doms[b];
      if (save && d->beta == NULL && d->n_splits > 0) {
        d->beta = beta_room(bab, d);
        memset(d->beta, 0, sizeof(float) * S * d->n_splits);
      }
      if (d->beta == NULL)
        continue;
      for (int k = 0; k < d->n_splits; k++) {
        if (d->splits[k].node != j)
          continue;
        for (int64_t s = 0; s < S; s++) {
          float *beta = &d->beta[s * d->n_splits + k];
          double *t = &buf[(s * B + b) * N + d->splits[k].neuron];
          if (save)
            *beta = (float)*t;
          else
            *t = *beta;
        }
      }
    }
    if (!save && !sb_net_tensor_write(net, set->beta[j], S * B * N, buf, error))
      return FALSE;
  }
  return TRUE;
}

gboolean sb_bab_domains_inherited_set(SbBab *bab, SbAlphaSet *set,
                                      SbNodeBounds *nb, SbBabDomain **doms,
                                      int B, sb_tensor **sign, gboolean betas,
                                      GError **error) {
  SbNetwork *net = bab->net;
  return sb_alpha_set_init(net, set, bab->out_node, bab->S, B, SB_SIDES_LOWER,
                           nb->lo, nb->hi, error) &&
         sb_bab_domains_exchange_alphas(bab, set, doms, B, FALSE, error) &&
         (!betas ||
          (sb_alpha_set_add_betas(net, set, bab->S, B, sign, error) &&
           (!bab->warm_betas ||
            sb_bab_domains_exchange_betas(bab, set, doms, B, FALSE, error))));
}

int64_t sb_bab_domain_split_bytes(const SbBab *bab, const SbBabDomain *d) {
  int64_t bytes = (int64_t)d->n_splits * sizeof(SbBabSplit);
  if (d->beta != NULL)
    bytes += (int64_t)bab->S * d->n_splits * sizeof(float);
  return bytes;
}
