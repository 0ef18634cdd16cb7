/* SPDX-License-Identifier: MIT */
/* The CUDA backend against the CPU reference: every device-backed ABI
 * operation on the same random inputs must agree to float rounding; and,
 * in tests/cuda-ranks.c, the multi-rank backends at device=cuda. */
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "abi/shardbound.h"

/* ---- loading ---- */

typedef struct Side {
  const char *name;
  void *so;
  const sb_backend_v1 *be;
  sb_context *ctx;
} Side;

enum { CPU = 0, GPU = 1 };
static Side side[2] = {{.name = "cpu"}, {.name = "cuda"}};

static const char *backend_dir(void) {
  const char *d = getenv("SHARDBOUND_BACKEND_PATH");
  return d && *d ? d : "backends/.libs";
}

/* dlopen + entry symbol; on failure a message in why and NULL. */
static const sb_backend_v1 *load_backend(const char *name, void **so, char *why,
                                         size_t why_size) {
  char path[4096];
  snprintf(path, sizeof path, "%s/shardbound-backend-%s.so", backend_dir(),
           name);
  *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (*so == NULL) {
    snprintf(why, why_size, "cannot load %.600s: %.380s", path, dlerror());
    return NULL;
  }
  sb_backend_get_v1_fn get =
      (sb_backend_get_v1_fn)dlsym(*so, SB_ENTRY_SYMBOL_V1);
  const sb_backend_v1 *be = NULL;
  if (get == NULL || get(NULL, &be) != SB_OK || be == NULL) {
    snprintf(why, why_size, "%.900s has no usable %s", path,
             SB_ENTRY_SYMBOL_V1);
    return NULL;
  }
  return be;
}

static void open_side(Side *s) {
  char why[1024];
  s->be = load_backend(s->name, &s->so, why, sizeof why);
  ck_assert_msg(s->be != NULL, "%s", why);
  int st = s->be->context_create(NULL, NULL, 0, &s->ctx, why, sizeof why);
  ck_assert_msg(st == SB_OK, "%s context_create: %s", s->name, why);
}

static void setup(void) {
  open_side(&side[CPU]);
  open_side(&side[GPU]);
}

static void teardown(void) {
  for (int i = 0; i < 2; i++) {
    if (side[i].ctx)
      side[i].be->context_destroy(side[i].ctx);
    side[i].ctx = NULL;
    /* The libraries stay loaded: CUDA does not like being unloaded. */
  }
}

#define OK(i, call)                                                            \
  do {                                                                         \
    int st_ = (call);                                                          \
    ck_assert_msg(st_ == SB_OK, "%s: %s failed (%s): %s", side[i].name, #call, \
                  sb_status_to_string(st_),                                    \
                  side[i].be->last_error(side[i].ctx));                        \
  } while (0)

/* ---- random data ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static float uniform(float lo, float hi) {
  rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
  double u = (double)(rng_state >> 11) / (double)(UINT64_C(1) << 53);
  return (float)(lo + (hi - lo) * u);
}

static float *random_floats(int64_t n, float lo, float hi) {
  float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  ck_assert_ptr_nonnull(v);
  for (int64_t i = 0; i < n; i++)
    v[i] = uniform(lo, hi);
  return v;
}

/* ---- tensors present on both backends ---- */

typedef struct Pair {
  sb_tensor *t[2];
  int64_t numel;
} Pair;

static Pair pair_new(int32_t category, int32_t ndim, const int64_t *shape,
                     const float *data) {
  Pair p = {{NULL, NULL}, 1};
  for (int d = 0; d < ndim; d++)
    p.numel *= shape[d];
  for (int i = 0; i < 2; i++) {
    OK(i,
       side[i].be->tensor_create(side[i].ctx, category, ndim, shape, &p.t[i]));
    if (data)
      OK(i, side[i].be->tensor_write(side[i].ctx, p.t[i], 0, p.numel,
                                     SB_DTYPE_F32, data));
  }
  return p;
}

static Pair pair_random(int32_t category, int32_t ndim, const int64_t *shape,
                        float lo, float hi) {
  int64_t n = 1;
  for (int d = 0; d < ndim; d++)
    n *= shape[d];
  float *v = random_floats(n, lo, hi);
  Pair p = pair_new(category, ndim, shape, v);
  free(v);
  return p;
}

static void pair_free(Pair *p) {
  for (int i = 0; i < 2; i++)
    if (p->t[i])
      side[i].be->tensor_free(side[i].ctx, p->t[i]);
  p->t[0] = p->t[1] = NULL;
}

/* Both copies agree: |gpu - cpu| <= rtol * (|cpu| + max|cpu|), i.e.
 * relative to the value, with the tensor's largest magnitude as the floor
 * that absorbs cancellation in sums of mixed signs. */
