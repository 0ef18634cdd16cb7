/* SPDX-License-Identifier: MIT */
/* TP for alpha- and beta-CROWN (ABI 1.1): the VJP of each backward step
 * (for linear and conv an all-gather of the input-side gradient followed by
 * a local product with the rank's weight rows; elementwise operators on the
 * local neuron slice alone), and the per-neuron operations on alpha, beta
 * and concretize, which need no communication at all. */
#include "backends/tp/tp.h"

#include "backends/common/rank_checks.h"

#include <stdio.h>
#include <string.h>

static const TpLayer *tp_layer(const sb_layer *l) {
  return (const TpLayer *)(const void *)l;
}

/* A must be split by neuron; its S, B and N are returned. */
static int coef_dims(sb_context *ctx, const char *fn, const char *what,
                     const sb_tensor *A, int64_t *S, int64_t *B, int64_t *N) {
  if (A == NULL || !A->head.split)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "%s: %s must be a tensor of shape [S,B,N]", fn, what);
  *S = A->head.shape[0];
  *B = A->head.shape[1];
  *N = A->cols;
  return SB_OK;
}

static float *local(const sb_tensor *t, int r) {
  return t ? t->head.buf[r].ptr : NULL;
}

/* ---- layer_backward_vjp ---- */

typedef struct {
  sb_context *ctx;
  const TpLayer *tl;
  const sb_vjp_args_v1 *args;
  int64_t S, B;
} VjpJob;

/* dL/dA_out of this rank's columns needs every column of dL/dA_in: it is
 * all-gathered a bounded block of rows at a time. */
static int sharded_vjp(VjpJob *j, SbRank *rank, SbComm *comm) {
  SbExec *x = &rank->x;
  const SbDeviceOps *o = x->ops;
  const TpLayer *tl = j->tl;
  const sb_vjp_args_v1 *in = j->args;
  const int r = rank->index;
  const TpShard *sh = &tl->shard[r];
  const int64_t R = j->S * j->B, Nin = tl->head.in_size, k = sh->count;
  const float *G = local(in->grad_A_in[0], r), *g = local(in->grad_bias, r);
  float *dst = in->grad_A_out->head.buf[r].ptr;
  const int64_t chunk = G ? tp_row_chunk(j->ctx, tl, R) : R;
  int64_t in_start, in_count, counts[SB_RANKS_MAX], starts[SB_RANKS_MAX];
  tp_cols(j->ctx, Nin, r, &in_start, &in_count);
  SbBuffer blocks = {0}, rows = {0};
  int st = SB_OK;
  if (G) {
    st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, chunk * Nin, &blocks);
    if (st == SB_OK)
      st = sb_exec_alloc(x, SB_MEM_WORKSPACE, chunk * Nin, &rows);
  }
  for (int64_t r0 = 0; r0 < R && st == SB_OK; r0 += chunk) {
    int64_t m = R - r0 < chunk ? R - r0 : chunk;
    const float *full = NULL;
    if (G) {
      for (int q = 0; q < j->ctx->size; q++) {
        tp_cols(j->ctx, Nin, q, &starts[q], &counts[q]);
        counts[q] *= m;
      }
      st = comm->ops->all_gather(comm, r, x, G + r0 * in_count, counts,
                                 blocks.ptr);
      /* Blocks [m, n_q] back to rows [m, Nin]. */
      const float *b = blocks.ptr;
      for (int q = 0; q < j->ctx->size && st == SB_OK; b += counts[q], q++) {
        int64_t n = counts[q] / m;
        for (int64_t i = 0; i < m && n > 0 && st == SB_OK; i++)
          if ((st = o->copy(x->dev, (float *)rows.ptr + i * Nin + starts[q],
                            b + i * n, (size_t)n * sizeof(float))))
            st = sb_exec_device_fail(x, st, "unpacking gathered rows");
      }
      full = rows.ptr;
    }
    if (st != SB_OK || k == 0)
      continue;
    if (tl->head.kind == SB_LAYER_LINEAR) {
      SbOpVjp a;
      memset(&a, 0, sizeof a);
      a.side = in->side;
      a.S = m;
      a.B = 1;
      a.grad_A_in[0] = full;
      a.grad_bias = g ? g + r0 : NULL;
      a.grad_A_out = dst + r0 * k;
      a.accumulate_A_out = in->accumulate_A_out;
      st = tl->head.fam->backward_vjp(x, &sh->local, &a);
    } else {
      st = tp_conv_backward_vjp(x, tl, sh, m, full, g ? g + r0 : NULL,
                                in->accumulate_A_out, dst + r0 * k);
    }
  }
  sb_exec_free(x, &rows);
  sb_exec_free(x, &blocks);
  return st;
}

