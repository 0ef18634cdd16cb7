/* SPDX-License-Identifier: MIT */
/* Convolutions of one TP rank: its output neurons are a contiguous range of
 * the flat [out_c, out_h, out_w] output, so it keeps the weights of the
 * output channels that range touches and computes those channels only
 * (forward and IBP by im2col + GEMM; backward as the transposed convolution
 * of its channels, giving a full-width partial of A_in). */
#include "backends/tp/tp.h"

/* Bound on the transient im2col columns of one call, in floats. */
#define TP_CONV_WORKSPACE_FLOATS ((int64_t)4 * 1024 * 1024)


int tp_conv_create(SbExec *x, const sb_layer_desc_v1 *d, TpShard *sh) {
  if (d->groups <= 0 || d->out_c <= 0 || d->out_c % d->groups)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "conv layer: groups=%lld must be positive and divide "
                        "out_c=%lld",
                        (long long)d->groups, (long long)d->out_c);
  if (d->out_h <= 0 || d->out_w <= 0 ||
      d->out_size != d->out_c * d->out_h * d->out_w)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "conv layer: out_size %lld must equal "
                        "out_c*out_h*out_w = %lld with a positive output "
                        "image",
                        (long long)d->out_size,
                        (long long)(d->out_c * d->out_h * d->out_w));
  /* The conv family validates the geometry; it is given one output channel
   * per group so that it uploads a sliver of the weight, not all of it. */
  sb_layer_desc_v1 t = *d;
  t.out_c = d->groups;
  t.out_size = d->groups * d->out_h * d->out_w;
  t.bias = NULL;
  struct sb_layer *l = &sh->local;
  int st = sb_op_conv.create(x, &t, l);
  sb_exec_free(x, &l->weight);
  if (st != SB_OK)
    return st;
  l->kind = SB_LAYER_CONV2D;
  l->in_size = d->in_size;
  l->out_size = sh->count;
  l->n_inputs = 1;
  l->conv.out_c = d->out_c;
  if (sh->count == 0)
    return SB_OK;
  SbConvDims cd = sb_conv_dims(&l->conv);
  sh->c0 = sh->start / cd.P;
  sh->nc = (sh->start + sh->count + cd.P - 1) / cd.P - sh->c0;
  st = sb_exec_upload_weights(x, d->weight + sh->c0 * cd.K, sh->nc * cd.K,
                              &l->weight);
  if (st == SB_OK && d->bias != NULL)
    st = sb_exec_upload_weights(x, d->bias + sh->c0, sh->nc, &l->bias);
  return st;
}

/* out [B, nc, P] = channels [c0, c0+nc) of conv(in) with weights w (the
 * local W or |W|), no bias. */
int tp_conv_apply(SbExec *x, const TpLayer *tl, const TpShard *sh,
                  const float *w, int64_t B, const float *in, float *out) {
  const SbDeviceOps *o = x->ops;
  const SbConvGeom *g = &sh->local.conv;
  SbConvDims d = sb_conv_dims(g);
  int64_t chunk = TP_CONV_WORKSPACE_FLOATS / (d.ck * d.P);
  chunk = chunk < 1 ? 1 : chunk > B ? B : chunk;
  SbBuffer cols = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, chunk * d.ck * d.P, &cols);
  if (st != SB_OK)
    return st;
  const int64_t c0 = sh->c0, c1 = sh->c0 + sh->nc;
  for (int64_t b0 = 0; b0 < B && st == SB_OK; b0 += chunk) {
    int64_t n = B - b0 < chunk ? B - b0 : chunk;
    st = o->im2col(x->dev, g, n, in + b0 * tl->in_size, cols.ptr);
    for (int64_t gi = c0 / d.OCg; gi * d.OCg < c1 && st == SB_OK; gi++) {
      int64_t lo = gi * d.OCg > c0 ? gi * d.OCg : c0;
      int64_t hi = (gi + 1) * d.OCg < c1 ? (gi + 1) * d.OCg : c1;
      st = o->sgemm_strided_batched(
          x->dev, 0, 0, hi - lo, d.P, d.K, 1.0f, w + (lo - c0) * d.K, d.K, 0,
          (const float *)cols.ptr + gi * d.K * d.P, d.P, d.ck * d.P, 0.0f,
          out + (b0 * sh->nc + lo - c0) * d.P, d.P, sh->nc * d.P, n);
    }
  }
  if (st != SB_OK)
    st = sb_exec_device_fail(x, st, "convolution");
  sb_exec_free(x, &cols);
  return st;
}

