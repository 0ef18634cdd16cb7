/* SPDX-License-Identifier: MIT */
/* The conv operator's two products, the convolution (sb_conv_apply) and
 * the transposed convolution of the backward step (sb_conv_transpose),
 * both ways each can run: through the CPU device's own kernels
 * (conv_cpu.c) and through im2col + sgemm and sgemm + col2im, the path of
 * a device without them (CUDA). All must match float64, over and into
 * existing values, for whole layers and for a channel range (tensor
 * parallelism's shard), on dense rows and on the sparse rows of a
 * backward pass. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/conv_cpu.h"
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
    {GEOM(2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0, 3,
     "rows narrower than one run of the half-width blocks"},
    {GEOM(32, 6, 13, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0, 7,
     "32 image channels at stride 1: two blocks of 16, a partial run"},
    {GEOM(5, 7, 13, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), 0, 32,
     "32 output channels, width 13: the forward's 16-channel blocks, a "
     "partial run"},
    {GEOM(12, 11, 14, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1), 0, 6,
     "stride 2, odd height: image rows without a partner row"},
    {GEOM(8, 7, 10, 5, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1), 0, 5,
     "stride 2 across, 1 down"},
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

/* In float64: transposed, x[r] += sum of w[oc, ic, kh, kw] a[r, oc, oh,
 * ow]; forward, a[r] += sum of w[oc, ic, kh, kw] x[r, ic, ih, iw]. */
static void reference(const SbConvGeom *g, int64_t R, int64_t nc,
                      const float *w, int transpose, const float *src,
                      double *dst) {
  const int64_t P = g->out_h * g->out_w, in = g->in_c * g->in_h * g->in_w;
  for (int64_t r = 0; r < R; r++)
    for (int64_t oc = 0; oc < nc; oc++)
      for (int64_t oh = 0; oh < g->out_h; oh++)
        for (int64_t ow = 0; ow < g->out_w; ow++)
          for (int64_t ic = 0; ic < g->in_c; ic++)
            for (int64_t kh = 0; kh < g->kernel_h; kh++)
              for (int64_t kw = 0; kw < g->kernel_w; kw++) {
                int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dilation_h;
                int64_t iw =
                    ow * g->stride_w - g->pad_left + kw * g->dilation_w;
                if (ih < 0 || ih >= g->in_h || iw < 0 || iw >= g->in_w)
                  continue;
                const int64_t xi = r * in + (ic * g->in_h + ih) * g->in_w + iw;
                const int64_t ai = (r * nc + oc) * P + oh * g->out_w + ow;
                const double wv =
                    w[((oc * g->in_c + ic) * g->kernel_h + kh) * g->kernel_w +
                      kw];
                if (transpose)
                  dst[xi] += wv * src[ai];
                else
                  dst[ai] += wv * src[xi];
              }
}

/* Row r of a source [R][C][H][W], dense at r % 5 == 0 and otherwise as a
 * backward pass makes them: all zero, or non-zero only in a corner, the
 * opposite corner, or a 2x2 block of every channel near the middle (the
 * transposed kernel computes only the part of the image such a row
 * reaches). */
