/* SPDX-License-Identifier: MIT */
/* Per-channel affine layers y[c,s] = scale[c] x[c,s] + shift[c] (folded
 * BatchNorm): forward, IBP and the CROWN backward step. */
#include "backends/common/layer.h"

#include <stdlib.h>

static int affine_create(SbExec *x, const sb_layer_desc_v1 *d,
                         struct sb_layer *l) {
  if (d->channels <= 0 || d->spatial <= 0 ||
      d->channels * d->spatial != d->in_size || d->in_size != d->out_size)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "affine layer: channels (%lld) * spatial (%lld) must "
                        "equal in_size (%lld) and out_size (%lld)",
                        (long long)d->channels, (long long)d->spatial,
                        (long long)d->in_size, (long long)d->out_size);
  l->channels = d->channels;
  l->spatial = d->spatial;
  /* Absent scale/shift are materialised (1 and 0) so the operators need no
   * special cases and the weights account is the same for every layer. */
  float *tmp = NULL;
  if (d->weight == NULL || d->bias == NULL) {
    tmp = malloc((size_t)d->channels * sizeof(float));
    if (tmp == NULL)
      return sb_exec_fail(x, SB_ERR_OUT_OF_MEMORY,
                          "affine layer: out of host memory");
  }
  int st;
  if (d->weight == NULL)
    for (int64_t c = 0; c < d->channels; c++)
      tmp[c] = 1.0f;
  st = sb_exec_upload_weights(x, d->weight ? d->weight : tmp, d->channels,
                              &l->weight);
  if (st == SB_OK) {
    if (d->bias == NULL)
      for (int64_t c = 0; c < d->channels; c++)
        tmp[c] = 0.0f;
    st = sb_exec_upload_weights(x, d->bias ? d->bias : tmp, d->channels,
                                &l->bias);
  }
  free(tmp);
  return st;
}

static int affine_forward(SbExec *x, const struct sb_layer *l, int64_t B,
                          const float *const *in, float *out) {
  int st = x->ops->affine_forward(x->dev, B, l->channels, l->spatial,
                                  l->weight.ptr, l->bias.ptr, 0, in[0], out);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "affine forward");
}

static int affine_ibp(SbExec *x, const struct sb_layer *l, int64_t B,
                      const float *const *lo, const float *const *up,
                      float *out_lo, float *out_up) {
  const SbDeviceOps *o = x->ops;
  const int64_t n = B * l->in_size;
  SbBuffer cr = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, 2 * n, &cr);
  if (st != SB_OK)
    return st;
  float *c = cr.ptr, *r = c + n;
  if ((st = o->box_to_centre_radius(x->dev, n, lo[0], up[0], c, r)) ||
      (st = o->affine_forward(x->dev, B, l->channels, l->spatial, l->weight.ptr,
                              l->bias.ptr, 0, c, out_lo)) ||
      (st = o->affine_forward(x->dev, B, l->channels, l->spatial, l->weight.ptr,
                              NULL, 1, r, out_up)) ||
      (st = o->centre_radius_to_box(x->dev, n, out_lo, out_up, out_lo, out_up)))
    st = sb_exec_device_fail(x, st, "affine IBP");
  sb_exec_free(x, &cr);
  return st;
}

static int affine_backward(SbExec *x, const struct sb_layer *l,
                           const SbOpBackward *a) {
  const int64_t R = a->S * a->B;
  int st = x->ops->channel_bias_backward(x->dev, R, l->channels, l->spatial,
                                         l->bias.ptr, a->A_out, a->bias);
  if (st == SB_OK)
    st = x->ops->affine_backward(x->dev, R, l->channels, l->spatial,
                                 l->weight.ptr, a->A_out, a->accumulate[0],
                                 a->A_in[0]);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "affine backward");
}

/* dL/dA_out = scale * G + g * shift, per channel. */
static int affine_backward_vjp(SbExec *x, const struct sb_layer *l,
                               const SbOpVjp *a) {
  const int64_t R = a->S * a->B;
  int st = SB_OK;
  if (a->grad_A_in[0])
    st = x->ops->affine_backward(x->dev, R, l->channels, l->spatial,
                                 l->weight.ptr, a->grad_A_in[0],
                                 a->accumulate_A_out, a->grad_A_out);
  else if (!a->accumulate_A_out)
    st = x->ops->zero(x->dev, a->grad_A_out,
                      (size_t)(R * l->out_size) * sizeof(float));
  if (st == SB_OK)
    st = x->ops->channel_bias_vjp(x->dev, R, l->channels, l->spatial,
                                  l->bias.ptr, a->grad_bias, a->grad_A_out);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "affine backward VJP");
}

const SbOpFamily sb_op_affine = {
    .name = "affine",
    .n_inputs = 1,
    .create = affine_create,
    .forward = affine_forward,
    .ibp = affine_ibp,
    .backward = affine_backward,
    .backward_vjp = affine_backward_vjp,
};
