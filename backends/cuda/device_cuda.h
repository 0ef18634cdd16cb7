/* SPDX-License-Identifier: MIT */
/* The CUDA device: one GPU, one stream, cuBLAS products and our kernels. */
#ifndef SB_BACKENDS_DEVICE_CUDA_H
#define SB_BACKENDS_DEVICE_CUDA_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "backends/common/device.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const SbDeviceOps sb_device_cuda_ops;

/* The number of GPUs this process sees (at least 1 on success); otherwise
 * SB_ERR_DEVICE with the driver's reason in error (error_size bytes). The
 * first call initialises the CUDA runtime. */
int sb_device_cuda_count(int *count, char *error, size_t error_size);

/* The GPU and the stream of an open CUDA device, for libraries that queue
 * their own work behind the device's (NCCL). */
int sb_device_cuda_ordinal(const SbDevice *dev);
cudaStream_t sb_device_cuda_stream(const SbDevice *dev);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_DEVICE_CUDA_H */
