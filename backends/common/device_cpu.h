/* SPDX-License-Identifier: MIT */
/* The CPU device: host memory, OpenBLAS products and plain C kernels. */
#ifndef SB_BACKENDS_DEVICE_CPU_H
#define SB_BACKENDS_DEVICE_CPU_H

#include "backends/common/device.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

extern const SbDeviceOps sb_device_cpu_ops;

/* A transparent huge page on x86-64 (device_cpu.c says why the device
 * uses them). */
#define SB_CPU_HUGE_PAGE ((uintptr_t)2 << 20)

/* Advises the whole huge pages in [lo, hi) for transparent huge pages
 * (nothing without MADV_HUGEPAGE). */
void sb_cpu_advise_huge_pages(uintptr_t lo, uintptr_t hi);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_DEVICE_CPU_H */
