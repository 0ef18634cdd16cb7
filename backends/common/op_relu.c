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
  int st =
      x->ops->relu_ibp(x->dev, B * l->out_size, lo[0], up[0], out_lo, out_up);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "relu IBP");
}

static int relu_backward(SbExec *x, const struct sb_layer *l,
                         const SbOpBackward *a) {
  if (a->pre_lower == NULL || a->pre_upper == NULL)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "relu backward needs pre-activation bounds "
                        "(pre_lower and pre_upper)");
  int st = x->ops->relu_backward(x->dev, a->side, a->S, a->B, l->out_size,
                                 a->A_out, a->pre_lower, a->pre_upper, a->alpha,
                                 a->accumulate[0], a->A_in[0], a->bias);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "relu backward");
}

static int relu_backward_vjp(SbExec *x, const struct sb_layer *l,
                             const SbOpVjp *a) {
  if (a->pre_lower == NULL || a->pre_upper == NULL)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "relu backward VJP needs pre-activation bounds "
                        "(pre_lower and pre_upper)");
  int st = x->ops->relu_backward_vjp(
      x->dev, a->side, a->S, a->B, l->out_size, a->A_out, a->pre_lower,
      a->pre_upper, a->alpha, a->grad_A_in[0], a->grad_bias,
      a->accumulate_A_out, a->grad_A_out, a->accumulate_alpha, a->grad_alpha);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "relu backward VJP");
}

const SbOpFamily sb_op_relu = {
    .name = "relu",
    .n_inputs = 1,
    .create = relu_create,
    .forward = relu_forward,
    .ibp = relu_ibp,
    .backward = relu_backward,
    .backward_vjp = relu_backward_vjp,
};

/* The starting point of alpha-CROWN: alpha-CROWN optimises the lower
 * slopes of unstable ReLUs, one per spec row, from CROWN's own choice. */
int sb_relu_init_alpha(SbExec *x, int64_t S, int64_t B, int64_t N,
                       const float *pre_lower, const float *pre_upper,
                       float *alpha) {
  int st =
      x->ops->relu_init_alpha(x->dev, S, B, N, pre_lower, pre_upper, alpha);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "relu_init_alpha");
}

/* beta-CROWN: the Lagrangian term of split constraints at a ReLU input. */
int sb_beta_apply(SbExec *x, int32_t side, int64_t S, int64_t B, int64_t N,
                  float *A, const float *beta, const float *sign) {
  int st = x->ops->beta_apply(x->dev, side, S, B, N, beta, sign, A);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "beta_apply");
}

int sb_beta_vjp(SbExec *x, int32_t side, int64_t S, int64_t B, int64_t N,
                const float *grad_A, const float *sign, float *grad_beta,
                int32_t accumulate) {
  int st = x->ops->beta_vjp(x->dev, side, S, B, N, grad_A, sign, accumulate,
                            grad_beta);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "beta_vjp");
}
