/* SPDX-License-Identifier: MIT */
/* The CPU reference backend: the single-device glue over the CPU device. */
#include "config.h"

#include "abi/shardbound.h"
#include "backends/common/device_cpu.h"
#include "backends/common/single_backend.h"

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out);

static int cpu_context_create(const sb_host_v1 *host, const sb_option *options,
                              size_t n_options, sb_context **out, char *error,
                              size_t error_size) {
  return sb_single_context_create(&sb_device_cpu_ops, "cpu", host, options,
                                  n_options, out, error, error_size);
}

static const sb_backend_v1 cpu_backend = {
    .struct_size = sizeof(sb_backend_v1),
    .abi_major = SB_ABI_MAJOR,
    .abi_minor = SB_ABI_MINOR,
    .name = "cpu",
    .version = PACKAGE_VERSION,
    .description = "CPU reference backend (OpenBLAS)",
    .capabilities = SB_CAP_LINEAR | SB_CAP_CONV2D | SB_CAP_AFFINE | SB_CAP_ADD |
                    SB_CAP_RELU,
    SB_SINGLE_BACKEND_FUNCTIONS(cpu_context_create),
};

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out) {
  if (out == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  *out = &cpu_backend;
  return SB_OK;
}
