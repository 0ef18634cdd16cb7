/* SPDX-License-Identifier: MIT */
/* Residual additions y = x0 + x1: forward, IBP and the CROWN backward step
 * (the coefficients pass unchanged to both inputs). */
#include "backends/common/layer.h"

static int add_create(SbExec *x, const sb_layer_desc_v1 *d,
                      struct sb_layer *l) {
  if (d->in_size != d->out_size)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "add layer: in_size (%lld) must equal out_size (%lld)",
                        (long long)d->in_size, (long long)d->out_size);
  return SB_OK;
}

static int add_forward(SbExec *x, const struct sb_layer *l, int64_t B,
                       const float *const *in, float *out) {
  int st = x->ops->add(x->dev, B * l->out_size, in[0], in[1], out);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "add forward");
}

static int add_ibp(SbExec *x, const struct sb_layer *l, int64_t B,
                   const float *const *lo, const float *const *up,
                   float *out_lo, float *out_up) {
  int64_t n = B * l->out_size;
  int st = x->ops->add(x->dev, n, lo[0], lo[1], out_lo);
  if (st == SB_OK)
    st = x->ops->add(x->dev, n, up[0], up[1], out_up);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "add IBP");
}

static int add_backward(SbExec *x, const struct sb_layer *l,
                        const SbOpBackward *a) {
  const int64_t n = a->S * a->B * l->out_size;
  int st = SB_OK;
  for (int i = 0; i < 2 && st == SB_OK; i++) {
    /* Both inputs may be the same tensor (x + x): then the second pass
     * must add, whatever its flag says, or it would erase the first. */
    int acc = a->accumulate[i] || (i == 1 && a->A_in[1] == a->A_in[0]);
    if (acc)
      st = x->ops->add(x->dev, n, a->A_in[i], a->A_out, a->A_in[i]);
    else if (a->A_in[i] != a->A_out)
      st =
          x->ops->copy(x->dev, a->A_in[i], a->A_out, (size_t)n * sizeof(float));
  }
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "add backward");
}

/* Both inputs received A_out unchanged: dL/dA_out = G0 + G1. */
static int add_backward_vjp(SbExec *x, const struct sb_layer *l,
                            const SbOpVjp *a) {
  const int64_t n = a->S * a->B * l->out_size;
  int st = SB_OK;
  int have = a->accumulate_A_out;
  for (int i = 0; i < 2 && st == SB_OK; i++) {
    if (a->grad_A_in[i] == NULL)
      continue;
    if (have)
      st =
          x->ops->add(x->dev, n, a->grad_A_out, a->grad_A_in[i], a->grad_A_out);
    else
      st = x->ops->copy(x->dev, a->grad_A_out, a->grad_A_in[i],
                        (size_t)n * sizeof(float));
    have = 1;
  }
  if (st == SB_OK && !have)
    st = x->ops->zero(x->dev, a->grad_A_out, (size_t)n * sizeof(float));
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "add backward VJP");
}

const SbOpFamily sb_op_add = {
    .name = "add",
    .n_inputs = 2,
    .create = add_create,
    .forward = add_forward,
    .ibp = add_ibp,
    .backward = add_backward,
    .backward_vjp = add_backward_vjp,
};
