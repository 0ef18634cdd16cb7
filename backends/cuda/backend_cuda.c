/* SPDX-License-Identifier: MIT */
/* The single-GPU CUDA backend: the single-device glue over the CUDA device
 * (option device=N picks the GPU). */
#include "config.h"

#include "abi/shardbound.h"
#include "backends/common/single_backend.h"
#include "backends/cuda/device_cuda.h"

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out);

static int cuda_context_create(const sb_host_v1 *host, const sb_option *options,
                               size_t n_options, sb_context **out, char *error,
                               size_t error_size) {
  return sb_single_context_create(&sb_device_cuda_ops, "cuda", host, options,
                                  n_options, out, error, error_size);
}

static const sb_backend_v1 cuda_backend = {
    .struct_size = sizeof(sb_backend_v1),
    .abi_major = SB_ABI_MAJOR,
    .abi_minor = SB_ABI_MINOR,
    .name = "cuda",
    .version = PACKAGE_VERSION,
    .description = "single NVIDIA GPU (cuBLAS and CUDA kernels)",
    .capabilities = SB_CAP_LINEAR | SB_CAP_CONV2D | SB_CAP_AFFINE | SB_CAP_ADD |
                    SB_CAP_RELU | SB_CAP_GPU,
    SB_SINGLE_BACKEND_FUNCTIONS(cuda_context_create),
};

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out) {
  if (out == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  *out = &cuda_backend;
  return SB_OK;
}
