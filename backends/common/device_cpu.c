/* SPDX-License-Identifier: MIT */
/* The CPU device: "device memory" is host memory, products go to OpenBLAS
 * and the kernels are plain loops. The element-wise ones are marked
 * `#pragma omp simd` (vectorised with KERNEL_CFLAGS, see configure.ac):
 * each lane computes what one scalar iteration did. The sums a CROWN pass
 * spends its time in (the ReLU relaxation's bias, the channel sums of a
 * conv bias) are vectorised too, as `reduction`s, and concretize's in
 * explicit vectors: the lanes add in a fixed order, different from one
 * running sum in the last bits, and the same on every rank, so multi-rank
 * results stay bitwise those of one device. The other sums stay scalar. */
#include "backends/common/device_cpu.h"
#include "backends/common/box.h"
#include "backends/common/conv_cpu.h"
#include "backends/common/cpu_clones.h"
#include "backends/common/gemm_cpu.h"
#include "backends/common/relu_relax.h"

#ifdef SB_CPU_V4
#include <immintrin.h>
#endif

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif
#ifdef __GLIBC__
#include <malloc.h>
#include <unistd.h>
#endif

/*
 * Freed device memory stays mapped. Branch-and-bound creates and frees
 * thousands of [S,B,N] tensors (and workspaces) per second, of sizes that
 * vary with S and B, each zero-filled on creation. By default glibc gives
 * the larger ones back to the kernel when they are freed (chunks above its
 * mmap threshold, trimmed heap tops, per-thread arena heaps shrunk with
 * madvise), so the next creation faulted all its pages in again: on the
 * mnist 256x4 bench (tools/bench-bab.sh) half of all CPU time went into
 * page faults and first-touch zeroing, and with several rank threads in one
 * process the faults also contend on the process's memory map, so every
 * added rank made each creation slower. Keeping every block in the heaps
 * (no mmap at all: glibc cannot raise its mmap threshold above 32 MiB, and
 * at --batch 256 the few [S,B,N] tensors over that faulted in a gigabyte
 * per 3,000 domains, a third of the run) and neither trimming nor unmapping
 * lets glibc's own bins reuse (split and coalesce) that memory; the process
 * keeps its high-water mark, which it needed anyway, and what is freed for
 * good is given back with malloc_trim (the host's dropped model copy,
 * graph_share.c). Process-wide, set once when the first CPU device opens.
 */
#define SB_CPU_TRIM_THRESHOLD ((int)1 << 30)
/* glibc unmaps an emptied heap of a per-thread arena (64 MiB) unless the
 * heap before it has less free room at its top than this pad: measured,
 * the pad took tensor creation at one rank from 2.4 s to 0.9 s of CPU. */
#define SB_CPU_TOP_PAD ((int)64 << 20)

/*
 * The main heap's free top, advised to be backed by transparent huge pages.
 * Where the hypervisor shadows the guest's page tables (the 2-core VMs this
 * project is measured on), the first write to each 4 KiB page of a new
 * mapping exits to the hypervisor, populated or not: writing a fresh 2 MiB
 * buffer took 7-9 ms, rewriting it 0.1 ms. A huge page takes one exit
 * instead of 512. A small network's whole run writes a few MiB of fresh
 * heap (the model's weights twice, the coefficient matrices), which cost
 * `bounds` on mnist 256x6 about a quarter of its 40 ms. glibc does the same
 * for its whole heap when GLIBC_TUNABLES holds glibc.malloc.hugetlb=1, but
 * reads that only at start-up, so the device advises in two places:
 * - when the first device opens, the main heap's free top, first grown to
 *   SB_CPU_TOP_PAD: what follows (the host's copy of the model, a small
 *   run) is cut from it;
 * - each fresh block from the heap's later growth (populate_fresh), the
 *   whole huge pages inside it: the wide networks' weights and coefficient
 *   matrices.
 * Resident memory grows by at most a partly used 2 MiB page per advised
 * range: heaps are used from the bottom of their free top upward.
 */
