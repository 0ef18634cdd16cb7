/* SPDX-License-Identifier: MIT */
/* Linear layers y = W x + b: forward, IBP and the CROWN backward step. */
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
      st = a->accumulate[0] ? o->add(x->dev, N, dst, w, dst)
                            : o->copy(x->dev, dst, w,
                                      (size_t)N * sizeof(float));
      if (st == SB_OK && l->bias.ptr)
        st = o->add(x->dev, 1, a->bias + s * a->B + b,
                    (const float *)l->bias.ptr + a->unit_index[s],
                    a->bias + s * a->B + b);
    }
  }
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "linear backward");
}

static int linear_backward(SbExec *x, const struct sb_layer *l,
                           const SbOpBackward *a) {
  if (a->unit_index)
    return linear_backward_unit(x, l, a);
  const int64_t R = a->S * a->B, N = l->in_size, M = l->out_size;
  int st = SB_OK;
  /* A_in [R,in] = A [R,out] . W [out,in], block by block (SB_ROW_BLOCK). */
  for (int64_t s0 = 0; s0 < a->S && st == SB_OK; s0 += SB_ROW_BLOCK) {
    int64_t rows = (a->S - s0 < SB_ROW_BLOCK ? a->S - s0 : SB_ROW_BLOCK) *
                   a->B;
    st = x->ops->sgemm(x->dev, 0, 0, rows, N, M, 1.0f,
                       a->A_out + s0 * a->B * M, M, l->weight.ptr, N,
                       a->accumulate[0] ? 1.0f : 0.0f,
                       a->A_in[0] + s0 * a->B * N, N);
  }
  /* bias [R] += A [R,out] . b [out]: the device does it row by row. */
  if (st == SB_OK && l->bias.ptr)
    st = x->ops->channel_bias_backward(x->dev, R, M, 1, l->bias.ptr,
                                       a->A_out, a->bias);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "linear backward");
}

/* dL/dA_out [R,out] = G [R,in] . W^T + g b^T. */
static int linear_backward_vjp(SbExec *x, const struct sb_layer *l,
                               const SbOpVjp *a) {
  const int64_t R = a->S * a->B, N = l->in_size, M = l->out_size;
  float *dst = a->grad_A_out;
  int st = SB_OK;
  /* Block by block (SB_ROW_BLOCK) so that FSDP, which splits spec rows at
   * block boundaries, issues the very same GEMMs. */
  for (int64_t s0 = 0; a->grad_A_in[0] && s0 < a->S && st == SB_OK;
       s0 += SB_ROW_BLOCK) {
    int64_t rows = (a->S - s0 < SB_ROW_BLOCK ? a->S - s0 : SB_ROW_BLOCK) *
                   a->B;
    st = x->ops->sgemm(x->dev, 0, 1, rows, M, N, 1.0f,
                       a->grad_A_in[0] + s0 * a->B * N, N, l->weight.ptr, N,
                       a->accumulate_A_out ? 1.0f : 0.0f,
                       dst + s0 * a->B * M, M);
  }
  if (!a->grad_A_in[0] && !a->accumulate_A_out)
    st = x->ops->zero(x->dev, dst, (size_t)(R * M) * sizeof(float));
  /* The rank-1 term, row by row on the device. */
  if (st == SB_OK && l->bias.ptr)
    st = x->ops->channel_bias_vjp(x->dev, R, M, 1, l->bias.ptr,
                                  a->grad_bias, dst);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "linear backward VJP");
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