static int local_vjp(VjpJob *j, SbRank *rank) {
  SbExec *x = &rank->x;
  const TpLayer *tl = j->tl;
  const sb_vjp_args_v1 *in = j->args;
  const int r = rank->index;
  const TpShard *sh = &tl->shard[r];
  SbOpVjp a;
  memset(&a, 0, sizeof a);
  a.side = in->side;
  a.S = j->S;
  a.B = j->B;
  a.A_out = local(in->A_out, r);
  for (int i = 0; i < tl->head.fam->n_inputs; i++)
    a.grad_A_in[i] = local(in->grad_A_in[i], r);
  a.grad_bias = local(in->grad_bias, r);
  a.grad_A_out = local(in->grad_A_out, r);
  a.accumulate_A_out = in->accumulate_A_out;
  TpSlice lo = {0}, up = {0};
  int st = SB_OK;
  if (tl->head.kind == SB_LAYER_RELU) {
    st = tp_slice_view(x, j->B, tl->head.out_size, sh->start, sh->count,
                       in->pre_lower->head.buf[r].ptr, &lo);
    if (st == SB_OK)
      st = tp_slice_view(x, j->B, tl->head.out_size, sh->start, sh->count,
                         in->pre_upper->head.buf[r].ptr, &up);
    a.pre_lower = lo.ptr;
    a.pre_upper = up.ptr;
    a.alpha = local(in->alpha, r);
    a.grad_alpha = local(in->grad_alpha, r);
    a.accumulate_alpha = in->accumulate_alpha;
  }
  if (st == SB_OK && sh->count > 0 && j->S * j->B > 0)
    st = tl->head.fam->backward_vjp(x, &sh->local, &a);
  tp_slice_end(x, &lo);
  tp_slice_end(x, &up);
  return st;
}

static int vjp_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  VjpJob *j = arg;
  if (j->tl->head.kind == SB_LAYER_LINEAR ||
      j->tl->head.kind == SB_LAYER_CONV2D)
    return sharded_vjp(j, rank, comm);
  return local_vjp(j, rank);
}

int tp_layer_backward_vjp(sb_context *ctx, const sb_layer *layer,
                          const sb_vjp_args_v1 *args) {
  static const char fn[] = "layer_backward_vjp";
  int st = sb_rank_begin_layer(ctx, fn, layer);
  if (st != SB_OK)
    return st;
  const TpLayer *tl = tp_layer(layer);
  VjpJob job = {ctx, tl, args, 0, 0};
  int64_t N;
  st = sb_check_vjp_args(SB_CTX_ERROR(ctx), fn, args);
  if (st == SB_OK)
    st = coef_dims(ctx, fn, "A_out", args->A_out, &job.S, &job.B, &N);
  if (st == SB_OK)
    st = tp_expect_coefficients(ctx, fn, "A_out", args->A_out, job.S, job.B,
                                tl->head.out_size);
  if (st == SB_OK)
    st = tp_expect_coefficients(ctx, fn, "grad_A_out", args->grad_A_out, job.S,
                                job.B, tl->head.out_size);
  for (int i = 0; i < tl->head.fam->n_inputs && st == SB_OK; i++) {
    char name[32];
    snprintf(name, sizeof name, "grad_A_in[%d]", i);
    if (args->grad_A_in[i] == NULL)
      continue;
    st = tp_expect_coefficients(ctx, fn, name, args->grad_A_in[i], job.S, job.B,
                                tl->head.in_size);
  }
  if (st == SB_OK && args->grad_bias)
    st = sb_rank_expect_whole(ctx, fn, "grad_bias", args->grad_bias,
                              job.S * job.B, "[S,B]");
  if (st == SB_OK && tl->head.kind == SB_LAYER_RELU) {
    const int64_t BN = job.B * tl->head.out_size;
    if ((st = sb_rank_expect_whole(ctx, fn, "pre_lower", args->pre_lower, BN,
                                   "[B,N]")) ||
        (st = sb_rank_expect_whole(ctx, fn, "pre_upper", args->pre_upper, BN,
                                   "[B,N]")))
      return st;
    if (args->alpha)
      st = tp_expect_coefficients(ctx, fn, "alpha", args->alpha, job.S, job.B,
                                  tl->head.out_size);
    if (st == SB_OK && args->grad_alpha)
      st = tp_expect_coefficients(ctx, fn, "grad_alpha", args->grad_alpha,
                                  job.S, job.B, tl->head.out_size);
  } else if (st == SB_OK && args->grad_alpha) {
    st =
        sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: grad_alpha is only meaningful for a relu layer, this "
                     "is a %s layer",
                     fn, tl->head.fam->name);
  }
  if (st == SB_OK)
    st = sb_check_vjp_aliasing(SB_CTX_ERROR(ctx), fn, tl->head.fam->n_inputs,
                               args);
  if (st != SB_OK)
    return st;
  return sb_rank_run(ctx, vjp_on_rank, &job);
}

