/* SPDX-License-Identifier: MIT */
/* The CPU device's matrix products: OpenBLAS kept to one thread, and a
 * large product split across threads by the backend itself (why: see
 * gemm_cpu.c). */
#ifndef SB_BACKENDS_GEMM_CPU_H
#define SB_BACKENDS_GEMM_CPU_H

#include "backends/common/blas_cpu.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cblas_sgemm, row-major, with dimensions that fit its int: C (m x n) =
 * alpha op(A) op(B) + beta C, over k. A product large enough to pay for
 * a thread is split into blocks of C's rows, one thread each, every
 * element of C then the same one-thread sum over k however many threads
 * there are; or, with too few rows, into blocks of its columns, which
 * some OpenBLAS kernels round differently (gemm_cpu.c). One row of C is
 * OpenBLAS's sgemv instead, which does not pack B. Returns 0, C
 * untouched, when OpenBLAS cannot be opened (sb_cpu_blas_error says why),
 * else 1. */
int sb_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc);
/* sb_cpu_sgemm on at most `threads` threads instead of sb_cpu_threads();
 * returns how many parts the product was split into (tests), 0 when
 * OpenBLAS cannot be opened. */
int sb_cpu_sgemm_split(int threads, int trans_a, int trans_b, int m, int n,
                       int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_GEMM_CPU_H */