static void sparsify(float *row, int r, int64_t C, int64_t H, int64_t W) {
  for (int64_t c = 0; c < C; c++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t w = 0; w < W; w++) {
        int keep;
        switch (r % 5) {
        case 0:
          keep = 1;
          break;
        case 1:
          keep = 0;
          break;
        case 2:
          keep = c == 0 && h == 0 && w == 0;
          break;
        case 3:
          keep = c == C - 1 && h == H - 1 && w == W - 1;
          break;
        default:
          keep = h / 2 == (H - 1) / 4 && (w + 1) / 2 == W / 4 + 1;
        }
        if (!keep)
          row[(c * H + h) * W + w] = 0.0f;
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
    const int64_t most = R * (in > c->nc * P ? in : c->nc * P);
    float *w = malloc(wn * sizeof *w), *src = malloc(most * sizeof *src);
    float *out = malloc(most * sizeof *out);
    double *want = calloc(most, sizeof *want);
    for (int64_t i = 0; i < wn; i++)
      w[i] = frand(&seed);
    l.weight.ptr = w;
    l.weight.bytes = wn * sizeof *w;
    for (int transpose = 0; transpose < 2; transpose++)
      for (int add = 0; add < 2; add++) {
        /* Transposed: a -> x [R, in]; forward: x -> a [R, nc, P]. */
        const int64_t n_src = transpose ? R * c->nc * P : R * in;
        const int64_t n_dst = transpose ? R * in : R * c->nc * P;
        for (int64_t i = 0; i < n_src; i++)
          src[i] = frand(&seed);
        for (int64_t r = 0; r < R; r++)
          if (transpose)
            sparsify(src + r * c->nc * P, (int)r, c->nc, g->out_h, g->out_w);
          else
            sparsify(src + r * in, (int)r, g->in_c, g->in_h, g->in_w);
        for (int64_t i = 0; i < n_dst; i++) {
          out[i] = add ? frand(&seed) : NAN;
          want[i] = add ? out[i] : 0.0;
        }
        reference(g, R, c->nc, w, transpose, src, want);
        /* Transposed, the bias's term too: bias[r] += sum over channels of
         * shift[ch] times the channel's sum. */
        float shift[64], bias[R];
        double want_bias[R];
        ck_assert_int_le(c->nc, 64);
        for (int64_t ch = 0; ch < c->nc; ch++)
          shift[ch] = frand(&seed);
        for (int64_t r = 0; r < R; r++) {
          bias[r] = frand(&seed);
          want_bias[r] = bias[r];
          for (int64_t i = 0; i < c->nc * P; i++)
            want_bias[r] += (double)shift[i / P] * src[r * c->nc * P + i];
        }
        int st = transpose ? sb_conv_transpose(&x, &l, c->c0, c->nc, R, src,
                                               add, out, shift, bias)
                           : sb_conv_apply(&x, &l, c->c0, c->nc, R, w, src,
                                           add ? 1.0f : 0.0f, out);
        ck_assert_msg(st == SB_OK, "%s, %s: %s", path, c->what, error);
        for (int64_t r = 0; transpose && r < R; r++)
          ck_assert_msg(fabs(bias[r] - want_bias[r]) <=
                            1e-5 * (1 + fabs(want_bias[r])) * c->nc * P,
                        "%s, %s: bias[%lld] = %.8g, float64 %.8g", path,
                        c->what, (long long)r, bias[r], want_bias[r]);
        const double terms =
            (transpose ? c->nc : g->in_c) * g->kernel_h * g->kernel_w;
        for (int64_t i = 0; i < n_dst; i++)
          ck_assert_msg(
              fabs(out[i] - want[i]) <= 1e-5 * (1 + fabs(want[i])) * terms,
              "%s, %s, %s, %s: [%lld] = %.8g, float64 %.8g", path, c->what,
              transpose ? "transposed" : "forward",
              add ? "added to" : "overwritten", (long long)i, out[i], want[i]);
      }
    free(w), free(src), free(out), free(want);
  }
  sb_mem_tracker_destroy(&mem);
  sb_device_cpu_ops.close(dev);
}

START_TEST(test_cpu_kernels_match_float64) {
  ck_assert_ptr_nonnull(sb_device_cpu_ops.conv_forward);
  ck_assert_ptr_nonnull(sb_device_cpu_ops.conv_transpose);
  check_path(&sb_device_cpu_ops, "CPU kernels");
}
END_TEST

START_TEST(test_im2col_gemm_and_col2im_match_float64) {
  SbDeviceOps without = sb_device_cpu_ops;
  without.conv_forward = NULL;
  without.conv_transpose = NULL;
  check_path(&without, "im2col, sgemm, col2im");
}
END_TEST

/* Rows shared among threads come out bitwise as one thread's, both ways. */
START_TEST(test_cpu_kernels_threads_change_nothing) {
  const SbConvGeom g =
      complete((SbConvGeom)GEOM(3, 32, 32, 8, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1));
  const int64_t R = 100, P = g.out_h * g.out_w, in = g.in_c * g.in_h * g.in_w;
  const int64_t wn = g.out_c * g.in_c * g.kernel_h * g.kernel_w;
  const int64_t most = R * (in > g.out_c * P ? in : g.out_c * P);
  unsigned seed = 5;
  float *w = malloc(wn * sizeof *w), *src = malloc(most * sizeof *src);
  float *one = malloc(most * sizeof *one), *many = malloc(most * sizeof *many);
  for (int64_t i = 0; i < wn; i++)
    w[i] = frand(&seed);
  for (int64_t i = 0; i < most; i++)
    src[i] = frand(&seed);
  float shift[8], bias[2][100] = {{0}};
  for (int ch = 0; ch < 8; ch++)
    shift[ch] = frand(&seed);
  char error[256];
  for (int transpose = 0; transpose < 2; transpose++) {
    float *dst[2] = {one, many};
    const int threads[2] = {1, 3};
    for (int k = 0; k < 2; k++)
      ck_assert_int_eq(
          transpose
              ? sb_cpu_conv_transpose(&g, R, g.out_c, w, src, 0, dst[k], shift,
                                      bias[k], threads[k], error, sizeof error)
              : sb_cpu_conv_forward(&g, R, g.out_c, w, src, 0.0f, dst[k],
                                    threads[k], error, sizeof error),
          SB_OK);
    const int64_t n = transpose ? R * in : R * g.out_c * P;
    ck_assert_msg(memcmp(one, many, n * sizeof *one) == 0,
                  "three threads changed the %s result",
                  transpose ? "transposed" : "forward");
  }
  ck_assert_msg(memcmp(bias[0], bias[1], sizeof bias[0]) == 0,
                "three threads changed the bias's term");
  free(w), free(src), free(one), free(many);
}
END_TEST

int main(void) {
  Suite *s = suite_create("conv");
  TCase *tc = tcase_create("paths");
  tcase_add_test(tc, test_cpu_kernels_match_float64);
  tcase_add_test(tc, test_im2col_gemm_and_col2im_match_float64);
  tcase_add_test(tc, test_cpu_kernels_threads_change_nothing);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
