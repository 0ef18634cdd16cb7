/* SPDX-License-Identifier: MIT */
/* Convolutions of one TP rank: its output neurons are a contiguous range of
 * the flat [out_c, out_h, out_w] output, so it keeps the weights of the
 * output channels [c0, c0+nc) that range touches and has op_conv.c compute
 * those channels only; this file cuts the rank's neurons out of them (and
 * pads its coefficients back to whole channels for the backward step). */
#include "backends/tp/tp.h"

void tp_conv_channels(int64_t P, int64_t start, int64_t count, int64_t *c0,
                      int64_t *nc) {
  *c0 = count > 0 ? start / P : 0;
  *nc = count > 0 ? (start + count + P - 1) / P - *c0 : 0;
}

int tp_conv_create(SbExec *x, const sb_layer_desc_v1 *d, const SbRankKept *held,
                   TpShard *sh) {
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
  /* The conv family validates the geometry. */
  struct sb_layer *l = &sh->local;
  int st = sb_conv_geometry(x, d, l);
  if (st != SB_OK)
    return st;
  l->kind = SB_LAYER_CONV2D;
  l->in_size = d->in_size;
  l->out_size = sh->count;
  l->n_inputs = 1;
  if (sh->count == 0)
    return SB_OK;
  SbConvDims cd = sb_conv_dims(&l->conv);
  tp_conv_channels(cd.P, sh->start, sh->count, &sh->c0, &sh->nc);
  st = sb_exec_upload_weights(x, sb_rank_weight_at(held, d, sh->c0 * cd.K),
                              sh->nc * cd.K, &l->weight);
  if (st == SB_OK && d->bias != NULL)
    st = sb_exec_upload_weights(x, sb_rank_bias_at(held, d, sh->c0), sh->nc,
                                &l->bias);
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

int tp_conv_forward(SbExec *x, const TpLayer *tl, const TpShard *sh, int64_t B,
                    const float *in, float *out) {
  const struct sb_layer *l = &sh->local;
  const int64_t P = l->conv.out_h * l->conv.out_w;
  SbBuffer tmp = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, B * sh->nc * P, &tmp);
  if (st == SB_OK)
    st = sb_conv_apply(x, l, sh->c0, sh->nc, B, l->weight.ptr, in, 0.0f,
                       tmp.ptr);
  if (st == SB_OK)
    st = sb_conv_add_bias(x, l, sh->nc, B, tmp.ptr);
  if (st == SB_OK)
    st = take_slice(x, sh, B, P, tmp.ptr, out);
  sb_exec_free(x, &tmp);
  return st;
}

int tp_conv_ibp(SbExec *x, const TpLayer *tl, const TpShard *sh, int64_t B,
                const float *lo, const float *up, float *out_lo,
                float *out_up) {
  const struct sb_layer *l = &sh->local;
  const int64_t P = l->conv.out_h * l->conv.out_w;
  const int64_t nout = B * sh->nc * P;
  SbBuffer mr = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, 2 * nout, &mr);
  if (st != SB_OK)
    return st;
  float *mlo = mr.ptr, *mup = mlo + nout;
  st = sb_conv_ibp(x, l, sh->c0, sh->nc, B, lo, up, mlo, mup);
  if (st == SB_OK)
    st = take_slice(x, sh, B, P, mlo, out_lo);
  if (st == SB_OK)
    st = take_slice(x, sh, B, P, mup, out_up);
  sb_exec_free(x, &mr);
  return st;
}

int tp_conv_backward_partial(SbExec *x, const TpLayer *tl, const TpShard *sh,
                             int64_t n, const float *A, float *partial,
                             float *bias_partial) {
  const SbDeviceOps *o = x->ops;
  const struct sb_layer *l = &sh->local;
  const int64_t P = l->conv.out_h * l->conv.out_w;
  const int64_t width = sh->nc * P;
  /* The local coefficients padded to whole channels: the transposed
   * convolution works channel by channel. */
  SbBuffer ext = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, n * width, &ext);
  if (st != SB_OK)
    return st;
  float *e = ext.ptr;
  st = o->zero(x->dev, e, ext.bytes);
  for (int64_t i = 0; i < n && st == SB_OK; i++)
    st = o->copy(x->dev, e + i * width + (sh->start - sh->c0 * P),
                 A + i * sh->count, (size_t)sh->count * sizeof(float));
  if (st != SB_OK) {
    st = sb_exec_device_fail(x, st, "conv backward");
    goto out;
  }
  st = sb_conv_transpose(x, l, sh->c0, sh->nc, n, e, 0, partial,
                         bias_partial ? l->bias.ptr : NULL, bias_partial);
out:
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
    st = sb_conv_apply(x, &sh->local, sh->c0, sh->nc, n, sh->local.weight.ptr,
                       G, 0.0f, t);
  else if ((st = o->zero(x->dev, t, tmp.bytes)))
    st = sb_exec_device_fail(x, st, "conv backward VJP");
  if (st == SB_OK && sh->local.bias.ptr &&
      (st =
           o->channel_bias_vjp(x->dev, n, sh->nc, P, sh->local.bias.ptr, g, t)))
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
