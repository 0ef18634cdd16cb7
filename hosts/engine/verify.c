/* SPDX-License-Identifier: MIT */
/* Complete verification: PGD attack, alpha-CROWN at the root, then
 * beta-CROWN branch-and-bound over ReLU splits (batched domains, BaBSR or
 * FSB branching). Every "unsat" rests on sound bounds only; every "sat" on
 * a counterexample checked by a plain forward pass. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alpha.h"
#include "bab_branching.h"
#include "bab_heap.h"
#include "float_round.h"
#include "lockstep.h"
#include "verify.h"
#include "verify_memory.h"

const char *sb_result_to_string(SbResult r) {
  static const char *const words[] = {"unsat", "sat", "unknown", "timeout",
                                      "error"};
  return words[r];
}

void sb_verify_params_init(SbVerifyParams *p) {
  memset(p, 0, sizeof *p);
  p->timeout = 0;
  p->batch = 32;
  p->max_domains = 200000;
  p->max_memory_mib = 4096;
  p->branching = SB_BRANCH_BABSR;
  p->fsb_candidates = 3;
  p->bab_iterations = 20;
  p->refine_intermediate = FALSE;
  p->tighten_layers = 3;
  p->tighten_domains = 128;
  p->tighten_after = 20000;
  p->tighten_min_gain = 0.025;
  p->warm_betas = TRUE;
  p->attack = TRUE;
  sb_alpha_params_init(&p->alpha);
  sb_attack_params_init(&p->attack_params);
}

void sb_verify_outcome_clear(SbVerifyOutcome *o) {
  g_clear_pointer(&o->x, g_free);
  g_clear_pointer(&o->y, g_free);
  g_clear_pointer(&o->reason, g_free);
  g_clear_pointer(&o->root_memory, g_free);
  g_clear_pointer(&o->bab_memory, g_free);
}

/* ---- evaluating a batch of domains ----------------------------------------
 */

/* The exact minimiser of an atom when no ReLU is unstable: the bound is
 * then linear in x and attained at a corner of the box. */
static void try_corner(SbBab *bab, const double *A_input, int b, int B,
                       const SbBabDomain *d) {
  if (bab->refining) /* its atoms are not the property's */
    return;
  const SbGraph *g = bab->net->graph;
  const SbRegion *reg = &bab->prop->regions[bab->region];
  g_autofree float *x = g_new(float, g->input_size);
  g_autofree double *y = g_new(double, g->output_size);
  for (int s = 0; s < bab->S && !bab->found; s++) {
    if (d->spec_lower[s] - bab->rhs[s] > 0)
      continue;
    const double *a = A_input + ((int64_t)s * B + b) * g->input_size;
    for (int64_t k = 0; k < g->input_size; k++)
      x[k] = sb_float_in_range(a[k] > 0 ? reg->x_lower[k] : reg->x_upper[k],
                               reg->x_lower[k], reg->x_upper[k]);
    if (sb_net_counterexample_check(bab->net, bab->prop, bab->region, x, y)) {
      bab->found = TRUE;
      bab->cex = g_steal_pointer(&x);
    }
    bab->found_margin =
        MIN(bab->found_margin, sb_point_margin(bab->prop, bab->region, y));
  }
}

/* Intermediate bounds of B domains whose bounds were loaded from their
 * parents: with `tighten`, CROWN refreshes the ReLU inputs after
 * `first_split_node`; the domains keep the results (rounded outwards,
 * empty[b] set where the splits leave no input), and nb then holds exactly
 * those stored, split-applied bounds. sign[] receives the split signs. */
static gboolean refresh_domain_bounds(SbBab *bab, SbNodeBounds *nb,
                                      SbBabDomain **doms, int B,
                                      int first_split_node, gboolean tighten,
                                      gboolean *empty, sb_tensor **sign,
                                      GError **error) {
  SbNetwork *net = bab->net;
  const SbRegion *reg = &bab->prop->regions[bab->region];
  if (!sb_node_bounds_init(net, nb, B, reg->x_lower, reg->x_upper, error) ||
      !sb_bab_domains_load_bounds(bab, nb, doms, B, error))
    return FALSE;
  if (tighten)
    for (int r = 0; r < bab->n_ri; r++) {
      /* Past the deadline the parents' bounds (already loaded) do; judged
       * in lockstep, like every deadline (lockstep.h). */
      if (sb_net_deadline_passed(net, bab->deadline))
        break;
      int i = bab->ri_node[r];
      if (i > first_split_node && sb_node_needs_crown(net, i) &&
          !sb_node_tighten(net, nb, i, NULL, TRUE, NULL, NULL, error))
        return FALSE;
    }
  /* The stored (outward-rounded, split-applied) bounds are what the spec
   * pass must use too. */
  return sb_bab_domains_store_bounds(bab, nb, doms, B, empty, error) &&
         sb_bab_domains_split_signs(bab, doms, B, sign, error) &&
         sb_bab_domains_load_bounds(bab, nb, doms, B, error);
}

/* alpha/beta-CROWN lower bounds of the open atoms for every domain into
 * lower [S*B], starting from each domain's inherited slopes (and betas,
 * with warm_betas); the domains keep the optimised ones. The final slopes
 * and betas stay in set. */
static gboolean optimize_domain_bounds(SbBab *bab, SbNodeBounds *nb,
                                       SbBabDomain **doms, int B,
                                       const sb_tensor *A, sb_tensor **sign,
                                       SbAlphaSet *set, double *lower,
                                       GError **error) {
  SbNetwork *net = bab->net;
  for (int64_t k = 0; k < (int64_t)bab->S * B; k++)
    lower[k] = -INFINITY;
  SbPassConfig cfg = {.sides = SB_SIDES_LOWER, .split_sign = sign};
  SbAlphaParams alpha = bab->params->alpha;
  alpha.iterations = bab->params->bab_iterations;
  if (bab->params->bab_lr_alpha > 0)
    alpha.learning_rate = bab->params->bab_lr_alpha;
  if (bab->params->bab_lr_beta > 0)
    alpha.beta_learning_rate = bab->params->bab_lr_beta;
  alpha.deadline = bab->deadline;
  return sb_bab_domains_inherited_set(bab, set, nb, doms, B, sign, TRUE,
                                      error) &&
         sb_alpha_optimize(net, set, &alpha, bab->out_node, A, bab->S, B,
                           nb->lo, nb->hi, SB_SIDES_LOWER, &cfg, lower, NULL,
                           error) &&
         sb_bab_domains_exchange_alphas(bab, set, doms, B, TRUE, error) &&
         (!bab->warm_betas ||
          sb_bab_domains_exchange_betas(bab, set, doms, B, TRUE, error));
}

