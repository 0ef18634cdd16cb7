/* SPDX-License-Identifier: MIT */
/* The conv operator's backward step (sb_conv_transpose) both ways it can
 * run: through the CPU device's own kernel (conv_transpose_cpu.c) and
 * through sgemm with W^T and col2im, the path of a device without that
 * kernel (CUDA). Both must match a float64 transposed convolution, over
 * and into existing coefficients, for whole layers and for a channel range
 * (tensor parallelism's shard). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/conv_transpose_cpu.h"
#include "backends/common/device_cpu.h"
#include "backends/common/layer.h"

typedef struct {
  SbConvGeom g;
  int64_t c0, nc; /* the output channels the coefficients cover */
  const char *what;
} Case;

/* in channels, height, width; out channels; kernel; stride; pads top,
 * left, bottom, right; dilation (out_h and out_w are completed below). */
#define GEOM(ic, ih, iw, oc, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw)           \
  {                                                                            \
    .in_c = ic, .in_h = ih, .in_w = iw, .out_c = oc, .kernel_h = kh,           \
    .kernel_w = kw, .stride_h = sh, .stride_w = sw, .pad_top = pt,             \
    .pad_left = pl, .pad_bottom = pb, .pad_right = pr, .dilation_h = dh,       \
    .dilation_w = dw, .groups = 1                                              \
  }

