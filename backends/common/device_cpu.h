/* SPDX-License-Identifier: MIT */
/* The CPU device: host memory, OpenBLAS products and plain C kernels. */
#ifndef SB_BACKENDS_DEVICE_CPU_H
#define SB_BACKENDS_DEVICE_CPU_H

#include "backends/common/device.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const SbDeviceOps sb_device_cpu_ops;

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_DEVICE_CPU_H */