void sb_cpu_advise_huge_pages(uintptr_t lo, uintptr_t hi) {
#ifdef MADV_HUGEPAGE
  lo = (lo + SB_CPU_HUGE_PAGE - 1) & ~(SB_CPU_HUGE_PAGE - 1);
  hi &= ~(SB_CPU_HUGE_PAGE - 1);
  if (hi > lo)
    (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
  (void)lo;
  (void)hi;
#endif
}

#ifdef __GLIBC__

/* The top's first huge page boundary is rarely its start: the pages below
 * it stay 4 KiB ones, and the next blocks cut from the top (the host's
 * parse of a property, about 50 page faults of ~20 us on mnist) land
 * there. A block that fills them is taken for the process's life, so the
 * top starts on the boundary. Its pages are never written and stay
 * unmapped: it costs address space (under 2 MiB), not memory. Where the
 * block does not come from the top (a free chunk of its size was found
 * instead) it is given back and nothing changes. */
static void align_heap_top(void) {
  static void *heap_top_pad;
  const uintptr_t brk = (uintptr_t)sbrk(0), top = brk - mallinfo2().keepcost,
                  boundary =
                      (top + SB_CPU_HUGE_PAGE - 1) & ~(SB_CPU_HUGE_PAGE - 1);
  /* glibc's chunk of malloc(n) is n plus its 8-byte size field, rounded
   * up to 16: exactly the gap (a multiple of 16, as the top's start is). */
  const size_t gap = boundary - top, header = sizeof(size_t);

  if (heap_top_pad != NULL || gap < 4 * header ||
      boundary + SB_CPU_HUGE_PAGE > brk)
    return;
  heap_top_pad = malloc(gap - header);
  if (heap_top_pad != NULL &&
      (uintptr_t)sbrk(0) - mallinfo2().keepcost != boundary) {
    free(heap_top_pad);
    heap_top_pad = NULL;
  }
}

/* The same reading of the heap's top as hosts/engine/heap_prefault.c,
 * which a backend cannot link: the engine is the host's library. */
static void advise_huge_heap_top(void) {
  /* keepcost: the main heap's top chunk, which ends at the break. */
  if (mallinfo2().keepcost < (size_t)SB_CPU_TOP_PAD) {
    /* Through a volatile pointer: GCC may drop a malloc only freed. */
    void *volatile grown = malloc(SB_CPU_TOP_PAD);
    free(grown);
  }
  uintptr_t brk = (uintptr_t)sbrk(0);
  sb_cpu_advise_huge_pages(brk - mallinfo2().keepcost, brk);
  align_heap_top();
}
#endif

static void keep_freed_memory(void) {
#ifdef __GLIBC__
  mallopt(M_TRIM_THRESHOLD, SB_CPU_TRIM_THRESHOLD);
  mallopt(M_TOP_PAD, SB_CPU_TOP_PAD);
  mallopt(M_MMAP_MAX, 0);
  advise_huge_heap_top();
#endif
}

/*
 * Maps the pages of a new block that is fresh memory with one madvise,
 * rather than one page fault at a time as the block is zero-filled. On the
 * virtual machines this project is measured on a page fault costs about
 * 11 us and populating about 1.1 us a page (4 KiB), so a fresh process
 * running `bounds` on mnist 256x4 spent more time faulting than computing.
 * A block is fresh when its last page is not resident: blocks are cut
 * from the top of a heap, which grows upward, while a block reused from
 * the heap's bins (branch-and-bound's steady state) is resident. Small
 * blocks share their pages with others and are left alone. A kernel
 * without MADV_POPULATE_WRITE (before Linux 5.14) refuses the call and the
 * pages fault in as before.
 *
 * Asking the kernel whether the last page is resident is a system call
 * (mincore): one per large block cost branch-and-bound 3.6% of its time,
 * where the same blocks come back every step. Since this process never
 * gives memory back (keep_freed_memory), memory once resident stays so:
 * each device keeps the address ranges it populated or found resident,
 * merged where they touch (a heap grows in one piece, so there are few),
 * and asks only about pages outside them. A wrong guess (a page swapped
 * out) costs page faults, never a wrong result.
 */
#define SB_CPU_POPULATE_MIN_BYTES ((size_t)64 << 10)
#define SB_CPU_RESIDENT_RANGES    64

typedef struct {
  uintptr_t lo, hi;
} SbAddressRange;

struct SbDevice {
  char error[256];
  /* Disjoint, not touching, sorted by address. */
  SbAddressRange resident[SB_CPU_RESIDENT_RANGES];
  int n_resident;
};

/* The index of the first range that ends at or after addr. */
static int first_range_reaching(const SbDevice *dev, uintptr_t addr) {
  int lo = 0, hi = dev->n_resident;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (dev->resident[mid].hi < addr)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static int known_resident(const SbDevice *dev, uintptr_t lo, uintptr_t hi) {
  int k = first_range_reaching(dev, hi);
  return k < dev->n_resident && dev->resident[k].lo <= lo;
}

/* Adds [lo, hi), merging the ranges it touches; when the table is full a
 * range that touches none is not kept (only a system call is lost). */
static void add_resident(SbDevice *dev, uintptr_t lo, uintptr_t hi) {
  int k = first_range_reaching(dev, lo), end = k;
  while (end < dev->n_resident && dev->resident[end].lo <= hi)
    end++;
  if (end > k) {
    if (dev->resident[k].lo < lo)
      lo = dev->resident[k].lo;
    if (dev->resident[end - 1].hi > hi)
      hi = dev->resident[end - 1].hi;
  } else if (dev->n_resident == SB_CPU_RESIDENT_RANGES)
    return;
  memmove(dev->resident + k + 1, dev->resident + end,
          sizeof(SbAddressRange) * (size_t)(dev->n_resident - end));
  dev->n_resident += 1 - (end - k);
  dev->resident[k] = (SbAddressRange){lo, hi};
}

static void populate_fresh(SbDevice *dev, void *block, size_t bytes) {
#if defined(__GLIBC__) && defined(MADV_POPULATE_WRITE)
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t from = ((uintptr_t)block + page - 1) & ~(page - 1);
  uintptr_t to = ((uintptr_t)block + bytes) & ~(page - 1);
  unsigned char last = 0;
  if (bytes < SB_CPU_POPULATE_MIN_BYTES || to <= from ||
      known_resident(dev, to - page, to) ||
      mincore((void *)(to - page), page, &last) != 0)
    return;
  if (last & 1) {
    /* A block whose last page is resident was cut from memory used
     * before (the top of the heap grows into fresh pages only): the whole
     * of it is taken as resident, so that the ranges merge and the table
     * does not fill with single pages (which left 1.3% of
     * branch-and-bound's time in mincore on mnist 256x4). */
    add_resident(dev, from, to);
    return;
  }
  sb_cpu_advise_huge_pages(from, to);
  if (madvise((void *)from, to - from, MADV_POPULATE_WRITE) == 0)
    add_resident(dev, from, to);
#else
  (void)dev;
  (void)block;
  (void)bytes;
#endif
}

static int cpu_open(int ordinal, SbDevice **out, char *error,
                    size_t error_size) {
  *out = NULL;
  if (ordinal != 0) {
    snprintf(error, error_size,
             "cpu device %d does not exist: the cpu backend has only device 0",
             ordinal);
    return SB_ERR_INVALID_ARGUMENT;
  }
  /* OpenBLAS before the heap is tuned, as when the backend linked it:
   * opened after, what it allocates as it loads shifted the heap's later
   * blocks across more huge pages (the 784-4096x4-10 MLP's peak RSS 3-9
   * MB higher). */
  if (sb_cpu_blas_sgemm() == NULL) {
    snprintf(error, error_size, "%s", sb_cpu_blas_error());
    return SB_ERR_DEVICE;
  }
  static pthread_once_t tuned = PTHREAD_ONCE_INIT;
  pthread_once(&tuned, keep_freed_memory);
  SbDevice *dev = calloc(1, sizeof *dev);
  if (dev == NULL) {
    snprintf(error, error_size, "out of host memory opening the cpu device");
    return SB_ERR_OUT_OF_MEMORY;
  }
  *out = dev;
  return SB_OK;
}

static void cpu_close(SbDevice *dev) { free(dev); }

static const char *cpu_last_error(const SbDevice *dev) { return dev->error; }

static int64_t cpu_used_bytes(SbDevice *dev) { return -1; }

static int cpu_alloc(SbDevice *dev, size_t bytes, void **out) {
  /* 64-byte alignment suits AVX-512 loads in OpenBLAS and our loops. */
  size_t rounded = (bytes + 63) / 64 * 64;
  void *p = rounded ? aligned_alloc(64, rounded) : NULL;
  if (p != NULL)
    populate_fresh(dev, p, rounded);
  *out = p;
  if (p == NULL && bytes != 0) {
    snprintf(dev->error, sizeof dev->error, "malloc of %zu bytes failed",
             bytes);
    return SB_ERR_OUT_OF_MEMORY;
  }
  return SB_OK;
}

static void cpu_free(SbDevice *dev, void *ptr) { free(ptr); }

static int cpu_memcpy(SbDevice *dev, void *dst, const void *src, size_t bytes) {
  if (bytes)
    memcpy(dst, src, bytes);
  return SB_OK;
}

static int cpu_zero(SbDevice *dev, void *dst, size_t bytes) {
  if (bytes)
    memset(dst, 0, bytes);
  return SB_OK;
}

static int cpu_sync(SbDevice *dev) { return SB_OK; }

static int gemm_dims_fit(SbDevice *dev, int64_t m, int64_t n, int64_t k,
                         int64_t lda, int64_t ldb, int64_t ldc) {
  /* OpenBLAS takes int (blasint) dimensions in its default build. */
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX || lda > INT_MAX ||
      ldb > INT_MAX || ldc > INT_MAX || m < 0 || n < 0 || k < 0) {
    snprintf(dev->error, sizeof dev->error,
             "sgemm dimensions m=%lld n=%lld k=%lld exceed the BLAS int range",
             (long long)m, (long long)n, (long long)k);
    return 0;
  }
  return 1;
}

static int cpu_sgemm(SbDevice *dev, int trans_a, int trans_b, int64_t m,
                     int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta,
                     float *c, int64_t ldc) {
  if (!gemm_dims_fit(dev, m, n, k, lda, ldb, ldc))
    return SB_ERR_DEVICE;
  if (m == 0 || n == 0)
    return SB_OK;
  if (k == 0) {
    /* BLAS would leave C untouched for k == 0 only with beta == 1. */
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++)
        c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return SB_OK;
  }
  if (!sb_cpu_sgemm(trans_a, trans_b, (int)m, (int)n, (int)k, alpha, a,
                    (int)lda, b, (int)ldb, beta, c, (int)ldc)) {
    snprintf(dev->error, sizeof dev->error, "%s", sb_cpu_blas_error());
    return SB_ERR_DEVICE;
  }
  return SB_OK;
}

