/* SPDX-License-Identifier: MIT */
/* Complete verification: PGD attack, alpha-CROWN at the root, then
 * beta-CROWN branch-and-bound over ReLU splits (batched domains, BaBSR or
 * FSB branching). Every "unsat" rests on sound bounds only; every "sat" on
 * a counterexample checked by a plain forward pass. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "alpha.h"
#include "bounds_private.h"
#include "lockstep.h"
#include "verify.h"

const char *
sb_result_to_string (SbResult r)
{
  static const char *const words[] = { "unsat", "sat", "unknown", "timeout", "error" };
  return words[r];
}

void
sb_verify_params_init (SbVerifyParams *p)
{
  memset (p, 0, sizeof *p);
  p->timeout = 0;
  p->batch = 32;
  p->max_domains = 200000;
  p->max_memory_mib = 4096;
  p->branching = SB_BRANCH_BABSR;
  p->fsb_candidates = 3;
  p->bab_iterations = 10;
  p->refine_intermediate = TRUE;
  p->attack = TRUE;
  sb_attack_params_init (&p->attack_params);
}

void
sb_verify_outcome_clear (SbVerifyOutcome *o)
{
  g_clear_pointer (&o->x, g_free);
  g_clear_pointer (&o->y, g_free);
  g_clear_pointer (&o->reason, g_free);
}

/* A ReLU split: the input neuron `neuron` of node `node` (a ReLU input) is
 * constrained to z >= 0 (sign -1, "active") or z <= 0 (sign +1). */
typedef struct {
  int node;
  int64_t neuron;
  int sign;
} Split;

typedef struct {
  float *bounds;        /* lower then upper bounds of every ReLU input */
  double *spec_lower;   /* [S]; never below the parent's (a subdomain) */
  float *alpha;         /* [S, alpha_size] slopes the bound was found
                           with, inherited as the children's start; NULL:
                           CROWN's defaults */
  double margin;        /* > 0: verified */
  Split *splits;
  int n_splits;
  int branch_node;      /* -1: nothing left to split */
  int64_t branch_neuron;
  int64_t *candidates;  /* FSB: (node, neuron) pairs, best first */
  int n_candidates;
  gboolean tried;       /* its bound's minimiser was checked */
} Domain;

typedef struct {
  SbNetwork *net;
  const SbProperty *prop;
  const SbVerifyParams *params;
  int region;
  gint64 deadline;
  /* Layout of a domain's bounds: the ReLU-input nodes and their offsets. */
  int n_ri;
  int *ri_node;
  int64_t *ri_offset;
  int64_t R;
  /* Layout of a domain's slopes: the spec pass's ReLU nodes, each N wide. */
  int64_t alpha_size;
  /* The atoms BaB still has to prove, grouped by open disjunct. */
  int S;
  double *rows;   /* [S, n_outputs] */
  double *rhs;    /* [S] */
  int n_open;
  int *open_start; /* [n_open + 1] */
  /* Min-heap of domains by margin. */
  GPtrArray *heap;
  int64_t evaluated;
  gboolean limit_hit;   /* stopped by --max-domains or --max-memory */
  gboolean found;
  float *cex;
} Bab;

static void
domain_free (Domain *d)
{
  if (d == NULL)
    return;
  g_free (d->bounds);
  g_free (d->spec_lower);
  g_free (d->alpha);
  g_free (d->splits);
  g_free (d->candidates);
  g_free (d);
}

/* ---- heap --------------------------------------------------------------- */

static void
heap_push (GPtrArray *h, Domain *d)
{
  g_ptr_array_add (h, d);
  for (guint i = h->len - 1; i > 0;)
    {
      guint p = (i - 1) / 2;
      Domain *a = h->pdata[i], *b = h->pdata[p];
      if (b->margin <= a->margin)
        break;
      h->pdata[i] = b;
      h->pdata[p] = a;
      i = p;
    }
}

static Domain *
heap_pop (GPtrArray *h)
{
  Domain *top = h->pdata[0];
  h->pdata[0] = h->pdata[h->len - 1];
  g_ptr_array_set_size (h, h->len - 1);
  for (guint i = 0;;)
    {
      guint l = 2 * i + 1, r = l + 1, m = i;
      if (l < h->len && ((Domain *) h->pdata[l])->margin < ((Domain *) h->pdata[m])->margin)
        m = l;
      if (r < h->len && ((Domain *) h->pdata[r])->margin < ((Domain *) h->pdata[m])->margin)
        m = r;
      if (m == i)
        break;
      gpointer t = h->pdata[i];
      h->pdata[i] = h->pdata[m];
      h->pdata[m] = t;
      i = m;
    }
  return top;
}

