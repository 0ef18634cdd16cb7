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
  return sb_rank_context_create(
      "tp",
      "tp splits tensors of 3 or more dimensions ([S,B,N]) by neuron, so "
      "bounds, inputs and biases must be [B,N] or [S,B] tensors",
      options, n_options, out, error, error_size);
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
    .capabilities = SB_CAP_LINEAR | SB_CAP_CONV2D | SB_CAP_AFFINE | SB_CAP_ADD |
                    SB_CAP_RELU | SB_CAP_MULTI_RANK,
    .context_create = tp_context_create,
    SB_RANK_BACKEND_MEMBERS,
    .tensor_create = tp_tensor_create,
    /* Zero-filled, which the ABI allows: only the single-device backends
     * spare the fill. */
    .tensor_create_empty = tp_tensor_create,
    .tensor_write = tp_tensor_write,
    .tensor_read = tp_tensor_read,
    .tensor_set_unit_rows = tp_tensor_set_unit_rows,
    .layer_create = tp_layer_create,
    .layer_free = tp_layer_free,
    .layer_forward = tp_layer_forward,
    .layer_ibp = tp_layer_ibp,
    .layer_backward = tp_layer_backward,
    .concretize = tp_concretize,
    .layer_backward_vjp = tp_layer_backward_vjp,
    .concretize_vjp = tp_concretize_vjp,
    .relu_init_alpha = tp_relu_init_alpha,
    .adam_step = tp_adam_step,
    .beta_apply = tp_beta_apply,
    .beta_vjp = tp_beta_vjp,
};

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out) {
  if (out == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  *out = &tp_backend;
  return SB_OK;
}