/* One recorded pass with the final slopes and betas: its lower bounds into
 * last [S*B], the coefficients at the ReLU outputs (relu_A[r], [S, B, N],
 * for branching) and at the input (A_input [S, B, input_size], for corner
 * checks). */
static gboolean record_coefficients(SbBab *bab, SbNodeBounds *nb, int B,
                                    const sb_tensor *A, sb_tensor **sign,
                                    const SbAlphaSet *set, double *last,
                                    double **relu_A, double *A_input,
                                    GError **error) {
  SbNetwork *net = bab->net;
  int n = sb_graph_n_nodes(net->graph);
  SbPassConfig cfg = {
      .sides = SB_SIDES_LOWER, .split_sign = sign, .record = TRUE};
  SbPassRecord rec = {0};
  cfg.alpha[0] = set->alpha[0];
  cfg.beta[0] = set->beta;
  if (!sb_crown_pass(net, bab->out_node, A, bab->S, B, nb->lo, nb->hi, &cfg,
                     &rec, last, NULL, error))
    return FALSE;
  gboolean ok = TRUE;
  for (int r = 0; r < bab->n_ri && ok; r++) {
    int i = bab->ri_node[r];
    /* The ReLU consuming node i: its saved A_out is w.r.t. its output. */
    for (int j = i + 1; j < n; j++) {
      const SbNode *node = sb_graph_node(net->graph, j);
      if (node->kind == SB_NODE_RELU && node->inputs[0] == i &&
          rec.saved[0][j] != NULL) {
        int64_t count = (int64_t)bab->S * B * node->size;
        relu_A[r] = g_new(double, count);
        ok = sb_net_tensor_read(net, rec.saved[0][j], count, relu_A[r], error);
        break;
      }
    }
  }
  ok = ok && sb_net_tensor_read(net, rec.saved[0][0],
                                (int64_t)bab->S * B * net->graph->input_size,
                                A_input, error);
  sb_pass_record_clear(net, &rec);
  return ok;
}

/* Each domain's spec bounds (never below its parent's) and margin; for the
 * unproven ones, the next branch, or the corner check that decides a domain
 * with no unstable ReLU left. */
static void score_domains(SbBab *bab, SbBabDomain **doms, int B,
                          const gboolean *empty, const double *lower,
                          const double *last, double **relu_A,
                          const double *A_input) {
  int n_keep =
      bab->params->branching == SB_BRANCH_FSB ? bab->params->fsb_candidates : 0;
  for (int b = 0; b < B; b++) {
    SbBabDomain *d = doms[b];
    for (int s = 0; s < bab->S; s++)
      d->spec_lower[s] = MAX(d->spec_lower[s], MAX(lower[(int64_t)s * B + b],
                                                   last[(int64_t)s * B + b]));
    d->margin = empty[b] ? INFINITY : sb_bab_margin(bab, d->spec_lower);
    if (sb_bab_domain_proven(d))
      continue;
    sb_bab_choose_branch(bab, d, b, B, relu_A, n_keep);
    /* With no unstable ReLU left, the minimiser of the (then exact)
     * linear bound decides the domain. */
    if (d->branch_node < 0)
      try_corner(bab, A_input, b, B, d);
  }
}

/* The minimiser of the linear lower bound is also a cheap counterexample
 * candidate elsewhere: try it on the few worst domains of the batch (a
 * forward pass each, so not on all of them). */
static void try_worst_minimisers(SbBab *bab, SbBabDomain **doms, int B,
                                 const double *A_input) {
  for (int tries = 0; tries < 4 && !bab->found; tries++) {
    int worst = -1;
    for (int b = 0; b < B; b++)
      if (!sb_bab_domain_proven(doms[b]) && doms[b]->branch_node >= 0 &&
          !doms[b]->tried &&
          (worst < 0 || doms[b]->margin < doms[worst]->margin))
        worst = b;
    if (worst < 0)
      break;
    doms[worst]->tried = TRUE;
    try_corner(bab, A_input, worst, B, doms[worst]);
  }
}

/* Evaluates B domains whose bounds were loaded from their parents: refresh
 * the intermediate bounds after `first_split_node`, optimise alphas and
 * betas for the atoms, score branches. Verified or empty domains get
 * margin +inf. */
static gboolean evaluate(SbBab *bab, SbBabDomain **doms, int B,
                         int first_split_node, gboolean tighten,
                         GError **error) {
  SbNetwork *net = bab->net;
  int n = sb_graph_n_nodes(net->graph);
  SbNodeBounds nb = {0};
  g_autofree sb_tensor **sign = g_new0(sb_tensor *, n);
  g_autofree gboolean *empty = g_new0(gboolean, B);
  g_autofree double *lower = g_new(double, (int64_t)bab->S *B);
  g_autofree double *last = g_new(double, (int64_t)bab->S *B);
  g_autofree double **relu_A = g_new0(double *, bab->n_ri);
  g_autofree double *A_input =
      g_new(double, (int64_t)bab->S *B * net->graph->input_size);
  SbAlphaSet set = {0};
  sb_tensor *A = NULL;

  gboolean ok =
      refresh_domain_bounds(bab, &nb, doms, B, first_split_node, tighten, empty,
                            sign, error) &&
      (A = sb_spec_tensor_new(net, bab->rows, bab->S, B, bab->n_out, error)) !=
          NULL &&
      optimize_domain_bounds(bab, &nb, doms, B, A, sign, &set, lower, error) &&
      record_coefficients(bab, &nb, B, A, sign, &set, last, relu_A, A_input,
                          error);
  if (ok) {
    score_domains(bab, doms, B, empty, lower, last, relu_A, A_input);
    try_worst_minimisers(bab, doms, B, A_input);
    bab->evaluated += B;
  }
  for (int r = 0; r < bab->n_ri; r++)
    g_free(relu_A[r]);
  sb_alpha_set_clear(net, &set);
  sb_net_tensor_free(net, A);
  for (int i = 0; i < n; i++)
    sb_net_tensor_free(net, sign[i]);
  sb_node_bounds_clear(net, &nb);
  return ok;
}