static void pair_expect_close(const Pair *p, double rtol, const char *what) {
  float *v[2];
  for (int i = 0; i < 2; i++) {
    v[i] = malloc((size_t)(p->numel ? p->numel : 1) * sizeof(float));
    ck_assert_ptr_nonnull(v[i]);
    OK(i, side[i].be->tensor_read(side[i].ctx, p->t[i], 0, p->numel,
                                  SB_DTYPE_F32, v[i]));
  }
  double scale = 0.0;
  for (int64_t k = 0; k < p->numel; k++)
    scale = fmax(scale, fabs(v[CPU][k]));
  for (int64_t k = 0; k < p->numel; k++) {
    double c = v[CPU][k], g = v[GPU][k];
    ck_assert_msg(isfinite(g), "%s[%lld]: cuda gives %g (cpu %g)", what,
                  (long long)k, g, c);
    ck_assert_msg(fabs(g - c) <= rtol * (fabs(c) + scale),
                  "%s[%lld]: cuda %.9g vs cpu %.9g (rtol %g, scale %g)", what,
                  (long long)k, g, c, rtol, scale);
  }
  free(v[0]);
  free(v[1]);
}

/* ---- layers present on both backends ---- */

typedef struct LayerPair {
  sb_layer *l[2];
  int n_inputs;
  int64_t in_size, out_size;
} LayerPair;

static LayerPair layer_pair_new(const sb_layer_desc_v1 *d, int n_inputs) {
  LayerPair lp = {{NULL, NULL}, n_inputs, d->in_size, d->out_size};
  for (int i = 0; i < 2; i++)
    OK(i, side[i].be->layer_create(side[i].ctx, d, &lp.l[i]));
  return lp;
}

static void layer_pair_free(LayerPair *lp) {
  for (int i = 0; i < 2; i++)
    side[i].be->layer_free(side[i].ctx, lp->l[i]);
}

static sb_layer_desc_v1 desc_of(int32_t kind, int64_t in_size,
                                int64_t out_size) {
  sb_layer_desc_v1 d;
  memset(&d, 0, sizeof d);
  d.struct_size = sizeof d;
  d.kind = kind;
  d.in_size = in_size;
  d.out_size = out_size;
  return d;
}

/* Forward and IBP on random inputs of batch B. */
static void check_forward_ibp(const LayerPair *lp, int64_t B, double rtol) {
  const int64_t in_shape[2] = {B, lp->in_size};
  const int64_t out_shape[2] = {B, lp->out_size};
  Pair x[SB_MAX_LAYER_INPUTS], lo[SB_MAX_LAYER_INPUTS], up[SB_MAX_LAYER_INPUTS];
  for (int k = 0; k < lp->n_inputs; k++) {
    int64_t n = B * lp->in_size;
    float *c = random_floats(n, -1.0f, 1.0f);
    float *r = random_floats(n, 0.0f, 0.5f);
    float *l = malloc((size_t)n * sizeof *l),
          *u = malloc((size_t)n * sizeof *u);
    for (int64_t j = 0; j < n; j++) {
      l[j] = c[j] - r[j];
      u[j] = c[j] + r[j];
    }
    x[k] = pair_new(SB_MEM_BOUNDS, 2, in_shape, c);
    lo[k] = pair_new(SB_MEM_BOUNDS, 2, in_shape, l);
    up[k] = pair_new(SB_MEM_BOUNDS, 2, in_shape, u);
    free(c);
    free(r);
    free(l);
    free(u);
  }
  Pair y = pair_new(SB_MEM_BOUNDS, 2, out_shape, NULL);
  Pair yl = pair_new(SB_MEM_BOUNDS, 2, out_shape, NULL);
  Pair yu = pair_new(SB_MEM_BOUNDS, 2, out_shape, NULL);
  for (int i = 0; i < 2; i++) {
    const sb_tensor *xi[SB_MAX_LAYER_INPUTS], *li[SB_MAX_LAYER_INPUTS],
        *ui[SB_MAX_LAYER_INPUTS];
    for (int k = 0; k < lp->n_inputs; k++) {
      xi[k] = x[k].t[i];
      li[k] = lo[k].t[i];
      ui[k] = up[k].t[i];
    }
    OK(i, side[i].be->layer_forward(side[i].ctx, lp->l[i], xi, y.t[i]));
    OK(i,
       side[i].be->layer_ibp(side[i].ctx, lp->l[i], li, ui, yl.t[i], yu.t[i]));
  }
  pair_expect_close(&y, rtol, "forward");
  pair_expect_close(&yl, rtol, "ibp lower");
  pair_expect_close(&yu, rtol, "ibp upper");
  for (int k = 0; k < lp->n_inputs; k++) {
    pair_free(&x[k]);
    pair_free(&lo[k]);
    pair_free(&up[k]);
  }
  pair_free(&y);
  pair_free(&yl);
  pair_free(&yu);
}

/* Backward of both sides, overwriting and accumulating. pre_lower/upper
 * (and alpha) are given for a ReLU only. */