static int cpu_sgemm_strided_batched(SbDevice *dev, int trans_a, int trans_b,
                                     int64_t m, int64_t n, int64_t k,
                                     float alpha, const float *a, int64_t lda,
                                     int64_t stride_a, const float *b,
                                     int64_t ldb, int64_t stride_b, float beta,
                                     float *c, int64_t ldc, int64_t stride_c,
                                     int64_t batch) {
  for (int64_t i = 0; i < batch; i++) {
    int st = cpu_sgemm(dev, trans_a, trans_b, m, n, k, alpha, a + i * stride_a,
                       lda, b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
    if (st != SB_OK)
      return st;
  }
  return SB_OK;
}

static int cpu_abs(SbDevice *dev, int64_t n, const float *x, float *y) {
  for (int64_t i = 0; i < n; i++)
    y[i] = fabsf(x[i]);
  return SB_OK;
}

static int cpu_add(SbDevice *dev, int64_t n, const float *a, const float *b,
                   float *out) {
  for (int64_t i = 0; i < n; i++)
    out[i] = a[i] + b[i];
  return SB_OK;
}

static int cpu_box_to_centre_radius(SbDevice *dev, int64_t n,
                                    const float *lower, const float *upper,
                                    float *centre, float *radius) {
  for (int64_t i = 0; i < n; i++) {
    centre[i] = sb_box_centre(lower[i], upper[i]);
    radius[i] = sb_box_radius(lower[i], upper[i]);
  }
  return SB_OK;
}

static int cpu_centre_radius_to_box(SbDevice *dev, int64_t n, const float *mid,
                                    const float *rad, float *lower,
                                    float *upper) {
  for (int64_t i = 0; i < n; i++) {
    float m = mid[i], r = rad[i];
    lower[i] = m - r;
    upper[i] = m + r;
  }
  return SB_OK;
}

static int cpu_add_bias_rows(SbDevice *dev, int64_t rows, int64_t cols,
                             const float *bias, float *y) {
  for (int64_t r = 0; r < rows; r++) {
    float *yr = y + r * cols;
    for (int64_t j = 0; j < cols; j++)
      yr[j] += bias[j];
  }
  return SB_OK;
}

static int cpu_affine_forward(SbDevice *dev, int64_t rows, int64_t channels,
                              int64_t spatial, const float *scale,
                              const float *shift, int abs_scale, const float *x,
                              float *y) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < channels; c++) {
      float a = scale ? scale[c] : 1.0f;
      if (abs_scale)
        a = fabsf(a);
      float s = shift ? shift[c] : 0.0f;
      const float *xs = x + (r * channels + c) * spatial;
      float *ys = y + (r * channels + c) * spatial;
      for (int64_t k = 0; k < spatial; k++)
        ys[k] = a * xs[k] + s;
    }
  return SB_OK;
}

