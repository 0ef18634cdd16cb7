/* SPDX-License-Identifier: MIT */
/* 2-D convolutions (ONNX Conv: stride, asymmetric pads, dilation, groups):
 * forward and IBP as the convolution, CROWN backward as the transposed
 * convolution: each by the device's own kernel where it has one (the
 * CPU's, conv_cpu.c), else by im2col + GEMM, and a GEMM with W^T and an
 * accumulating col2im.
 * Every product covers a whole chunk of rows at once, with the rows'
 * columns side by side, rather than one small GEMM per spec row. */
#include "backends/common/layer.h"

/* im2col columns are the big transient buffer: process rows in chunks so
 * that a large S*B never needs more than this many floats at once (and the
 * columns mostly stay in cache between im2col and the GEMM). */
#define SB_CONV_WORKSPACE_FLOATS ((int64_t)1024 * 1024)

static int conv_check(SbExec *x, const sb_layer_desc_v1 *d) {
  if (d->in_c <= 0 || d->in_h <= 0 || d->in_w <= 0 || d->out_c <= 0 ||
      d->kernel_h <= 0 || d->kernel_w <= 0)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "conv layer: channels, image and kernel sizes must be "
                        "positive (in %lldx%lldx%lld, out_c %lld, kernel "
                        "%lldx%lld)",
                        (long long)d->in_c, (long long)d->in_h,
                        (long long)d->in_w, (long long)d->out_c,
                        (long long)d->kernel_h, (long long)d->kernel_w);
  if (d->stride_h <= 0 || d->stride_w <= 0 || d->dilation_h <= 0 ||
      d->dilation_w <= 0)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "conv layer: strides and dilations must be positive "
                        "(stride %lldx%lld, dilation %lldx%lld)",
                        (long long)d->stride_h, (long long)d->stride_w,
                        (long long)d->dilation_h, (long long)d->dilation_w);
  if (d->pad_top < 0 || d->pad_left < 0 || d->pad_bottom < 0 ||
      d->pad_right < 0)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "conv layer: pads must not be negative");
  if (d->groups <= 0 || d->in_c % d->groups || d->out_c % d->groups)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "conv layer: groups=%lld must be positive and divide "
                        "in_c=%lld and out_c=%lld",
                        (long long)d->groups, (long long)d->in_c,
                        (long long)d->out_c);
  int64_t eh = d->dilation_h * (d->kernel_h - 1) + 1;
  int64_t ew = d->dilation_w * (d->kernel_w - 1) + 1;
  int64_t oh = d->in_h + d->pad_top + d->pad_bottom - eh;
  int64_t ow = d->in_w + d->pad_left + d->pad_right - ew;
  oh = oh < 0 ? 0 : oh / d->stride_h + 1;
  ow = ow < 0 ? 0 : ow / d->stride_w + 1;
  if (oh != d->out_h || ow != d->out_w)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "conv layer: output %lldx%lld does not match the "
                        "geometry, which gives %lldx%lld",
                        (long long)d->out_h, (long long)d->out_w, (long long)oh,
                        (long long)ow);
  if (d->in_size != d->in_c * d->in_h * d->in_w ||
      d->out_size != d->out_c * d->out_h * d->out_w)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "conv layer: in_size %lld / out_size %lld must equal "
                        "C*H*W of input (%lld) / output (%lld)",
                        (long long)d->in_size, (long long)d->out_size,
                        (long long)(d->in_c * d->in_h * d->in_w),
                        (long long)(d->out_c * d->out_h * d->out_w));
  return SB_OK;
}

int sb_conv_geometry(SbExec *x, const sb_layer_desc_v1 *d, struct sb_layer *l) {
  int st = conv_check(x, d);
  if (st != SB_OK)
    return st;
  l->conv = (SbConvGeom){
      d->in_c,       d->in_h,     d->in_w,       d->out_c,     d->out_h,
      d->out_w,      d->kernel_h, d->kernel_w,   d->stride_h,  d->stride_w,
      d->pad_top,    d->pad_left, d->pad_bottom, d->pad_right, d->dilation_h,
      d->dilation_w, d->groups};
  return SB_OK;
}

