/* SPDX-License-Identifier: MIT */
/* The backend-independent argument rules of the ABI (see abi_checks.h). */
#include "backends/common/abi_checks.h"

#include <stdarg.h>
#include <stdio.h>

static int refuse(char *error, size_t error_size, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int refuse(char *error, size_t error_size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(error, error_size, fmt, ap);
  va_end(ap);
  return SB_ERR_INVALID_ARGUMENT;
}

/* Two arguments name the same tensor (absent ones never do). */
static int same(const sb_tensor *a, const sb_tensor *b) {
  return a != NULL && a == b;
}

int sb_check_side(char *error, size_t error_size, const char *fn,
                  int32_t side) {
  if (side != SB_SIDE_LOWER && side != SB_SIDE_UPPER)
    return refuse(error, error_size,
                  "%s: side %d is neither lower (0) nor upper (1)", fn,
                  (int)side);
  return SB_OK;
}

static int check_struct(char *error, size_t error_size, const char *fn,
                        const void *args, uint32_t struct_size,
                        const char *type, size_t need) {
  if (args == NULL)
    return refuse(error, error_size, "%s: NULL args", fn);
  if (struct_size < need)
    return refuse(error, error_size,
                  "%s: args struct_size %u is smaller than %s (%zu bytes)", fn,
                  (unsigned)struct_size, type, need);
  return SB_OK;
}

int sb_check_forward_aliasing(char *error, size_t error_size, const char *fn,
                              int n_inputs, const sb_tensor *const *inputs,
                              const sb_tensor *out) {
  for (int i = 0; i < n_inputs; i++)
    if (same(inputs[i], out))
      return refuse(error, error_size,
                    "%s: out must not be the same tensor as inputs[%d]", fn, i);
  return SB_OK;
}

int sb_check_ibp_aliasing(char *error, size_t error_size, const char *fn,
                          int n_inputs, const sb_tensor *const *in_lower,
                          const sb_tensor *const *in_upper,
                          const sb_tensor *out_lower,
                          const sb_tensor *out_upper) {
  if (same(out_lower, out_upper))
    return refuse(error, error_size,
                  "%s: out_lower and out_upper are the same tensor", fn);
  for (int i = 0; i < n_inputs; i++)
    if (same(in_lower[i], out_lower) || same(in_upper[i], out_lower) ||
        same(in_lower[i], out_upper) || same(in_upper[i], out_upper))
      return refuse(error, error_size,
                    "%s: out_lower and out_upper must not be the same tensor "
                    "as in_lower[%d] or in_upper[%d]",
                    fn, i, i);
  return SB_OK;
}

int sb_check_backward_args(char *error, size_t error_size, const char *fn,
                           const sb_backward_args_v1 *args) {
  int st =
      check_struct(error, error_size, fn, args, args ? args->struct_size : 0,
                   "sb_backward_args_v1", sizeof(sb_backward_args_v1));
  return st != SB_OK ? st : sb_check_side(error, error_size, fn, args->side);
}

int sb_check_backward_aliasing(char *error, size_t error_size, const char *fn,
                               int n_inputs, int32_t kind,
                               const sb_backward_args_v1 *a) {
  for (int i = 0; i < n_inputs; i++) {
    const sb_tensor *t = a->A_in[i];
    if (same(t, a->A_out) && kind != SB_LAYER_ADD)
      return refuse(error, error_size,
                    "%s: A_in[%d] must not be the same tensor as A_out", fn, i);
    if (same(t, a->bias) || same(t, a->pre_lower) || same(t, a->pre_upper) ||
        same(t, a->alpha))
      return refuse(error, error_size,
                    "%s: A_in[%d] must not be the same tensor as bias, "
                    "pre_lower, pre_upper or alpha",
                    fn, i);
  }
  if (same(a->bias, a->A_out) || same(a->bias, a->pre_lower) ||
      same(a->bias, a->pre_upper) || same(a->bias, a->alpha))
    return refuse(error, error_size,
                  "%s: bias must not be the same tensor as A_out, pre_lower, "
                  "pre_upper or alpha",
                  fn);
  return SB_OK;
}

int sb_check_vjp_args(char *error, size_t error_size, const char *fn,
                      const sb_vjp_args_v1 *args) {
  int st =
      check_struct(error, error_size, fn, args, args ? args->struct_size : 0,
                   "sb_vjp_args_v1", sizeof(sb_vjp_args_v1));
  return st != SB_OK ? st : sb_check_side(error, error_size, fn, args->side);
}

/* out is none of the VJP's inputs. */
static int vjp_output_is_input(const sb_vjp_args_v1 *a, int n_inputs,
                               const sb_tensor *out) {
  for (int i = 0; i < n_inputs; i++)
    if (same(out, a->grad_A_in[i]))
      return 1;
  return same(out, a->A_out) || same(out, a->pre_lower) ||
         same(out, a->pre_upper) || same(out, a->alpha) ||
         same(out, a->grad_bias);
}

int sb_check_vjp_aliasing(char *error, size_t error_size, const char *fn,
                          int n_inputs, const sb_vjp_args_v1 *a) {
  if (vjp_output_is_input(a, n_inputs, a->grad_A_out))
    return refuse(error, error_size,
                  "%s: grad_A_out must not be the same tensor as A_out, "
                  "grad_A_in, grad_bias, pre_lower, pre_upper or alpha",
                  fn);
  if (vjp_output_is_input(a, n_inputs, a->grad_alpha) ||
      same(a->grad_alpha, a->grad_A_out))
    return refuse(error, error_size,
                  "%s: grad_alpha must be a tensor of its own", fn);
  return SB_OK;
}

int sb_check_concretize_aliasing(char *error, size_t error_size, const char *fn,
                                 const sb_tensor *A, const sb_tensor *bias,
                                 const sb_tensor *x_lower,
                                 const sb_tensor *x_upper,
                                 const sb_tensor *out) {
  if (same(out, A) || same(out, bias) || same(out, x_lower) ||
      same(out, x_upper))
    return refuse(error, error_size,
                  "%s: out must not be the same tensor as A, bias, x_lower "
                  "or x_upper",
                  fn);
  return SB_OK;
}

int sb_check_concretize_vjp_aliasing(char *error, size_t error_size,
                                     const char *fn, const sb_tensor *A,
                                     const sb_tensor *x_lower,
                                     const sb_tensor *x_upper,
                                     const sb_tensor *grad_out,
                                     const sb_tensor *grad_A) {
  if (same(grad_A, A))
    return refuse(error, error_size,
                  "%s: grad_A must not be the same tensor as A", fn);
  if (same(grad_A, x_lower) || same(grad_A, x_upper) || same(grad_A, grad_out))
    return refuse(error, error_size,
                  "%s: grad_A must not be the same tensor as x_lower, "
                  "x_upper or grad_out",
                  fn);
  return SB_OK;
}

int sb_check_init_alpha_aliasing(char *error, size_t error_size, const char *fn,
                                 const sb_tensor *pre_lower,
                                 const sb_tensor *pre_upper,
                                 const sb_tensor *alpha) {
  if (same(alpha, pre_lower) || same(alpha, pre_upper))
    return refuse(error, error_size,
                  "%s: alpha must not be the same tensor as pre_lower or "
                  "pre_upper",
                  fn);
  return SB_OK;
}

int sb_check_adam_args(char *error, size_t error_size, const char *fn,
                       const sb_adam_args_v1 *a, const sb_tensor *param) {
  int st = check_struct(error, error_size, fn, a, a ? a->struct_size : 0,
                        "sb_adam_args_v1", sizeof(sb_adam_args_v1));
  if (st != SB_OK)
    return st;
  if (a->step < 1)
    return refuse(error, error_size,
                  "%s: step %d must be >= 1 (1 for the first step)", fn,
                  (int)a->step);
  if (!(a->learning_rate >= 0.0f) || !(a->epsilon > 0.0f) ||
      !(a->beta1 >= 0.0f && a->beta1 < 1.0f) ||
      !(a->beta2 >= 0.0f && a->beta2 < 1.0f))
    return refuse(error, error_size,
                  "%s: hyper-parameters out of range (learning_rate %g >= 0, "
                  "beta1 %g and beta2 %g in [0,1), epsilon %g > 0)",
                  fn, (double)a->learning_rate, (double)a->beta1,
                  (double)a->beta2, (double)a->epsilon);
  if (!(a->clamp_min <= a->clamp_max))
    return refuse(error, error_size,
                  "%s: clamp_min %g is greater than clamp_max %g", fn,
                  (double)a->clamp_min, (double)a->clamp_max);
  if (param == NULL)
    return refuse(error, error_size, "%s: param is NULL", fn);
  return SB_OK;
}

int sb_check_adam_aliasing(char *error, size_t error_size, const char *fn,
                           const sb_tensor *param, const sb_tensor *grad,
                           const sb_tensor *m, const sb_tensor *v) {
  if (same(m, v) || same(m, param) || same(v, param) || same(grad, param) ||
      same(grad, m) || same(grad, v))
    return refuse(error, error_size,
                  "%s: param, grad, m and v must be four different tensors",
                  fn);
  return SB_OK;
}

int sb_check_beta_apply_aliasing(char *error, size_t error_size, const char *fn,
                                 const sb_tensor *A, const sb_tensor *beta,
                                 const sb_tensor *sign) {
  if (same(beta, A) || same(sign, A))
    return refuse(error, error_size,
                  "%s: A must not be the same tensor as beta or sign", fn);
  return SB_OK;
}

int sb_check_beta_vjp_aliasing(char *error, size_t error_size, const char *fn,
                               const sb_tensor *grad_A, const sb_tensor *sign,
                               const sb_tensor *grad_beta) {
  if (same(grad_beta, grad_A) || same(grad_beta, sign))
    return refuse(error, error_size,
                  "%s: grad_beta must not be the same tensor as grad_A or "
                  "sign",
                  fn);
  return SB_OK;
}