static int cpu_affine_backward(SbDevice *dev, int64_t rows, int64_t channels,
                               int64_t spatial, const float *scale,
                               const float *A, int accumulate, float *A_in) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < channels; c++) {
      float a = scale ? scale[c] : 1.0f;
      const float *as = A + (r * channels + c) * spatial;
      float *ds = A_in + (r * channels + c) * spatial;
      if (accumulate)
        for (int64_t k = 0; k < spatial; k++)
          ds[k] += a * as[k];
      else
        for (int64_t k = 0; k < spatial; k++)
          ds[k] = a * as[k];
    }
  return SB_OK;
}

SB_CPU_CLONES
static int cpu_channel_bias_backward(SbDevice *dev, int64_t rows,
                                     int64_t channels, int64_t spatial,
                                     const float *shift, const float *A,
                                     float *bias) {
  if (spatial == 1) {
    /* A dense layer's bias: one dot product per row. The loop below would
     * spend a reduction and its overhead on every single element (a
     * tenth of an MLP's branch-and-bound). */
    for (int64_t r = 0; r < rows; r++) {
      const float *ar = A + r * channels;
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (int64_t c = 0; c < channels; c++)
        acc += (double)ar[c] * shift[c];
      bias[r] += (float)acc;
    }
    return SB_OK;
  }
  for (int64_t r = 0; r < rows; r++) {
    double acc = 0.0;
    for (int64_t c = 0; c < channels; c++) {
      const float *as = A + (r * channels + c) * spatial;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t k = 0; k < spatial; k++)
        sum += as[k];
      acc += (double)sum * shift[c];
    }
    bias[r] += (float)acc;
  }
  return SB_OK;
}

static int cpu_relu_forward(SbDevice *dev, int64_t n, const float *x,
                            float *y) {
  for (int64_t i = 0; i < n; i++)
    y[i] = sb_relu(x[i]);
  return SB_OK;
}

static int cpu_relu_ibp(SbDevice *dev, int64_t n, const float *lower,
                        const float *upper, float *out_lower,
                        float *out_upper) {
  for (int64_t i = 0; i < n; i++) {
    out_lower[i] = sb_relu(lower[i]);
    out_upper[i] = sb_relu(upper[i]);
  }
  return SB_OK;
}

/* Each neuron's lines (SbReluLines) are worked out once per batch
 * element, for all its S rows, into arrays [state, slope, icpt, lower] of
 * N floats each: the chord's division, done for every element, had been
 * most of the ReLU steps of a CROWN pass (an intermediate pass has up to
 * 128 rows). With one row (branch-and-bound's batches) the arrays cost
 * no more than the division in the row's loop, whose many cases had kept
 * it from vectorising well; and every row is computed by the same loop
 * whatever S is, so a rank's share of the rows gives the bits of the
 * whole. */
static float *relu_lines_alloc(SbDevice *dev, const char *what, int64_t N) {
  float *lines = malloc((size_t)(4 * N + 1) * sizeof(float));
  if (lines == NULL)
    snprintf(dev->error, sizeof dev->error,
             "%s: out of memory for the lines of %lld neurons", what,
             (long long)N);
  return lines;
}

static inline __attribute__((always_inline)) void
relu_lines(int64_t N, const float *l, const float *u, float *lines) {
#pragma omp simd
  for (int64_t n = 0; n < N; n++) {
    const SbReluLines r = sb_relu_lines(l[n], u[n]);
    lines[n] = r.state;
    lines[N + n] = r.slope;
    lines[2 * N + n] = r.icpt;
    lines[3 * N + n] = r.lower;
  }
}

static inline __attribute__((always_inline)) SbReluLines
relu_lines_at(const float *lines, int64_t N, int64_t n) {
  return (SbReluLines){lines[n], lines[N + n], lines[2 * N + n],
                       lines[3 * N + n]};
}

/* One row of relu_backward: d (+)= the coefficients; returns the sum of
 * the bias terms, kept in vector lanes (a fixed order). Inlined where the
 * side and alpha are known, so that each copy of the loop vectorises
 * without juggling masks. */
static inline __attribute__((always_inline)) float
relu_backward_row(int lower_side, int64_t N, const float *a, const float *lines,
                  const float *al, int accumulate, float *d) {
  float extra = 0.0f;
#pragma omp simd reduction(+ : extra)
  for (int64_t n = 0; n < N; n++) {
    const SbReluBackTerm t =
        sb_relu_lines_backward(lower_side, a[n], relu_lines_at(lines, N, n),
                               al != NULL, al ? al[n] : 0.0f);
    extra += t.bias;
    d[n] = accumulate ? d[n] + t.coef : t.coef;
  }
  return extra;
}

SB_CPU_CLONES
static int cpu_relu_backward(SbDevice *dev, int side, int64_t S, int64_t B,
                             int64_t N, const float *A, const float *lower,
                             const float *upper, const float *alpha,
                             int accumulate, float *A_in, float *bias) {
  const int lower_side = side == SB_SIDE_LOWER;
  float *lines = relu_lines_alloc(dev, "relu backward", N);
  if (lines == NULL)
    return SB_ERR_OUT_OF_MEMORY;
  for (int64_t b = 0; b < B; b++) {
    relu_lines(N, lower + b * N, upper + b * N, lines);
    for (int64_t s = 0; s < S; s++) {
      const int64_t row = s * B + b;
      const float *a = A + row * N;
      const float *al = alpha ? alpha + row * N : NULL;
      float *d = A_in + row * N;
#define SB_RELU_ROW(LOWER, ALPHA)                                              \
  relu_backward_row(LOWER, N, a, lines, ALPHA, accumulate, d)
      bias[row] += lower_side
                       ? (al ? SB_RELU_ROW(1, al) : SB_RELU_ROW(1, NULL))
                       : (al ? SB_RELU_ROW(0, al) : SB_RELU_ROW(0, NULL));
#undef SB_RELU_ROW
    }
  }
  free(lines);
  return SB_OK;
}