/* ---- margins -------------------------------------------------------------- */

/* A domain counts as proven only when its margin clears the float32
 * rounding of the bound computation, not merely zero. */
#define PROVEN_MARGIN 1e-6

static gboolean
proven (const Domain *d)
{
  return d->margin > PROVEN_MARGIN;
}

/* min over open disjuncts of max over their atoms of (lower - d): the
 * domain is verified when it is positive (see proven). */
static double
margin_of (const Bab *bab, const double *spec_lower)
{
  double m = INFINITY;
  for (int j = 0; j < bab->n_open; j++)
    {
      double best = -INFINITY;
      for (int a = bab->open_start[j]; a < bab->open_start[j + 1]; a++)
        best = MAX (best, spec_lower[a] - bab->rhs[a]);
      m = MIN (m, best);
    }
  return m;
}

/* ---- batch evaluation ------------------------------------------------------ */

/* Writes the domains' ReLU-input bounds into nb, applying each domain's
 * splits. Returns FALSE on backend errors. */
static gboolean
load_bounds (Bab *bab, SbNodeBounds *nb, Domain **doms, int B, GError **error)
{
  for (int r = 0; r < bab->n_ri; r++)
    {
      int i = bab->ri_node[r];
      int64_t N = sb_net_node_size (bab->net, i);
      g_autofree double *l = g_new (double, B * N);
      g_autofree double *u = g_new (double, B * N);
      for (int b = 0; b < B; b++)
        {
          const float *src = doms[b]->bounds + bab->ri_offset[r];
          for (int64_t k = 0; k < N; k++)
            {
              l[b * N + k] = src[k];
              u[b * N + k] = src[bab->R + k];
            }
          for (int s = 0; s < doms[b]->n_splits; s++)
            {
              const Split *sp = &doms[b]->splits[s];
              if (sp->node != i)
                continue;
              if (sp->sign < 0)
                l[b * N + sp->neuron] = MAX (l[b * N + sp->neuron], 0.0);
              else
                u[b * N + sp->neuron] = MIN (u[b * N + sp->neuron], 0.0);
            }
        }
      if (!sb_net_tensor_write (bab->net, nb->lo[i], B * N, l, error)
          || !sb_net_tensor_write (bab->net, nb->hi[i], B * N, u, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
store_bounds (Bab *bab, SbNodeBounds *nb, Domain **doms, int B, gboolean *empty, GError **error)
{
  for (int r = 0; r < bab->n_ri; r++)
    {
      int i = bab->ri_node[r];
      int64_t N = sb_net_node_size (bab->net, i);
      g_autofree double *l = g_new (double, B * N);
      g_autofree double *u = g_new (double, B * N);
      if (!sb_net_tensor_read (bab->net, nb->lo[i], B * N, l, error)
          || !sb_net_tensor_read (bab->net, nb->hi[i], B * N, u, error))
        return FALSE;
      for (int b = 0; b < B; b++)
        {
          float *dst = doms[b]->bounds + bab->ri_offset[r];
          for (int64_t k = 0; k < N; k++)
            {
              /* A split can make a neuron's bounds cross: no input of the
               * box satisfies the domain's splits, so it is verified. */
              if (l[b * N + k] > u[b * N + k])
                empty[b] = TRUE;
              /* Round outwards: stored bounds must stay sound. */
              dst[k] = nextafterf ((float) l[b * N + k], -INFINITY);
              dst[bab->R + k] = nextafterf ((float) u[b * N + k], INFINITY);
            }
        }
    }
  return TRUE;
}

/* [B, N_i] split signs per ReLU-input node (NULL where no domain splits). */
static gboolean
make_split_signs (Bab *bab, Domain **doms, int B, sb_tensor **sign, GError **error)
{
  for (int r = 0; r < bab->n_ri; r++)
    {
      int i = bab->ri_node[r];
      int64_t N = sb_net_node_size (bab->net, i);
      g_autofree double *v = NULL;
      for (int b = 0; b < B; b++)
        for (int s = 0; s < doms[b]->n_splits; s++)
          if (doms[b]->splits[s].node == i)
            {
              if (v == NULL)
                v = g_new0 (double, B * N);
              v[b * N + doms[b]->splits[s].neuron] = doms[b]->splits[s].sign;
            }
      if (v == NULL)
        continue;
      if ((sign[i] = sb_net_tensor_new (bab->net, SB_MEM_BOUNDS, B, N, 0, error)) == NULL
          || !sb_net_tensor_write (bab->net, sign[i], B * N, v, error))
        return FALSE;
    }
  return TRUE;
}

/* Branching scores from the coefficients of the ReLU outputs in the spec's
 * lower bound: an unstable neuron whose triangle relaxation costs the bound
 * most (-min(A,0) * intercept, summed over atoms) is split first. */
static void
choose_branch (Bab *bab, Domain *d, int b, int B, double **relu_A, int n_keep)
{
  double best = -1;
  d->branch_node = -1;
  g_clear_pointer (&d->candidates, g_free);
  d->n_candidates = 0;
  g_autofree double *top_score = g_new (double, MAX (n_keep, 1));
  g_autofree int64_t *top = g_new (int64_t, 2 * MAX (n_keep, 1));
  int n_top = 0;
  for (int r = 0; r < bab->n_ri; r++)
    {
      int i = bab->ri_node[r];
      const double *A = relu_A[r];
      if (A == NULL)
        continue;
      int64_t N = sb_net_node_size (bab->net, i);
      const float *l = d->bounds + bab->ri_offset[r], *u = l + bab->R;
      for (int64_t k = 0; k < N; k++)
        {
          if (!(l[k] < 0 && u[k] > 0))
            continue;
          double t = -(double) l[k] * u[k] / ((double) u[k] - l[k]), score = 0, mass = 0;
          for (int s = 0; s < bab->S; s++)
            {
              double a = A[((int64_t) s * B + b) * N + k];
              score += -MIN (a, 0.0) * t;
              mass += fabs (a);
            }
          score += 1e-6 * mass * ((double) u[k] - l[k]);
          if (score > best)
            {
              best = score;
              d->branch_node = i;
              d->branch_neuron = k;
            }
          /* Keep the n_keep best for FSB, best first. */
          if (n_keep == 0 || (n_top == n_keep && score <= top_score[n_keep - 1]))
            continue;
          int pos = n_top < n_keep ? n_top++ : n_keep - 1;
          for (; pos > 0 && top_score[pos - 1] < score; pos--)
            {
              top_score[pos] = top_score[pos - 1];
              top[2 * pos] = top[2 * pos - 2];
              top[2 * pos + 1] = top[2 * pos - 1];
            }
          top_score[pos] = score;
          top[2 * pos] = i;
          top[2 * pos + 1] = k;
        }
    }
  if (n_keep > 0 && n_top > 0)
    {
      d->candidates = g_memdup2 (top, sizeof (int64_t) * 2 * n_top);
      d->n_candidates = n_top;
    }
}

/* The exact minimiser of an atom when no ReLU is unstable: the bound is
 * then linear in x and attained at a corner of the box. */
static void
try_corner (Bab *bab, const double *A_input, int b, int B, const Domain *d)
{
  const SbGraph *g = bab->net->graph;
  const SbRegion *reg = &bab->prop->regions[bab->region];
  g_autofree float *x = g_new (float, g->input_size);
  for (int s = 0; s < bab->S && !bab->found; s++)
    {
      if (d->spec_lower[s] - bab->rhs[s] > 0)
        continue;
      const double *a = A_input + ((int64_t) s * B + b) * g->input_size;
      for (int64_t k = 0; k < g->input_size; k++)
        x[k] = sb_float_in_range (a[k] > 0 ? reg->x_lower[k] : reg->x_upper[k], reg->x_lower[k],
                                  reg->x_upper[k]);
      if (sb_net_counterexample_check (bab->net, bab->prop, bab->region, x, NULL))
        {
          bab->found = TRUE;
          bab->cex = g_steal_pointer (&x);
        }
    }
}

/* Moves slopes between the domains and the optimiser's tensors: with
 * `save`, each domain keeps its optimised slopes; without, the tensors
 * (holding CROWN's defaults) take each domain's inherited ones. */
static gboolean
exchange_alphas (Bab *bab, SbAlphaSet *set, Domain **doms, int B, gboolean save, GError **error)
{
  SbNetwork *net = bab->net;
  int64_t offset = 0, S = bab->S;
  gboolean any = save;
  for (int b = 0; b < B && !any; b++)
    any = doms[b]->alpha != NULL;
  if (!any)
    return TRUE;
  for (int j = 0; j < set->n_nodes; j++)
    {
      if (set->alpha[SB_SIDE_LOWER] == NULL || set->alpha[SB_SIDE_LOWER][j] == NULL)
        continue;
      int64_t N = sb_net_node_size (net, j);
      g_autofree double *buf = g_new (double, S * B * N);
      if (!sb_net_tensor_read (net, set->alpha[SB_SIDE_LOWER][j], S * B * N, buf, error))
        return FALSE;
      for (int b = 0; b < B; b++)
        {
          Domain *d = doms[b];
          if (save && d->alpha == NULL)
            d->alpha = g_new (float, S * bab->alpha_size);
          if (d->alpha == NULL)
            continue;
          for (int64_t s = 0; s < S; s++)
            for (int64_t k = 0; k < N; k++)
              {
                float *a = &d->alpha[s * bab->alpha_size + offset + k];
                double *t = &buf[(s * B + b) * N + k];
                if (save)
                  *a = (float) *t;
                else
                  *t = *a;
              }
        }
      if (!save && !sb_net_tensor_write (net, set->alpha[SB_SIDE_LOWER][j], S * B * N, buf, error))
        return FALSE;
      offset += N;
    }
  return TRUE;
}

/* Evaluates B domains whose bounds were loaded from their parents: refresh
 * the intermediate bounds after `first_split_node`, optimise alphas and
 * betas for the atoms, score branches. Verified or empty domains get
 * margin +inf. */
static gboolean
evaluate (Bab *bab, Domain **doms, int B, int first_split_node, gboolean tighten, GError **error)
{
  SbNetwork *net = bab->net;
  const SbRegion *reg = &bab->prop->regions[bab->region];
  int n = sb_graph_n_nodes (net->graph);
  SbNodeBounds nb = { 0 };
  g_autofree sb_tensor **sign = g_new0 (sb_tensor *, n);
  g_autofree gboolean *empty = g_new0 (gboolean, B);
  g_autofree double *lower = g_new (double, (int64_t) bab->S * B);
  g_autofree double **relu_A = g_new0 (double *, bab->n_ri);
  g_autofree double *A_input = NULL;
  g_autofree double *last = NULL;
  SbAlphaSet set = { 0 };
  sb_tensor *A = NULL;
  SbPassRecord rec = { 0 };
  gboolean ok = FALSE, recorded = FALSE;

  if (!sb_node_bounds_init (net, &nb, B, reg->x_lower, reg->x_upper, error)
      || !load_bounds (bab, &nb, doms, B, error))
    goto out;
  if (tighten)
    for (int r = 0; r < bab->n_ri; r++)
      {
        int i = bab->ri_node[r];
        if (i > first_split_node && sb_node_needs_crown (net, i)
            && !sb_node_tighten (net, &nb, i, FALSE, NULL, NULL, error))
          goto out;
      }
  if (!store_bounds (bab, &nb, doms, B, empty, error) || !make_split_signs (bab, doms, B, sign, error))
    goto out;
  /* The stored (outward-rounded, split-applied) bounds are what the spec
   * pass must use too. */
  if (!load_bounds (bab, &nb, doms, B, error))
    goto out;

  int out_node = net->graph->output;
  if ((A = sb_spec_tensor_new (bab->net, bab->rows, bab->S, B, error)) == NULL)
    goto out;
  for (int64_t k = 0; k < (int64_t) bab->S * B; k++)
    lower[k] = -INFINITY;
  SbPassConfig cfg = { .sides = SB_SIDES_LOWER, .split_sign = sign };
  SbAlphaParams saved = net->alpha;
  net->alpha.iterations = bab->params->bab_iterations;
  ok = sb_alpha_set_init (net, &set, out_node, bab->S, B, SB_SIDES_LOWER, nb.lo, nb.hi, error)
       && exchange_alphas (bab, &set, doms, B, FALSE, error)
       && sb_alpha_set_add_betas (net, &set, bab->S, B, sign, error)
       && sb_alpha_optimize (net, &set, out_node, A, bab->S, B, nb.lo, nb.hi, SB_SIDES_LOWER, &cfg,
                             lower, NULL, error)
       && exchange_alphas (bab, &set, doms, B, TRUE, error);
  net->alpha = saved;
  if (!ok)
    goto out;
  ok = FALSE;

  /* One recorded pass with the final slopes gives the coefficients at the
   * ReLU outputs for branching and at the input for corner checks. */
  cfg.alpha[0] = set.alpha[0];
  cfg.beta[0] = set.beta;
  cfg.record = TRUE;
  last = g_new (double, (int64_t) bab->S * B);
  if (!sb_crown_pass (net, out_node, A, bab->S, B, nb.lo, nb.hi, &cfg, &rec, last, NULL, error))
    goto out;
  recorded = TRUE;
  for (int r = 0; r < bab->n_ri; r++)
    {
      int i = bab->ri_node[r];
      /* The ReLU consuming node i: its saved A_out is w.r.t. its output. */
      for (int j = i + 1; j < n; j++)
        {
          const SbNode *node = sb_graph_node (net->graph, j);
          if (node->kind == SB_NODE_RELU && node->inputs[0] == i && rec.saved[0][j] != NULL)
            {
              int64_t count = (int64_t) bab->S * B * node->size;
              relu_A[r] = g_new (double, count);
              if (!sb_net_tensor_read (net, rec.saved[0][j], count, relu_A[r], error))
                goto out;
              break;
            }
        }
    }
  A_input = g_new (double, (int64_t) bab->S * B * net->graph->input_size);
  if (!sb_net_tensor_read (net, rec.saved[0][0], (int64_t) bab->S * B * net->graph->input_size, A_input,
                           error))
    goto out;

  for (int b = 0; b < B; b++)
    {
      Domain *d = doms[b];
      for (int s = 0; s < bab->S; s++)
        d->spec_lower[s] = MAX (d->spec_lower[s],
                                MAX (lower[(int64_t) s * B + b], last[(int64_t) s * B + b]));
      d->margin = empty[b] ? INFINITY : margin_of (bab, d->spec_lower);
      if (proven (d))
        continue;
      choose_branch (bab, d, b, B, relu_A,
                     bab->params->branching == SB_BRANCH_FSB ? bab->params->fsb_candidates : 0);
      /* With no unstable ReLU left, the minimiser of the (then exact)
       * linear bound decides the domain. */
      if (d->branch_node < 0)
        try_corner (bab, A_input, b, B, d);
    }
  /* The minimiser of the linear lower bound is also a cheap counterexample
   * candidate elsewhere: try it on the few worst domains of the batch
   * (a forward pass each, so not on all of them). */
  for (int tries = 0; tries < 4 && !bab->found; tries++)
    {
      int worst = -1;
      for (int b = 0; b < B; b++)
        if (!proven (doms[b]) && doms[b]->branch_node >= 0 && !doms[b]->tried
            && (worst < 0 || doms[b]->margin < doms[worst]->margin))
          worst = b;
      if (worst < 0)
        break;
      doms[worst]->tried = TRUE;
      try_corner (bab, A_input, worst, B, doms[worst]);
    }
  bab->evaluated += B;
  ok = TRUE;
out:
  if (recorded)
    sb_pass_record_clear (net, &rec);
  for (int r = 0; r < bab->n_ri; r++)
    g_free (relu_A[r]);
  sb_alpha_set_clear (net, &set);
  sb_net_tensor_free (net, A);
  for (int i = 0; i < n; i++)
    sb_net_tensor_free (net, sign[i]);
  sb_node_bounds_clear (net, &nb);
  return ok;
}

static Domain *
child_of (const Bab *bab, const Domain *parent, int node, int64_t neuron, int sign)
{
  Domain *c = g_new0 (Domain, 1);
  c->bounds = g_memdup2 (parent->bounds, sizeof (float) * 2 * bab->R);
  c->spec_lower = g_memdup2 (parent->spec_lower, sizeof (double) * bab->S);
  if (parent->alpha != NULL)
    c->alpha = g_memdup2 (parent->alpha, sizeof (float) * bab->S * bab->alpha_size);
  c->n_splits = parent->n_splits + 1;
  c->splits = g_new (Split, c->n_splits);
  if (parent->n_splits > 0)
    memcpy (c->splits, parent->splits, sizeof (Split) * parent->n_splits);
  c->splits[parent->n_splits] = (Split) { node, neuron, sign };
  c->branch_node = -1;
  return c;
}

/* FSB: for each parent, bound both children of each candidate split with
 * one batched CROWN pass (parents' intermediate bounds, no optimisation)
 * and keep the candidate whose worse child is best. */
static gboolean
filter_branches (Bab *bab, Domain **parents, int n_parents, GError **error)
{
  SbNetwork *net = bab->net;
  GPtrArray *trial = g_ptr_array_new_with_free_func ((GDestroyNotify) domain_free);
  g_autofree int *owner = NULL;
  gboolean ok = FALSE;
  for (int p = 0; p < n_parents; p++)
    for (int c = 0; c < parents[p]->n_candidates; c++)
      for (int sgn = -1; sgn <= 1; sgn += 2)
        g_ptr_array_add (trial, child_of (bab, parents[p], (int) parents[p]->candidates[2 * c],
                                          parents[p]->candidates[2 * c + 1], sgn));
  int B = (int) trial->len;
  if (B == 0)
    {
      g_ptr_array_unref (trial);
      return TRUE;
    }
  const SbRegion *reg = &bab->prop->regions[bab->region];
  SbNodeBounds nb = { 0 };
  g_autofree double *lower = g_new (double, (int64_t) bab->S * B);
  g_autofree double *one = NULL;
  sb_tensor *A = NULL;
  if (!sb_node_bounds_init (net, &nb, B, reg->x_lower, reg->x_upper, error)
      || !load_bounds (bab, &nb, (Domain **) trial->pdata, B, error)
      || (A = sb_spec_tensor_new (bab->net, bab->rows, bab->S, B, error)) == NULL)
    goto out;
  SbPassConfig cfg = { .sides = SB_SIDES_LOWER };
  if (!sb_crown_pass (net, net->graph->output, A, bab->S, B, nb.lo, nb.hi, &cfg, NULL, lower, NULL, error))
    goto out;
  int t = 0;
  one = g_new (double, bab->S);
  for (int p = 0; p < n_parents; p++)
    {
      double best = -INFINITY;
      for (int c = 0; c < parents[p]->n_candidates; c++)
        {
          double worst = INFINITY;
          for (int side = 0; side < 2; side++, t++)
            {
              for (int s = 0; s < bab->S; s++)
                one[s] = lower[(int64_t) s * B + t];
              worst = MIN (worst, margin_of (bab, one));
            }
          if (worst > best)
            {
              best = worst;
              parents[p]->branch_node = (int) parents[p]->candidates[2 * c];
              parents[p]->branch_neuron = parents[p]->candidates[2 * c + 1];
            }
        }
    }
  ok = TRUE;
out:
  sb_net_tensor_free (net, A);
  sb_node_bounds_clear (net, &nb);
  g_ptr_array_unref (trial);
  return ok;
}

/* A disjunct proven on the whole region is proven on every subdomain:
 * branch-and-bound carries only the atoms of the others, which makes every
 * pass cheaper (the root keeps its bounds for those atoms). */
static void
drop_proven_disjuncts (Bab *bab, Domain *root)
{
  const int64_t n_out = bab->net->graph->output_size;
  int S = 0, n_open = 0;
  for (int j = 0; j < bab->n_open; j++)
    {
      gboolean done = FALSE;
      for (int a = bab->open_start[j]; a < bab->open_start[j + 1]; a++)
        done = done || root->spec_lower[a] - bab->rhs[a] > PROVEN_MARGIN;
      if (done)
        continue;
      int start = S;
      for (int a = bab->open_start[j]; a < bab->open_start[j + 1]; a++, S++)
        {
          memmove (bab->rows + (int64_t) S * n_out, bab->rows + (int64_t) a * n_out, sizeof (double) * n_out);
          bab->rhs[S] = bab->rhs[a];
          root->spec_lower[S] = root->spec_lower[a];
          if (root->alpha != NULL)
            memmove (root->alpha + (int64_t) S * bab->alpha_size, root->alpha + (int64_t) a * bab->alpha_size,
                     sizeof (float) * bab->alpha_size);
        }
      bab->open_start[n_open++] = start;
    }
  bab->open_start[n_open] = S;
  bab->n_open = n_open;
  bab->S = S;
}

/* ---- one region -------------------------------------------------------------- */

static SbResult
bab_region (Bab *bab, SbNodeBounds *root_nb, GError **error)
{
  const SbVerifyParams *p = bab->params;
  Domain *root = g_new0 (Domain, 1);
  root->bounds = g_new (float, 2 * bab->R);
  root->spec_lower = g_new (double, bab->S);
  for (int s = 0; s < bab->S; s++)
    root->spec_lower[s] = -INFINITY;
  root->branch_node = -1;
  g_autofree gboolean *empty = g_new0 (gboolean, 1);
  Domain *one[1] = { root };
  if (!store_bounds (bab, root_nb, one, 1, empty, error) || !evaluate (bab, one, 1, G_MAXINT, FALSE, error))
    {
      domain_free (root);
      return SB_RESULT_ERROR;
    }
  if (bab->found)
    {
      domain_free (root);
      return SB_RESULT_SAT;
    }
  if (proven (root))
    {
      domain_free (root);
      return SB_RESULT_UNSAT;
    }
  drop_proven_disjuncts (bab, root);
  heap_push (bab->heap, root);
  gint64 t0 = g_get_monotonic_time ();
  SbResult result = SB_RESULT_UNSAT;
  while (bab->heap->len > 0)
    {
      if (sb_net_deadline_passed (bab->net, bab->deadline))
        {
          result = SB_RESULT_TIMEOUT;
          break;
        }
      /* Bounds and slopes dominate a queued domain's memory. */
      double domain_mib = (2.0 * bab->R + (double) bab->S * bab->alpha_size) * sizeof (float) / 1048576.0;
      if ((int64_t) bab->heap->len > p->max_domains
          || (p->max_memory_mib > 0 && bab->heap->len * domain_mib > p->max_memory_mib))
        {
          bab->limit_hit = TRUE;
          result = SB_RESULT_UNKNOWN;
          break;
        }
      int n_par = MIN ((int) bab->heap->len, MAX (p->batch, 1));
      g_autofree Domain **parents = g_new (Domain *, n_par);
      int first_split = G_MAXINT;
      for (int k = 0; k < n_par; k++)
        parents[k] = heap_pop (bab->heap);
      if (p->branching == SB_BRANCH_FSB && !filter_branches (bab, parents, n_par, error))
        return SB_RESULT_ERROR;
      GPtrArray *kids = g_ptr_array_new ();
      gboolean stuck = FALSE;
      for (int k = 0; k < n_par; k++)
        {
          Domain *d = parents[k];
          if (d->branch_node < 0)
            stuck = TRUE; /* nothing unstable, not proven, no counterexample */
          else
            for (int sgn = -1; sgn <= 1; sgn += 2)
              g_ptr_array_add (kids, child_of (bab, d, d->branch_node, d->branch_neuron, sgn));
          if (d->branch_node >= 0)
            first_split = MIN (first_split, d->branch_node);
          domain_free (d);
        }
      gboolean ok = kids->len == 0
                    || evaluate (bab, (Domain **) kids->pdata, (int) kids->len, first_split,
                                 p->refine_intermediate, error);
      for (guint k = 0; k < kids->len; k++)
        {
          Domain *c = kids->pdata[k];
          if (ok && !bab->found && !proven (c))
            heap_push (bab->heap, c);
          else
            domain_free (c);
        }
      g_ptr_array_free (kids, TRUE);
      if (!ok)
        return SB_RESULT_ERROR;
      if (bab->found)
        {
          result = SB_RESULT_SAT;
          break;
        }
      if (stuck)
        {
          result = SB_RESULT_UNKNOWN;
          break;
        }
      if (p->progress != NULL)
        p->progress (p->progress_user, bab->evaluated, bab->heap->len,
                     bab->heap->len ? ((Domain *) bab->heap->pdata[0])->margin : 0,
                     (g_get_monotonic_time () - t0) / 1e6);
    }
  while (bab->heap->len > 0)
    domain_free (heap_pop (bab->heap));
  return result;
}

/* Root bounds of one region (IBP, alpha-CROWN intermediate bounds
 * intersected with IBP); the atoms of disjuncts not yet proven by them
 * go to BaB. */
static SbResult
verify_region (SbNetwork *net, const SbProperty *prop, int region, const SbVerifyParams *p,
               gint64 deadline, SbVerifyOutcome *o, GError **error)
{
  const SbGraph *g = net->graph;
  const SbRegion *reg = &prop->regions[region];
  int n = sb_graph_n_nodes (g);
  Bab bab = { net, prop, p, region, deadline };
  SbNodeBounds nb = { 0 };
  SbResult result = SB_RESULT_ERROR;

  if (p->attack)
    {
      float *x = g_new (float, g->input_size);
      g_autoptr (GError) attack_error = NULL;
      if (sb_attack_pgd (net, prop, region, &p->attack_params, deadline, x, &attack_error))
        {
          o->x = x;
          o->region = region;
          return SB_RESULT_SAT;
        }
      g_free (x);
      if (attack_error != NULL)
        {
          g_propagate_error (error, g_steal_pointer (&attack_error));
          return SB_RESULT_ERROR;
        }
    }

  if (!sb_node_bounds_init (net, &nb, 1, reg->x_lower, reg->x_upper, error))
    goto out;
  for (int i = 1; i < n; i++)
    {
      /* The root's alpha-CROWN is the longest step before branching: the
       * deadline is checked between its start nodes too. */
      if (sb_net_deadline_passed (net, deadline))
        {
          result = SB_RESULT_TIMEOUT;
          goto out;
        }
      if (!sb_node_ibp (net, &nb, i, error)
          || (sb_node_needs_crown (net, i) && !sb_node_tighten (net, &nb, i, TRUE, NULL, NULL, error)))
        goto out;
    }

  /* Layout of the ReLU inputs in a domain. */
  bab.ri_node = g_new (int, n);
  bab.ri_offset = g_new (int64_t, n);
  for (int i = 0; i < n; i++)
    if (net->feeds_relu[i])
      {
        bab.ri_node[bab.n_ri] = i;
        bab.ri_offset[bab.n_ri++] = bab.R;
        bab.R += sb_net_node_size (net, i);
      }
  /* The slopes of the spec pass: every ReLU the output depends on. */
  {
    g_autofree gboolean *reached = g_new (gboolean, n);
    sb_pass_ancestors (net, g->output, reached);
    for (int j = 0; j < g->output; j++)
      if (reached[j] && sb_graph_node (g, j)->kind == SB_NODE_RELU)
        bab.alpha_size += sb_net_node_size (net, j);
  }
  /* All atoms of every disjunct (none are proven yet: the root decides). */
  bab.S = 0;
  bab.open_start = g_new (int, reg->n_disjuncts + 1);
  bab.rows = g_new (double, (int64_t) (reg->disjunct_start[reg->n_disjuncts]) * g->output_size + 1);
  bab.rhs = g_new (double, reg->disjunct_start[reg->n_disjuncts] + 1);
  for (int j = 0; j < reg->n_disjuncts; j++)
    {
      bab.open_start[bab.n_open++] = bab.S;
      for (int a = reg->disjunct_start[j]; a < reg->disjunct_start[j + 1]; a++)
        {
          const SbAtom *atom = &prop->atoms[reg->atom_index[a]];
          memcpy (bab.rows + (int64_t) bab.S * g->output_size, atom->c, sizeof (double) * g->output_size);
          bab.rhs[bab.S++] = atom->d;
        }
    }
  bab.open_start[bab.n_open] = bab.S;
  if (bab.n_open == 0)
    {
      result = SB_RESULT_UNSAT; /* the unsafe region is empty */
      goto out;
    }
  bab.heap = g_ptr_array_new ();
  result = bab_region (&bab, &nb, error);
  o->domains += bab.evaluated;
  if (result == SB_RESULT_SAT && bab.cex != NULL)
    {
      o->x = g_steal_pointer (&bab.cex);
      o->region = region;
    }
  if (result == SB_RESULT_UNKNOWN && o->reason == NULL)
    o->reason = g_strdup_printf ("region %d: branch-and-bound stopped (%s)", region,
                                 bab.limit_hit ? "domain count or memory limit reached"
                                               : "a domain with no unstable ReLU left was not proven");
out:
  if (bab.heap != NULL)
    g_ptr_array_free (bab.heap, TRUE);
  g_free (bab.cex);
  g_free (bab.ri_node);
  g_free (bab.ri_offset);
  g_free (bab.open_start);
  g_free (bab.rows);
  g_free (bab.rhs);
  sb_node_bounds_clear (net, &nb);
  return result;
}

gboolean
sb_verify (SbNetwork *net, const SbProperty *prop, const SbVerifyParams *p,
           SbVerifyOutcome *o, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();
  gint64 deadline = p->timeout > 0 ? t0 + (gint64) (p->timeout * 1e6) : 0;
  gboolean saved_intersect = net->intersect_ibp;
  memset (o, 0, sizeof *o);
  o->result = SB_RESULT_UNSAT;
  if (!sb_net_require_vjp (net, error))
    {
      o->result = SB_RESULT_ERROR;
      return FALSE;
    }
  /* Complete verification takes the tighter of CROWN and IBP everywhere. */
  net->intersect_ibp = TRUE;
  for (int r = 0; r < prop->n_regions; r++)
    {
      SbResult res = verify_region (net, prop, r, p, deadline, o, error);
      if (res == SB_RESULT_SAT || res == SB_RESULT_ERROR)
        {
          o->result = res;
          break;
        }
      if (res != SB_RESULT_UNSAT && o->result == SB_RESULT_UNSAT)
        o->result = res;
      if (res == SB_RESULT_TIMEOUT)
        break;
    }
  net->intersect_ibp = saved_intersect;
  if (o->result == SB_RESULT_SAT)
    {
      o->y = g_new (double, net->graph->output_size);
      /* The forward pass that makes "sat" trustworthy. */
      if (!sb_net_counterexample_check (net, prop, o->region, o->x, o->y))
        {
          o->result = SB_RESULT_UNKNOWN;
          o->reason = g_strdup ("internal: a counterexample failed its final check");
        }
    }
  if (o->result == SB_RESULT_UNSAT && sb_net_deadline_passed (net, deadline > 0 ? deadline + 1000000 : 0))
    o->result = SB_RESULT_TIMEOUT;
  o->seconds = (g_get_monotonic_time () - t0) / 1e6;
  return o->result != SB_RESULT_ERROR;
}
