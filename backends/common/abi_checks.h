/* SPDX-License-Identifier: MIT */
/* The argument rules of the backend ABI that do not depend on how a backend
 * lays out its tensors: the side, the argument structs' sizes, Adam's
 * hyper-parameters, and which tensors must not be the same one (an output
 * that is also an input would be overwritten while it is still read).
 * Every backend (single-device, FSDP, TP) calls these, so that all refuse
 * the same bad arguments with the same status and message; the shape checks,
 * which need a backend's own tensor layout, stay in each backend and run
 * first, so that a NULL tensor is reported as such.
 *
 * Each check returns SB_OK, or SB_ERR_INVALID_ARGUMENT after writing a
 * message that starts with fn into error (error_size bytes). */
#ifndef SB_BACKENDS_ABI_CHECKS_H
#define SB_BACKENDS_ABI_CHECKS_H

#include <stddef.h>

#include "abi/shardbound.h"

/* The error buffer arguments of a context whose message is a char array
 * member named error (every backend's context). */
#define SB_CTX_ERROR(ctx) (ctx)->error, sizeof(ctx)->error

/* side is SB_SIDE_LOWER or SB_SIDE_UPPER. */
int sb_check_side(char *error, size_t error_size, const char *fn, int32_t side);

/* layer_forward: out is none of the n_inputs inputs. */
int sb_check_forward_aliasing(char *error, size_t error_size, const char *fn,
                              int n_inputs, const sb_tensor *const *inputs,
                              const sb_tensor *out);

/* layer_ibp: out_lower and out_upper are two tensors, neither an input. */
int sb_check_ibp_aliasing(char *error, size_t error_size, const char *fn,
                          int n_inputs, const sb_tensor *const *in_lower,
                          const sb_tensor *const *in_upper,
                          const sb_tensor *out_lower,
                          const sb_tensor *out_upper);

/* layer_backward, before the shapes: args present and large enough, side. */
int sb_check_backward_args(char *error, size_t error_size, const char *fn,
                           const sb_backward_args_v1 *args);
/* layer_backward, after the shapes: no A_in[i] is A_out (allowed for add,
 * whose step copies A_out), the bias or a relaxation input, and the bias is
 * none of A_out and the relaxation inputs. */
int sb_check_backward_aliasing(char *error, size_t error_size, const char *fn,
                               int n_inputs, int32_t kind,
                               const sb_backward_args_v1 *args);

/* layer_backward_vjp, before the shapes: args present and large enough,
 * side. */
int sb_check_vjp_args(char *error, size_t error_size, const char *fn,
                      const sb_vjp_args_v1 *args);
/* layer_backward_vjp, after the shapes: every gradient written (grad_A_out,
 * grad_A_in[i], grad_bias, grad_alpha) is a tensor of its own, none of the
 * others and none of the inputs (A_out, pre_lower, pre_upper, alpha). */
int sb_check_vjp_aliasing(char *error, size_t error_size, const char *fn,
                          int n_inputs, const sb_vjp_args_v1 *args);

/* concretize: out is none of A, bias, x_lower, x_upper. */
int sb_check_concretize_aliasing(char *error, size_t error_size, const char *fn,
                                 const sb_tensor *A, const sb_tensor *bias,
                                 const sb_tensor *x_lower,
                                 const sb_tensor *x_upper,
                                 const sb_tensor *out);
/* concretize_vjp: grad_A is none of A, x_lower, x_upper, grad_out. */
int sb_check_concretize_vjp_aliasing(char *error, size_t error_size,
                                     const char *fn, const sb_tensor *A,
                                     const sb_tensor *x_lower,
                                     const sb_tensor *x_upper,
                                     const sb_tensor *grad_out,
                                     const sb_tensor *grad_A);
/* relu_init_alpha: alpha is neither pre_lower nor pre_upper. */
int sb_check_init_alpha_aliasing(char *error, size_t error_size, const char *fn,
                                 const sb_tensor *pre_lower,
                                 const sb_tensor *pre_upper,
                                 const sb_tensor *alpha);

/* adam_step, before the shapes: args present and large enough, step >= 1,
 * hyper-parameters in range (a bad one would silently turn every parameter
 * into NaN), clamp_min <= clamp_max, param not NULL. */
int sb_check_adam_args(char *error, size_t error_size, const char *fn,
                       const sb_adam_args_v1 *args, const sb_tensor *param);
/* adam_step, after the shapes: param, grad, m and v are four tensors. */
int sb_check_adam_aliasing(char *error, size_t error_size, const char *fn,
                           const sb_tensor *param, const sb_tensor *grad,
                           const sb_tensor *m, const sb_tensor *v);

/* beta_apply: A is neither beta nor sign. */
int sb_check_beta_apply_aliasing(char *error, size_t error_size, const char *fn,
                                 const sb_tensor *A, const sb_tensor *beta,
                                 const sb_tensor *sign);
/* beta_vjp: grad_beta is neither grad_A nor sign. */
int sb_check_beta_vjp_aliasing(char *error, size_t error_size, const char *fn,
                               const sb_tensor *grad_A, const sb_tensor *sign,
                               const sb_tensor *grad_beta);

#endif /* SB_BACKENDS_ABI_CHECKS_H */