static void check_backward(const LayerPair *lp, int64_t S, int64_t B,
                           const Pair *pre_lower, const Pair *pre_upper,
                           const Pair *alpha, double rtol) {
  const int64_t a_out_shape[3] = {S, B, lp->out_size};
  const int64_t a_in_shape[3] = {S, B, lp->in_size};
  const int64_t bias_shape[2] = {S, B};
  for (int32_t sd = SB_SIDE_LOWER; sd <= SB_SIDE_UPPER; sd++)
    for (int acc = 0; acc <= 1; acc++) {
      Pair A = pair_random(SB_MEM_COEFFICIENTS, 3, a_out_shape, -1.0f, 1.0f);
      Pair bias = pair_random(SB_MEM_COEFFICIENTS, 2, bias_shape, -1.0f, 1.0f);
      Pair A_in[SB_MAX_LAYER_INPUTS];
      for (int k = 0; k < lp->n_inputs; k++)
        A_in[k] = pair_random(SB_MEM_COEFFICIENTS, 3, a_in_shape, -1.0f, 1.0f);
      for (int i = 0; i < 2; i++) {
        sb_backward_args_v1 args;
        memset(&args, 0, sizeof args);
        args.struct_size = sizeof args;
        args.side = sd;
        args.A_out = A.t[i];
        args.pre_lower = pre_lower ? pre_lower->t[i] : NULL;
        args.pre_upper = pre_upper ? pre_upper->t[i] : NULL;
        args.alpha = alpha ? alpha->t[i] : NULL;
        for (int k = 0; k < lp->n_inputs; k++) {
          args.A_in[k] = A_in[k].t[i];
          args.accumulate[k] = acc;
        }
        args.bias = bias.t[i];
        OK(i, side[i].be->layer_backward(side[i].ctx, lp->l[i], &args));
      }
      char what[96];
      for (int k = 0; k < lp->n_inputs; k++) {
        snprintf(what, sizeof what, "backward %s%s%s A_in[%d]",
                 sd == SB_SIDE_LOWER ? "lower" : "upper",
                 acc ? " accumulate" : "", alpha ? " alpha" : "", k);
        pair_expect_close(&A_in[k], rtol, what);
        pair_free(&A_in[k]);
      }
      snprintf(what, sizeof what, "backward %s%s%s bias",
               sd == SB_SIDE_LOWER ? "lower" : "upper",
               acc ? " accumulate" : "", alpha ? " alpha" : "");
      pair_expect_close(&bias, rtol, what);
      pair_free(&A);
      pair_free(&bias);
    }
}

/* ---- the tests ---- */

START_TEST(test_cuda_linear_matches_cpu) {
  const int64_t in = 37, out = 23;
  sb_layer_desc_v1 d = desc_of(SB_LAYER_LINEAR, in, out);
  float *w = random_floats(in * out, -1.0f, 1.0f);
  float *b = random_floats(out, -1.0f, 1.0f);
  d.weight = w;
  d.bias = b;
  LayerPair lp = layer_pair_new(&d, 1);
  check_forward_ibp(&lp, 5, 1e-5);
  check_backward(&lp, 4, 3, NULL, NULL, NULL, 1e-5);
  layer_pair_free(&lp);
  free(w);
  free(b);
}
END_TEST

START_TEST(test_cuda_linear_without_bias_matches_cpu) {
  const int64_t in = 300, out = 70;
  sb_layer_desc_v1 d = desc_of(SB_LAYER_LINEAR, in, out);
  float *w = random_floats(in * out, -1.0f, 1.0f);
  d.weight = w;
  LayerPair lp = layer_pair_new(&d, 1);
  check_forward_ibp(&lp, 2, 1e-4);
  check_backward(&lp, 3, 2, NULL, NULL, NULL, 1e-4);
  layer_pair_free(&lp);
  free(w);
}
END_TEST

/* Stride 2, asymmetric pads, dilation 2 and two groups at once, so that
 * overlapping windows and padding meet in col2im. */
START_TEST(test_cuda_conv_strided_dilated_grouped_matches_cpu) {
  sb_layer_desc_v1 d = desc_of(SB_LAYER_CONV2D, 0, 0);
  d.in_c = 4, d.in_h = 9, d.in_w = 11;
  d.out_c = 6, d.kernel_h = 3, d.kernel_w = 2;
  d.stride_h = 2, d.stride_w = 2;
  d.pad_top = 1, d.pad_left = 0, d.pad_bottom = 2, d.pad_right = 1;
  d.dilation_h = 2, d.dilation_w = 2;
  d.groups = 2;
  d.out_h = (d.in_h + d.pad_top + d.pad_bottom -
             (d.dilation_h * (d.kernel_h - 1) + 1)) /
                d.stride_h +
            1;
  d.out_w = (d.in_w + d.pad_left + d.pad_right -
             (d.dilation_w * (d.kernel_w - 1) + 1)) /
                d.stride_w +
            1;
  d.in_size = d.in_c * d.in_h * d.in_w;
  d.out_size = d.out_c * d.out_h * d.out_w;
  const int64_t wn = d.out_c * (d.in_c / d.groups) * d.kernel_h * d.kernel_w;
  float *w = random_floats(wn, -1.0f, 1.0f);
  float *b = random_floats(d.out_c, -1.0f, 1.0f);
  d.weight = w;
  d.bias = b;
  LayerPair lp = layer_pair_new(&d, 1);
  check_forward_ibp(&lp, 3, 1e-5);
  check_backward(&lp, 3, 2, NULL, NULL, NULL, 1e-5);
  layer_pair_free(&lp);
  free(w);
  free(b);
}
END_TEST