static int conv_create(SbExec *x, const sb_layer_desc_v1 *d,
                       struct sb_layer *l) {
  int st = sb_conv_geometry(x, d, l);
  if (st != SB_OK)
    return st;
  if (d->weight == NULL)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "conv layer needs a weight");
  int64_t wn = d->out_c * (d->in_c / d->groups) * d->kernel_h * d->kernel_w;
  st = sb_exec_upload_weights(x, d->weight, wn, &l->weight);
  if (st == SB_OK && d->bias != NULL)
    st = sb_exec_upload_weights(x, d->bias, d->out_c, &l->bias);
  return st;
}

SbConvDims sb_conv_dims(const SbConvGeom *g) {
  SbConvDims d;
  d.G = g->groups;
  d.Cg = g->in_c / g->groups;
  d.OCg = g->out_c / g->groups;
  d.K = d.Cg * g->kernel_h * g->kernel_w;
  d.P = g->out_h * g->out_w;
  d.ck = g->in_c * g->kernel_h * g->kernel_w;
  return d;
}

/* Rows per product, for `per` workspace floats a row: a power of two up to
 * SB_ROW_BLOCK. A multi-rank backend splits rows at multiples of
 * SB_ROW_BLOCK (times B), so every chunk starts at the same global row and
 * is the same product wherever it runs (layer.h), and results stay bitwise
 * equal to one device. */
static int64_t conv_chunk(int64_t per, int64_t rows) {
  int64_t c = SB_ROW_BLOCK;
  while (c > 1 && c * per > SB_CONV_WORKSPACE_FLOATS)
    c /= 2;
  return c < rows ? c : rows;
}

/* Channels [*lo, *hi) of group gi that lie in [c0, c1); callers visit the
 * groups gi = c0 / OCg, ... while gi * OCg < c1, which the range touches. */
static void group_part(const SbConvDims *d, int64_t gi, int64_t c0, int64_t c1,
                       int64_t *lo, int64_t *hi) {
  *lo = gi * d->OCg > c0 ? gi * d->OCg : c0;
  *hi = (gi + 1) * d->OCg < c1 ? (gi + 1) * d->OCg : c1;
}

int sb_conv_apply(SbExec *x, const struct sb_layer *l, int64_t c0, int64_t nc,
                  int64_t B, const float *w, const float *in, float beta,
                  float *out) {
  const SbDeviceOps *o = x->ops;
  const SbConvGeom *g = &l->conv;
  if (o->conv_forward && g->groups == 1) {
    int st = o->conv_forward(x->dev, g, B, nc, w, in, beta, out);
    return st == SB_OK ? st : sb_exec_device_fail(x, st, "convolution");
  }
  SbConvDims d = sb_conv_dims(g);
  int64_t chunk = conv_chunk((d.ck + nc) * d.P, B);
  SbBuffer cols = {0}, prod = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, chunk * d.ck * d.P, &cols);
  if (st == SB_OK)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, chunk * nc * d.P, &prod);
  if (st != SB_OK)
    goto out;
  const int64_t c1 = c0 + nc;
  for (int64_t b0 = 0; b0 < B && st == SB_OK; b0 += chunk) {
    int64_t n = B - b0 < chunk ? B - b0 : chunk;
    /* cols [ck, n*P]; prod_g [OCg, n*P] = W_g [OCg, K] . cols_g [K, n*P]. */
    st = o->im2col(x->dev, g, n, in + b0 * l->in_size, cols.ptr);
    for (int64_t gi = c0 / d.OCg; gi * d.OCg < c1 && st == SB_OK; gi++) {
      int64_t lo, hi;
      group_part(&d, gi, c0, c1, &lo, &hi);
      st = o->sgemm(x->dev, 0, 0, hi - lo, n * d.P, d.K, 1.0f,
                    w + (lo - c0) * d.K, d.K,
                    (const float *)cols.ptr + gi * d.K * n * d.P, n * d.P, 0.0f,
                    (float *)prod.ptr + (lo - c0) * n * d.P, n * d.P);
    }
    if (st == SB_OK)
      st = o->swap_outer_axes(x->dev, nc, n, d.P, prod.ptr, beta,
                              out + b0 * nc * d.P);
  }
  if (st != SB_OK)
    st = sb_exec_device_fail(x, st, "convolution");