/* ---- one region
 * -------------------------------------------------------------- */

/* A disjunct proven on the whole region is proven on every subdomain:
 * branch-and-bound carries only the atoms of the others, which makes every
 * pass cheaper (the root keeps its bounds for those atoms). */
static void drop_proven_disjuncts(SbBab *bab, SbBabDomain *root) {
  const int64_t n_out = bab->n_out;
  int S = 0, n_open = 0;
  for (int j = 0; j < bab->n_open; j++) {
    gboolean done = FALSE;
    for (int a = bab->open_start[j]; a < bab->open_start[j + 1]; a++)
      done = done || root->spec_lower[a] - bab->rhs[a] > SB_BAB_PROVEN_MARGIN;
    if (done)
      continue;
    int start = S;
    for (int a = bab->open_start[j]; a < bab->open_start[j + 1]; a++, S++) {
      memmove(bab->rows + (int64_t)S * n_out, bab->rows + (int64_t)a * n_out,
              sizeof(double) * n_out);
      bab->rhs[S] = bab->rhs[a];
      root->spec_lower[S] = root->spec_lower[a];
      if (root->alpha != NULL)
        memmove(root->alpha + (int64_t)S * bab->alpha_size,
                root->alpha + (int64_t)a * bab->alpha_size,
                sizeof(float) * bab->alpha_size);
    }
    bab->open_start[n_open++] = start;
  }
  bab->open_start[n_open] = S;
  bab->n_open = n_open;
  bab->S = S;
}

/* One step: pops up to a batch of the worst domains, splits each on its
 * branch and evaluates the children, queueing those neither proven nor
 * holding a counterexample. *stuck is set when a popped domain had nothing
 * left to split. Every domain popped or created is queued or freed, on
 * every path. */
static gboolean bab_step(SbBab *bab, gboolean *stuck, GError **error) {
  const SbVerifyParams *p = bab->params;
  int n_par = MIN((int)bab->heap->len, MAX(p->batch, 1));
  g_autoptr(GPtrArray) parents =
      g_ptr_array_new_full(n_par, (GDestroyNotify)sb_bab_domain_free);
  g_autoptr(GPtrArray) kids =
      g_ptr_array_new_with_free_func((GDestroyNotify)sb_bab_domain_free);
  int first_split = G_MAXINT;
  for (int k = 0; k < n_par; k++) {
    SbBabDomain *d = sb_bab_heap_pop(bab->heap);
    bab->queued_split_bytes -= sb_bab_domain_split_bytes(bab, d);
    g_ptr_array_add(parents, d);
  }
  if (p->branching == SB_BRANCH_FSB &&
      !sb_bab_filter_branches(bab, (SbBabDomain **)parents->pdata, n_par,
                              error))
    return FALSE;
  for (int k = 0; k < n_par; k++) {
    const SbBabDomain *d = parents->pdata[k];
    if (d->branch_node < 0) {
      *stuck = TRUE; /* nothing unstable, not proven, no counterexample */
      bab->open_min = MIN(bab->open_min, d->margin);
      continue;
    }
    for (int sgn = -1; sgn <= 1; sgn += 2)
      g_ptr_array_add(kids, sb_bab_domain_new_child(bab, d, d->branch_node,
                                                    d->branch_neuron, sgn));
    first_split = MIN(first_split, d->branch_node);
  }
  /* The parents' memory is not needed while the children are bounded. Their
   * freeing is timed: it estimates the queue's (see search_from). */
  gint64 freeing = g_get_monotonic_time();
  g_ptr_array_set_size(parents, 0);
  bab->free_us[bab->n_free_samples++ % SB_BAB_FREE_SAMPLES] =
      (double)(g_get_monotonic_time() - freeing) / MAX(n_par, 1);
  if (kids->len > 0 &&
      !evaluate(bab, (SbBabDomain **)kids->pdata, (int)kids->len, first_split,
                p->refine_intermediate, error))
    return FALSE;
  for (guint k = 0; k < kids->len; k++) {
    SbBabDomain *c = kids->pdata[k];
    if (!bab->found && !sb_bab_domain_proven(c)) {
      sb_bab_heap_push(bab->heap, c);
      bab->queued_split_bytes += sb_bab_domain_split_bytes(bab, c);
      kids->pdata[k] = NULL; /* the queue owns it now */
    }
  }
  return TRUE;
}

static int compare_doubles(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of the recent steps' freeing times per domain (0 before the
 * first step): a step descheduled while it freed its parents measures
 * milliseconds instead of microseconds, which an average would carry into
 * many seconds of margin over a large queue. */
static double free_us_per_domain(const SbBab *bab) {
  int n = MIN(bab->n_free_samples, SB_BAB_FREE_SAMPLES);
  double v[SB_BAB_FREE_SAMPLES];
  memcpy(v, bab->free_us, sizeof(double) * n);
  qsort(v, n, sizeof *v, compare_doubles);
  return n > 0 ? v[n / 2] : 0;
}

/* The host memory of the queued domains, in MiB: each one's bounds and
 * slopes (the same for all), and their splits and betas (growing with
 * their depth). */
static double queue_mib(const SbBab *bab) {
  if (bab->heap == NULL) /* sb_verify_root_bounds: no search */
    return 0;
  double domain_mib = (2.0 * bab->R + (double)bab->S * bab->alpha_size) *
                      sizeof(float) / 1048576.0;
  return bab->heap->len * domain_mib + bab->queued_split_bytes / 1048576.0;
}

