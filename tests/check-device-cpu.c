/* SPDX-License-Identifier: MIT */
/* The CPU device's column gather (gather_cols), which a linear layer's
 * products use to multiply only the live columns of their coefficients:
 * on a CPU with AVX-512 it takes ascending columns 16 at a time with
 * masks (device_cpu.c, gather_cols_compressed), else one at a time. Both
 * must put exactly src[r*lds + index[j]] at dst[r*k + j], whatever the
 * pattern of columns, and write nothing else. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/device_cpu.h"

/* Guard floats after dst: a gather must leave them alone. */
#define GUARD 32

static SbDevice *open_device(void) {
  SbDevice *dev = NULL;
  char error[256];
  ck_assert_int_eq(sb_device_cpu_ops.open(0, &dev, error, sizeof error), SB_OK);
  return dev;
}

/* Gathers `k` columns given by `index` from a rows x cols source stored
 * with row stride lds (the source ends exactly at its last row's end, so
 * a read past it is one a sanitizer sees) and checks every float. */
static void check_gather(SbDevice *dev, int64_t rows, int64_t cols, int64_t lds,
                         int64_t k, const int64_t *index) {
  const int64_t n_src = (rows - 1) * lds + cols;
  float *src = malloc(sizeof(float) * (size_t)n_src);
  float *dst = malloc(sizeof(float) * (size_t)(rows * k + GUARD));
  ck_assert(src != NULL && dst != NULL);
  for (int64_t i = 0; i < n_src; i++)
    src[i] = (float)i + 0.5f;
  for (int64_t i = 0; i < rows * k + GUARD; i++)
    dst[i] = -1.0f;
  ck_assert_int_eq(
      sb_device_cpu_ops.gather_cols(dev, rows, src, lds, k, index, dst), SB_OK);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < k; j++)
      ck_assert_msg(dst[r * k + j] == src[r * lds + index[j]],
                    "rows %lld, cols %lld, k %lld: dst[%lld][%lld] is %g, not "
                    "column %lld's %g",
                    (long long)rows, (long long)cols, (long long)k,
                    (long long)r, (long long)j, dst[r * k + j],
                    (long long)index[j], src[r * lds + index[j]]);
  for (int64_t i = rows * k; i < rows * k + GUARD; i++)
    ck_assert_msg(dst[i] == -1.0f, "wrote past dst's %lld floats",
                  (long long)(rows * k));
  free(src);
  free(dst);
}

/* Ascending random columns, each kept with probability `keep`, and the
 * edge patterns of 16-column blocks: all, none but the last, the first
 * and the last of each block. */
START_TEST(test_gather_cols_takes_ascending_columns_exactly) {
  static const int64_t widths[] = {1, 15, 16, 17, 64, 100, 784, 1000};
  static const int64_t heights[] = {1, 3, 33};
  static const double keeps[] = {1.0, 0.6, 0.1};
  SbDevice *dev = open_device();
  srand(7);
  for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
    const int64_t cols = widths[w];
    int64_t *index = malloc(sizeof(int64_t) * (size_t)cols);
    for (size_t h = 0; h < sizeof heights / sizeof *heights; h++) {
      const int64_t rows = heights[h];
      for (int pad = 0; pad <= 5; pad += 5) {
        for (size_t p = 0; p < sizeof keeps / sizeof *keeps; p++) {
          int64_t k = 0;
          for (int64_t j = 0; j < cols; j++)
            if (keeps[p] == 1.0 || rand() < keeps[p] * RAND_MAX)
              index[k++] = j;
          if (k > 0)
            check_gather(dev, rows, cols, cols + pad, k, index);
        }
        int64_t k = 0;
        for (int64_t j = 0; j < cols; j++)
          if (j % 16 == 0 || j % 16 == 15)
            index[k++] = j;
        check_gather(dev, rows, cols, cols + pad, k, index);
        index[0] = cols - 1;
        check_gather(dev, rows, cols, cols + pad, 1, index);
      }
    }
    free(index);
  }
  sb_device_cpu_ops.close(dev);
}
END_TEST

/* Columns out of order, repeated, or beyond what the masked path covers
 * (16,384 columns) are gathered as given too. */
START_TEST(test_gather_cols_takes_any_columns_as_given) {
  SbDevice *dev = open_device();
  static const int64_t unordered[] = {5, 3, 9, 9, 0, 31, 16};
  check_gather(dev, 4, 40, 40, 7, unordered);
  static const int64_t far[] = {2, 17, 20000};
  check_gather(dev, 2, 20001, 20001, 3, far);
  sb_device_cpu_ops.close(dev);
}
END_TEST

int main(void) {
  Suite *s = suite_create("device_cpu");
  TCase *tc = tcase_create("gather");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_gather_cols_takes_ascending_columns_exactly);
  tcase_add_test(tc, test_gather_cols_takes_any_columns_as_given);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