out:
  sb_exec_free(x, &prod);
  sb_exec_free(x, &cols);
  return st;
}

int sb_conv_add_bias(SbExec *x, const struct sb_layer *l, int64_t nc, int64_t B,
                     float *out) {
  if (!l->bias.ptr)
    return SB_OK;
  int st = x->ops->affine_forward(x->dev, B, nc, l->conv.out_h * l->conv.out_w,
                                  NULL, l->bias.ptr, 0, out, out);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "conv bias");
}

static int conv_forward(SbExec *x, const struct sb_layer *l, int64_t B,
                        const float *const *in, float *out) {
  const int64_t C = l->conv.out_c;
  int st = sb_conv_apply(x, l, 0, C, B, l->weight.ptr, in[0], 0.0f, out);
  return st == SB_OK ? sb_conv_add_bias(x, l, C, B, out) : st;
}

int sb_conv_ibp(SbExec *x, const struct sb_layer *l, int64_t c0, int64_t nc,
                int64_t B, const float *lo, const float *up, float *out_lo,
                float *out_up) {
  const SbDeviceOps *o = x->ops;
  SbBuffer cr = {0}, absw = {0};
  const int64_t nin = B * l->in_size;
  const int64_t nw = l->weight.bytes / sizeof(float);
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, 2 * nin, &cr);
  if (st == SB_OK)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, nw, &absw);
  if (st != SB_OK)
    goto out;
  float *c = cr.ptr, *r = c + nin;
  if ((st = o->box_to_centre_radius(x->dev, nin, lo, up, c, r)) ||
      (st = o->abs(x->dev, nw, l->weight.ptr, absw.ptr))) {
    st = sb_exec_device_fail(x, st, "conv IBP");
    goto out;
  }
  if ((st = sb_conv_apply(x, l, c0, nc, B, l->weight.ptr, c, 0.0f, out_lo)) ||
      (st = sb_conv_add_bias(x, l, nc, B, out_lo)) ||
      (st = sb_conv_apply(x, l, c0, nc, B, absw.ptr, r, 0.0f, out_up)))
    goto out;
  const int64_t nout = B * nc * l->conv.out_h * l->conv.out_w;
  st = o->centre_radius_to_box(x->dev, nout, out_lo, out_up, out_lo, out_up);
  if (st != SB_OK)
    st = sb_exec_device_fail(x, st, "conv IBP");
out:
  sb_exec_free(x, &absw);
  sb_exec_free(x, &cr);
  return st;
}

static int conv_ibp(SbExec *x, const struct sb_layer *l, int64_t B,
                    const float *const *lo, const float *const *up,
                    float *out_lo, float *out_up) {
  return sb_conv_ibp(x, l, 0, l->conv.out_c, B, lo[0], up[0], out_lo, out_up);
}

