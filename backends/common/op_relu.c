/* SPDX-License-Identifier: MIT */
/* ReLU layers: forward, IBP and the CROWN backward step through the linear
 * relaxation (the relaxation itself is the device's relu_backward). */
#include "backends/common/layer.h"

static int relu_create(SbExec *x, const sb_layer_desc_v1 *d,
                       struct sb_layer *l) {
  if (d->in_size != d->out_size)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "relu layer: in_size (%lld) must equal out_size (%lld)",
                        (long long)d->in_size, (long long)d->out_size);
  return SB_OK;
}

static int relu_forward(SbExec *x, const struct sb_layer *l, int64_t B,
                        const float *const *in, float *out) {
  int st = x->ops->relu_forward(x->dev, B * l->out_size, in[0], out);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "relu forward");
}

static int relu_ibp(SbExec *x, const struct sb_layer *l, int64_t B,
                    const float *const *lo, const float *const *up,
                    float *out_lo, float *out_up) {
  int st = x->ops->relu_ibp(x->dev, B * l->out_size, lo[0], up[0], out_lo,
                            out_up);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "relu IBP");
}

static int relu_backward(SbExec *x, const struct sb_layer *l,
                         const SbOpBackward *a) {
  if (a->pre_lower == NULL || a->pre_upper == NULL)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "relu backward needs pre-activation bounds "
                        "(pre_lower and pre_upper)");
  int st = x->ops->relu_backward(x->dev, a->side, a->S, a->B, l->out_size,
                                 a->A_out, a->pre_lower, a->pre_upper,
                                 a->alpha, a->accumulate[0], a->A_in[0],
                                 a->bias);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "relu backward");
}

const SbOpFamily sb_op_relu = {
    .name = "relu",
    .n_inputs = 1,
    .create = relu_create,
    .forward = relu_forward,
    .ibp = relu_ibp,
    .backward = relu_backward,
};