/* Whether the queue has outgrown --max-domains or --max-memory (with a
 * paused search's queue, which waits in memory, counted in). */
static gboolean queue_over_limit(const SbBab *bab) {
  const SbVerifyParams *p = bab->params;
  return (int64_t)bab->heap->len > p->max_domains ||
         (p->max_memory_mib > 0 &&
          queue_mib(bab) + bab->paused_queue_mib > p->max_memory_mib);
}

/* Evaluates the root domain of the atoms now in bab from the root bounds
 * root_nb: SAT, UNSAT or ERROR when that decides them, else UNKNOWN with
 * *root_out the root, the disjuncts it proves dropped. */
static SbResult open_root(SbBab *bab, SbNodeBounds *root_nb,
                          SbBabDomain **root_out, GError **error) {
  SbBabDomain *root = sb_bab_domain_new_root(bab);
  gboolean empty = FALSE;
  SbBabDomain *one[1] = {root};
  SbResult result = SB_RESULT_UNKNOWN;
  if (!sb_bab_domains_store_bounds(bab, root_nb, one, 1, &empty, error) ||
      !evaluate(bab, one, 1, G_MAXINT, FALSE, error))
    result = SB_RESULT_ERROR;
  else if (bab->found)
    result = SB_RESULT_SAT;
  else if (sb_bab_domain_proven(root))
    result = SB_RESULT_UNSAT;
  if (result != SB_RESULT_UNKNOWN) {
    sb_bab_domain_free(root);
    return result;
  }
  drop_proven_disjuncts(bab, root);
  *root_out = root;
  return result;
}

static void clear_queue(SbBab *bab) {
  g_ptr_array_set_size(bab->heap, 0); /* frees what is still queued */
  bab->queued_split_bytes = 0;
}

/* The progress callback, if any: domains done and open, the worst open
 * margin. */
static void report_progress(const SbBab *bab) {
  const SbVerifyParams *p = bab->params;
  if (p->progress == NULL)
    return;
  const SbBabDomain *worst = sb_bab_heap_peek(bab->heap);
  p->progress(p->progress_user, bab->evaluated, bab->heap->len,
              worst != NULL ? worst->margin : 0,
              (g_get_monotonic_time() - bab->t0) / 1e6);
}

/* Branch-and-bound over the atoms now in bab from their open root, which
 * it takes, or (root NULL) on from the domains a paused search left
 * queued. The queue is empty again on return, whatever the result, except
 * when the search paused (bab->paused). */
static SbResult search_from(SbBab *bab, SbBabDomain *root, GError **error) {
  const SbVerifyParams *p = bab->params;
  if (root != NULL) {
    sb_bab_heap_push(bab->heap, root);
    bab->queued_split_bytes += sb_bab_domain_split_bytes(bab, root);
  }
  /* A first report before any step: a search that ends at its first
   * deadline or budget check still says how far from a proof it is. */
  if (bab->heap->len > 0)
    report_progress(bab);
  SbResult result = SB_RESULT_UNSAT;
  while (bab->heap->len > 0) {
    gboolean stuck = FALSE, over = FALSE;
    /* The earlier of the run's deadline and the branch-and-bound budget,
     * judged in lockstep (process 0's clock) when ranks are processes. */
    gint64 deadline = bab->deadline;
    if (bab->budget_end > 0 && (deadline <= 0 || bab->budget_end < deadline))
      deadline = bab->budget_end;
    /* Stop early by what is still to come after this check: one more
     * step, freeing the queue and, when the process then exits, giving its
     * memory back. Freeing a queued domain took about 2.7 times what
     * freeing a just-popped one does (free_us_per_domain), and with the
     * exit's unmapping about 8 times (mnist 256x4, 125,620 queued domains,
     * 1.7 GB, both cores busy with other work). */
    if (deadline > 0)
      deadline = MAX(deadline - bab->last_step_us -
                         (gint64)(SB_BAB_TEARDOWN_FACTOR * bab->heap->len *
                                  free_us_per_domain(bab)),
                     1);
    /* The domain budget is the same count on every process: no lockstep
     * needed. */
    if (sb_net_deadline_passed(bab->net, deadline) ||
        (p->bab_domains > 0 && bab->evaluated >= p->bab_domains)) {
      result = SB_RESULT_TIMEOUT;
      break;
    }
    if (bab->tighten_at > 0 && bab->evaluated >= bab->tighten_at) {
      bab->paused = TRUE; /* search_tightening takes over */
      result = SB_RESULT_UNKNOWN;
      break;
    }
    if (queue_over_limit(bab)) {
      bab->limit_hit = TRUE;
      bab->limit_open = bab->heap->len;
      bab->limit_mib = queue_mib(bab) + bab->paused_queue_mib;
      result = SB_RESULT_UNKNOWN;
      break;
    }
    gint64 step_start = g_get_monotonic_time();
    gboolean stepped = bab_step(bab, &stuck, error);
    bab->last_step_us = g_get_monotonic_time() - step_start;
    if (!stepped ||
        (p->max_memory_mib > 0 &&
         !sb_verify_memory_over(bab->net, p->max_memory_mib, &bab->over_rank,
                                &bab->over_rank_mib, &over, error))) {
      result = SB_RESULT_ERROR;
      break;
    }
    if (over) {
      bab->limit_hit = TRUE;
      result = SB_RESULT_UNKNOWN;
      break;
    }
    if (bab->found || stuck) {
      result = bab->found ? SB_RESULT_SAT : SB_RESULT_UNKNOWN;
      break;
    }
    report_progress(bab);
  }
  const SbBabDomain *worst = sb_bab_heap_peek(bab->heap);
  if (worst != NULL)
    bab->open_min = MIN(bab->open_min, worst->margin);
  if (!bab->paused)
    clear_queue(bab);
  return result;
}

static gboolean tighten_root(SbBab *main, SbNodeBounds *nb, gboolean *restart,
                             GError **error);

/* Whether node k's bounds are tightened by searches: a ReLU input that
 * CROWN bounds (a ReLU lies before it; before the first, IBP is exact). */
