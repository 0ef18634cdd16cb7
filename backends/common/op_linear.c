/* SPDX-License-Identifier: MIT */
/* Linear layers y = W x + b: forward, IBP and the CROWN backward step. */
#include <stdlib.h>
#include <string.h>

#include "backends/common/layer.h"

static int linear_create(SbExec *x, const sb_layer_desc_v1 *d,
                         struct sb_layer *l) {
  if (d->weight == NULL)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "linear layer needs a weight [%lld,%lld]",
                        (long long)d->out_size, (long long)d->in_size);
  int st = sb_exec_upload_weights(x, d->weight, d->out_size * d->in_size,
                                  &l->weight);
  if (st == SB_OK && d->bias != NULL)
    st = sb_exec_upload_weights(x, d->bias, d->out_size, &l->bias);
  return st;
}

/* out [B,out] = in [B,in] . op(W)^T, W or |W| stored [out,in]. */
static int linear_apply(SbExec *x, const struct sb_layer *l, int64_t B,
                        const float *w, const float *in, float *out) {
  return x->ops->sgemm(x->dev, 0, 1, B, l->out_size, l->in_size, 1.0f, in,
                       l->in_size, w, l->in_size, 0.0f, out, l->out_size);
}

static int linear_forward(SbExec *x, const struct sb_layer *l, int64_t B,
                          const float *const *in, float *out) {
  int st = linear_apply(x, l, B, l->weight.ptr, in[0], out);
  if (st == SB_OK && l->bias.ptr)
    st = x->ops->add_bias_rows(x->dev, B, l->out_size, l->bias.ptr, out);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "linear forward");
}

/* |W| is built in bounded row blocks: it is needed once per IBP pass, and
 * keeping it resident would double the weights' footprint. */
#define SB_LINEAR_ABS_BLOCK_FLOATS ((int64_t)1 << 20)

static int linear_ibp(SbExec *x, const struct sb_layer *l, int64_t B,
                      const float *const *lo, const float *const *up,
                      float *out_lo, float *out_up) {
  const SbDeviceOps *o = x->ops;
  SbBuffer cr = {0}, absw = {0};
  const int64_t nin = B * l->in_size, N = l->in_size, M = l->out_size;
  int64_t block = SB_LINEAR_ABS_BLOCK_FLOATS / N;
  block = block < 1 ? 1 : block > M ? M : block;
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, 2 * nin, &cr);
  if (st == SB_OK)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, block * N, &absw);
  if (st != SB_OK)
    goto out;
  float *c = cr.ptr, *r = c + nin, *aw = absw.ptr;
  const float *w = l->weight.ptr;
  if ((st = o->box_to_centre_radius(x->dev, nin, lo[0], up[0], c, r)) ||
      (st = linear_apply(x, l, B, w, c, out_lo)))
    goto device_fail;
  /* out_up[:, o0:o0+n] = r . |W[o0:o0+n, :]|^T */
  for (int64_t o0 = 0; o0 < M; o0 += block) {
    int64_t n = M - o0 < block ? M - o0 : block;
    if ((st = o->abs(x->dev, n * N, w + o0 * N, aw)) ||
        (st = o->sgemm(x->dev, 0, 1, B, n, N, 1.0f, r, N, aw, N, 0.0f,
                       out_up + o0, M)))
      goto device_fail;
  }
  if ((l->bias.ptr &&
       (st = o->add_bias_rows(x->dev, B, M, l->bias.ptr, out_lo))) ||
      (st = o->centre_radius_to_box(x->dev, B * M, out_lo, out_up, out_lo,
                                    out_up)))
    goto device_fail;
  goto out;
device_fail:
  st = sb_exec_device_fail(x, st, "linear IBP");
out:
  sb_exec_free(x, &absw);
  sb_exec_free(x, &cr);
  return st;
}

/* A_in = e_k . W at the rows of tensor_set_unit_rows is row k of W, and
 * the bias term is b[k]: a copy is bitwise what the GEMM would give (the
 * other products are exact zeros) at a fraction of its cost, which is the
 * first step of every intermediate CROWN pass. */
static int linear_backward_unit(SbExec *x, const struct sb_layer *l,
                                const SbOpBackward *a) {
  const SbDeviceOps *o = x->ops;
  const int64_t N = l->in_size;
  int st = SB_OK;
  for (int64_t s = 0; s < a->S && st == SB_OK; s++) {
    const float *w = (const float *)l->weight.ptr + a->unit_index[s] * N;
    for (int64_t b = 0; b < a->B && st == SB_OK; b++) {
      float *dst = a->A_in[0] + (s * a->B + b) * N;
      st = a->accumulate[0]
               ? o->add(x->dev, N, dst, w, dst)
               : o->copy(x->dev, dst, w, (size_t)N * sizeof(float));
      if (st == SB_OK && l->bias.ptr)
        st = o->add(x->dev, 1, a->bias + s * a->B + b,
                    (const float *)l->bias.ptr + a->unit_index[s],
                    a->bias + s * a->B + b);
    }
  }
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "linear backward");
}