static const Case cases[] = {
    {GEOM(3, 32, 32, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1), 0, 8,
     "resnet_2b stem: RGB, stride 2"},
    {GEOM(16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0, 16,
     "resnet_2b block: 16 channels, stride 1"},
    {GEOM(8, 16, 16, 16, 1, 1, 2, 2, 0, 0, 0, 0, 1, 1), 0, 16,
     "1x1 shortcut at stride 2: a column phase no tap reaches"},
    {GEOM(3, 32, 32, 8, 4, 4, 2, 2, 1, 1, 1, 1, 1, 1), 0, 8,
     "oval21: kernel 4, stride 2"},
    {GEOM(12, 7, 19, 5, 3, 2, 1, 1, 2, 0, 0, 1, 1, 2), 0, 5,
     "12 channels, asymmetric pads, dilation 2, width 19"},
    {GEOM(5, 9, 26, 6, 2, 3, 3, 3, 0, 1, 1, 0, 1, 1), 0, 6,
     "stride 3: image columns no output reaches"},
    {GEOM(16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 5, 6,
     "a channel range (a tensor-parallel shard)"},
};

static SbConvGeom complete(SbConvGeom g) {
  g.out_h = (g.in_h + g.pad_top + g.pad_bottom -
             g.dilation_h * (g.kernel_h - 1) - 1) /
                g.stride_h +
            1;
  g.out_w = (g.in_w + g.pad_left + g.pad_right -
             g.dilation_w * (g.kernel_w - 1) - 1) /
                g.stride_w +
            1;
  return g;
}

static float frand(unsigned *state) {
  return (float)rand_r(state) / (float)RAND_MAX * 2.0f - 1.0f;
}

/* x[r] += sum of w[oc, ic, kh, kw] a[r, oc, oh, ow], in float64. */
static void reference(const SbConvGeom *g, int64_t R, int64_t nc,
                      const float *w, const float *a, double *x) {
  const int64_t P = g->out_h * g->out_w, in = g->in_c * g->in_h * g->in_w;
  for (int64_t r = 0; r < R; r++)
    for (int64_t oc = 0; oc < nc; oc++)
      for (int64_t oh = 0; oh < g->out_h; oh++)
        for (int64_t ow = 0; ow < g->out_w; ow++) {
          double v = a[(r * nc + oc) * P + oh * g->out_w + ow];
          for (int64_t ic = 0; ic < g->in_c; ic++)
            for (int64_t kh = 0; kh < g->kernel_h; kh++)
              for (int64_t kw = 0; kw < g->kernel_w; kw++) {
                int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dilation_h;
                int64_t iw =
                    ow * g->stride_w - g->pad_left + kw * g->dilation_w;
                if (ih < 0 || ih >= g->in_h || iw < 0 || iw >= g->in_w)
                  continue;
                x[r * in + (ic * g->in_h + ih) * g->in_w + iw] +=
                    v *
                    w[((oc * g->in_c + ic) * g->kernel_h + kh) * g->kernel_w +
                      kw];
              }
        }
}

static void check_path(const SbDeviceOps *ops, const char *path) {
  char error[256] = "";
  SbDevice *dev = NULL;
  ck_assert_int_eq(sb_device_cpu_ops.open(0, &dev, error, sizeof error), SB_OK);
  SbMemTracker mem;
  ck_assert_int_eq(sb_mem_tracker_init(&mem), 0);
  SbExec x = {ops, dev, &mem, error, sizeof error};
  unsigned seed = 11;
  const int64_t R = 5;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const Case *c = &cases[ci];
    struct sb_layer l;
    memset(&l, 0, sizeof l);
    l.conv = complete(c->g);
    const SbConvGeom *g = &l.conv;
    const int64_t P = g->out_h * g->out_w, in = g->in_c * g->in_h * g->in_w;
    l.in_size = in;
    l.out_size = g->out_c * P;
    const int64_t wn = c->nc * g->in_c * g->kernel_h * g->kernel_w;
    /* The layer's weights are those of its channels [c0, c0 + nc). */
    float *w = malloc(wn * sizeof *w), *a = malloc(R * c->nc * P * sizeof *a);
    float *out = malloc(R * in * sizeof *out);
    double *want = calloc(R * in, sizeof *want);
    for (int64_t i = 0; i < wn; i++)
      w[i] = frand(&seed);
    for (int64_t i = 0; i < R * c->nc * P; i++)
      a[i] = frand(&seed);
    l.weight.ptr = w;
    l.weight.bytes = wn * sizeof *w;
    for (int accumulate = 0; accumulate < 2; accumulate++) {
      for (int64_t i = 0; i < R * in; i++) {
        out[i] = accumulate ? frand(&seed) : NAN;
        want[i] = accumulate ? out[i] : 0.0;
      }
      reference(g, R, c->nc, w, a, want);
      ck_assert_msg(sb_conv_transpose(&x, &l, c->c0, c->nc, R, a, accumulate,
                                      out) == SB_OK,
                    "%s, %s: %s", path, c->what, error);
      for (int64_t i = 0; i < R * in; i++)
        ck_assert_msg(fabs(out[i] - want[i]) <= 1e-5 * (1 + fabs(want[i])) *
                                                    c->nc * g->kernel_h *
                                                    g->kernel_w,
                      "%s, %s, accumulate %d: x[%lld] = %.8g, float64 %.8g",
                      path, c->what, accumulate, (long long)i, out[i], want[i]);
    }
    free(w), free(a), free(out), free(want);
  }
  sb_mem_tracker_destroy(&mem);
  sb_device_cpu_ops.close(dev);
}

START_TEST(test_cpu_kernel_matches_float64) {
  ck_assert_ptr_nonnull(sb_device_cpu_ops.conv_transpose);
  check_path(&sb_device_cpu_ops, "CPU kernel");
}
END_TEST

START_TEST(test_gemm_and_col2im_match_float64) {
  SbDeviceOps without = sb_device_cpu_ops;
  without.conv_transpose = NULL;
  check_path(&without, "sgemm + col2im");
}
END_TEST

/* Rows shared among threads come out bitwise as one thread's. */
START_TEST(test_cpu_kernel_threads_change_nothing) {
  const SbConvGeom g =
      complete((SbConvGeom)GEOM(3, 32, 32, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1));
  const int64_t R = 100, P = g.out_h * g.out_w, in = g.in_c * g.in_h * g.in_w;
  const int64_t wn = g.out_c * g.in_c * g.kernel_h * g.kernel_w;
  unsigned seed = 5;
  float *w = malloc(wn * sizeof *w), *a = malloc(R * g.out_c * P * sizeof *a);
  float *one = malloc(R * in * sizeof *one),
        *many = malloc(R * in * sizeof *many);
  for (int64_t i = 0; i < wn; i++)
    w[i] = frand(&seed);
  for (int64_t i = 0; i < R * g.out_c * P; i++)
    a[i] = frand(&seed);
  char error[256];
  ck_assert_int_eq(sb_cpu_conv_transpose(&g, R, g.out_c, w, a, 0, one, 1, error,
                                         sizeof error),
                   SB_OK);
  ck_assert_int_eq(sb_cpu_conv_transpose(&g, R, g.out_c, w, a, 0, many, 3,
                                         error, sizeof error),
                   SB_OK);
  ck_assert_msg(memcmp(one, many, R * in * sizeof *one) == 0,
                "three threads changed the result");
  free(w), free(a), free(one), free(many);
}
END_TEST

int main(void) {
  Suite *s = suite_create("conv-transpose");
  TCase *tc = tcase_create("paths");
  tcase_add_test(tc, test_cpu_kernel_matches_float64);
  tcase_add_test(tc, test_gemm_and_col2im_match_float64);
  tcase_add_test(tc, test_cpu_kernel_threads_change_nothing);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