/* Stride 1 with a 3x3 kernel: every input pixel is read by up to nine
 * windows, the densest overlap col2im has to sum. */
START_TEST(test_cuda_conv_overlapping_windows_matches_cpu) {
  sb_layer_desc_v1 d = desc_of(SB_LAYER_CONV2D, 0, 0);
  d.in_c = 3, d.in_h = 8, d.in_w = 8;
  d.out_c = 5, d.kernel_h = 3, d.kernel_w = 3;
  d.stride_h = 1, d.stride_w = 1;
  d.pad_top = d.pad_left = d.pad_bottom = d.pad_right = 1;
  d.dilation_h = d.dilation_w = 1;
  d.groups = 1;
  d.out_h = 8, d.out_w = 8;
  d.in_size = 3 * 64;
  d.out_size = 5 * 64;
  float *w = random_floats(5 * 3 * 9, -1.0f, 1.0f);
  d.weight = w;
  LayerPair lp = layer_pair_new(&d, 1);
  check_forward_ibp(&lp, 2, 1e-5);
  check_backward(&lp, 2, 2, NULL, NULL, NULL, 1e-5);
  layer_pair_free(&lp);
  free(w);
}
END_TEST

START_TEST(test_cuda_affine_matches_cpu) {
  const int64_t C = 5, P = 7;
  sb_layer_desc_v1 d = desc_of(SB_LAYER_AFFINE, C * P, C * P);
  d.channels = C;
  d.spatial = P;
  float *scale = random_floats(C, -2.0f, 2.0f);
  float *shift = random_floats(C, -1.0f, 1.0f);
  d.weight = scale;
  d.bias = shift;
  LayerPair lp = layer_pair_new(&d, 1);
  check_forward_ibp(&lp, 3, 1e-5);
  check_backward(&lp, 4, 3, NULL, NULL, NULL, 1e-5);
  layer_pair_free(&lp);
  /* Scale and shift absent mean 1 and 0. */
  d.weight = NULL;
  d.bias = NULL;
  lp = layer_pair_new(&d, 1);
  check_forward_ibp(&lp, 2, 1e-5);
  check_backward(&lp, 2, 2, NULL, NULL, NULL, 1e-5);
  layer_pair_free(&lp);
  free(scale);
  free(shift);
}
END_TEST

START_TEST(test_cuda_add_matches_cpu) {
  sb_layer_desc_v1 d = desc_of(SB_LAYER_ADD, 41, 41);
  LayerPair lp = layer_pair_new(&d, 2);
  check_forward_ibp(&lp, 3, 1e-5);
  check_backward(&lp, 2, 3, NULL, NULL, NULL, 1e-5);
  layer_pair_free(&lp);
}
END_TEST

/* Pre-activation bounds with stable-active, stable-inactive and unstable
 * neurons of both default slopes. */
static void relu_bounds(int64_t B, int64_t N, Pair *lo, Pair *up) {
  const int64_t shape[2] = {B, N};
  float *l = random_floats(B * N, -1.0f, 1.0f);
  float *u = malloc((size_t)(B * N) * sizeof *u);
  for (int64_t k = 0; k < B * N; k++)
    u[k] = l[k] + uniform(0.0f, 1.5f);
  *lo = pair_new(SB_MEM_BOUNDS, 2, shape, l);
  *up = pair_new(SB_MEM_BOUNDS, 2, shape, u);
  free(l);
  free(u);
}

START_TEST(test_cuda_relu_matches_cpu) {
  const int64_t N = 50, B = 3, S = 4;
  sb_layer_desc_v1 d = desc_of(SB_LAYER_RELU, N, N);
  LayerPair lp = layer_pair_new(&d, 1);
  check_forward_ibp(&lp, B, 1e-5);
  Pair lo, up;
  relu_bounds(B, N, &lo, &up);
  check_backward(&lp, S, B, &lo, &up, NULL, 1e-5);
  const int64_t ashape[3] = {S, B, N};
  Pair alpha = pair_random(SB_MEM_ALPHA, 3, ashape, 0.0f, 1.0f);
  check_backward(&lp, S, B, &lo, &up, &alpha, 1e-5);
  pair_free(&alpha);
  pair_free(&lo);
  pair_free(&up);
  layer_pair_free(&lp);
}
END_TEST

/* A row longer than one block (1000 > 256 threads) exercises the
 * per-row reduction's grid-stride loop. */
