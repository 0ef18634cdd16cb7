/* SPDX-License-Identifier: MIT */
/*
 * The CPU device's matrix products, threaded by the backend rather than by
 * OpenBLAS.
 *
 * OpenBLAS's pthread build threads every product above about 2.6e5
 * multiply-adds, and after each one its idle workers spin on sched_yield
 * until a timeout of 2^28 cycles (about 0.1 s). A CROWN pass on an MNIST
 * network is a few dozen products of 256 x 256 x 256 or less between
 * elementwise kernels, too small to gain from a second thread. Measured
 * on 2 cores, whole process: `bounds` on mnist 256x6 took 26.4 ms with
 * OpenBLAS's two threads and 24.5 ms with OPENBLAS_NUM_THREADS=1, and
 * resnet_2b was no slower with one; but the 784-4096x4-10 MLP took 7.0 s
 * instead of 4.7 s, because its products are large enough to pay for a
 * thread. So OpenBLAS is kept to one thread and a product of at least
 * SB_CPU_GEMM_MACS_PER_PART multiply-adds per thread is split here, each
 * part a one-thread cblas_sgemm on its own block of C.
 *
 * The split is along C's rows at multiples of SB_CPU_GEMM_SPLIT_ALIGN,
 * so OpenBLAS tiles each part as it would have tiled that block of the
 * whole product: each element of C is the same sum over k whatever the
 * number of threads (tests/check-gemm-cpu.c checks it bitwise). Where C
 * has too few rows for the parts it is split along its columns instead:
 * bitwise the same with most of OpenBLAS's sgemm kernels (SkylakeX,
 * Cooperlake, Sandybridge, Nehalem, Prescott, Atom), within rounding with
 * the Haswell and Zen ones, whose results depend on where a column
 * block starts. OpenBLAS's own threads changed most elements' last bits
 * on every kernel tried, Cooperlake's included.
 */
#include "backends/common/gemm_cpu.h"
#include "backends/common/blas_cpu.h"
#include "backends/common/cpu_parts.h"

#include <stdint.h>
#include <string.h>

/* A thread is started for at least this many multiply-adds: 0.3 ms of
 * one core at 200 GFLOP/s, against about 50 us to start and join a
 * thread on the virtual machines measured. */
#define SB_CPU_GEMM_MACS_PER_PART (1 << 25)
/* Where a part may start. Row splits at multiples of 96, 192 and 384
 * were bitwise on every OpenBLAS sgemm kernel tried; at multiples of 64
 * they were not on the Haswell and Zen ones (their row tiles are not
 * powers of two). */
#define SB_CPU_GEMM_SPLIT_ALIGN 192

typedef struct {
  int trans_a, trans_b, m, n, k;
  float alpha, beta;
  const float *a, *b;
  float *c;
  int lda, ldb, ldc;
  SbCpuSgemmFn *sgemm;
} GemmPart;

static void *gemm_part_run(void *data) {
  const GemmPart *p = data;

  p->sgemm(CblasRowMajor, p->trans_a ? CblasTrans : CblasNoTrans,
           p->trans_b ? CblasTrans : CblasNoTrans, p->m, p->n, p->k, p->alpha,
           p->a, p->lda, p->b, p->ldb, p->beta, p->c, p->ldc);
  return NULL;
}

/* C with one row (IBP and forward passes of one box): OpenBLAS's sgemm
 * would first pack all of op(B), the layer's weights, into its buffer,
 * and for one row that costs more than the product. In `bounds` on mnist
 * 256x6, IBP's products took 0.49 ms of packing against 0.23 ms of
 * arithmetic (perf, 20 processes); sgemv reads the weights once. C's row
 * is zeroed first for beta 0: it may hold NaN, which OpenBLAS's scaling
 * by 0 is not documented to clear. */
static void gemm_one_row(int trans_a, int trans_b, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb,
                         float beta, float *c) {
  SbCpuSgemvFn *sgemv = sb_cpu_blas_sgemv();
  const int inc_a = trans_a ? lda : 1; /* A is k x 1 when transposed */

  if (beta == 0.0f)
    memset(c, 0, (size_t)n * sizeof *c);
  /* c^T = op(B)^T a^T: B itself when stored n x k (trans_b), else B^T. */
  if (trans_b)
    sgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, b, ldb, a, inc_a, beta, c,
          1);
  else
    sgemv(CblasRowMajor, CblasTrans, k, n, alpha, b, ldb, a, inc_a, beta, c, 1);
}

int sb_cpu_sgemm_split(int threads, int trans_a, int trans_b, int m, int n,
                       int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc) {
  const GemmPart whole = {
      trans_a, trans_b, m, n,   k,   alpha, beta,
      a,       b,       c, lda, ldb, ldc,   sb_cpu_blas_sgemm()};
  const double macs = (double)m * n * k;
  int64_t parts = threads;

  if (whole.sgemm == NULL)
    return 0;
  if (m == 1) {
    gemm_one_row(trans_a, trans_b, n, k, alpha, a, lda, b, ldb, beta, c);
    return 1;
  }

  if (parts > macs / SB_CPU_GEMM_MACS_PER_PART)
    parts = (int64_t)(macs / SB_CPU_GEMM_MACS_PER_PART);
  /* By rows when they give as many parts as the columns would. */
  const int64_t row_blocks = m / SB_CPU_GEMM_SPLIT_ALIGN,
                column_blocks = n / SB_CPU_GEMM_SPLIT_ALIGN;
  const int by_rows = row_blocks >= parts || row_blocks >= column_blocks;
  const int64_t span = by_rows ? m : n,
                blocks = by_rows ? row_blocks : column_blocks;
  if (parts > blocks)
    parts = blocks;
  if (parts > SB_CPU_MAX_PARTS)
    parts = SB_CPU_MAX_PARTS;
  if (parts <= 1) {
    gemm_part_run((void *)&whole);
    return 1;
  }
  GemmPart part[SB_CPU_MAX_PARTS];
  for (int64_t t = 0; t < parts; t++) {
    const int64_t lo = blocks * t / parts * SB_CPU_GEMM_SPLIT_ALIGN,
                  hi = t == parts - 1
                           ? span
                           : blocks * (t + 1) / parts * SB_CPU_GEMM_SPLIT_ALIGN;
    GemmPart *p = &part[t];

    *p = whole;
    if (by_rows) {
      p->m = (int)(hi - lo);
      p->a = trans_a ? a + lo : a + lo * lda;
      p->c = c + lo * ldc;
    } else {
      p->n = (int)(hi - lo);
      p->b = trans_b ? b + lo * ldb : b + lo;
      p->c = c + lo;
    }
  }
  sb_cpu_run_parts(part, sizeof part[0], (int)parts, gemm_part_run);
  return (int)parts;
}

int sb_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc) {
  return sb_cpu_sgemm_split(sb_cpu_threads(), trans_a, trans_b, m, n, k, alpha,
                            a, lda, b, ldb, beta, c, ldc) > 0;
}