/* 8 floats; sums kept in several of these are independent chains. */
typedef float cpu_vec __attribute__((vector_size(8 * sizeof(float))));
typedef int32_t cpu_ivec __attribute__((vector_size(8 * sizeof(int32_t))));
#define CPU_LANES 8

/* *dot = sum of a[n] c[n] and *spread = sum of |a[n]| r[n], n < N, in four
 * accumulators of 8 lanes each: as one `reduction`, a chain of dependent
 * additions per sum, concretize had been bound by their latency. */
static inline __attribute__((always_inline)) void
dot_spread(int64_t N, const float *a, const float *c, const float *r,
           float *dot, float *spread) {
  cpu_vec d[4] = {{0}}, w[4] = {{0}};
  int64_t n = 0;
  for (; n + 4 * CPU_LANES <= N; n += 4 * CPU_LANES)
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
      cpu_vec av, cv, rv;
      memcpy(&av, a + n + k * CPU_LANES, sizeof av);
      memcpy(&cv, c + n + k * CPU_LANES, sizeof cv);
      memcpy(&rv, r + n + k * CPU_LANES, sizeof rv);
      d[k] += av * cv;
      w[k] += (cpu_vec)((cpu_ivec)av & 0x7fffffff) * rv;
    }
  const cpu_vec dt = (d[0] + d[1]) + (d[2] + d[3]);
  const cpu_vec wt = (w[0] + w[1]) + (w[2] + w[3]);
  float sd = 0.0f, sw = 0.0f;
  for (int l = 0; l < CPU_LANES; l++) {
    sd += dt[l];
    sw += wt[l];
  }
  for (; n < N; n++) {
    sd += a[n] * c[n];
    sw += fabsf(a[n]) * r[n];
  }
  *dot = sd;
  *spread = sw;
}

SB_CPU_CLONES
static int cpu_concretize(SbDevice *dev, int side, int64_t S, int64_t B,
                          int64_t N, const float *A, const float *bias,
                          const float *lower, const float *upper, float *out) {
  const float sign = side == SB_SIDE_LOWER ? -1.0f : 1.0f;
  /* A batch element's box as centre and radius, once for all its S rows. */
  float *box = malloc((size_t)(2 * N + 1) * sizeof(float));
  if (box == NULL) {
    snprintf(dev->error, sizeof dev->error,
             "concretize: out of memory for a box of %lld inputs",
             (long long)N);
    return SB_ERR_OUT_OF_MEMORY;
  }
  float *centre = box, *radius = box + N;
  for (int64_t b = 0; b < B; b++) {
    const float *l = lower + b * N, *u = upper + b * N;
#pragma omp simd
    for (int64_t n = 0; n < N; n++) {
      centre[n] = sb_box_centre(l[n], u[n]);
      radius[n] = sb_box_radius(l[n], u[n]);
    }
    for (int64_t s = 0; s < S; s++) {
      const int64_t row = s * B + b;
      float dot, spread;
      dot_spread(N, A + row * N, centre, radius, &dot, &spread);
      out[row] = (bias ? bias[row] : 0.0f) + dot + sign * spread;
    }
  }
  free(box);
  return SB_OK;
}

static int cpu_set_unit_rows(SbDevice *dev, int64_t S, int64_t B, int64_t N,
                             const int64_t *index, float *A) {
  memset(A, 0, (size_t)(S * B * N) * sizeof(float));
  for (int64_t s = 0; s < S; s++)
    for (int64_t b = 0; b < B; b++)
      A[(s * B + b) * N + index[s]] = 1.0f;
  return SB_OK;
}

static int cpu_im2col(SbDevice *dev, const SbConvGeom *g, int64_t n,
                      const float *x, float *cols) {
  const int64_t P = g->out_h * g->out_w;
  const int64_t img = g->in_c * g->in_h * g->in_w;
  for (int64_t im = 0; im < n; im++) {
    const float *xi = x + im * img;
    float *ci = cols + im * P;
    for (int64_t c = 0; c < g->in_c; c++)
      for (int64_t ki = 0; ki < g->kernel_h; ki++)
        for (int64_t kj = 0; kj < g->kernel_w; kj++) {
          float *row = ci + ((c * g->kernel_h + ki) * g->kernel_w + kj) * n * P;
          /* The output columns [ow0, ow1] whose input column
           * iw = ow*sw + off lies inside the image (as in col2im). */
          const int64_t sw = g->stride_w,
                        off = kj * g->dilation_w - g->pad_left;
          int64_t ow0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
          int64_t ow1 = g->in_w - 1 - off < 0 ? -1 : (g->in_w - 1 - off) / sw;
          if (ow1 > g->out_w - 1)
            ow1 = g->out_w - 1;
          for (int64_t oh = 0; oh < g->out_h; oh++) {
            int64_t ih = oh * g->stride_h - g->pad_top + ki * g->dilation_h;
            float *dst = row + oh * g->out_w;
            if (ih < 0 || ih >= g->in_h) {
              memset(dst, 0, (size_t)g->out_w * sizeof(float));
              continue;
            }
            const float *src = xi + (c * g->in_h + ih) * g->in_w;
            /* Zeros left and right of [ow0, ow1], a plain copy between at
             * stride 1 (the common case, which dominates backward passes
             * done as convolutions). */
            for (int64_t ow = 0; ow < ow0 && ow < g->out_w; ow++)
              dst[ow] = 0.0f;
            if (sw == 1 && ow0 <= ow1)
              memcpy(dst + ow0, src + ow0 + off,
                     (size_t)(ow1 - ow0 + 1) * sizeof(float));
            else
              for (int64_t ow = ow0; ow <= ow1; ow++)
                dst[ow] = src[ow * sw + off];
            for (int64_t ow = ow1 + 1 > ow0 ? ow1 + 1 : ow0; ow < g->out_w;
                 ow++)
              dst[ow] = 0.0f;
          }
        }
  }
  return SB_OK;
}

