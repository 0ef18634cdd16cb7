/* SPDX-License-Identifier: MIT */
/* The TP backend's descriptor; its context, options and memory statistics
 * are the multi-rank ones of backends/common/rank_backend.c. */
#include "config.h"

#include "abi/shardbound.h"
#include "backends/common/rank_backend.h"
#include "backends/tp/tp.h"

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out);

static int tp_context_create(const sb_host_v1 *host, const sb_option *options,
                             size_t n_options, sb_context **out, char *error,
                             size_t error_size) {
  (void)host;
  return sb_rank_context_create("tp", options, n_options, out, error,
                                error_size);
}

static const sb_backend_v1 tp_backend = {
    .struct_size = sizeof(sb_backend_v1),
    .abi_major = SB_ABI_MAJOR,
    .abi_minor = SB_ABI_MINOR,
    .name = "tp",
    .version = PACKAGE_VERSION,
    .description = "Tensor parallel: weights and CROWN coefficients sharded "
                   "by neuron across ranks (threads over loopback, or MPI "
                   "processes with comm=mpi); "
                   "exact CROWN bounds",
    .capabilities = SB_CAP_LINEAR | SB_CAP_CONV2D | SB_CAP_AFFINE |
                    SB_CAP_ADD | SB_CAP_RELU | SB_CAP_MULTI_RANK,
    .context_create = tp_context_create,
    .context_destroy = sb_rank_context_destroy,
    .last_error = sb_rank_context_last_error,
    .rank_count = sb_rank_context_size,
    .tensor_create = tp_tensor_create,
    .tensor_free = tp_tensor_free,
    .tensor_write = tp_tensor_write,
    .tensor_read = tp_tensor_read,
    .tensor_set_unit_rows = tp_tensor_set_unit_rows,
    .layer_create = tp_layer_create,
    .layer_free = tp_layer_free,
    .layer_forward = tp_layer_forward,
    .layer_ibp = tp_layer_ibp,
    .layer_backward = tp_layer_backward,
    .concretize = tp_concretize,
    .memory_mark_baseline = sb_rank_memory_mark_baseline,
    .memory_reset_peak = sb_rank_memory_reset_peak,
    .memory_stats = sb_rank_memory_stats,
    .layer_backward_vjp = tp_layer_backward_vjp,
    .concretize_vjp = tp_concretize_vjp,
    .relu_init_alpha = tp_relu_init_alpha,
    .adam_step = tp_adam_step,
    .beta_apply = tp_beta_apply,
    .beta_vjp = tp_beta_vjp,
    .process_info = sb_rank_process_info,
    .broadcast_host = sb_rank_broadcast_host,
    .lost_rank = sb_rank_lost_rank,
};

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out) {
  if (out == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  *out = &tp_backend;
  return SB_OK;
}