static gboolean tightenable(const SbNetwork *net, int k) {
  return net->feeds_relu[k] && sb_node_needs_crown(net, k);
}

/* search_from, except that with params->tighten_layers a search still
 * undecided after tighten_after domains of the region stops, the root's
 * intermediate bounds are tightened (once per region: root_nb keeps them
 * for the region's other searches) and the search starts again from the
 * tightened root, or, when no layer was worth tightening whole, goes on
 * from the domains it had queued. Most searches end sooner: they never pay
 * for it. */
static SbResult search_tightening(SbBab *bab, SbNodeBounds *root_nb,
                                  SbBabDomain *root, GError **error) {
  const SbVerifyParams *p = bab->params;
  gboolean any = FALSE; /* a network with one hidden layer has none */
  for (int k = 1; k < sb_graph_n_nodes(bab->net->graph); k++)
    any = any || tightenable(bab->net, k);
  if (p->tighten_layers <= 0 || bab->root_tightened || !any)
    return search_from(bab, root, error);
  bab->tighten_at = MAX(p->tighten_after, MAX(bab->evaluated, 1));
  SbResult result = search_from(bab, root, error);
  bab->tighten_at = 0;
  if (!bab->paused)
    return result;
  bab->paused = FALSE;
  bab->root_tightened = TRUE;
  gboolean restart;
  if (!tighten_root(bab, root_nb, &restart, error)) {
    clear_queue(bab);
    return SB_RESULT_ERROR;
  }
  if (!restart)
    return search_from(bab, NULL, error);
  clear_queue(bab);
  result = open_root(bab, root_nb, &root, error);
  return result == SB_RESULT_UNKNOWN ? search_from(bab, root, error) : result;
}

/* Branch-and-bound over one region: one search per disjunct the root does
 * not prove, the hardest (lowest root margin) first. A separate search
 * branches for its own atoms alone, and its passes carry only them: a
 * joint search must split every domain until all disjuncts are proven in
 * it, on branching scores summed over all of them. */
static SbResult bab_region(SbBab *bab, SbNodeBounds *root_nb, GError **error) {
  const SbVerifyParams *p = bab->params;
  bab->t0 = g_get_monotonic_time();
  bab->budget_end = p->bab_time > 0 ? bab->t0 + (gint64)(p->bab_time * 1e6) : 0;
  SbBabDomain *root = NULL;
  SbResult result = open_root(bab, root_nb, &root, error);
  if (result != SB_RESULT_UNKNOWN)
    return result;
  if (bab->n_open == 1) /* the joint root is that disjunct's root */
    return search_tightening(bab, root_nb, root, error);
  int n_open = bab->n_open;
  g_autofree int *order = g_new(int, n_open);
  g_autofree double *margin = g_new(double, n_open);
  for (int j = 0; j < n_open; j++) {
    order[j] = j;
    margin[j] = -INFINITY;
    for (int a = bab->open_start[j]; a < bab->open_start[j + 1]; a++)
      margin[j] = MAX(margin[j], root->spec_lower[a] - bab->rhs[a]);
  }
  sb_bab_domain_free(root);
  for (int j = 1; j < n_open; j++) /* few disjuncts: insertion sort */
    for (int k = j; k > 0 && margin[order[k]] < margin[order[k - 1]]; k--) {
      int t = order[k];
      order[k] = order[k - 1];
      order[k - 1] = t;
    }
  /* Each search sees its disjunct's atoms as the whole problem. */
  double *all_rows = bab->rows, *all_rhs = bab->rhs;
  int *all_start = bab->open_start, one_start[2] = {0, 0};
  const int64_t n_out = bab->n_out;
  result = SB_RESULT_UNSAT;
  for (int k = 0; k < n_open && result == SB_RESULT_UNSAT; k++) {
    int j = order[k];
    bab->rows = all_rows + (int64_t)all_start[j] * n_out;
    bab->rhs = all_rhs + all_start[j];
    bab->S = one_start[1] = all_start[j + 1] - all_start[j];
    bab->open_start = one_start;
    bab->n_open = 1;
    result = open_root(bab, root_nb, &root, error);
    if (result == SB_RESULT_UNKNOWN)
      result = search_tightening(bab, root_nb, root, error);
  }
  bab->rows = all_rows;
  bab->rhs = all_rhs;
  bab->open_start = all_start;
  bab->n_open = n_open;
  bab->S = all_start[n_open];
  return result;
}

/* ---- one region and the whole property -------------------------------------
 */

/* PGD on the region first: SAT with o->x set when it finds a checked
 * counterexample, ERROR when the backend failed, else UNKNOWN. */
static SbResult attack_region(SbNetwork *net, const SbProperty *prop,
                              int region, const SbVerifyParams *p,
                              gint64 deadline, SbVerifyOutcome *o,
                              GError **error) {
  g_autofree float *x = g_new(float, net->graph->input_size);
  g_autoptr(GError) attack_error = NULL;
  double margin;
  gboolean found = sb_attack_pgd(net, prop, region, &p->attack_params, deadline,
                                 x, &margin, &attack_error);
  o->found_margin = MIN(o->found_margin, margin);
  if (found) {
    o->x = g_steal_pointer(&x);
    o->region = region;
    return SB_RESULT_SAT;
  }
  if (attack_error != NULL) {
    g_propagate_error(error, g_steal_pointer(&attack_error));
    return SB_RESULT_ERROR;
  }
  return SB_RESULT_UNKNOWN;
}

/* Root bounds of the region into nb (IBP, alpha-CROWN intermediate bounds
 * intersected with IBP): UNKNOWN when done, TIMEOUT or ERROR. */