static int cpu_col2im(SbDevice *dev, const SbConvGeom *g, int64_t n,
                      const float *cols, float *x) {
  const int64_t P = g->out_h * g->out_w;
  const int64_t img = g->in_c * g->in_h * g->in_w;
  /* Kernel position outermost, images inside: each (c, ki, kj) row of
   * cols is n*P contiguous floats, read in order, where the image loop
   * outermost jumped n*P floats between kernel positions. Every pixel
   * still receives its terms in the same (ki, kj) order, so the sums are
   * bitwise those of the other order. */
  for (int64_t c = 0; c < g->in_c; c++)
    for (int64_t ki = 0; ki < g->kernel_h; ki++)
      for (int64_t kj = 0; kj < g->kernel_w; kj++) {
        const float *row =
            cols + ((c * g->kernel_h + ki) * g->kernel_w + kj) * n * P;
        /* The output columns whose input column iw = ow*sw - pl + kj*dw
         * lies inside the image, found once per kernel column so that the
         * inner loop has no test (and is a plain vector add at stride 1). */
        const int64_t sw = g->stride_w, off = kj * g->dilation_w - g->pad_left;
        int64_t ow0 = off >= 0 ? 0 : (-off + sw - 1) / sw;
        int64_t ow1 = g->in_w - 1 - off < 0 ? -1 : (g->in_w - 1 - off) / sw;
        if (ow1 > g->out_w - 1)
          ow1 = g->out_w - 1;
        if (ow0 > ow1)
          continue;
        for (int64_t im = 0; im < n; im++) {
          const float *ci = row + im * P;
          float *xc = x + im * img + c * g->in_h * g->in_w;
          for (int64_t oh = 0; oh < g->out_h; oh++) {
            int64_t ih = oh * g->stride_h - g->pad_top + ki * g->dilation_h;
            if (ih < 0 || ih >= g->in_h)
              continue;
            const float *src = ci + oh * g->out_w;
            float *dst = xc + ih * g->in_w;
            if (sw == 1) {
#pragma omp simd
              for (int64_t ow = ow0; ow <= ow1; ow++)
                dst[ow + off] += src[ow];
            } else
              for (int64_t ow = ow0; ow <= ow1; ow++)
                dst[ow * sw + off] += src[ow];
          }
        }
      }
  return SB_OK;
}

static int cpu_conv_forward(SbDevice *dev, const SbConvGeom *g, int64_t n,
                            int64_t nc, const float *w, const float *x,
                            float beta, float *out) {
  return sb_cpu_conv_forward(g, n, nc, w, x, beta, out, sb_cpu_threads(),
                             dev->error, sizeof dev->error);
}

static int cpu_conv_transpose(SbDevice *dev, const SbConvGeom *g, int64_t n,
                              int64_t nc, const float *w, const float *a,
                              int accumulate, float *x, const float *shift,
                              float *bias) {
  return sb_cpu_conv_transpose(g, n, nc, w, a, accumulate, x, shift, bias,
                               sb_cpu_threads(), dev->error, sizeof dev->error);
}

static int cpu_swap_outer_axes(SbDevice *dev, int64_t a, int64_t b, int64_t c,
                               const float *src, float beta, float *dst) {
  for (int64_t j = 0; j < b; j++)
    for (int64_t i = 0; i < a; i++) {
      const float *s = src + (i * b + j) * c;
      float *d = dst + (j * a + i) * c;
      if (beta == 0.0f)
        memcpy(d, s, (size_t)c * sizeof(float));
      else
        for (int64_t k = 0; k < c; k++)
          d[k] = s[k] + beta * d[k];
    }
  return SB_OK;
}

/* One row of relu_backward_vjp, any optional array NULL or not (the
 * general case; its loop does not vectorise, one element at a time). */
static inline __attribute__((always_inline)) void
relu_backward_vjp_row(int lower_side, int64_t N, const float *a,
                      const float *lines, const float *al, const float *gi,
                      float gb, int accumulate_A, float *da,
                      int accumulate_alpha, float *dal) {
  for (int64_t n = 0; n < N; n++) {
    float va, vl;
    sb_relu_lines_backward_vjp(lower_side, a[n], relu_lines_at(lines, N, n),
                               al != NULL, al ? al[n] : 0.0f, gi ? gi[n] : 0.0f,
                               gb, &va, &vl);
    da[n] = accumulate_A ? da[n] + va : va;
    if (dal)
      dal[n] = accumulate_alpha ? dal[n] + vl : vl;
  }
}

/* The row of alpha-CROWN's and branch-and-bound's optimisation steps:
 * every array there and both gradients overwritten. Inlined where the
 * side is known, the loop has no conditional load or store and
 * vectorises. */
static inline __attribute__((always_inline)) void
relu_backward_vjp_row_alpha(int lower_side, int64_t N, const float *a,
                            const float *lines, const float *al,
                            const float *gi, float gb, float *da, float *dal) {
#pragma omp simd
  for (int64_t n = 0; n < N; n++)
    sb_relu_lines_backward_vjp(lower_side, a[n], relu_lines_at(lines, N, n), 1,
                               al[n], gi[n], gb, da + n, dal + n);
}

