/* SPDX-License-Identifier: MIT */
/* The CROWN backward sweep (DESIGN.md section 4) and its reverse sweep for
 * alpha/beta gradients. The host sequences; every product is the backend's. */
#include "config.h"

#include <string.h>

#include "crown_pass.h"

/* Per-pass state. While both sides are wanted and no ReLU or beta term has
 * made them differ, the lower and the upper coefficients are one tensor
 * (A[LOWER][j] == A[UPPER][j]) and one backward call serves both; likewise
 * the bias. */
typedef struct {
  SbNetwork *net;
  const SbPassConfig *cfg;
  int64_t S, B;
  int start;
  const sb_tensor *borrowed;
  sb_tensor **A[2];
  sb_tensor *bias[2];
  sb_tensor **saved[2]; /* when recording */
} Sweep;

static gboolean both_sides(const Sweep *s) {
  return s->cfg->sides == SB_SIDES_BOTH;
}

static gboolean is_shared(const Sweep *s, int j) {
  return both_sides(s) && s->A[SB_SIDE_LOWER][j] == s->A[SB_SIDE_UPPER][j];
}

/* Frees each distinct tensor of a per-node pair of arrays once, sparing the
 * caller's start tensor. */
static void free_pairs(SbNetwork *net, sb_tensor **a, sb_tensor **b, int n,
                       const sb_tensor *spare) {
  for (int j = 0; j < n; j++) {
    sb_tensor *x = a ? a[j] : NULL, *y = b ? b[j] : NULL;
    if (y != NULL && y != x && y != spare)
      sb_net_tensor_free(net, y);
    if (x != NULL && x != spare)
      sb_net_tensor_free(net, x);
  }
}

static void sweep_clear(Sweep *s) {
  int n = sb_graph_n_nodes(s->net->graph);
  free_pairs(s->net, s->A[0], s->A[1], n, s->borrowed);
  if (s->bias[1] != s->bias[0])
    sb_net_tensor_free(s->net, s->bias[1]);
  sb_net_tensor_free(s->net, s->bias[0]);
  g_free(s->A[0]);
  g_free(s->A[1]);
}

/* A bias tensor of the pass, which a device-side copy must be given. */
static sb_tensor *pass_bias(const Sweep *s) {
  return s->bias[0] != NULL ? s->bias[0] : s->bias[1];
}

/* Gives node k (and the bias, k < 0) separate lower and upper tensors. */
static gboolean unshare(Sweep *s, int k, GError **error) {
  if (k < 0) {
    if (!both_sides(s) || s->bias[1] != s->bias[0])
      return TRUE;
    s->bias[1] = sb_net_tensor_clone(s->net, s->bias[0], s->S, s->B, 0, error);
    return s->bias[1] != NULL;
  }
  if (!is_shared(s, k) || s->A[0][k] == NULL)
    return TRUE;
  s->A[1][k] = sb_net_tensor_copy(s->net, s->A[0][k], k, s->S, s->B,
                                  pass_bias(s), error);
  return s->A[1][k] != NULL;
}

/* Beta terms of the split neurons of node j enter its coefficients before
 * node j passes them on. */
