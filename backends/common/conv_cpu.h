/* SPDX-License-Identifier: MIT */
/* The CPU device's convolutions done directly (no im2col columns): the
 * kernels behind SbDeviceOps.conv_forward and conv_transpose on the CPU. */
#ifndef SB_BACKENDS_CONV_CPU_H
#define SB_BACKENDS_CONV_CPU_H

#include "backends/common/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* As SbDeviceOps.conv_transpose, the rows shared among up to `threads`
 * threads (the results do not depend on how many); a failure (out of
 * memory for the packed weights) is explained in error (error_size bytes,
 * caller's). */
int sb_cpu_conv_transpose(const SbConvGeom *g, int64_t n, int64_t nc,
                          const float *w, const float *a, int accumulate,
                          float *x, const float *shift, float *bias,
                          int threads, char *error, size_t error_size);
/* As SbDeviceOps.conv_forward, likewise. */
int sb_cpu_conv_forward(const SbConvGeom *g, int64_t n, int64_t nc,
                        const float *w, const float *x, float beta, float *out,
                        int threads, char *error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_CONV_CPU_H */