SB_CPU_CLONES
static int cpu_relu_backward_vjp(SbDevice *dev, int side, int64_t S, int64_t B,
                                 int64_t N, const float *A, const float *lower,
                                 const float *upper, const float *alpha,
                                 const float *G, const float *g,
                                 int accumulate_A, float *grad_A,
                                 int accumulate_alpha, float *grad_alpha) {
  const int lower_side = side == SB_SIDE_LOWER;
  float *lines = relu_lines_alloc(dev, "relu backward VJP", N);
  if (lines == NULL)
    return SB_ERR_OUT_OF_MEMORY;
  const int optimising =
      alpha && G && grad_alpha && !accumulate_A && !accumulate_alpha;
  for (int64_t b = 0; b < B; b++) {
    relu_lines(N, lower + b * N, upper + b * N, lines);
    for (int64_t s = 0; s < S; s++) {
      const int64_t row = s * B + b;
      const float *a = A + row * N;
      const float gb = g ? g[row] : 1.0f;
      float *da = grad_A + row * N;
      if (optimising && lower_side)
        relu_backward_vjp_row_alpha(1, N, a, lines, alpha + row * N,
                                    G + row * N, gb, da, grad_alpha + row * N);
      else if (optimising)
        relu_backward_vjp_row_alpha(0, N, a, lines, alpha + row * N,
                                    G + row * N, gb, da, grad_alpha + row * N);
      else
        relu_backward_vjp_row(
            lower_side, N, a, lines, alpha ? alpha + row * N : NULL,
            G ? G + row * N : NULL, gb, accumulate_A, da, accumulate_alpha,
            grad_alpha ? grad_alpha + row * N : NULL);
    }
  }
  free(lines);
  return SB_OK;
}

SB_CPU_CLONES
static int cpu_concretize_vjp(SbDevice *dev, int side, int64_t S, int64_t B,
                              int64_t N, const float *A, const float *lower,
                              const float *upper, const float *g,
                              float *grad_A) {
  const float sign = side == SB_SIDE_LOWER ? -1.0f : 1.0f;
  for (int64_t s = 0; s < S; s++)
    for (int64_t b = 0; b < B; b++) {
      const int64_t row = s * B + b;
      const float *a = A + row * N;
      const float *l = lower + b * N, *u = upper + b * N;
      const float gr = g ? g[row] : 1.0f;
      float *d = grad_A + row * N;
#pragma omp simd
      for (int64_t n = 0; n < N; n++) {
        float sa = a[n] > 0.0f ? 1.0f : a[n] < 0.0f ? -1.0f : 0.0f;
        d[n] = gr * (sb_box_centre(l[n], u[n]) +
                     sign * sa * sb_box_radius(l[n], u[n]));
      }
    }
  return SB_OK;
}

static int cpu_relu_init_alpha(SbDevice *dev, int64_t S, int64_t B, int64_t N,
                               const float *lower, const float *upper,
                               float *alpha) {
  const int64_t BN = B * N;
  for (int64_t i = 0; i < BN; i++)
    alpha[i] = sb_relu_default_alpha(lower[i], upper[i]);
  for (int64_t s = 1; s < S; s++)
    memcpy(alpha + s * BN, alpha, (size_t)BN * sizeof(float));
  return SB_OK;
}

SB_CPU_CLONES
static int cpu_adam_step(SbDevice *dev, int64_t n, float *param,
                         const float *grad, float *m, float *v,
                         const sb_adam_args_v1 *a) {
  const float b1 = a->beta1, b2 = a->beta2;
  const float c1 = 1.0f - powf(b1, (float)a->step);
  const float c2 = 1.0f - powf(b2, (float)a->step);
  const float lr = a->learning_rate, eps = a->epsilon;
  const float lo = a->clamp_min, hi = a->clamp_max;
  const float sign = a->maximize ? -1.0f : 1.0f;
  /* A sixth of branch-and-bound's time was this loop's divisions and
   * square roots one at a time. The four arrays never overlap. */
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    float gi = sign * grad[i];
    m[i] = b1 * m[i] + (1.0f - b1) * gi;
    v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
    float p = param[i] - lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    /* fminf(fmaxf(p, lo), hi), NaN included, without library calls. */
    float q = p >= lo ? p : lo;
    param[i] = q <= hi ? q : hi;
  }
  return SB_OK;
}

SB_CPU_CLONES
static int cpu_beta_apply(SbDevice *dev, int side, int64_t S, int64_t B,
                          int64_t N, const float *beta, const float *sign,
                          float *A) {
  const float d = side == SB_SIDE_LOWER ? 1.0f : -1.0f;
  const int64_t BN = B * N;
  /* The arrays never overlap; unsaid, the compiler kept this loop (3% of
   * an MLP's branch-and-bound) one element at a time. */
  for (int64_t s = 0; s < S; s++) {
    float *a = A + s * BN;
    const float *bs = beta + s * BN;
#pragma omp simd
    for (int64_t i = 0; i < BN; i++)
      a[i] += d * bs[i] * sign[i];
  }
  return SB_OK;
}

SB_CPU_CLONES
static int cpu_beta_vjp(SbDevice *dev, int side, int64_t S, int64_t B,
                        int64_t N, const float *grad_A, const float *sign,
                        int accumulate, float *grad_beta) {
  const float d = side == SB_SIDE_LOWER ? 1.0f : -1.0f;
  const int64_t BN = B * N;
  /* As in cpu_beta_apply: the arrays never overlap. */
  for (int64_t s = 0; s < S; s++) {
    const float *g = grad_A + s * BN;
    float *gb = grad_beta + s * BN;
#pragma omp simd
    for (int64_t i = 0; i < BN; i++) {
      float v = d * g[i] * sign[i];
      gb[i] = accumulate ? gb[i] + v : v;
    }
  }
  return SB_OK;
}

