/* SPDX-License-Identifier: MIT */
/* The CUDA device: one GPU, one stream, cuBLAS products and our kernels. */
#ifndef SB_BACKENDS_DEVICE_CUDA_H
#define SB_BACKENDS_DEVICE_CUDA_H

#include "backends/common/device.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const SbDeviceOps sb_device_cuda_ops;

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_DEVICE_CUDA_H */
