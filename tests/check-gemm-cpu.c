/* SPDX-License-Identifier: MIT */
/* The CPU device's matrix products (gemm_cpu.c): a product split across
 * threads along its rows is bitwise the one-thread product, and along its
 * columns the same within rounding (bitwise with most OpenBLAS kernels, not
 * Haswell's or Zen's), for every transposition, into a block of a larger
 * C; small products are not split; one row of C is OpenBLAS's sgemv, within
 * rounding of its sgemm; OpenBLAS is left on one thread with its
 * count taken over by the backend; and its packing buffer starts with a huge
 * page. This program does not link OpenBLAS: it calls the backends' module
 * of it, the one the device opens (blas_cpu.c), found by its name through
 * LD_LIBRARY_PATH. */
#include <cblas.h>
#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#include "backends/common/gemm_cpu.h"

/* The device's OpenBLAS, opened here first where a test needs it to be. */
static const SbOpenblasModule *openblas(void) {
  void *so = dlopen(SB_OPENBLAS_MODULE_FILE, RTLD_LAZY | RTLD_LOCAL);
  ck_assert_msg(so != NULL, "%s", dlerror());
  SbOpenblasModuleGetFn *get;
  *(void **)&get = dlsym(so, SB_OPENBLAS_MODULE_SYMBOL);
  ck_assert_ptr_nonnull(get);
  return get();
}

