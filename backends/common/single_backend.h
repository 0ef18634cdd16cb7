/* SPDX-License-Identifier: MIT */
/* The ABI glue of a single-device backend: every sb_backend_v1 function,
 * parameterised by the device's SbDeviceOps table. */
#ifndef SB_BACKENDS_SINGLE_BACKEND_H
#define SB_BACKENDS_SINGLE_BACKEND_H

#include "abi/shardbound.h"
#include "backends/common/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* context_create of a backend running on `ops`. Options: device=N (the
 * device ordinal, default 0). Any other key fails, naming the key. */
/* Shared by every backend's context_create: out must be given (it is set
 * to NULL) and announced options must exist; the message goes to error. */
int sb_context_create_check(const char *backend_name, const sb_option *options,
                            size_t n_options, sb_context **out, char *error,
                            size_t error_size);
/* A decimal option value in [min, max]; 0 when it is not one. */
int sb_option_parse_long(const char *s, long min, long max, long *out);

int sb_single_context_create(const SbDeviceOps *ops, const char *backend_name,
                             const sb_host_v1 *host, const sb_option *options,
                             size_t n_options, sb_context **out, char *error,
                             size_t error_size);

void sb_single_context_destroy(sb_context *ctx);
const char *sb_single_last_error(const sb_context *ctx);
int sb_single_rank_count(const sb_context *ctx);
int sb_single_tensor_create(sb_context *ctx, int32_t category, int32_t ndim,
                            const int64_t *shape, sb_tensor **out);
int sb_single_tensor_create_empty(sb_context *ctx, int32_t category,
                                  int32_t ndim, const int64_t *shape,
                                  sb_tensor **out);
void sb_single_tensor_free(sb_context *ctx, sb_tensor *tensor);
int sb_single_tensor_write(sb_context *ctx, sb_tensor *tensor, int64_t offset,
                           int64_t count, int32_t dtype, const void *src);
int sb_single_tensor_read(sb_context *ctx, const sb_tensor *tensor,
                          int64_t offset, int64_t count, int32_t dtype,
                          void *dst);
int sb_single_tensor_set_unit_rows(sb_context *ctx, sb_tensor *A,
                                   const int64_t *index);
int sb_single_layer_create(sb_context *ctx, const sb_layer_desc_v1 *desc,
                           sb_layer **out);
void sb_single_layer_free(sb_context *ctx, sb_layer *layer);
int sb_single_layer_forward(sb_context *ctx, const sb_layer *layer,
                            const sb_tensor *const *inputs, sb_tensor *out);
int sb_single_layer_ibp(sb_context *ctx, const sb_layer *layer,
                        const sb_tensor *const *in_lower,
                        const sb_tensor *const *in_upper, sb_tensor *out_lower,
                        sb_tensor *out_upper);
int sb_single_layer_backward(sb_context *ctx, const sb_layer *layer,
                             const sb_backward_args_v1 *args);
int sb_single_concretize(sb_context *ctx, const sb_tensor *A,
                         const sb_tensor *bias, const sb_tensor *x_lower,
                         const sb_tensor *x_upper, int32_t side,
                         sb_tensor *out);
int sb_single_layer_backward_vjp(sb_context *ctx, const sb_layer *layer,
                                 const sb_vjp_args_v1 *args);
int sb_single_concretize_vjp(sb_context *ctx, const sb_tensor *A,
                             const sb_tensor *x_lower, const sb_tensor *x_upper,
                             int32_t side, const sb_tensor *grad_out,
                             sb_tensor *grad_A);
int sb_single_relu_init_alpha(sb_context *ctx, const sb_tensor *pre_lower,
                              const sb_tensor *pre_upper, sb_tensor *alpha);
int sb_single_adam_step(sb_context *ctx, sb_tensor *param,
                        const sb_tensor *grad, sb_tensor *m, sb_tensor *v,
                        const sb_adam_args_v1 *args);
int sb_single_beta_apply(sb_context *ctx, sb_tensor *A, const sb_tensor *beta,
                         const sb_tensor *sign, int32_t side);
int sb_single_beta_vjp(sb_context *ctx, const sb_tensor *grad_A,
                       const sb_tensor *sign, int32_t side,
                       sb_tensor *grad_beta, int32_t accumulate);
int sb_single_memory_mark_baseline(sb_context *ctx);
int sb_single_memory_reset_peak(sb_context *ctx);
int sb_single_memory_stats(sb_context *ctx, int rank, sb_memory_stats_v1 *out);
/* ABI 1.2 members of a backend whose ranks all live in one process. */
int sb_one_process_info(const sb_context *ctx, int32_t *index, int32_t *count);
int sb_one_process_broadcast_host(sb_context *ctx, void *buf, size_t bytes);
int32_t sb_one_process_lost_rank(const sb_context *ctx);

/* Designated initialisers for every function of sb_backend_v1 except
 * context_create, which the backend wraps to pass its SbDeviceOps. */
#define SB_SINGLE_BACKEND_FUNCTIONS(create_fn)                                 \
  .context_create = (create_fn), .context_destroy = sb_single_context_destroy, \
  .last_error = sb_single_last_error, .rank_count = sb_single_rank_count,      \
  .tensor_create = sb_single_tensor_create,                                    \
  .tensor_free = sb_single_tensor_free,                                        \
  .tensor_write = sb_single_tensor_write,                                      \
  .tensor_read = sb_single_tensor_read,                                        \
  .tensor_set_unit_rows = sb_single_tensor_set_unit_rows,                      \
  .layer_create = sb_single_layer_create, .layer_free = sb_single_layer_free,  \
  .layer_forward = sb_single_layer_forward, .layer_ibp = sb_single_layer_ibp,  \
  .layer_backward = sb_single_layer_backward,                                  \
  .concretize = sb_single_concretize,                                          \
  .memory_mark_baseline = sb_single_memory_mark_baseline,                      \
  .memory_reset_peak = sb_single_memory_reset_peak,                            \
  .memory_stats = sb_single_memory_stats,                                      \
  .layer_backward_vjp = sb_single_layer_backward_vjp,                          \
  .concretize_vjp = sb_single_concretize_vjp,                                  \
  .relu_init_alpha = sb_single_relu_init_alpha,                                \
  .adam_step = sb_single_adam_step, .beta_apply = sb_single_beta_apply,        \
  .beta_vjp = sb_single_beta_vjp, .process_info = sb_one_process_info,         \
  .broadcast_host = sb_one_process_broadcast_host,                             \
  .lost_rank = sb_one_process_lost_rank,                                       \
  .tensor_create_empty = sb_single_tensor_create_empty

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_SINGLE_BACKEND_H */
