/* SPDX-License-Identifier: MIT */
/* How the CPU device opens OpenBLAS (blas_cpu.c): not before it is asked
 * for, then with its own symbols first, so that a function of the
 * same name elsewhere in the process (here: this program's xerbla_, BLAS's
 * error handler) does not capture OpenBLAS's calls; unless something
 * interposes malloc, as the sanitizers do. This program does not link
 * OpenBLAS. */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <gnu/lib-names.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/blas_cpu.h"

static int loaded(const char *soname) {
  void *so = dlopen(soname, RTLD_LAZY | RTLD_NOLOAD);
  if (so != NULL)
    dlclose(so);
  return so != NULL;
}

START_TEST(test_openblas_opens_when_asked_for) {
  const char *fork_mode = getenv("CK_FORK");
  if (fork_mode == NULL || strcmp(fork_mode, "no") != 0)
    ck_assert_msg(!loaded(SB_OPENBLAS_SONAME), "%s is loaded already",
                  SB_OPENBLAS_SONAME);
  SbCpuSgemmFn *sgemm = sb_cpu_blas_sgemm();
  ck_assert_msg(sgemm != NULL, "%s", sb_cpu_blas_error());
  ck_assert(loaded(SB_OPENBLAS_SONAME));
  ck_assert_int_ge(sb_cpu_threads(), 1);

  const float a[2 * 3] = {1, 2, 3, 4, 5, 6}, b[3 * 2] = {1, 0, 0, 1, 1, 1};
  float c[2 * 2] = {0};
  sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 3, 1.0f, a, 3, b, 2,
        0.0f, c, 2);
  const float want[2 * 2] = {4, 5, 10, 11};
  ck_assert(memcmp(c, want, sizeof c) == 0);
}
END_TEST

/* BLAS reports an illegal argument through xerbla_. This one is in the
 * program's dynamic symbol table (local.mk exports it), where the dynamic
 * linker looks first unless OpenBLAS was opened with its own symbols
 * first. */
static int xerbla_calls;
void xerbla_(const char *routine, const int *info, int length);
void xerbla_(const char *routine, const int *info, int length) {
  (void)routine;
  (void)info;
  (void)length;
  xerbla_calls++;
}

static int malloc_is_interposed(void) {
  void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
  ck_assert_ptr_nonnull(libc);
  const int interposed = dlsym(RTLD_DEFAULT, "malloc") != dlsym(libc, "malloc");
  dlclose(libc);
  return interposed;
}

START_TEST(test_openblas_calls_its_own_functions_first) {
  SbCpuSgemmFn *sgemm = sb_cpu_blas_sgemm();
  ck_assert_msg(sgemm != NULL, "%s", sb_cpu_blas_error());
  float a[4] = {0}, b[4] = {0}, c[4] = {0};
  /* lda 1 < k 2: OpenBLAS refuses it through xerbla_, and prints why. */
  sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.0f, a, 1, b, 2,
        0.0f, c, 2);
  if (malloc_is_interposed())
    ck_assert_int_eq(xerbla_calls, 1);
  else
    ck_assert_msg(xerbla_calls == 0,
                  "OpenBLAS called this program's xerbla_, not its own");
}
END_TEST

int main(void) {
  Suite *s = suite_create("blas_cpu");
  TCase *tc = tcase_create("open");
  tcase_add_test(tc, test_openblas_opens_when_asked_for);
  tcase_add_test(tc, test_openblas_calls_its_own_functions_first);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