static SbResult root_bounds(SbNetwork *net, const SbRegion *reg,
                            const SbAlphaParams *alpha_params, gint64 deadline,
                            SbNodeBounds *nb, GError **error) {
  int n = sb_graph_n_nodes(net->graph);
  SbAlphaParams alpha_until = *alpha_params;
  const SbAlphaParams *alpha = &alpha_until;
  alpha_until.deadline = deadline;
  if (!sb_node_bounds_init(net, nb, 1, reg->x_lower, reg->x_upper, error))
    return SB_RESULT_ERROR;
  for (int i = 1; i < n; i++) {
    /* The root's alpha-CROWN is the longest step before branching: the
     * deadline is checked between its start nodes too. */
    if (sb_net_deadline_passed(net, deadline))
      return SB_RESULT_TIMEOUT;
    if (!sb_node_ibp(net, nb, i, error) ||
        (sb_node_needs_crown(net, i) &&
         !sb_node_tighten(net, nb, i, alpha, TRUE, NULL, NULL, error)))
      return SB_RESULT_ERROR;
  }
  return SB_RESULT_UNKNOWN;
}

/* The layout of a domain: its ReLU-input bounds and the slopes of the spec
 * pass (every ReLU the output depends on). */
static void bab_init_layout(SbBab *bab, int out_node) {
  SbNetwork *net = bab->net;
  const SbGraph *g = net->graph;
  int n = sb_graph_n_nodes(g);
  bab->out_node = out_node;
  bab->n_out = sb_net_node_size(net, out_node);
  bab->n_ri = 0;
  bab->R = bab->alpha_size = 0;
  bab->ri_node = g_new(int, n);
  bab->ri_offset = g_new(int64_t, n);
  for (int i = 0; i < n; i++)
    if (net->feeds_relu[i]) {
      bab->ri_node[bab->n_ri] = i;
      bab->ri_offset[bab->n_ri++] = bab->R;
      bab->R += sb_net_node_size(net, i);
    }
  g_autofree gboolean *reached = g_new(gboolean, n);
  sb_pass_ancestors(net, out_node, reached);
  for (int j = 0; j < out_node; j++)
    if (reached[j] && sb_graph_node(g, j)->kind == SB_NODE_RELU)
      bab->alpha_size += sb_net_node_size(net, j);
}

/* All atoms of every disjunct of the region (none are proven yet: the root
 * decides). */
static void bab_init_atoms(SbBab *bab) {
  const SbProperty *prop = bab->prop;
  const SbRegion *reg = &prop->regions[bab->region];
  int64_t n_out = bab->n_out;
  int n_atoms = reg->disjunct_start[reg->n_disjuncts];
  bab->S = 0;
  bab->open_start = g_new(int, reg->n_disjuncts + 1);
  bab->rows = g_new(double, (int64_t)n_atoms *n_out + 1);
  bab->rhs = g_new(double, n_atoms + 1);
  for (int j = 0; j < reg->n_disjuncts; j++) {
    bab->open_start[bab->n_open++] = bab->S;
    for (int a = reg->disjunct_start[j]; a < reg->disjunct_start[j + 1]; a++) {
      const SbAtom *atom = &prop->atoms[reg->atom_index[a]];
      memcpy(bab->rows + (int64_t)bab->S * n_out, atom->c,
             sizeof(double) * n_out);
      bab->rhs[bab->S++] = atom->d;
    }
  }
  bab->open_start[bab->n_open] = bab->S;
}

static void bab_clear(SbBab *bab) {
  g_clear_pointer(&bab->heap, g_ptr_array_unref);
  g_clear_pointer(&bab->cex, g_free);
  g_clear_pointer(&bab->ri_node, g_free);
  g_clear_pointer(&bab->ri_offset, g_free);
  g_clear_pointer(&bab->open_start, g_free);
  g_clear_pointer(&bab->rows, g_free);
  g_clear_pointer(&bab->rhs, g_free);
}

/* ---- intermediate bounds tightened by branch-and-bound ---------------------
 */

/* The lower bound of the atom in bab (a row over node bab->out_node's
 * neurons, right-hand side 0) that a search of at most tighten_domains
 * domains proves: the least margin it left open, or 0 when it closed every
 * leaf (each then bounded the row above 0). */
static gboolean search_bound(SbBab *bab, SbNodeBounds *root_nb, double *bound,
                             GError **error) {
  SbBabDomain *root = NULL;
  bab->t0 = g_get_monotonic_time();
  bab->evaluated = 0;
  bab->open_min = INFINITY;
  SbResult result = open_root(bab, root_nb, &root, error);
  if (result == SB_RESULT_UNKNOWN)
    result = search_from(bab, root, error);
  if (result == SB_RESULT_ERROR)
    return FALSE;
  *bound = MIN(bab->open_min, 0.0);
  return TRUE;
}

/* Neurons a layer's tightening gets before it is judged (tighten_node). */
#define SB_TIGHTEN_PROBE_NEURONS 16

/* Tightens node k's unstable neurons in nb: each side by its own search,
 * which splits the ReLUs before k. Once SB_TIGHTEN_PROBE_NEURONS of them
 * are done, a layer whose bounds they narrowed by less than
 * tighten_min_gain of their widths (both sides summed) is left there, the
 * bounds tightened so far kept: the rest would cost as much for as little.
 * On mnist_fc's layers the first 16 neurons gained 7-14% of their widths;
 * on oval21's second convolution and its dense layer 0.6-1.0%, where the
 * whole layers took 100,000 domains (docs/verification.md). *whole tells
 * whether the layer was done to the end. Returns the domains evaluated, or
 * -1 on an error. */
