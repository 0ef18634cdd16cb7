/* SPDX-License-Identifier: MIT */
/* The FSDP backend's descriptor; its context, options and memory statistics
 * are the multi-rank ones of backends/common/rank_backend.c. */
#include "config.h"

#include "abi/shardbound.h"
#include "backends/common/rank_backend.h"
#include "backends/fsdp/fsdp.h"

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out);

static int fsdp_context_create(const sb_host_v1 *host, const sb_option *options,
                               size_t n_options, sb_context **out, char *error,
                               size_t error_size) {
  (void)host;
  return sb_rank_context_create(
      "fsdp",
      "fsdp splits the tensors created as coefficients or alpha by spec rows "
      "or by batch elements, so bounds and inputs must use another memory "
      "category",
      options, n_options, out, error, error_size);
}

static const sb_backend_v1 fsdp_backend = {
    .struct_size = sizeof(sb_backend_v1),
    .abi_major = SB_ABI_MAJOR,
    .abi_minor = SB_ABI_MINOR,
    .name = "fsdp",
    .version = PACKAGE_VERSION,
    .description = "Fully sharded data parallel: weights sharded across "
                   "ranks (threads over loopback, or MPI processes with "
                   "comm=mpi), gathered per "
                   "layer; coefficients and slopes split by spec rows or by "
                   "domains",
    .capabilities = SB_CAP_LINEAR | SB_CAP_CONV2D | SB_CAP_AFFINE | SB_CAP_ADD |
                    SB_CAP_RELU | SB_CAP_MULTI_RANK,
    .context_create = fsdp_context_create,
    SB_RANK_BACKEND_MEMBERS,
    .tensor_create = fsdp_tensor_create,
    /* Zero-filled, which the ABI allows: only the single-device backends
     * spare the fill. */
    .tensor_create_empty = fsdp_tensor_create,
    .tensor_write = fsdp_tensor_write,
    .tensor_read = fsdp_tensor_read,
    .tensor_set_unit_rows = fsdp_tensor_set_unit_rows,
    .layer_create = fsdp_layer_create,
    .layer_free = fsdp_layer_free,
    .layer_forward = fsdp_layer_forward,
    .layer_ibp = fsdp_layer_ibp,
    .layer_backward = fsdp_layer_backward,
    .concretize = fsdp_concretize,
    .layer_backward_vjp = fsdp_layer_backward_vjp,
    .concretize_vjp = fsdp_concretize_vjp,
    .relu_init_alpha = fsdp_relu_init_alpha,
    .adam_step = fsdp_adam_step,
    .beta_apply = fsdp_beta_apply,
    .beta_vjp = fsdp_beta_vjp,
};

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out) {
  if (out == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  *out = &fsdp_backend;
  return SB_OK;
}
