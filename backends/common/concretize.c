/* SPDX-License-Identifier: MIT */
/* Concretization: the bound of each row of A over an input box, and its
 * gradient with respect to A. */
#include "backends/common/layer.h"

int sb_concretize(SbExec *x, int32_t side, int64_t S, int64_t B, int64_t N,
                  const float *A, const float *bias, const float *x_lower,
                  const float *x_upper, float *out) {
  int st =
      x->ops->concretize(x->dev, side, S, B, N, A, bias, x_lower, x_upper, out);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "concretize");
}

int sb_concretize_vjp(SbExec *x, int32_t side, int64_t S, int64_t B, int64_t N,
                      const float *A, const float *x_lower,
                      const float *x_upper, const float *grad_out,
                      float *grad_A) {
  int st = x->ops->concretize_vjp(x->dev, side, S, B, N, A, x_lower, x_upper,
                                  grad_out, grad_A);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "concretize_vjp");
}

/* Adam lives here with the other operations that belong to no layer. */
int sb_adam_step(SbExec *x, int64_t n, float *param, const float *grad,
                 float *m, float *v, const sb_adam_args_v1 *args) {
  int st = x->ops->adam_step(x->dev, n, param, grad, m, v, args);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "adam_step");
}