START_TEST(test_cuda_relu_long_rows_match_cpu) {
  const int64_t N = 1000, B = 2, S = 3;
  sb_layer_desc_v1 d = desc_of(SB_LAYER_RELU, N, N);
  LayerPair lp = layer_pair_new(&d, 1);
  Pair lo, up;
  relu_bounds(B, N, &lo, &up);
  check_backward(&lp, S, B, &lo, &up, NULL, 1e-4);
  pair_free(&lo);
  pair_free(&up);
  layer_pair_free(&lp);
}
END_TEST

/* ABI 1.1: layer_backward_vjp on both backends, with explicit and default
 * (NULL) grad_bias, overwrite and accumulate. */
static void check_vjp(const LayerPair *lp, int64_t S, int64_t B,
                      const Pair *pre_lower, const Pair *pre_upper,
                      const Pair *alpha, double rtol) {
  const int64_t a_out_shape[3] = {S, B, lp->out_size};
  const int64_t a_in_shape[3] = {S, B, lp->in_size};
  const int64_t bias_shape[2] = {S, B};
  const int relu = pre_lower != NULL;
  for (int32_t sd = SB_SIDE_LOWER; sd <= SB_SIDE_UPPER; sd++)
    for (int acc = 0; acc <= 1; acc++) {
      Pair A = pair_random(SB_MEM_COEFFICIENTS, 3, a_out_shape, -1.0f, 1.0f);
      Pair g = pair_random(SB_MEM_COEFFICIENTS, 2, bias_shape, -1.0f, 1.0f);
      Pair gA = pair_random(SB_MEM_COEFFICIENTS, 3, a_out_shape, -1.0f, 1.0f);
      Pair gal = pair_random(SB_MEM_ALPHA, 3, a_out_shape, -1.0f, 1.0f);
      Pair G[SB_MAX_LAYER_INPUTS];
      for (int k = 0; k < lp->n_inputs; k++)
        G[k] = pair_random(SB_MEM_COEFFICIENTS, 3, a_in_shape, -1.0f, 1.0f);
      for (int i = 0; i < 2; i++) {
        sb_vjp_args_v1 args;
        memset(&args, 0, sizeof args);
        args.struct_size = sizeof args;
        args.side = sd;
        args.A_out = A.t[i];
        args.pre_lower = pre_lower ? pre_lower->t[i] : NULL;
        args.pre_upper = pre_upper ? pre_upper->t[i] : NULL;
        args.alpha = alpha ? alpha->t[i] : NULL;
        for (int k = 0; k < lp->n_inputs; k++)
          args.grad_A_in[k] = G[k].t[i];
        args.grad_bias = acc ? NULL : g.t[i];
        args.grad_A_out = gA.t[i];
        args.accumulate_A_out = acc;
        args.grad_alpha = relu ? gal.t[i] : NULL;
        args.accumulate_alpha = acc;
        OK(i, side[i].be->layer_backward_vjp(side[i].ctx, lp->l[i], &args));
      }
      char what[96];
      snprintf(what, sizeof what, "vjp %s%s%s grad_A_out",
               sd == SB_SIDE_LOWER ? "lower" : "upper",
               acc ? " accumulate" : "", alpha ? " alpha" : "");
      pair_expect_close(&gA, rtol, what);
      if (relu) {
        snprintf(what, sizeof what, "vjp %s%s%s grad_alpha",
                 sd == SB_SIDE_LOWER ? "lower" : "upper",
                 acc ? " accumulate" : "", alpha ? " alpha" : "");
        pair_expect_close(&gal, rtol, what);
      }
      for (int k = 0; k < lp->n_inputs; k++)
        pair_free(&G[k]);
      pair_free(&A), pair_free(&g), pair_free(&gA), pair_free(&gal);
    }
}