static int cpu_channel_bias_vjp(SbDevice *dev, int64_t rows, int64_t channels,
                                int64_t spatial, const float *shift,
                                const float *g, float *y) {
  for (int64_t r = 0; r < rows; r++) {
    const float gr = g ? g[r] : 1.0f;
    if (spatial == 1) { /* a dense layer: one vector per row */
      float *yr = y + r * channels;
#pragma omp simd
      for (int64_t c = 0; c < channels; c++)
        yr[c] += gr * shift[c];
      continue;
    }
    for (int64_t c = 0; c < channels; c++) {
      const float v = gr * shift[c];
      float *ys = y + (r * channels + c) * spatial;
#pragma omp simd
      for (int64_t k = 0; k < spatial; k++)
        ys[k] += v;
    }
  }
  return SB_OK;
}

static int cpu_nonzero_cols(SbDevice *dev, int64_t rows, int64_t cols,
                            const float *A, int64_t lda, int64_t *index,
                            int64_t *count) {
  /* index doubles as the per-column flag array until the final compaction,
   * so the scan needs no allocation. */
  for (int64_t j = 0; j < cols; j++)
    index[j] = 0;
  for (int64_t r = 0; r < rows; r++) {
    const float *a = A + r * lda;
#pragma omp simd
    for (int64_t j = 0; j < cols; j++)
      index[j] |= a[j] != 0.0f; /* NaN != 0 too */
  }
  int64_t k = 0;
  for (int64_t j = 0; j < cols; j++)
    if (index[j])
      index[k++] = j;
  *count = k;
  return SB_OK;
}

#ifdef SB_CPU_V4
/* Columns per mask of gather_cols_compressed: one AVX-512 register. */
#define SB_GATHER_LANES 16

/* gather_cols for indices in ascending order: every row takes the same
 * columns, so each block of 16 columns gets its lane mask once, and a
 * row is then a masked load, a compress and a masked store per block.
 * About twice the scalar loop's rate (5.3 against 2.5 floats per ns, 256
 * rows of 256 columns, 60% live); the same floats in the same places.
 * (The compress goes through a register: its memory form is slow on some
 * AMD cores.) Returns 0, having written nothing, when the indices are
 * not ascending or the masks do not fit on the stack. */
__attribute__((target("arch=x86-64-v4"))) static int
gather_cols_compressed(int64_t rows, const float *src, int64_t lds, int64_t k,
                       const int64_t *index, float *dst) {
  enum { MAX_BLOCKS = 1024 }; /* 16,384 columns */
  uint16_t mask[MAX_BLOCKS];
  const int64_t blocks = index[k - 1] / SB_GATHER_LANES + 1;
  if (blocks > MAX_BLOCKS)
    return 0;
  memset(mask, 0, sizeof(uint16_t) * (size_t)blocks);
  for (int64_t j = 0; j < k; j++) {
    if (index[j] < 0 || (j > 0 && index[j] <= index[j - 1]))
      return 0;
    mask[index[j] / SB_GATHER_LANES] |=
        (uint16_t)(1u << (index[j] % SB_GATHER_LANES));
  }
  for (int64_t r = 0; r < rows; r++) {
    const float *s = src + r * lds;
    float *d = dst + r * k;
    for (int64_t c = 0; c < blocks; c++) {
      const __mmask16 m = mask[c];
      if (m == 0)
        continue;
      /* Lanes outside the mask are not read: no access past a row. */
      const __m512 v = _mm512_maskz_loadu_ps(m, s + c * SB_GATHER_LANES);
      const int n = __builtin_popcount(m);
      _mm512_mask_storeu_ps(d, (__mmask16)((1u << n) - 1),
                            _mm512_maskz_compress_ps(m, v));
      d += n;
    }
  }
  return 1;
}
#endif

static int cpu_gather_cols(SbDevice *dev, int64_t rows, const float *src,
                           int64_t lds, int64_t k, const int64_t *index,
                           float *dst) {
#ifdef SB_CPU_V4
  if (k > 0 && sb_cpu_has_v4() &&
      gather_cols_compressed(rows, src, lds, k, index, dst))
    return SB_OK;
#endif
  for (int64_t r = 0; r < rows; r++) {
    const float *s = src + r * lds;
    float *d = dst + r * k;
    for (int64_t j = 0; j < k; j++)
      d[j] = s[index[j]];
  }
  return SB_OK;
}

const SbDeviceOps sb_device_cpu_ops = {
    .name = "cpu",
    .open = cpu_open,
    .close = cpu_close,
    .last_error = cpu_last_error,
    .used_bytes = cpu_used_bytes,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .sgemm = cpu_sgemm,
    .sgemm_strided_batched = cpu_sgemm_strided_batched,
    .abs = cpu_abs,
    .add = cpu_add,
    .box_to_centre_radius = cpu_box_to_centre_radius,
    .centre_radius_to_box = cpu_centre_radius_to_box,
    .add_bias_rows = cpu_add_bias_rows,
    .affine_forward = cpu_affine_forward,
    .affine_backward = cpu_affine_backward,
    .channel_bias_backward = cpu_channel_bias_backward,
    .relu_forward = cpu_relu_forward,
    .relu_ibp = cpu_relu_ibp,
    .relu_backward = cpu_relu_backward,
    .concretize = cpu_concretize,
    .set_unit_rows = cpu_set_unit_rows,
    .im2col = cpu_im2col,
    .col2im = cpu_col2im,
    .swap_outer_axes = cpu_swap_outer_axes,
    .relu_backward_vjp = cpu_relu_backward_vjp,
    .concretize_vjp = cpu_concretize_vjp,
    .relu_init_alpha = cpu_relu_init_alpha,
    .adam_step = cpu_adam_step,
    .beta_apply = cpu_beta_apply,
    .beta_vjp = cpu_beta_vjp,
    .channel_bias_vjp = cpu_channel_bias_vjp,
    .nonzero_cols = cpu_nonzero_cols,
    .gather_cols = cpu_gather_cols,
    .conv_forward = cpu_conv_forward,
    .conv_transpose = cpu_conv_transpose,
};