int sb_conv_transpose(SbExec *x, const struct sb_layer *l, int64_t c0,
                      int64_t nc, int64_t R, const float *A, int accumulate,
                      float *dst, const float *shift, float *bias) {
  const SbDeviceOps *o = x->ops;
  const SbConvGeom *g = &l->conv;
  int st;
  if (o->conv_transpose && g->groups == 1) {
    st = o->conv_transpose(x->dev, g, R, nc, l->weight.ptr, A, accumulate, dst,
                           shift, bias);
    return st == SB_OK ? st : sb_exec_device_fail(x, st, "conv backward");
  }
  if (shift && (st = o->channel_bias_backward(
                    x->dev, R, nc, g->out_h * g->out_w, shift, A, bias)))
    return sb_exec_device_fail(x, st, "conv backward");
  SbConvDims d = sb_conv_dims(g);
  int64_t chunk = conv_chunk((d.ck + nc) * d.P, R);
  SbBuffer cols = {0}, at = {0};
  st = sb_exec_alloc(x, SB_MEM_WORKSPACE, chunk * d.ck * d.P, &cols);
  if (st == SB_OK)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, chunk * nc * d.P, &at);
  if (st != SB_OK)
    goto out;
  const float *w = l->weight.ptr;
  const int64_t c1 = c0 + nc;
  /* A range short of all channels leaves the other groups' columns zero. */
  const int partial = nc < g->out_c;
  for (int64_t r0 = 0; r0 < R && st == SB_OK; r0 += chunk) {
    int64_t n = R - r0 < chunk ? R - r0 : chunk;
    /* at [nc, n*P] = A's rows side by side; then for every group at once
     * over the rows, cols_g [K, n*P] = W_g^T [K, OCg] . at_g [OCg, n*P]. */
    st =
        o->swap_outer_axes(x->dev, n, nc, d.P, A + r0 * nc * d.P, 0.0f, at.ptr);
    if (st == SB_OK && partial)
      st = o->zero(x->dev, cols.ptr, cols.bytes);
    for (int64_t gi = c0 / d.OCg; gi * d.OCg < c1 && st == SB_OK; gi++) {
      int64_t lo, hi;
      group_part(&d, gi, c0, c1, &lo, &hi);
      st = o->sgemm(x->dev, 1, 0, d.K, n * d.P, hi - lo, 1.0f,
                    w + (lo - c0) * d.K, d.K,
                    (const float *)at.ptr + (lo - c0) * n * d.P, n * d.P, 0.0f,
                    (float *)cols.ptr + gi * d.K * n * d.P, n * d.P);
    }
    float *rows = dst + r0 * l->in_size;
    if (st == SB_OK && !accumulate)
      st = o->zero(x->dev, rows, (size_t)(n * l->in_size) * sizeof(float));
    if (st == SB_OK)
      st = o->col2im(x->dev, g, n, cols.ptr, rows);
  }
  if (st != SB_OK)
    st = sb_exec_device_fail(x, st, "conv backward");
out:
  sb_exec_free(x, &at);
  sb_exec_free(x, &cols);
  return st;
}

static int conv_backward(SbExec *x, const struct sb_layer *l,
                         const SbOpBackward *a) {
  const SbConvGeom *g = &l->conv;
  return sb_conv_transpose(x, l, 0, g->out_c, a->S * a->B, a->A_out,
                           a->accumulate[0], a->A_in[0], l->bias.ptr, a->bias);
}

/* backward is the transposed convolution, so its adjoint is the
 * convolution itself: dL/dA_out = conv(G) + g * b[c]. */
static int conv_backward_vjp(SbExec *x, const struct sb_layer *l,
                             const SbOpVjp *a) {
  const int64_t R = a->S * a->B;
  const SbConvGeom *g = &l->conv;
  int st = SB_OK;
  if (a->grad_A_in[0]) {
    st = sb_conv_apply(x, l, 0, g->out_c, R, l->weight.ptr, a->grad_A_in[0],
                       a->accumulate_A_out ? 1.0f : 0.0f, a->grad_A_out);
    if (st != SB_OK)
      return st;
  } else if (!a->accumulate_A_out) {
    st = x->ops->zero(x->dev, a->grad_A_out,
                      (size_t)(R * l->out_size) * sizeof(float));
  }
  if (st == SB_OK && l->bias.ptr)
    st = x->ops->channel_bias_vjp(x->dev, R, g->out_c, g->out_h * g->out_w,
                                  l->bias.ptr, a->grad_bias, a->grad_A_out);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "conv backward VJP");
}

const SbOpFamily sb_op_conv = {
    .name = "conv2d",
    .n_inputs = 1,
    .create = conv_create,
    .forward = conv_forward,
    .ibp = conv_ibp,
    .backward = conv_backward,
    .backward_vjp = conv_backward_vjp,
};