START_TEST(test_cuda_vjp_of_every_layer_kind_matches_cpu) {
  const int64_t S = 3, B = 2;
  /* linear */
  sb_layer_desc_v1 d = desc_of(SB_LAYER_LINEAR, 37, 23);
  float *w = random_floats(37 * 23, -1.0f, 1.0f);
  float *b = random_floats(23, -1.0f, 1.0f);
  d.weight = w, d.bias = b;
  LayerPair lp = layer_pair_new(&d, 1);
  check_vjp(&lp, S, B, NULL, NULL, NULL, 1e-5);
  layer_pair_free(&lp);
  free(w), free(b);
  /* conv: stride 2, asymmetric pads, dilation 2, two groups */
  d = desc_of(SB_LAYER_CONV2D, 0, 0);
  d.in_c = 4, d.in_h = 9, d.in_w = 11, d.out_c = 6;
  d.kernel_h = 3, d.kernel_w = 2, d.stride_h = 2, d.stride_w = 1;
  d.pad_top = 1, d.pad_left = 0, d.pad_bottom = 2, d.pad_right = 1;
  d.dilation_h = 2, d.dilation_w = 2, d.groups = 2;
  d.out_h = (9 + 1 + 2 - 2 * 2 - 1) / 2 + 1;
  d.out_w = (11 + 0 + 1 - 2 * 1 - 1) / 1 + 1;
  d.in_size = 4 * 9 * 11, d.out_size = 6 * d.out_h * d.out_w;
  w = random_floats(6 * 2 * 3 * 2, -1.0f, 1.0f);
  b = random_floats(6, -1.0f, 1.0f);
  d.weight = w, d.bias = b;
  lp = layer_pair_new(&d, 1);
  check_vjp(&lp, S, B, NULL, NULL, NULL, 1e-4);
  layer_pair_free(&lp);
  free(w), free(b);
  /* affine and add */
  d = desc_of(SB_LAYER_AFFINE, 30, 30);
  d.channels = 5, d.spatial = 6;
  w = random_floats(5, -2.0f, 2.0f);
  b = random_floats(5, -1.0f, 1.0f);
  d.weight = w, d.bias = b;
  lp = layer_pair_new(&d, 1);
  check_vjp(&lp, S, B, NULL, NULL, NULL, 1e-5);
  layer_pair_free(&lp);
  free(w), free(b);
  d = desc_of(SB_LAYER_ADD, 30, 30);
  lp = layer_pair_new(&d, 2);
  check_vjp(&lp, S, B, NULL, NULL, NULL, 1e-6);
  layer_pair_free(&lp);
  /* relu, default slopes and given alpha */
  d = desc_of(SB_LAYER_RELU, 50, 50);
  lp = layer_pair_new(&d, 1);
  Pair lo, up;
  relu_bounds(B, 50, &lo, &up);
  check_vjp(&lp, S, B, &lo, &up, NULL, 1e-5);
  const int64_t ashape[3] = {S, B, 50};
  Pair alpha = pair_random(SB_MEM_ALPHA, 3, ashape, 0.0f, 1.0f);
  check_vjp(&lp, S, B, &lo, &up, &alpha, 1e-5);
  pair_free(&alpha), pair_free(&lo), pair_free(&up);
  layer_pair_free(&lp);
}
END_TEST

START_TEST(test_cuda_alpha_beta_operations_match_cpu) {
  const int64_t S = 4, B = 3, N = 40;
  const int64_t cshape[3] = {S, B, N}, bshape[2] = {B, N}, gshape[2] = {S, B};
  Pair lo, up;
  relu_bounds(B, N, &lo, &up);
  Pair A = pair_random(SB_MEM_COEFFICIENTS, 3, cshape, -1.0f, 1.0f);
  Pair g = pair_random(SB_MEM_BOUNDS, 2, gshape, -1.0f, 1.0f);
  Pair out = pair_new(SB_MEM_COEFFICIENTS, 3, cshape, NULL);
  Pair al = pair_new(SB_MEM_ALPHA, 3, cshape, NULL);
  float *sg = malloc((size_t)(B * N) * sizeof *sg);
  for (int64_t k = 0; k < B * N; k++)
    sg[k] = (float)((int)(k % 3) - 1);
  Pair sign = pair_new(SB_MEM_BOUNDS, 2, bshape, sg);
  free(sg);
  for (int32_t sd = SB_SIDE_LOWER; sd <= SB_SIDE_UPPER; sd++) {
    for (int i = 0; i < 2; i++)
      OK(i, side[i].be->concretize_vjp(side[i].ctx, A.t[i], lo.t[i], up.t[i],
                                       sd, sd ? NULL : g.t[i], out.t[i]));
    pair_expect_close(&out, 1e-6, "concretize_vjp");
    for (int i = 0; i < 2; i++)
      OK(i, side[i].be->beta_vjp(side[i].ctx, A.t[i], sign.t[i], sd, out.t[i],
                                 sd));
    pair_expect_close(&out, 1e-6, "beta_vjp");
    for (int i = 0; i < 2; i++)
      OK(i,
         side[i].be->beta_apply(side[i].ctx, A.t[i], out.t[i], sign.t[i], sd));
    pair_expect_close(&A, 1e-6, "beta_apply");
  }
  for (int i = 0; i < 2; i++)
    OK(i, side[i].be->relu_init_alpha(side[i].ctx, lo.t[i], up.t[i], al.t[i]));
  pair_expect_close(&al, 0, "relu_init_alpha");
  Pair m = pair_new(SB_MEM_ALPHA, 3, cshape, NULL);
  Pair v = pair_new(SB_MEM_ALPHA, 3, cshape, NULL);
  sb_adam_args_v1 ad = {sizeof ad, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 1, 0.0f, 1.0f};
  for (ad.step = 1; ad.step <= 3; ad.step++)
    for (int i = 0; i < 2; i++)
      OK(i, side[i].be->adam_step(side[i].ctx, al.t[i], A.t[i], m.t[i], v.t[i],
                                  &ad));
  pair_expect_close(&al, 1e-5, "adam_step param");
  pair_expect_close(&m, 1e-5, "adam_step m");
  pair_expect_close(&v, 1e-5, "adam_step v");
  Pair *all[] = {&lo, &up, &A, &g, &out, &al, &sign, &m, &v};
  for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
    pair_free(all[k]);
}
END_TEST