static int64_t tighten_node(SbBab *bab, SbNodeBounds *nb, int k,
                            gboolean *whole, GError **error) {
  SbNetwork *net = bab->net;
  bab_init_layout(bab, k);
  int64_t N = bab->n_out, evaluated = 0;
  int one_start[2] = {0, 1};
  double rhs = 0;
  g_autofree double *row = g_new0(double, N);
  g_autofree double *l = g_new(double, N);
  g_autofree double *u = g_new(double, N);
  bab->S = 1;
  bab->n_open = 1;
  bab->open_start = one_start;
  bab->rows = row;
  bab->rhs = &rhs;
  gboolean ok = sb_net_tensor_read(net, nb->lo[k], N, l, error) &&
                sb_net_tensor_read(net, nb->hi[k], N, u, error);
  double gained = 0, width = 0;
  int probed = 0;
  *whole = TRUE;
  for (int64_t i = 0; i < N && ok; i++) {
    if (probed == SB_TIGHTEN_PROBE_NEURONS &&
        gained < bab->params->tighten_min_gain * width) {
      *whole = FALSE;
      break;
    }
    const double l0 = l[i], u0 = u[i];
    for (int side = 0; side < 2 && ok && l[i] < 0 && u[i] > 0; side++) {
      if (sb_net_deadline_passed(net, bab->deadline))
        break;
      /* side 0 bounds z_i from below, side 1 -z_i (z_i from above). */
      double bound;
      row[i] = side == 0 ? 1 : -1;
      ok = search_bound(bab, nb, &bound, error);
      row[i] = 0;
      evaluated += bab->evaluated;
      if (ok && side == 0)
        l[i] = MAX(l[i], sb_float_down((float)bound));
      else if (ok)
        u[i] = MIN(u[i], sb_float_up((float)-bound));
    }
    if (l0 < 0 && u0 > 0) {
      probed++;
      gained += (l[i] - l0) + (u0 - u[i]);
      width += 2 * (u0 - l0);
    }
  }
  bab->open_start = NULL;
  bab->rows = bab->rhs = NULL;
  g_clear_pointer(&bab->ri_node, g_free);
  g_clear_pointer(&bab->ri_offset, g_free);
  ok = ok && sb_net_tensor_write(net, nb->lo[k], N, l, error) &&
       sb_net_tensor_write(net, nb->hi[k], N, u, error);
  return ok ? evaluated : -1;
}

/* IBP of node j from tightened inputs, intersected with the bounds it had:
 * both are sound, and float rounding (the order of a GEMM's sums) can leave
 * the new bound a few ulps outside the old one however much tighter its
 * inputs are. */
static gboolean ibp_keeping_tighter(SbNetwork *net, SbNodeBounds *nb, int j,
                                    GError **error) {
  /* Floats, as the tensors hold them (sb_node_tighten does the same). */
  int64_t N = nb->B * sb_net_node_size(net, j);
  g_autofree float *l0 = g_new(float, N);
  g_autofree float *u0 = g_new(float, N);
  g_autofree float *l = g_new(float, N);
  g_autofree float *u = g_new(float, N);
  if (!sb_net_tensor_read_floats(net, nb->lo[j], N, l0, error) ||
      !sb_net_tensor_read_floats(net, nb->hi[j], N, u0, error) ||
      !sb_node_ibp(net, nb, j, error) ||
      !sb_net_tensor_read_floats(net, nb->lo[j], N, l, error) ||
      !sb_net_tensor_read_floats(net, nb->hi[j], N, u, error))
    return FALSE;
  for (int64_t k = 0; k < N; k++) {
    l[k] = MAX(l[k], l0[k]);
    u[k] = MIN(u[k], u0[k]);
  }
  return sb_net_tensor_write_floats(net, nb->lo[j], N, l, error) &&
         sb_net_tensor_write_floats(net, nb->hi[j], N, u, error);
}

/* The first tighten_layers ReLU inputs that CROWN bounds get their unstable
 * neurons' bounds from searches of their own, in order, each node's then
 * tightening the later nodes' (alpha-CROWN again, keeping the tighter). An
 * intermediate bound is a property of the network's prefix, and branching
 * on the ReLUs before it tightens it as it tightens the output's:
 * alpha-beta-CROWN gets these bounds from a MIP solver instead. Half the
 * time left (before --timeout or the --bab-time budget) is theirs.
 * *restart: whether some layer was tightened whole (tighten_node), which
 * makes a new search from the root worth its cost. */
static gboolean tighten_root(SbBab *main, SbNodeBounds *nb, gboolean *restart,
                             GError **error) {
  SbNetwork *net = main->net;
  SbVerifyParams p = *main->params;
  p.bab_domains = p.tighten_domains;
  p.bab_time = 0;
  p.progress = NULL;
  gint64 now = g_get_monotonic_time(), end = main->deadline;
  if (main->budget_end > 0 && (end <= 0 || main->budget_end < end))
    end = main->budget_end;
  SbBab bab = {net, main->prop, &p, main->region,
               end > 0 ? now + (end - now) / 2 : 0};
  bab.refining = TRUE;
  bab.paused_queue_mib = queue_mib(main);
  bab.warm_betas = p.warm_betas;
  bab.over_rank = -1;
  bab.heap = sb_bab_heap_new();
  SbAlphaParams alpha = p.alpha;
  alpha.deadline = bab.deadline;
  int n = sb_graph_n_nodes(net->graph), layers = 0;
  gboolean ok = TRUE;
  *restart = FALSE;
  for (int k = 1; k < n && ok && layers < p.tighten_layers; k++) {
    if (!tightenable(net, k))
      continue;
    layers++;
    gboolean whole;
    int64_t evaluated = tighten_node(&bab, nb, k, &whole, error);
    *restart = *restart || whole;
    ok = evaluated >= 0;
    main->tightened += MAX(evaluated, 0);
    /* Every later node keeps the tighter of its new bound and the old. */
    for (int j = k + 1; j < n && ok; j++)
      ok = sb_node_needs_crown(net, j)
               ? sb_node_tighten(net, nb, j, &alpha, TRUE, NULL, NULL, error)
               : ibp_keeping_tighter(net, nb, j, error);
  }
  bab_clear(&bab);
  return ok;
}

/* One region: the attack, the root bounds, then branch-and-bound on the
 * atoms of the disjuncts the root did not prove. */