static float frand(unsigned *seed) {
  *seed = *seed * 1103515245u + 12345u;
  return (float)((*seed >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static float *random_floats(size_t n, unsigned seed) {
  float *x = malloc(n * sizeof *x);
  ck_assert_ptr_nonnull(x);
  for (size_t i = 0; i < n; i++)
    x[i] = frand(&seed);
  return x;
}

/* C is m x n inside a wider array (ldc = n + 3) that starts nonzero
 * (beta 0.5 reads it); A and B likewise have 5 spare columns. */
static void check_split(int trans_a, int trans_b, int m, int n, int k,
                        int threads, int want_parts, int bitwise) {
  const int lda = (trans_a ? m : k) + 5, ldb = (trans_b ? k : n) + 5,
            ldc = n + 3;
  const size_t a_rows = trans_a ? k : m, b_rows = trans_b ? n : k;
  float *a = random_floats(a_rows * lda, 1),
        *b = random_floats(b_rows * ldb, 2);
  float *one = random_floats((size_t)m * ldc, 3);
  float *split = malloc((size_t)m * ldc * sizeof *split);
  ck_assert_ptr_nonnull(split);
  memcpy(split, one, (size_t)m * ldc * sizeof *one);

  (void)sb_cpu_threads(); /* OpenBLAS on one thread, as the device runs it */
  openblas()->sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, m, n, k, 1.5f, a, lda,
                    b, ldb, 0.5f, one, ldc);
  const int parts = sb_cpu_sgemm_split(threads, trans_a, trans_b, m, n, k, 1.5f,
                                       a, lda, b, ldb, 0.5f, split, ldc);
  ck_assert_int_eq(parts, want_parts);
  if (bitwise)
    ck_assert_msg(memcmp(one, split, (size_t)m * ldc * sizeof *one) == 0,
                  "%d parts changed the product %s%s %dx%dx%d", parts,
                  trans_a ? "T" : "N", trans_b ? "T" : "N", m, n, k);
  /* Rounding only: a misplaced block is wrong by about its size (sums of
   * k products of numbers in [-1, 1]), the spare columns by their whole
   * value. */
  for (size_t i = 0; i < (size_t)m * ldc; i++)
    ck_assert_msg(fabsf(one[i] - split[i]) <= 1e-4f * (1.0f + fabsf(one[i])),
                  "%d parts: element %zu is %g, one thread %g", parts, i,
                  split[i], one[i]);
  free(a), free(b), free(one), free(split);
}

START_TEST(test_split_by_rows_is_bitwise_one_thread) {
  /* 1.7e8 multiply-adds, enough for 4 parts: rows 0, 192, 384, 576. */
  check_split(_i >> 1, _i & 1, 1000, 320, 520, 4, 4, 1);
}
END_TEST

/* 200 rows are one block of 192: the 3 parts are column blocks. */
START_TEST(test_split_by_columns_matches_one_thread) {
  check_split(_i >> 1, _i & 1, 200, 1100, 600, 3, 3, 0);
}
END_TEST

/* One row of C is OpenBLAS's sgemv (gemm_cpu.c), within rounding of its
 * sgemm for every transposition; with beta 0, NaN in C is cleared. */
START_TEST(test_one_row_products_match_sgemm) {
  check_split(_i >> 1, _i & 1, 1, 300, 784, 2, 1, 0);
  const float a[3] = {1, 2, 3}, b[3 * 2] = {1, 0, 0, 1, 1, 1};
  float c[2] = {NAN, NAN};
  ck_assert(sb_cpu_sgemm(0, 0, 1, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2));
  ck_assert_msg(c[0] == 4.0f && c[1] == 5.0f, "got %g %g", c[0], c[1]);
}
END_TEST

/* A part gets at least 2^25 multiply-adds and 192 rows or columns: a
 * 256x256x256 product (MNIST-sized) stays on one thread whatever is
 * allowed. */
START_TEST(test_small_products_are_not_split) {
  check_split(0, 0, 256, 256, 256, 8, 1, 1);
  check_split(0, 0, 100, 150, 20000, 8, 1, 1);
}
END_TEST

START_TEST(test_openblas_is_left_on_one_thread) {
  const int before = openblas()->get_num_threads();
  const int threads = sb_cpu_threads();
  ck_assert_int_eq(openblas()->get_num_threads(), 1);
  ck_assert_int_eq(sb_cpu_threads(), threads);
  /* The count is OpenBLAS's own, taken at the first call: this one, unless
   * the tests share one process (CK_FORK=no) and an earlier test made it,
   * leaving OpenBLAS on 1 already. */
  ck_assert(threads == before || before == 1);
}
END_TEST

/* The threads of this process, from /proc/self/status; -1 where it
 * cannot be read. */
static int process_threads(void) {
  FILE *status = fopen("/proc/self/status", "r");
  char line[256];
  int threads = -1;
  if (status == NULL)
    return -1;
  while (threads < 0 && fgets(line, sizeof line, status) != NULL)
    if (sscanf(line, "Threads: %d", &threads) != 1)
      threads = -1;
  fclose(status);
  return threads;
}

/* OpenBLAS's pthread workers spin for about 0.1 s after they start though
 * a one-thread OpenBLAS never uses them; taking over the threads stops
 * them (blas_cpu.c, take_threads_from_openblas). */
START_TEST(test_openblas_workers_are_stopped) {
#ifdef OPENBLAS_VERSION
  if (openblas()->get_parallel() != 1 || process_threads() < 0)
    return; /* not the pthread build, or no /proc */
  const char *fork_mode = getenv("CK_FORK");
  if (fork_mode != NULL && strcmp(fork_mode, "no") == 0)
    return; /* another test in this process may have taken them over */
  /* Check forks this process from one whose workers OpenBLAS's fork
   * handler stopped: two threads start them again, as a fresh process
   * loading OpenBLAS has them. */
  openblas()->set_num_threads(2);
  ck_assert_int_gt(process_threads(), 1);
  (void)sb_cpu_threads();
  ck_assert_int_eq(process_threads(), 1);
  ck_assert_int_eq(openblas()->get_num_threads(), 1);
#endif
}
END_TEST

#if defined(OPENBLAS_VERSION) && defined(MADV_HUGEPAGE)
/* Whether /proc/self/smaps flags the mapping holding `address` as advised
 * for huge pages ("hg"); -1 where no mapping holds it. */
static int advised_huge(uintptr_t address) {
  FILE *smaps = fopen("/proc/self/smaps", "r");
  char line[512];
  int inside = 0, advised = -1;
  if (smaps == NULL)
    return -1;
  while (advised < 0 && fgets(line, sizeof line, smaps) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
      inside = address >= lo && address < hi;
    else if (inside && strncmp(line, "VmFlags:", 8) == 0)
      advised = strstr(line, " hg") != NULL;
  }
  fclose(smaps);
  return advised;
}
#endif

/* The buffer OpenBLAS packs the calling thread's next product into starts
 * with a huge page (blas_cpu.c, advise_openblas_buffer): one page fault
 * instead of one per 4 KiB that a small product packs. */
START_TEST(test_openblas_buffer_is_advised_for_huge_pages) {
#if defined(OPENBLAS_VERSION) && defined(MADV_HUGEPAGE)
  FILE *thp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  if (thp == NULL)
    return; /* a kernel without transparent huge pages */
  fclose(thp);
  (void)sb_cpu_threads();
  /* The module takes them weakly; every OpenBLAS has them, and without
   * them the device cannot advise the buffer. */
  const SbOpenblasModule *blas = openblas();
  ck_assert_msg(blas->memory_alloc != NULL && blas->memory_free != NULL,
                "the OpenBLAS module lacks blas_memory_alloc or "
                "blas_memory_free");
  void *buffer = blas->memory_alloc(0);
  ck_assert_ptr_nonnull(buffer);
  const uintptr_t huge = (uintptr_t)2 << 20,
                  first = ((uintptr_t)buffer + huge - 1) & ~(huge - 1);
  const int advised = advised_huge(first);
  blas->memory_free(buffer);
  ck_assert_msg(advised == 1, "OpenBLAS's buffer at %p is %s", buffer,
                advised < 0 ? "in no mapping" : "not advised for huge pages");
#endif
}
END_TEST

int main(void) {
  Suite *s = suite_create("gemm_cpu");
  TCase *tc = tcase_create("split");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_split_by_rows_is_bitwise_one_thread, 0, 4);
  tcase_add_loop_test(tc, test_split_by_columns_matches_one_thread, 0, 4);
  tcase_add_test(tc, test_small_products_are_not_split);
  tcase_add_loop_test(tc, test_one_row_products_match_sgemm, 0, 4);
  tcase_add_test(tc, test_openblas_is_left_on_one_thread);
  tcase_add_test(tc, test_openblas_workers_are_stopped);
  tcase_add_test(tc, test_openblas_buffer_is_advised_for_huge_pages);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