static void check_concretize(int64_t S, int64_t B, int64_t N, double rtol) {
  const int64_t a_shape[3] = {S, B, N}, box_shape[2] = {B, N},
                out_shape[2] = {S, B};
  Pair A = pair_random(SB_MEM_COEFFICIENTS, 3, a_shape, -1.0f, 1.0f);
  Pair bias = pair_random(SB_MEM_COEFFICIENTS, 2, out_shape, -1.0f, 1.0f);
  float *c = random_floats(B * N, -1.0f, 1.0f);
  float *r = random_floats(B * N, 0.0f, 0.3f);
  for (int64_t k = 0; k < B * N; k++) {
    float l = c[k] - r[k], u = c[k] + r[k];
    c[k] = l;
    r[k] = u;
  }
  Pair lo = pair_new(SB_MEM_BOUNDS, 2, box_shape, c);
  Pair up = pair_new(SB_MEM_BOUNDS, 2, box_shape, r);
  free(c);
  free(r);
  for (int32_t sd = SB_SIDE_LOWER; sd <= SB_SIDE_UPPER; sd++)
    for (int with_bias = 0; with_bias <= 1; with_bias++) {
      Pair out = pair_new(SB_MEM_BOUNDS, 2, out_shape, NULL);
      for (int i = 0; i < 2; i++)
        OK(i, side[i].be->concretize(side[i].ctx, A.t[i],
                                     with_bias ? bias.t[i] : NULL, lo.t[i],
                                     up.t[i], sd, out.t[i]));
      pair_expect_close(&out, rtol,
                        sd == SB_SIDE_LOWER ? "concretize lower"
                                            : "concretize upper");
      pair_free(&out);
    }
  pair_free(&A);
  pair_free(&bias);
  pair_free(&lo);
  pair_free(&up);
}

START_TEST(test_cuda_concretize_matches_cpu) {
  check_concretize(5, 3, 20, 1e-5);
}
END_TEST

START_TEST(test_cuda_concretize_long_rows_match_cpu) {
  check_concretize(3, 2, 5000, 1e-4);
}
END_TEST

START_TEST(test_cuda_set_unit_rows_matches_cpu) {
  /* More specs than one launch carries indices for. */
  const int64_t S = 1000, B = 2, N = 30;
  const int64_t shape[3] = {S, B, N};
  int64_t *index = malloc((size_t)S * sizeof *index);
  for (int64_t s = 0; s < S; s++)
    index[s] = (s * 7 + 3) % N;
  Pair A = pair_random(SB_MEM_COEFFICIENTS, 3, shape, -1.0f, 1.0f);
  for (int i = 0; i < 2; i++)
    OK(i, side[i].be->tensor_set_unit_rows(side[i].ctx, A.t[i], index));
  pair_expect_close(&A, 0.0, "set_unit_rows");
  pair_free(&A);
  free(index);
}
END_TEST

START_TEST(test_cuda_reports_out_of_memory_for_huge_tensor) {
  Side *g = &side[GPU];
  /* 2^40 floats: 4 TiB, more than any GPU has. */
  const int64_t shape[2] = {INT64_C(1) << 20, INT64_C(1) << 20};
  sb_tensor *t = NULL;
  int st = g->be->tensor_create(g->ctx, SB_MEM_COEFFICIENTS, 2, shape, &t);
  ck_assert_int_eq(st, SB_ERR_OUT_OF_MEMORY);
  ck_assert_ptr_null(t);
  const char *msg = g->be->last_error(g->ctx);
  ck_assert_msg(strstr(msg, "4398046511104") != NULL,
                "message does not name the requested bytes: %s", msg);
  /* The failure must not poison the device: the next operation works. */
  const int64_t small[1] = {16};
  float v[16], back[16];
  for (int k = 0; k < 16; k++)
    v[k] = (float)k;
  OK(GPU, g->be->tensor_create(g->ctx, SB_MEM_BOUNDS, 1, small, &t));
  OK(GPU, g->be->tensor_write(g->ctx, t, 0, 16, SB_DTYPE_F32, v));
  OK(GPU, g->be->tensor_read(g->ctx, t, 0, 16, SB_DTYPE_F32, back));
  ck_assert_int_eq(memcmp(v, back, sizeof v), 0);
  g->be->tensor_free(g->ctx, t);
}
END_TEST

START_TEST(test_cuda_reports_out_of_memory_for_huge_layer) {
  Side *g = &side[GPU];
  /* The weights are never read: the allocation fails first. A host buffer
   * this large cannot exist, so the pointer is only a placeholder. */
  static const float w[1] = {1.0f};
  sb_layer_desc_v1 d =
      desc_of(SB_LAYER_LINEAR, INT64_C(1) << 20, INT64_C(1) << 20);
  d.weight = w;
  sb_layer *l = NULL;
  int st = g->be->layer_create(g->ctx, &d, &l);
  ck_assert_int_eq(st, SB_ERR_OUT_OF_MEMORY);
  ck_assert_ptr_null(l);
  ck_assert_msg(strlen(g->be->last_error(g->ctx)) > 0,
                "out of memory without a message");
}
END_TEST