/* Why branch-and-bound stopped with UNKNOWN. */
static char *unknown_reason(const SbBab *bab) {
  if (bab->over_rank >= 0)
    return g_strdup_printf(
        "region %d: branch-and-bound stopped (memory limit reached: rank %d "
        "held %.1f MiB of backend memory, over --max-memory %g MiB per rank)",
        bab->region, bab->over_rank, bab->over_rank_mib,
        bab->params->max_memory_mib);
  const SbVerifyParams *p = bab->params;
  if (bab->limit_hit && bab->limit_open > p->max_domains)
    return g_strdup_printf("region %d: branch-and-bound stopped (domain limit "
                           "reached: %" G_GINT64_FORMAT
                           " open domains, over --max-domains %d)",
                           bab->region, bab->limit_open, p->max_domains);
  if (bab->limit_hit)
    return g_strdup_printf(
        "region %d: branch-and-bound stopped (memory limit reached: "
        "%" G_GINT64_FORMAT
        " open domains, whose queue would hold %.1f MiB of host memory, over "
        "--max-memory %g MiB)",
        bab->region, bab->limit_open, bab->limit_mib, p->max_memory_mib);
  return g_strdup_printf("region %d: branch-and-bound stopped (a domain with "
                         "no unstable ReLU left was not proven)",
                         bab->region);
}

static SbResult verify_region(SbNetwork *net, const SbProperty *prop,
                              int region, const SbVerifyParams *p,
                              gint64 deadline, SbVerifyOutcome *o,
                              GError **error) {
  SbBab bab = {net, prop, p, region, deadline};
  bab.warm_betas = p->warm_betas;
  bab.found_margin = INFINITY;
  SbNodeBounds nb = {0};
  SbResult result;
  gboolean root_ended = FALSE;

  bab.over_rank = -1;
  if (p->attack && (result = attack_region(net, prop, region, p, deadline, o,
                                           error)) != SB_RESULT_UNKNOWN)
    goto out;
  if ((result = root_bounds(net, &prop->regions[region], &p->alpha, deadline,
                            &nb, error)) != SB_RESULT_UNKNOWN)
    goto out;
  bab_init_layout(&bab, net->graph->output);
  bab_init_atoms(&bab);
  if (bab.n_open == 0) {
    result = SB_RESULT_UNSAT; /* the unsafe region is empty */
    goto out;
  }
  /* Branch-and-bound's memory is measured (and limited) on its own. */
  root_ended = TRUE;
  if (!sb_verify_memory_end_phase(net, &o->root_memory, error)) {
    result = SB_RESULT_ERROR;
    goto out;
  }
  bab.heap = sb_bab_heap_new();
  gint64 t0 = g_get_monotonic_time();
  result = bab_region(&bab, &nb, error);
  o->bab_seconds += (g_get_monotonic_time() - t0) / 1e6;
  o->domains += bab.evaluated;
  o->found_margin = MIN(o->found_margin, bab.found_margin);
  o->tighten_domains += bab.tightened;
  if (result != SB_RESULT_ERROR &&
      !sb_verify_memory_end_phase(net, &o->bab_memory, error))
    result = SB_RESULT_ERROR;
  if (result == SB_RESULT_SAT && bab.cex != NULL) {
    o->x = g_steal_pointer(&bab.cex);
    o->region = region;
  }
  if (result == SB_RESULT_UNKNOWN && o->reason == NULL)
    o->reason = unknown_reason(&bab);
out:
  if (!root_ended && result != SB_RESULT_ERROR &&
      !sb_verify_memory_end_phase(net, &o->root_memory, error))
    result = SB_RESULT_ERROR;
  bab_clear(&bab);
  sb_node_bounds_clear(net, &nb);
  return result;
}
gboolean sb_verify(SbNetwork *net, const SbProperty *prop,
                   const SbVerifyParams *p, SbVerifyOutcome *o,
                   GError **error) {
  gint64 t0 = g_get_monotonic_time();
  gint64 deadline = p->timeout > 0 ? t0 + (gint64)(p->timeout * 1e6) : 0;
  memset(o, 0, sizeof *o);
  o->result = SB_RESULT_UNSAT;
  o->found_margin = INFINITY;
  if (!sb_net_require_vjp(net, error)) {
    o->result = SB_RESULT_ERROR;
    return FALSE;
  }
  for (int r = 0; r < prop->n_regions; r++) {
    SbResult res = verify_region(net, prop, r, p, deadline, o, error);
    if (res == SB_RESULT_SAT || res == SB_RESULT_ERROR) {
      o->result = res;
      break;
    }
    if (res != SB_RESULT_UNSAT && o->result == SB_RESULT_UNSAT)
      o->result = res;
    if (res == SB_RESULT_TIMEOUT)
      break;
  }
  if (o->result == SB_RESULT_SAT) {
    o->y = g_new(double, net->graph->output_size);
    /* The forward pass that makes "sat" trustworthy. */
    if (!sb_net_counterexample_check(net, prop, o->region, o->x, o->y)) {
      o->result = SB_RESULT_UNKNOWN;
      o->reason = g_strdup("internal: a counterexample failed its final check");
    }
  }
  if (o->result == SB_RESULT_UNSAT &&
      sb_net_deadline_passed(net, deadline > 0 ? deadline + 1000000 : 0))
    o->result = SB_RESULT_TIMEOUT;
  o->seconds = (g_get_monotonic_time() - t0) / 1e6;
  return o->result != SB_RESULT_ERROR;
}

gboolean sb_verify_root_bounds(SbNetwork *net, const SbProperty *prop,
                               int region, const SbVerifyParams *params,
                               double **lower, double **upper, GError **error) {
  SbBab bab = {net, prop, params, region, 0};
  SbNodeBounds nb = {0};
  gboolean restart;
  gboolean ok =
      sb_net_require_vjp(net, error) &&
      root_bounds(net, &prop->regions[region], &params->alpha, 0, &nb, error) ==
          SB_RESULT_UNKNOWN &&
      (params->tighten_layers <= 0 || tighten_root(&bab, &nb, &restart, error));
  for (int i = 0; i < sb_graph_n_nodes(net->graph); i++) {
    int64_t N = sb_net_node_size(net, i);
    lower[i] = g_new(double, N);
    upper[i] = g_new(double, N);
    ok = ok && sb_net_tensor_read(net, nb.lo[i], N, lower[i], error) &&
         sb_net_tensor_read(net, nb.hi[i], N, upper[i], error);
  }
  sb_node_bounds_clear(net, &nb);
  return ok;
}