/* A column of X that is exactly zero in every row of a block adds nothing
 * to X . op(W), so a block whose non-zero ("live") columns are at most
 * this fraction multiplies only those columns by the matching part of W.
 * Such columns come from stably inactive ReLUs: in backward, A's columns
 * at the inputs of an inactive ReLU above; in the VJP, G's columns at the
 * outputs of an inactive ReLU below. Above the threshold the gathers cost
 * more than the product saves. */
#define SB_LINEAR_LIVE_MAX 0.9

/* The products of one call, block by block (SB_ROW_BLOCK spec rows):
 * C [rows,n] (+)= X [rows,K] . op(W), where op(W) is W [out,in] itself
 * (backward: K = out, n = in) or W^T (VJP: K = in, n = out). */
typedef struct {
  int transposed;
  int64_t K, n;
  int64_t *live, *w_live; /* HOST, K entries each; NULL: always dense */
  int64_t w_count;        /* entries of w_live in w_sel, -1 for none */
  SbBuffer x_sel;         /* live columns of X [rows, k] */
  SbBuffer w_sel;         /* their part of W: rows [k,in] or cols [out,k] */
} BlockProduct;

static int block_product_init(SbExec *x, const struct sb_layer *l,
                              int transposed, BlockProduct *bp) {
  memset(bp, 0, sizeof *bp);
  bp->transposed = transposed;
  bp->K = transposed ? l->in_size : l->out_size;
  bp->n = transposed ? l->out_size : l->in_size;
  bp->w_count = -1;
  /* A device without the two primitives multiplies densely. */
  if (!x->ops->nonzero_cols || !x->ops->gather_cols || bp->K < 2)
    return SB_OK;
  bp->live = malloc((size_t)bp->K * sizeof *bp->live);
  bp->w_live = malloc((size_t)bp->K * sizeof *bp->w_live);
  if (bp->live == NULL || bp->w_live == NULL) {
    free(bp->live);
    free(bp->w_live);
    return sb_exec_fail(x, SB_ERR_OUT_OF_MEMORY,
                        "linear: out of host memory for %lld column indices",
                        (long long)bp->K);
  }
  return SB_OK;
}

static void block_product_release(SbExec *x, BlockProduct *bp) {
  free(bp->live);
  free(bp->w_live);
  sb_exec_free(x, &bp->x_sel);
  sb_exec_free(x, &bp->w_sel);
}

/* Grow buf to hold `floats` floats (contents are not kept). */
static int reserve(SbExec *x, SbBuffer *buf, int64_t floats) {
  if ((int64_t)(buf->bytes / sizeof(float)) >= floats)
    return SB_OK;
  sb_exec_free(x, buf);
  return sb_exec_alloc(x, SB_MEM_WORKSPACE, floats, buf);
}

/* W's part for the k live columns in bp->live, reused while the blocks
 * select the same columns (they usually do: a neuron's stability is per
 * batch element, not per spec row). */
static int select_weight(SbExec *x, const struct sb_layer *l, BlockProduct *bp,
                         int64_t k) {
  if (bp->w_count == k &&
      memcmp(bp->w_live, bp->live, (size_t)k * sizeof *bp->live) == 0)
    return SB_OK;
  const SbDeviceOps *o = x->ops;
  const int64_t N = l->in_size, M = l->out_size;
  const float *w = l->weight.ptr;
  bp->w_count = -1;
  int st = reserve(x, &bp->w_sel, k * bp->n);
  if (st != SB_OK)
    return st;
  float *ws = bp->w_sel.ptr;
  if (bp->transposed)
    st = o->gather_cols(x->dev, M, w, N, k, bp->live, ws);
  else
    for (int64_t j = 0; j < k && st == SB_OK; j++)
      st = o->copy(x->dev, ws + j * N, w + bp->live[j] * N,
                   (size_t)N * sizeof(float));
  if (st != SB_OK)
    return sb_exec_device_fail(x, st, "linear (selecting weights)");
  memcpy(bp->w_live, bp->live, (size_t)k * sizeof *bp->live);
  bp->w_count = k;
  return SB_OK;
}

/* One block. The choice of columns depends only on this block's data, so
 * every backend that runs the same block (FSDP splits spec rows at block
 * boundaries) issues the very same product, bitwise. */