/* dst [B, count] = this rank's neurons of chans [B, nc, P]. */
static int take_slice(SbExec *x, const TpShard *sh, int64_t B, int64_t P,
                      const float *chans, float *dst) {
  int st = SB_OK;
  for (int64_t b = 0; b < B && st == SB_OK; b++)
    st = x->ops->copy(x->dev, dst + b * sh->count,
                      chans + b * sh->nc * P + (sh->start - sh->c0 * P),
                      (size_t)sh->count * sizeof(float));
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "conv output slice");
}

static int add_bias(SbExec *x, const TpShard *sh, int64_t B, int64_t P,
                    float *chans) {
  if (!sh->local.bias.ptr)
    return SB_OK;
  int st = x->ops->affine_forward(x->dev, B, sh->nc, P, NULL,
                                  sh->local.bias.ptr, 0, chans, chans);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "conv bias");
}

int tp_conv_forward(SbExec *x, const TpLayer *tl, const TpShard *sh,
                    int64_t B, const float *in, float *out) {
  const int64_t P = sh->local.conv.out_h * sh->local.conv.out_w;
  SbBuffer tmp = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, B * sh->nc * P, &tmp);
  if (st == SB_OK)
    st = tp_conv_apply(x, tl, sh, sh->local.weight.ptr, B, in, tmp.ptr);
  if (st == SB_OK)
    st = add_bias(x, sh, B, P, tmp.ptr);
  if (st == SB_OK)
    st = take_slice(x, sh, B, P, tmp.ptr, out);
  sb_exec_free(x, &tmp);
  return st;
}

int tp_conv_ibp(SbExec *x, const TpLayer *tl, const TpShard *sh, int64_t B,
                const float *lo, const float *up, float *out_lo,
                float *out_up) {
  const SbDeviceOps *o = x->ops;
  const int64_t P = sh->local.conv.out_h * sh->local.conv.out_w;
  const int64_t nin = B * tl->in_size, nw =
      (int64_t)(sh->local.weight.bytes / sizeof(float));
  const int64_t nout = B * sh->nc * P;
  SbBuffer cr = {0}, absw = {0}, mr = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, 2 * nin, &cr);
  if (st == SB_OK)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, nw, &absw);
  if (st == SB_OK)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, 2 * nout, &mr);
  if (st != SB_OK)
    goto out;
  float *c = cr.ptr, *r = c + nin, *mid = mr.ptr, *rad = mid + nout;
  if ((st = o->box_to_centre_radius(x->dev, nin, lo, up, c, r)) ||
      (st = o->abs(x->dev, nw, sh->local.weight.ptr, absw.ptr))) {
    st = sb_exec_device_fail(x, st, "conv IBP");
    goto out;
  }
  if ((st = tp_conv_apply(x, tl, sh, sh->local.weight.ptr, B, c, mid)) ||
      (st = add_bias(x, sh, B, P, mid)) ||
      (st = tp_conv_apply(x, tl, sh, absw.ptr, B, r, rad)) ||
      (st = take_slice(x, sh, B, P, mid, out_lo)) ||
      (st = take_slice(x, sh, B, P, rad, out_up)))
    goto out;
  st = o->centre_radius_to_box(x->dev, B * sh->count, out_lo, out_up, out_lo,
                               out_up);
  if (st != SB_OK)
    st = sb_exec_device_fail(x, st, "conv IBP");
out:
  sb_exec_free(x, &mr);
  sb_exec_free(x, &absw);
  sb_exec_free(x, &cr);
  return st;
}

