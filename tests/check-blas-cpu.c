/* SPDX-License-Identifier: MIT */
/* How the CPU device opens OpenBLAS (blas_cpu.c): from the backends' own
 * module of it, not before it is asked for; with OpenBLAS's symbols
 * hidden in that module where it carries the static archive, else opened
 * with its own symbols first; either way a function of the same name
 * elsewhere in the process (here: this program's xerbla_, BLAS's error
 * handler) does not capture OpenBLAS's calls, unless something interposes
 * malloc, as the sanitizers do, and the module links the shared library.
 * This program does not link OpenBLAS; it finds the module by its name,
 * through LD_LIBRARY_PATH, as test programs do. */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <gnu/lib-names.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/blas_cpu.h"

static int loaded(const char *name) {
  void *so = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
  if (so != NULL)
    dlclose(so);
  return so != NULL;
}

START_TEST(test_openblas_opens_when_asked_for) {
  const char *fork_mode = getenv("CK_FORK");
  if (fork_mode == NULL || strcmp(fork_mode, "no") != 0)
    ck_assert_msg(!loaded(SB_OPENBLAS_MODULE_FILE), "%s is loaded already",
                  SB_OPENBLAS_MODULE_FILE);
  SbCpuSgemmFn *sgemm = sb_cpu_blas_sgemm();
  ck_assert_msg(sgemm != NULL, "%s", sb_cpu_blas_error());
  ck_assert(loaded(SB_OPENBLAS_MODULE_FILE));
  ck_assert_int_ge(sb_cpu_threads(), 1);

  const float a[2 * 3] = {1, 2, 3, 4, 5, 6}, b[3 * 2] = {1, 0, 0, 1, 1, 1};
  float c[2 * 2] = {0};
  sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 3, 1.0f, a, 3, b, 2,
        0.0f, c, 2);
  const float want[2 * 2] = {4, 5, 10, 11};
  ck_assert(memcmp(c, want, sizeof c) == 0);
}
END_TEST

/* The module exports its table and, with the static archive, nothing of
 * OpenBLAS: no lookup of the process can reach into it, nor it out. */
START_TEST(test_module_exports_only_its_table) {
  ck_assert_msg(sb_cpu_blas_sgemm() != NULL, "%s", sb_cpu_blas_error());
  void *so = dlopen(SB_OPENBLAS_MODULE_FILE, RTLD_LAZY | RTLD_NOLOAD);
  ck_assert_ptr_nonnull(so);
  ck_assert_ptr_nonnull(dlsym(so, SB_OPENBLAS_MODULE_SYMBOL));
#if SB_OPENBLAS_STATIC
  ck_assert_msg(dlsym(so, "cblas_sgemm") == NULL,
                "the module exports OpenBLAS's cblas_sgemm");
  ck_assert_msg(dlsym(so, "xerbla_") == NULL,
                "the module exports OpenBLAS's xerbla_");
#endif
  dlclose(so);
}
END_TEST

/* BLAS reports an illegal argument through xerbla_. This one is in the
 * program's dynamic symbol table (local.mk exports it), where the dynamic
 * linker looks first for a shared OpenBLAS unless it was opened with its
 * own symbols first. */
static int xerbla_calls;
void xerbla_(const char *routine, const int *info, int length);
void xerbla_(const char *routine, const int *info, int length) {
  (void)routine;
  (void)info;
  (void)length;
  xerbla_calls++;
}

#if !SB_OPENBLAS_STATIC
static int malloc_is_interposed(void) {
  void *libc = dlopen(LIBC_SO, RTLD_LAZY | RTLD_NOLOAD);
  ck_assert_ptr_nonnull(libc);
  const int interposed = dlsym(RTLD_DEFAULT, "malloc") != dlsym(libc, "malloc");
  dlclose(libc);
  return interposed;
}
#endif

START_TEST(test_openblas_calls_its_own_functions_first) {
  SbCpuSgemmFn *sgemm = sb_cpu_blas_sgemm();
  ck_assert_msg(sgemm != NULL, "%s", sb_cpu_blas_error());
  float a[4] = {0}, b[4] = {0}, c[4] = {0};
  /* lda 1 < k 2: OpenBLAS refuses it through xerbla_, and prints why. */
  sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, 2, 2, 1.0f, a, 1, b, 2,
        0.0f, c, 2);
#if !SB_OPENBLAS_STATIC
  if (malloc_is_interposed()) {
    ck_assert_int_eq(xerbla_calls, 1);
    return;
  }
#endif
  ck_assert_msg(xerbla_calls == 0,
                "OpenBLAS called this program's xerbla_, not its own");
}
END_TEST

int main(void) {
  Suite *s = suite_create("blas_cpu");
  TCase *tc = tcase_create("open");
  tcase_add_test(tc, test_openblas_opens_when_asked_for);
  tcase_add_test(tc, test_module_exports_only_its_table);
  tcase_add_test(tc, test_openblas_calls_its_own_functions_first);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