static int block_product(SbExec *x, const struct sb_layer *l, BlockProduct *bp,
                         int64_t rows, const float *X, float beta, float *C) {
  const SbDeviceOps *o = x->ops;
  const int64_t K = bp->K, n = bp->n, N = l->in_size;
  const int t = bp->transposed;
  int64_t k = K;
  int st = SB_OK;
  if (bp->live &&
      (st = o->nonzero_cols(x->dev, rows, K, X, K, bp->live, &k)) != SB_OK)
    return sb_exec_device_fail(x, st, "linear (finding live columns)");
  if (k > (int64_t)(SB_LINEAR_LIVE_MAX * (double)K)) {
    st = o->sgemm(x->dev, 0, t, rows, n, K, 1.0f, X, K, l->weight.ptr, N, beta,
                  C, n);
  } else if (k == 0) {
    if (beta == 0.0f)
      st = o->zero(x->dev, C, (size_t)(rows * n) * sizeof(float));
  } else {
    if ((st = select_weight(x, l, bp, k)) != SB_OK ||
        (st = reserve(x, &bp->x_sel, rows * k)) != SB_OK)
      return st;
    /* W's selection is [k,in] (ld in) or [out,k] (ld k). */
    if ((st = o->gather_cols(x->dev, rows, X, K, k, bp->live, bp->x_sel.ptr)) ==
        SB_OK)
      st = o->sgemm(x->dev, 0, t, rows, n, k, 1.0f, bp->x_sel.ptr, k,
                    bp->w_sel.ptr, t ? k : N, beta, C, n);
  }
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "linear GEMM");
}

/* C [S*B, n] (+)= X [S*B, K] . op(W), in blocks of SB_ROW_BLOCK spec rows
 * so that FSDP, which splits spec rows at block boundaries, issues the very
 * same GEMMs; or, with batch_blocks, in blocks of one spec row and
 * SB_BATCH_BLOCK batch elements, for FSDP's split of the batch axis. */
static int blocked_product(SbExec *x, const struct sb_layer *l, int transposed,
                           int64_t S, int64_t B, int batch_blocks,
                           const float *X, int accumulate, float *C) {
  BlockProduct bp;
  int st = block_product_init(x, l, transposed, &bp);
  const float beta = accumulate ? 1.0f : 0.0f;
  if (batch_blocks) {
    for (int64_t s = 0; s < S && st == SB_OK; s++)
      for (int64_t b0 = 0; b0 < B && st == SB_OK; b0 += SB_BATCH_BLOCK) {
        int64_t rows = B - b0 < SB_BATCH_BLOCK ? B - b0 : SB_BATCH_BLOCK;
        int64_t r0 = s * B + b0;
        st = block_product(x, l, &bp, rows, X + r0 * bp.K, beta, C + r0 * bp.n);
      }
  } else {
    for (int64_t s0 = 0; s0 < S && st == SB_OK; s0 += SB_ROW_BLOCK) {
      int64_t rows = (S - s0 < SB_ROW_BLOCK ? S - s0 : SB_ROW_BLOCK) * B;
      st = block_product(x, l, &bp, rows, X + s0 * B * bp.K, beta,
                         C + s0 * B * bp.n);
    }
  }
  block_product_release(x, &bp);
  return st;
}

static int linear_backward(SbExec *x, const struct sb_layer *l,
                           const SbOpBackward *a) {
  if (a->unit_index)
    return linear_backward_unit(x, l, a);
  const int64_t R = a->S * a->B, M = l->out_size;
  /* A_in [R,in] = A [R,out] . W [out,in] */
  int st = blocked_product(x, l, 0, a->S, a->B, a->batch_blocks, a->A_out,
                           a->accumulate[0], a->A_in[0]);
  /* bias [R] += A [R,out] . b [out]: the device does it row by row. */
  if (st == SB_OK && l->bias.ptr &&
      (st = x->ops->channel_bias_backward(x->dev, R, M, 1, l->bias.ptr,
                                          a->A_out, a->bias)) != SB_OK)
    st = sb_exec_device_fail(x, st, "linear backward");
  return st;
}

/* dL/dA_out [R,out] = G [R,in] . W^T + g b^T. */
static int linear_backward_vjp(SbExec *x, const struct sb_layer *l,
                               const SbOpVjp *a) {
  const int64_t R = a->S * a->B, M = l->out_size;
  float *dst = a->grad_A_out;
  int st = SB_OK;
  if (a->grad_A_in[0])
    st = blocked_product(x, l, 1, a->S, a->B, a->batch_blocks, a->grad_A_in[0],
                         a->accumulate_A_out, dst);
  else if (!a->accumulate_A_out &&
           (st = x->ops->zero(x->dev, dst, (size_t)(R * M) * sizeof(float))))
    st = sb_exec_device_fail(x, st, "linear backward VJP");
  /* The rank-1 term, row by row on the device. */
  if (st == SB_OK && l->bias.ptr &&
      (st = x->ops->channel_bias_vjp(x->dev, R, M, 1, l->bias.ptr, a->grad_bias,
                                     dst)) != SB_OK)
    st = sb_exec_device_fail(x, st, "linear backward VJP");
  return st;
}

const SbOpFamily sb_op_linear = {
    .name = "linear",
    .n_inputs = 1,
    .create = linear_create,
    .forward = linear_forward,
    .ibp = linear_ibp,
    .backward = linear_backward,
    .backward_vjp = linear_backward_vjp,
};