int tp_conv_backward_partial(SbExec *x, const TpLayer *tl, const TpShard *sh,
                             int64_t n, const float *A, float *partial,
                             float *bias_partial) {
  const SbDeviceOps *o = x->ops;
  const SbConvGeom *g = &sh->local.conv;
  SbConvDims d = sb_conv_dims(g);
  const int64_t c0 = sh->c0, c1 = sh->c0 + sh->nc, width = sh->nc * d.P;
  /* The local columns padded to whole channels: the transposed convolution
   * works channel by channel. */
  SbBuffer ext = {0}, cols = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, n * width, &ext);
  if (st == SB_OK)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, n * d.ck * d.P, &cols);
  if (st != SB_OK)
    goto out;
  float *e = ext.ptr;
  if ((st = o->zero(x->dev, e, ext.bytes)) ||
      (st = o->zero(x->dev, cols.ptr, cols.bytes)))
    goto device_fail;
  for (int64_t i = 0; i < n; i++)
    if ((st = o->copy(x->dev, e + i * width + (sh->start - c0 * d.P),
                      A + i * sh->count, (size_t)sh->count * sizeof(float))))
      goto device_fail;
  const float *w = sh->local.weight.ptr;
  /* cols_g [K,P] = W_g^T [K,OCg] . A_g [OCg,P] over the local channels of
   * group g; the other groups' rows stay zero. */
  for (int64_t gi = c0 / d.OCg; gi * d.OCg < c1; gi++) {
    int64_t lo = gi * d.OCg > c0 ? gi * d.OCg : c0;
    int64_t hi = (gi + 1) * d.OCg < c1 ? (gi + 1) * d.OCg : c1;
    if ((st = o->sgemm_strided_batched(
             x->dev, 1, 0, d.K, d.P, hi - lo, 1.0f, w + (lo - c0) * d.K, d.K,
             0, e + (lo - c0) * d.P, d.P, width, 0.0f,
             (float *)cols.ptr + gi * d.K * d.P, d.P, d.ck * d.P, n)))
      goto device_fail;
  }
  if ((st = o->zero(x->dev, partial,
                    (size_t)(n * tl->in_size) * sizeof(float))) ||
      (st = o->col2im(x->dev, g, n, cols.ptr, partial)))
    goto device_fail;
  if (bias_partial && sh->local.bias.ptr &&
      (st = o->channel_bias_backward(x->dev, n, sh->nc, d.P,
                                     sh->local.bias.ptr, e, bias_partial)))
    goto device_fail;
  goto out;
device_fail:
  st = sb_exec_device_fail(x, st, "conv backward");
out:
  sb_exec_free(x, &cols);
  sb_exec_free(x, &ext);
  return st;
}

int tp_conv_backward_vjp(SbExec *x, const TpLayer *tl, const TpShard *sh,
                         int64_t n, const float *G, const float *g,
                         int accumulate, float *dst) {
  const SbDeviceOps *o = x->ops;
  const int64_t P = sh->local.conv.out_h * sh->local.conv.out_w;
  const int64_t width = sh->nc * P;
  SbBuffer tmp = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, n * width, &tmp);
  if (st != SB_OK)
    return st;
  float *t = tmp.ptr;
  /* The backward step is a transposed convolution, so its adjoint is the
   * convolution of G, over this rank's channels. */
  if (G)
    st = tp_conv_apply(x, tl, sh, sh->local.weight.ptr, n, G, t);
  else if ((st = o->zero(x->dev, t, tmp.bytes)))
    st = sb_exec_device_fail(x, st, "conv backward VJP");
  if (st == SB_OK && sh->local.bias.ptr &&
      (st = o->channel_bias_vjp(x->dev, n, sh->nc, P, sh->local.bias.ptr, g,
                                t)))
    st = sb_exec_device_fail(x, st, "conv backward VJP");
  const int64_t skip = sh->start - sh->c0 * P;
  for (int64_t i = 0; i < n && st == SB_OK; i++) {
    float *d = dst + i * sh->count;
    const float *s = t + i * width + skip;
    st = accumulate ? o->add(x->dev, sh->count, d, s, d)
                    : o->copy(x->dev, d, s, (size_t)sh->count * sizeof(float));
    if (st != SB_OK)
      st = sb_exec_device_fail(x, st, "conv backward VJP");
  }
  sb_exec_free(x, &tmp);
  return st;
}
