/* SPDX-License-Identifier: MIT */
/* The CPU device's matrix products: OpenBLAS kept to one thread, and a
 * large product split across threads by the backend itself (why: see
 * gemm_cpu.c). */
#ifndef SB_BACKENDS_GEMM_CPU_H
#define SB_BACKENDS_GEMM_CPU_H

#ifdef __cplusplus
extern "C" {
#endif

/* The threads the CPU kernels may use: the count OpenBLAS chose when it
 * loaded (OPENBLAS_NUM_THREADS, else the cores it may run on), read once;
 * OpenBLAS itself is set to one thread then. 1 with another BLAS, whose
 * threading is left to it. */
int sb_cpu_threads(void);

/* cblas_sgemm, row-major, with dimensions that fit its int: C (m x n) =
 * alpha op(A) op(B) + beta C, over k. A product large enough to pay for
 * a thread is split into blocks of C's rows, one thread each, every
 * element of C then the same one-thread sum over k however many threads
 * there are; or, with too few rows, into blocks of its columns, which
 * some OpenBLAS kernels round differently (gemm_cpu.c). */
void sb_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta,
                  float *c, int ldc);
/* sb_cpu_sgemm on at most `threads` threads instead of sb_cpu_threads();
 * returns how many parts the product was split into (tests). */
int sb_cpu_sgemm_split(int threads, int trans_a, int trans_b, int m, int n,
                       int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_GEMM_CPU_H */
