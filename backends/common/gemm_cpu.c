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
#include "backends/common/cpu_parts.h"
#include "backends/common/device_cpu.h"

#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

/* A thread is started for at least this many multiply-adds: 0.3 ms of
 * one core at 200 GFLOP/s, against about 50 us to start and join a
 * thread on the virtual machines measured. */
#define SB_CPU_GEMM_MACS_PER_PART (1 << 25)
/* Where a part may start. Row splits at multiples of 96, 192 and 384
 * were bitwise on every OpenBLAS sgemm kernel tried; at multiples of 64
 * they were not on the Haswell and Zen ones (their row tiles are not
 * powers of two). */
#define SB_CPU_GEMM_SPLIT_ALIGN 192

static int cpu_threads = 1;

#if defined(OPENBLAS_VERSION) && defined(MADV_HUGEPAGE)
/* OpenBLAS's pool of product buffers (driver/others/memory.c): exported
 * by every OpenBLAS, though not in its headers, so taken weakly. */
extern void *blas_memory_alloc(int procpos) __attribute__((weak));
extern void blas_memory_free(void *buffer) __attribute__((weak));

/* OpenBLAS packs each product's blocks of A and B into a buffer of its
 * own (128 MiB of address space, mmap'd on first use), of which a small
 * product writes the first few hundred KiB: on the virtual machines
 * measured, that was 73 page faults of about 20 us each in `bounds` on
 * mnist 256x6, 1.5 ms. The buffer the calling thread gets next is the
 * first free one of the pool, so this takes it, advises the first whole
 * 2 MiB inside it (its start: mmap aligns mappings this large) for a
 * transparent huge page, one fault, and gives it back. A
 * product larger than that, or made on another thread, faults the rest in
 * as before. */
static void advise_openblas_buffer(void) {
  if (blas_memory_alloc == NULL || blas_memory_free == NULL)
    return;
  void *buffer = blas_memory_alloc(0);
  if (buffer == NULL)
    return;
  const uintptr_t start = (uintptr_t)buffer,
                  first =
                      (start + SB_CPU_HUGE_PAGE - 1) & ~(SB_CPU_HUGE_PAGE - 1);
  sb_cpu_advise_huge_pages(start, first + SB_CPU_HUGE_PAGE);
  blas_memory_free(buffer);
}
#endif

#ifdef OPENBLAS_VERSION
/* What the pthread build's fork handler calls to stop its workers
 * (driver/others/blas_server.c): exported, though not in its headers, so
 * taken weakly. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

/* The pthread build starts its workers as it loads, and each spins on
 * sched_yield for about 0.1 s (2^28 cycles) before it sleeps, although at
 * one thread OpenBLAS never hands them a job: a short process paid a
 * second core for nothing. So they are stopped; OpenBLAS starts them
 * again by itself if a host sets it to more threads
 * (goto_set_num_threads). Whole process, `bounds --method crown`, medians
 * of 30-60 runs alternated with the build before, two rounds: resnet_2b
 * took 57-71 ms of CPU instead of 100-131 (elapsed 58-72 ms against
 * 59-76), mnist 256x6 20 ms instead of 21-24 (elapsed unchanged, 20-21
 * ms). The OpenMP build's threads are OpenMP's, left alone. */
static void stop_openblas_workers(void) {
  if (blas_thread_shutdown_ != NULL && openblas_get_parallel() == 1)
    blas_thread_shutdown_();
}
#endif

static void take_threads_from_openblas(void) {
#ifdef OPENBLAS_VERSION
  cpu_threads = openblas_get_num_threads();
  if (cpu_threads < 1)
    cpu_threads = 1;
  openblas_set_num_threads(1);
  stop_openblas_workers();
#ifdef MADV_HUGEPAGE
  advise_openblas_buffer();
#endif
#endif
}

int sb_cpu_threads(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, take_threads_from_openblas);
  return cpu_threads;
}

typedef struct {
  int trans_a, trans_b, m, n, k;
  float alpha, beta;
  const float *a, *b;
  float *c;
  int lda, ldb, ldc;
} GemmPart;

static void *gemm_part_run(void *data) {
  const GemmPart *p = data;

  cblas_sgemm(CblasRowMajor, p->trans_a ? CblasTrans : CblasNoTrans,
              p->trans_b ? CblasTrans : CblasNoTrans, p->m, p->n, p->k,
              p->alpha, p->a, p->lda, p->b, p->ldb, p->beta, p->c, p->ldc);
  return NULL;
}

int sb_cpu_sgemm_split(int threads, int trans_a, int trans_b, int m, int n,
                       int k, float alpha, const float *a, int lda,
                       const float *b, int ldb, float beta, float *c, int ldc) {
  const GemmPart whole = {trans_a, trans_b, m, n,   k,   alpha, beta,
                          a,       b,       c, lda, ldb, ldc};
  const double macs = (double)m * n * k;
  int64_t parts = threads;

  (void)sb_cpu_threads(); /* each part runs OpenBLAS on one thread */

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

void sb_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta,
                  float *c, int ldc) {
  sb_cpu_sgemm_split(sb_cpu_threads(), trans_a, trans_b, m, n, k, alpha, a, lda,
                     b, ldb, beta, c, ldc);
}
