/* SPDX-License-Identifier: MIT */
/* OpenBLAS, opened by the CPU device itself from the backends' own
 * module of it (why: blas_cpu.c), and kept to one thread. */
#ifndef SB_BACKENDS_BLAS_CPU_H
#define SB_BACKENDS_BLAS_CPU_H

#include "backends/common/openblas_module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* OpenBLAS's cblas_sgemm, opening OpenBLAS at the first call of any of
 * these. NULL when it cannot be opened; sb_cpu_blas_error() then says
 * why. */
SbCpuSgemmFn *sb_cpu_blas_sgemm(void);
/* Its cblas_sgemv, once cblas_sgemm is not NULL. */
SbCpuSgemvFn *sb_cpu_blas_sgemv(void);
const char *sb_cpu_blas_error(void);

/* The threads the CPU kernels may use: the count OpenBLAS chose when it
 * loaded (OPENBLAS_NUM_THREADS, else the cores it may run on), read once
 * it is open; OpenBLAS itself is set to one thread then. 1 when OpenBLAS
 * cannot be opened. */
int sb_cpu_threads(void);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_BLAS_CPU_H */