START_TEST(test_cuda_rejects_missing_device_ordinal) {
  char why[512] = "";
  sb_context *ctx = NULL;
  const sb_option opt = {"device", "4096"};
  int st = side[GPU].be->context_create(NULL, &opt, 1, &ctx, why, sizeof why);
  ck_assert_int_eq(st, SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(why, "4096") != NULL, "message: %s", why);
}
END_TEST

START_TEST(test_cuda_memory_stats_see_the_driver) {
  sb_memory_stats_v1 m;
  memset(&m, 0, sizeof m);
  m.struct_size = sizeof m;
  OK(GPU, side[GPU].be->memory_stats(side[GPU].ctx, 0, &m));
  ck_assert_msg(m.device_used_bytes > 0, "device_used_bytes %lld",
                (long long)m.device_used_bytes);
}
END_TEST

/* ---- skip without a GPU ---- */

/* A CUDA context does not survive fork(), and Check forks per test: the
 * parent must not touch CUDA, so a child tries it. Returns 0 when a context
 * can be created, 77 when the backend loads but has no device (why says
 * so), 1 when the backend itself is broken. */
static int probe_gpu(char *why, size_t why_size) {
  int fds[2];
  if (pipe(fds) != 0) {
    snprintf(why, why_size, "pipe failed");
    return 1;
  }
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(why, why_size, "fork failed");
    return 1;
  }
  if (pid == 0) {
    close(fds[0]);
    char msg[1024] = "";
    void *so = NULL;
    int code = 0;
    const sb_backend_v1 *be = load_backend("cuda", &so, msg, sizeof msg);
    if (be == NULL) {
      code = 1;
    } else {
      sb_context *ctx = NULL;
      if (be->context_create(NULL, NULL, 0, &ctx, msg, sizeof msg) != SB_OK)
        code = 77;
      else
        be->context_destroy(ctx);
    }
    ssize_t w = write(fds[1], msg, strlen(msg));
    (void)w;
    close(fds[1]);
    _exit(code);
  }
  close(fds[1]);
  size_t got = 0;
  ssize_t n;
  while (got + 1 < why_size &&
         (n = read(fds[0], why + got, why_size - 1 - got)) > 0)
    got += (size_t)n;
  why[got] = '\0';
  close(fds[0]);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
    snprintf(why, why_size, "the probe process crashed");
    return 1;
  }
  return WEXITSTATUS(status);
}

static Suite *cuda_suite(void) {
  Suite *s = suite_create("backend-cuda");
  TCase *tc = tcase_create("cpu-vs-cuda");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_cuda_linear_matches_cpu);
  tcase_add_test(tc, test_cuda_linear_without_bias_matches_cpu);
  tcase_add_test(tc, test_cuda_conv_strided_dilated_grouped_matches_cpu);
  tcase_add_test(tc, test_cuda_conv_overlapping_windows_matches_cpu);
  tcase_add_test(tc, test_cuda_affine_matches_cpu);
  tcase_add_test(tc, test_cuda_add_matches_cpu);
  tcase_add_test(tc, test_cuda_relu_matches_cpu);
  tcase_add_test(tc, test_cuda_relu_long_rows_match_cpu);
  tcase_add_test(tc, test_cuda_concretize_matches_cpu);
  tcase_add_test(tc, test_cuda_vjp_of_every_layer_kind_matches_cpu);
  tcase_add_test(tc, test_cuda_alpha_beta_operations_match_cpu);
  tcase_add_test(tc, test_cuda_concretize_long_rows_match_cpu);
  tcase_add_test(tc, test_cuda_set_unit_rows_matches_cpu);
  tcase_add_test(tc, test_cuda_reports_out_of_memory_for_huge_tensor);
  tcase_add_test(tc, test_cuda_reports_out_of_memory_for_huge_layer);
  tcase_add_test(tc, test_cuda_rejects_missing_device_ordinal);
  tcase_add_test(tc, test_cuda_memory_stats_see_the_driver);
  suite_add_tcase(s, tc);
  return s;
}

/* tests/cuda-ranks.c: fsdp and tp at device=cuda, loopback and NCCL. */
Suite *cuda_ranks_suite(void);

int main(void) {
  char why[1024];
  int probe = probe_gpu(why, sizeof why);
  if (probe == 77) {
    printf("SKIP: the cuda backend loads but has no usable GPU: %s\n", why);
    return 77;
  }
  if (probe != 0) {
    fprintf(stderr, "FAIL: the cuda backend is broken: %s\n", why);
    return 1;
  }
  SRunner *sr = srunner_create(cuda_suite());
  srunner_add_suite(sr, cuda_ranks_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