/* ---- per-neuron operations: each rank on its own columns ---- */

typedef struct {
  sb_context *ctx;
  int op;
  int32_t side;
  int64_t S, B, N;
  const sb_tensor *A, *lo, *up, *g, *beta, *sign;
  sb_tensor *out;
  int32_t accumulate;
  const sb_adam_args_v1 *adam;
  sb_tensor *param, *m, *v;
} ColumnJob;

enum { OP_CONCRETIZE_VJP, OP_INIT_ALPHA, OP_BETA_APPLY, OP_BETA_VJP, OP_ADAM };

static int columns_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  ColumnJob *j = arg;
  SbExec *x = &rank->x;
  const int r = rank->index;
  if (j->op == OP_ADAM) {
    /* param, grad, m and v share one layout, so the stored floats line
     * up element by element. */
    int64_t n = (int64_t)(j->param->head.buf[r].bytes / sizeof(float));
    return n == 0 ? SB_OK
                  : sb_adam_step(x, n, local(j->param, r), local(j->g, r),
                                 local(j->m, r), local(j->v, r), j->adam);
  }
  int64_t start, count;
  tp_cols(j->ctx, j->N, r, &start, &count);
  const sb_tensor *bounds = j->op == OP_CONCRETIZE_VJP ? j->lo
                            : j->op == OP_INIT_ALPHA   ? j->lo
                                                       : j->sign;
  TpSlice lo = {0}, up = {0};
  int st = tp_slice_view(x, j->B, j->N, start, count, local(bounds, r), &lo);
  if (st == SB_OK && j->up)
    st = tp_slice_view(x, j->B, j->N, start, count, local(j->up, r), &up);
  if (st == SB_OK && count > 0 && j->S * j->B > 0) {
    switch (j->op) {
    case OP_CONCRETIZE_VJP:
      st = sb_concretize_vjp(x, j->side, j->S, j->B, count, local(j->A, r),
                             lo.ptr, up.ptr, local(j->g, r),
                             local(j->out, r));
      break;
    case OP_INIT_ALPHA:
      st = sb_relu_init_alpha(x, j->S, j->B, count, lo.ptr, up.ptr,
                              local(j->out, r));
      break;
    case OP_BETA_APPLY:
      st = sb_beta_apply(x, j->side, j->S, j->B, count, local(j->out, r),
                         local(j->beta, r), lo.ptr);
      break;
    default:
      st = sb_beta_vjp(x, j->side, j->S, j->B, count, local(j->A, r), lo.ptr,
                       local(j->out, r), j->accumulate);
    }
  }
  tp_slice_end(x, &lo);
  tp_slice_end(x, &up);
  return st;
}

int tp_concretize_vjp(sb_context *ctx, const sb_tensor *A,
                      const sb_tensor *x_lower, const sb_tensor *x_upper,
                      int32_t side, const sb_tensor *grad_out,
                      sb_tensor *grad_A) {
  static const char fn[] = "concretize_vjp";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  ColumnJob j = {ctx, OP_CONCRETIZE_VJP, side};
  j.A = A, j.lo = x_lower, j.up = x_upper, j.g = grad_out, j.out = grad_A;
  st = sb_check_side(SB_CTX_ERROR(ctx), fn, side);
  if (st == SB_OK)
    st = coef_dims(ctx, fn, "A", A, &j.S, &j.B, &j.N);
  if (st == SB_OK && grad_out)
    st =
        sb_rank_expect_whole(ctx, fn, "grad_out", grad_out, j.S * j.B, "[S,B]");
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "x_lower", x_lower, j.B * j.N, "[B,N]");
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "x_upper", x_upper, j.B * j.N, "[B,N]");
  if (st == SB_OK)
    st = tp_expect_coefficients(ctx, fn, "grad_A", grad_A, j.S, j.B, j.N);
  if (st == SB_OK)
    st = sb_check_concretize_vjp_aliasing(SB_CTX_ERROR(ctx), fn, A, x_lower,
                                          x_upper, grad_out, grad_A);
  return st == SB_OK ? sb_rank_run(ctx, columns_on_rank, &j) : st;
}