static gboolean apply_beta(Sweep *s, int j, GError **error) {
  const SbPassConfig *cfg = s->cfg;
  if (cfg->split_sign == NULL || cfg->split_sign[j] == NULL)
    return TRUE;
  if (!unshare(s, j, error))
    return FALSE;
  for (int side = 0; side < 2; side++) {
    if (!(cfg->sides & (1 << side)) || cfg->beta[side] == NULL ||
        cfg->beta[side][j] == NULL)
      continue;
    if (s->A[side][j] == s->borrowed) {
      s->A[side][j] = sb_net_tensor_copy(s->net, s->borrowed, j, s->S, s->B,
                                         pass_bias(s), error);
      if (s->A[side][j] == NULL)
        return FALSE;
    }
    int status = SB_NET_BE(s->net)->beta_apply(
        SB_NET_CTX(s->net), s->A[side][j], cfg->beta[side][j],
        cfg->split_sign[j], side);
    if (!sb_net_check(s->net, status, "beta_apply", j, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean sweep_node(Sweep *s, int j, sb_tensor **lo, sb_tensor **hi,
                           GError **error) {
  SbNetwork *net = s->net;
  const SbPassConfig *cfg = s->cfg;
  const SbNode *node = sb_graph_node(net->graph, j);

  if (!apply_beta(s, j, error))
    return FALSE;

  gboolean shared =
      is_shared(s, j) && node->kind != SB_NODE_RELU && s->bias[0] == s->bias[1];
  for (int k = 0; k < node->n_inputs && shared; k++)
    if (s->A[0][node->inputs[k]] != s->A[1][node->inputs[k]])
      shared = FALSE;
  if (!shared && !unshare(s, -1, error))
    return FALSE;

  sb_backward_args_v1 args;
  memset(&args, 0, sizeof args);
  args.struct_size = sizeof args;
  if (node->kind == SB_NODE_RELU) {
    args.pre_lower = lo[node->inputs[0]];
    args.pre_upper = hi[node->inputs[0]];
  }

  gboolean passed_on[2] = {FALSE, FALSE};
  for (int side = 0; side < 2; side++) {
    if (!(cfg->sides & (1 << side)))
      continue;
    sb_tensor **A = s->A[side];
    /* An Add hands A_out on unchanged, so its first input without
     * coefficients yet takes node j's spent tensor itself (the ABI lets an
     * Add's A_in be its A_out; the backend then skips the copy). Not the
     * caller's tensor, one kept for the gradient, or one that the two
     * sides share while this step runs them apart. */
    gboolean pass_on = node->kind == SB_NODE_ADD && s->saved[side] == NULL &&
                       A[j] != s->borrowed && (shared || !is_shared(s, j));
    args.side = side;
    args.A_out = A[j];
    args.bias = s->bias[side];
    args.alpha = node->kind == SB_NODE_RELU && cfg->alpha[side]
                     ? cfg->alpha[side][j]
                     : NULL;
    for (int k = 0; k < node->n_inputs; k++) {
      int in = node->inputs[k];
      if (!shared && !unshare(s, in, error))
        return FALSE;
      /* The first consumer's step overwrites (accumulate = 0), so the
       * tensor need not be zero-filled; the others add to it. */
      args.accumulate[k] = A[in] != NULL;
      if (A[in] == NULL && pass_on) {
        A[in] = A[j];
        pass_on = FALSE;
        passed_on[side] = TRUE;
        if (shared)
          s->A[1 - side][in] = A[in];
      } else if (A[in] == NULL) {
        A[in] = sb_net_tensor_new_empty(net, s->S, s->B,
                                        sb_net_node_size(net, in), error);
        if (A[in] == NULL)
          return FALSE;
        if (shared)
          s->A[1 - side][in] = A[in];
      }
      args.A_in[k] = A[in];
    }
    net->product_flops += sb_net_node_flops(net, j, s->S * s->B);
    int status =
        SB_NET_BE(net)->layer_backward(SB_NET_CTX(net), net->layers[j], &args);
    if (!sb_net_check(net, status, "layer_backward", j, error))
      return FALSE;
    if (shared)
      break;
  }

  /* Node j's coefficients are spent: keep them for the gradient or free
   * (unless an input took them). */
  for (int side = 0; side < 2; side++)
    if (passed_on[side]) {
      s->A[side][j] = NULL;
      if (shared)
        s->A[1 - side][j] = NULL;
    }
  for (int side = 0; side < 2; side++) {
    if (s->saved[side] != NULL)
      s->saved[side][j] = s->A[side][j];
    else if (s->A[side][j] != s->borrowed &&
             (side == 0 || s->A[1][j] != s->A[0][j]))
      sb_net_tensor_free(net, s->A[side][j]);
  }
  s->A[0][j] = s->A[1][j] = NULL;
  return TRUE;
}

gboolean sb_crown_pass(SbNetwork *net, int start, const sb_tensor *A_start,
                       int64_t S, int64_t B, sb_tensor **lo, sb_tensor **hi,
                       const SbPassConfig *cfg, SbPassRecord *record,
                       double *out_lower, double *out_upper, GError **error) {
  int n = sb_graph_n_nodes(net->graph);
  Sweep s = {net,
             cfg,
             S,
             B,
             start,
             A_start,
             {g_new0(sb_tensor *, n), g_new0(sb_tensor *, n)},
             {NULL, NULL},
             {NULL, NULL}};
  sb_tensor *result = NULL;
  gboolean ok = FALSE;

  if (cfg->record) {
    memset(record, 0, sizeof *record);
    record->start = start;
    record->S = S;
    record->B = B;
    record->sides = cfg->sides;
    record->borrowed = A_start;
    for (int side = 0; side < 2; side++)
      s.saved[side] = record->saved[side] = g_new0(sb_tensor *, n);
  }

  for (int side = 0; side < 2; side++)
    if (cfg->sides & (1 << side))
      s.A[side][start] = (sb_tensor *)A_start;
  s.bias[0] = sb_net_tensor_new(net, SB_MEM_COEFFICIENTS, S, B, 0, error);
  if (s.bias[0] == NULL)
    goto out;
  s.bias[1] = both_sides(&s) ? s.bias[0] : NULL;
  if (cfg->sides == SB_SIDES_UPPER) {
    s.bias[1] = s.bias[0];
    s.bias[0] = NULL;
  }

  for (int j = start; j > 0; j--)
    if ((s.A[0][j] != NULL || s.A[1][j] != NULL) &&
        !sweep_node(&s, j, lo, hi, error))
      goto out;

  result = sb_net_tensor_new(net, SB_MEM_BOUNDS, S, B, 0, error);
  if (result == NULL)
    goto out;
  for (int side = 0; side < 2; side++) {
    if (!(cfg->sides & (1 << side)))
      continue;
    if (s.A[side][0] == NULL) /* the output does not depend on the input */
    {
      s.A[side][0] = sb_net_tensor_new(net, SB_MEM_COEFFICIENTS, S, B,
                                       sb_net_node_size(net, 0), error);
      if (s.A[side][0] == NULL)
        goto out;
    }
    int status =
        SB_NET_BE(net)->concretize(SB_NET_CTX(net), s.A[side][0], s.bias[side],
                                   lo[0], hi[0], side, result);
    double *dst = side == SB_SIDE_LOWER ? out_lower : out_upper;
    if (!sb_net_check(net, status, "concretize", -1, error) ||
        (dst != NULL && !sb_net_tensor_read(net, result, S * B, dst, error)))
      goto out;
  }
  if (cfg->record)
    for (int side = 0; side < 2; side++) {
      record->saved[side][0] = s.A[side][0];
      s.A[side][0] = NULL;
    }
  ok = TRUE;
out:
  sb_net_tensor_free(net, result);
  sweep_clear(&s);
  if (!ok && cfg->record)
    sb_pass_record_clear(net, record);
  return ok;
}

void sb_pass_record_clear(SbNetwork *net, SbPassRecord *record) {
  int n = sb_graph_n_nodes(net->graph);
  free_pairs(net, record->saved[0], record->saved[1], n, record->borrowed);
  g_clear_pointer(&record->saved[0], g_free);
  g_clear_pointer(&record->saved[1], g_free);
}

void sb_pass_ancestors(const SbNetwork *net, int start, gboolean *mask) {
  int n = sb_graph_n_nodes(net->graph);
  memset(mask, 0, sizeof(gboolean) * n);
  mask[start] = TRUE;
  for (int j = start; j > 0; j--)
    if (mask[j]) {
      const SbNode *node = sb_graph_node(net->graph, j);
      for (int k = 0; k < node->n_inputs; k++)
        mask[node->inputs[k]] = TRUE;
    }
}

gboolean sb_crown_pass_gradient(SbNetwork *net, const SbPassRecord *rec,
                                int side, sb_tensor **lo, sb_tensor **hi,
                                const SbPassConfig *cfg, sb_tensor **grad_alpha,
                                sb_tensor **grad_beta, GError **error) {
  const sb_backend_v1 *be = SB_NET_BE(net);
  int n = sb_graph_n_nodes(net->graph);
  sb_tensor **saved = rec->saved[side];
  g_autofree sb_tensor **G = g_new0(sb_tensor *, n);
  gboolean ok = FALSE;
  int status;

  if (saved == NULL || saved[0] == NULL) {
    g_set_error(error, SB_ENGINE_ERROR, SB_ENGINE_ERROR_INTERNAL,
                "internal: gradient of a side the pass did not record");
    return FALSE;
  }
  /* dL/dA at the input, where L = sum of the side's bounds. */
  G[0] = sb_net_tensor_new(net, SB_MEM_COEFFICIENTS, rec->S, rec->B,
                           sb_net_node_size(net, 0), error);
  if (G[0] == NULL)
    goto out;
  status = be->concretize_vjp(SB_NET_CTX(net), saved[0], lo[0], hi[0], side,
                              NULL, G[0]);
  if (!sb_net_check(net, status, "concretize_vjp", -1, error))
    goto out;

  for (int j = 1; j <= rec->start; j++) {
    const SbNode *node = sb_graph_node(net->graph, j);
    gboolean want_alpha = node->kind == SB_NODE_RELU && grad_alpha != NULL &&
                          grad_alpha[j] != NULL;
    gboolean want_beta = grad_beta != NULL && grad_beta[j] != NULL;
    if (saved[j] == NULL || (j == rec->start && !want_alpha && !want_beta))
      continue;
    sb_vjp_args_v1 args;
    memset(&args, 0, sizeof args);
    args.struct_size = sizeof args;
    args.side = side;
    args.A_out = saved[j];
    if (node->kind == SB_NODE_RELU) {
      args.pre_lower = lo[node->inputs[0]];
      args.pre_upper = hi[node->inputs[0]];
      args.alpha = cfg->alpha[side] ? cfg->alpha[side][j] : NULL;
    }
    for (int k = 0; k < node->n_inputs; k++)
      args.grad_A_in[k] = G[node->inputs[k]];
    /* Overwritten by the VJP (accumulate_A_out = 0). */
    G[j] = sb_net_tensor_new_empty(net, rec->S, rec->B,
                                   sb_net_node_size(net, j), error);
    if (G[j] == NULL)
      goto out;
    args.grad_A_out = G[j];
    args.grad_alpha = want_alpha ? grad_alpha[j] : NULL;
    net->product_flops += sb_net_node_flops(net, j, rec->S * rec->B);
    status = be->layer_backward_vjp(SB_NET_CTX(net), net->layers[j], &args);
    if (!sb_net_check(net, status, "layer_backward_vjp", j, error))
      goto out;
    if (want_beta) {
      status = be->beta_vjp(SB_NET_CTX(net), G[j], cfg->split_sign[j], side,
                            grad_beta[j], 0);
      if (!sb_net_check(net, status, "beta_vjp", j, error))
        goto out;
    }
  }
  ok = TRUE;
out:
  for (int j = 0; j < n; j++)
    sb_net_tensor_free(net, G[j]);
  return ok;
}