int tp_relu_init_alpha(sb_context *ctx, const sb_tensor *pre_lower,
                       const sb_tensor *pre_upper, sb_tensor *alpha) {
  static const char fn[] = "relu_init_alpha";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  ColumnJob j = {ctx, OP_INIT_ALPHA};
  j.lo = pre_lower, j.up = pre_upper, j.out = alpha;
  st = coef_dims(ctx, fn, "alpha", alpha, &j.S, &j.B, &j.N);
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "pre_lower", pre_lower, j.B * j.N,
                              "[B,N]");
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "pre_upper", pre_upper, j.B * j.N,
                              "[B,N]");
  if (st == SB_OK)
    st = sb_check_init_alpha_aliasing(SB_CTX_ERROR(ctx), fn, pre_lower,
                                      pre_upper, alpha);
  return st == SB_OK ? sb_rank_run(ctx, columns_on_rank, &j) : st;
}

int tp_beta_apply(sb_context *ctx, sb_tensor *A, const sb_tensor *beta,
                  const sb_tensor *sign, int32_t side) {
  static const char fn[] = "beta_apply";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  ColumnJob j = {ctx, OP_BETA_APPLY, side};
  j.out = A, j.beta = beta, j.sign = sign;
  st = sb_check_side(SB_CTX_ERROR(ctx), fn, side);
  if (st == SB_OK)
    st = coef_dims(ctx, fn, "A", A, &j.S, &j.B, &j.N);
  if (st == SB_OK)
    st = tp_expect_coefficients(ctx, fn, "beta", beta, j.S, j.B, j.N);
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "sign", sign, j.B * j.N, "[B,N]");
  if (st == SB_OK)
    st = sb_check_beta_apply_aliasing(SB_CTX_ERROR(ctx), fn, A, beta, sign);
  return st == SB_OK ? sb_rank_run(ctx, columns_on_rank, &j) : st;
}

int tp_beta_vjp(sb_context *ctx, const sb_tensor *grad_A, const sb_tensor *sign,
                int32_t side, sb_tensor *grad_beta, int32_t accumulate) {
  static const char fn[] = "beta_vjp";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  ColumnJob j = {ctx, OP_BETA_VJP, side};
  j.A = grad_A, j.sign = sign, j.out = grad_beta, j.accumulate = accumulate;
  st = sb_check_side(SB_CTX_ERROR(ctx), fn, side);
  if (st == SB_OK)
    st = coef_dims(ctx, fn, "grad_A", grad_A, &j.S, &j.B, &j.N);
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "sign", sign, j.B * j.N, "[B,N]");
  if (st == SB_OK)
    st = tp_expect_coefficients(ctx, fn, "grad_beta", grad_beta, j.S, j.B,
                                j.N);
  if (st == SB_OK)
    st = sb_check_beta_vjp_aliasing(SB_CTX_ERROR(ctx), fn, grad_A, sign,
                                    grad_beta);
  return st == SB_OK ? sb_rank_run(ctx, columns_on_rank, &j) : st;
}

static int same_layout(sb_context *ctx, const char *fn, const char *what,
                       const sb_tensor *t, const sb_tensor *param) {
  if (t == NULL)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                        what);
  if (t->head.ndim != param->head.ndim ||
      memcmp(t->head.shape, param->head.shape,
             (size_t)t->head.ndim * sizeof *t->head.shape))
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "%s: %s must have param's shape (%d dimensions, %lld "
                        "elements; it has %d, %lld)",
                        fn, what, (int)param->head.ndim,
                        (long long)param->head.numel, (int)t->head.ndim,
                        (long long)t->head.numel);
  return SB_OK;
}

int tp_adam_step(sb_context *ctx, sb_tensor *param, const sb_tensor *grad,
                 sb_tensor *m, sb_tensor *v, const sb_adam_args_v1 *args) {
  static const char fn[] = "adam_step";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  st = sb_check_adam_args(SB_CTX_ERROR(ctx), fn, args, param);
  if (st == SB_OK)
    st = same_layout(ctx, fn, "grad", grad, param);
  if (st == SB_OK)
    st = same_layout(ctx, fn, "m", m, param);
  if (st == SB_OK)
    st = same_layout(ctx, fn, "v", v, param);
  if (st == SB_OK)
    st = sb_check_adam_aliasing(SB_CTX_ERROR(ctx), fn, param, grad, m, v);
  if (st != SB_OK)
    return st;
  ColumnJob j = {ctx, OP_ADAM};
  j.adam = args, j.param = param, j.g = grad, j.m = m, j.v = v;
  return sb_rank_run(ctx, columns_on_rank, &j);
}
