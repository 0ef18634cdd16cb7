/* SPDX-License-Identifier: MIT */
/* Tests of the CPU reference backend, loaded as the real plugin: exact
 * IBP/CROWN numbers on hand-computed networks, the conv adjoint identity,
 * soundness on random networks, and the ABI housekeeping (tensors, options,
 * memory accounting). */
#include <check.h>
#include <glib.h>
#include <gmodule.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi/shardbound.h"

static const sb_backend_v1 *be;
static sb_context *ctx;

/* ---- harness ---- */

static void load_backend(void) {
  const char *dir = g_getenv("SHARDBOUND_BACKEND_PATH");
  if (dir == NULL || *dir == '\0')
    dir = "backends/.libs";
  char *path = g_build_filename(dir, "shardbound-backend-cpu.so", NULL);
  GModule *mod = g_module_open(path, G_MODULE_BIND_LOCAL);
  if (mod == NULL) {
    fprintf(stderr, "cannot open %s: %s\n", path, g_module_error());
    exit(EXIT_FAILURE);
  }
  sb_backend_get_v1_fn get = NULL;
  if (!g_module_symbol(mod, SB_ENTRY_SYMBOL_V1, (gpointer *)&get) ||
      get(NULL, &be) != SB_OK || be == NULL) {
    fprintf(stderr, "%s: no usable %s\n", path, SB_ENTRY_SYMBOL_V1);
    exit(EXIT_FAILURE);
  }
  g_module_make_resident(mod);
  g_free(path);
}

static void setup(void) {
  char err[256] = "";
  int st = be->context_create(NULL, NULL, 0, &ctx, err, sizeof err);
  ck_assert_msg(st == SB_OK, "context_create: %s", err);
}

static void teardown(void) {
  be->context_destroy(ctx);
  ctx = NULL;
}

#define OK(call)                                                               \
  do {                                                                         \
    int st_ = (call);                                                          \
    ck_assert_msg(st_ == SB_OK, "%s -> %d: %s", #call, st_,                    \
                  be->last_error(ctx));                                        \
  } while (0)

static sb_tensor *tensor(int32_t cat, int32_t ndim, int64_t d0, int64_t d1,
                         int64_t d2) {
  int64_t shape[3] = {d0, d1, d2};
  sb_tensor *t = NULL;
  OK(be->tensor_create(ctx, cat, ndim, shape, &t));
  return t;
}

static sb_tensor *bounds_from(int64_t B, int64_t N, const double *v) {
  sb_tensor *t = tensor(SB_MEM_BOUNDS, 2, B, N, 0);
  OK(be->tensor_write(ctx, t, 0, B * N, SB_DTYPE_F64, v));
  return t;
}

static void read_into(const sb_tensor *t, int64_t n, double *out) {
  OK(be->tensor_read(ctx, t, 0, n, SB_DTYPE_F64, out));
}

static void assert_close(const double *got, const double *want, int n,
                         double tol, const char *what) {
  for (int i = 0; i < n; i++)
    ck_assert_msg(fabs(got[i] - want[i]) <= tol,
                  "%s[%d]: got %.7g, want %.7g", what, i, got[i], want[i]);
}

static sb_layer_desc_v1 desc_of(int32_t kind, int64_t in, int64_t out) {
  sb_layer_desc_v1 d;
  memset(&d, 0, sizeof d);
  d.struct_size = sizeof d;
  d.kind = kind;
  d.in_size = in;
  d.out_size = out;
  return d;
}

static sb_layer *make_layer(const sb_layer_desc_v1 *d) {
  sb_layer *l = NULL;
  OK(be->layer_create(ctx, d, &l));
  return l;
}

static sb_layer *linear(int64_t in, int64_t out, const float *w,
                        const float *b) {
  sb_layer_desc_v1 d = desc_of(SB_LAYER_LINEAR, in, out);
  d.weight = w;
  d.bias = b;
  return make_layer(&d);
}

static sb_layer *relu(int64_t n) {
  sb_layer_desc_v1 d = desc_of(SB_LAYER_RELU, n, n);
  return make_layer(&d);
}

static void ibp(const sb_layer *l, const sb_tensor *lo, const sb_tensor *up,
                sb_tensor *olo, sb_tensor *oup) {
  const sb_tensor *li[1] = {lo}, *ui[1] = {up};
  OK(be->layer_ibp(ctx, l, li, ui, olo, oup));
}

static void backward(const sb_layer *l, int side, const sb_tensor *A_out,
                     const sb_tensor *pl, const sb_tensor *pu,
                     const sb_tensor *alpha, sb_tensor *A_in, int accumulate,
                     sb_tensor *bias) {
  sb_backward_args_v1 a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.side = side;
  a.A_out = A_out;
  a.pre_lower = pl;
  a.pre_upper = pu;
  a.alpha = alpha;
  a.A_in[0] = A_in;
  a.accumulate[0] = accumulate;
  a.bias = bias;
  OK(be->layer_backward(ctx, l, &a));
}

/* ---- hand-computed networks ---- */

START_TEST(test_linear_ibp_matches_hand_computation) {
  const float w[] = {1, -2, 3, 4}, b[] = {0.5f, -1};
  sb_layer *l = linear(2, 2, w, b);
  const double xl[] = {-1, 0}, xu[] = {1, 2};
  sb_tensor *lo = bounds_from(1, 2, xl), *up = bounds_from(1, 2, xu);
  sb_tensor *olo = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  sb_tensor *oup = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  ibp(l, lo, up, olo, oup);
  double got[2];
  read_into(olo, 2, got);
  assert_close(got, (double[]){-4.5, -4}, 2, 1e-6, "lower");
  read_into(oup, 2, got);
  assert_close(got, (double[]){1.5, 10}, 2, 1e-6, "upper");
  be->layer_free(ctx, l);
  be->tensor_free(ctx, lo), be->tensor_free(ctx, up);
  be->tensor_free(ctx, olo), be->tensor_free(ctx, oup);
}
END_TEST

/* y = relu(x1+x2+1) + relu(x1-x2) on [-1,1]^2: both ReLUs unstable, the
 * first with u > -l (lower slope 1), the second with u == -l (slope 0). */
typedef struct {
  sb_layer *l1, *r, *l2;
  sb_tensor *xl, *xu, *zl, *zu;
} Net221;

static Net221 net221(void) {
  static const float w1[] = {1, 1, 1, -1}, b1[] = {1, 0}, w2[] = {1, 1};
  Net221 n;
  n.l1 = linear(2, 2, w1, b1);
  n.r = relu(2);
  n.l2 = linear(2, 1, w2, NULL);
  n.xl = bounds_from(1, 2, (double[]){-1, -1});
  n.xu = bounds_from(1, 2, (double[]){1, 1});
  n.zl = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  n.zu = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  ibp(n.l1, n.xl, n.xu, n.zl, n.zu);
  return n;
}

static void net221_free(Net221 *n) {
  be->layer_free(ctx, n->l1), be->layer_free(ctx, n->r);
  be->layer_free(ctx, n->l2);
  be->tensor_free(ctx, n->xl), be->tensor_free(ctx, n->xu);
  be->tensor_free(ctx, n->zl), be->tensor_free(ctx, n->zu);
}

/* CROWN bound of the single output of net221 with optional alpha. */
static double net221_crown(Net221 *n, int side, const double *alpha2) {
  sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 1);
  sb_tensor *Ar = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
  sb_tensor *Az = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
  sb_tensor *Ax = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
  sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, 1, 1, 0);
  sb_tensor *out = tensor(SB_MEM_BOUNDS, 2, 1, 1, 0);
  sb_tensor *al = NULL;
  if (alpha2) {
    al = tensor(SB_MEM_ALPHA, 3, 1, 1, 2);
    OK(be->tensor_write(ctx, al, 0, 2, SB_DTYPE_F64, alpha2));
  }
  int64_t idx = 0;
  OK(be->tensor_set_unit_rows(ctx, A, &idx));
  backward(n->l2, side, A, NULL, NULL, NULL, Ar, 0, bias);
  backward(n->r, side, Ar, n->zl, n->zu, al, Az, 0, bias);
  backward(n->l1, side, Az, NULL, NULL, NULL, Ax, 0, bias);
  OK(be->concretize(ctx, Ax, bias, n->xl, n->xu, side, out));
  double v;
  read_into(out, 1, &v);
  sb_tensor *all[] = {A, Ar, Az, Ax, bias, out, al};
  for (int i = 0; i < 7; i++)
    be->tensor_free(ctx, all[i]);
  return v;
}

START_TEST(test_crown_2_2_1_matches_hand_computation) {
  Net221 n = net221();
  /* Lower: slopes 1 and 0, no intercept: A_x = [1,1], bias 1 -> 1-2. Upper:
   * s = 3/4, t = 3/4 and s = 1/2, t = 1: A_x = [1.25, .25], bias 2.5. */
  ck_assert_double_eq_tol(net221_crown(&n, SB_SIDE_LOWER, NULL), -1.0, 1e-6);
  ck_assert_double_eq_tol(net221_crown(&n, SB_SIDE_UPPER, NULL), 4.0, 1e-6);
  /* IBP of the same net is [0, 5]. */
  sb_tensor *rl = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  sb_tensor *ru = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  sb_tensor *yl = tensor(SB_MEM_BOUNDS, 2, 1, 1, 0);
  sb_tensor *yu = tensor(SB_MEM_BOUNDS, 2, 1, 1, 0);
  ibp(n.r, n.zl, n.zu, rl, ru);
  ibp(n.l2, rl, ru, yl, yu);
  double lo, up;
  read_into(yl, 1, &lo);
  read_into(yu, 1, &up);
  ck_assert_double_eq_tol(lo, 0.0, 1e-6);
  ck_assert_double_eq_tol(up, 5.0, 1e-6);
  be->tensor_free(ctx, rl), be->tensor_free(ctx, ru);
  be->tensor_free(ctx, yl), be->tensor_free(ctx, yu);
  net221_free(&n);
}
END_TEST

START_TEST(test_relu_backward_uses_given_alpha) {
  Net221 n = net221();
  /* alpha 1/2 on both: A_z = [.5,.5], bias .5, A_x = [1, 0] -> .5 - 1. */
  ck_assert_double_eq_tol(
      net221_crown(&n, SB_SIDE_LOWER, (double[]){0.5, 0.5}), -0.5, 1e-6);
  net221_free(&n);
}
END_TEST

START_TEST(test_relu_backward_relaxation_per_neuron_and_side) {
  /* Neurons: unstable with u > -l (lower slope 1), unstable with u == -l
   * (slope 0), active, inactive, unstable with u < -l (slope 0). */
  sb_layer *r = relu(5);
  sb_tensor *pl = bounds_from(1, 5, (double[]){-1, -2, 1, -3, -2});
  sb_tensor *pu = bounds_from(1, 5, (double[]){3, 2, 2, -1, 1});
  sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 2, 1, 5);
  sb_tensor *Ai = tensor(SB_MEM_COEFFICIENTS, 3, 2, 1, 5);
  sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, 2, 1, 0);
  OK(be->tensor_write(ctx, A, 0, 10, SB_DTYPE_F64,
                      (double[]){1, 1, 1, 1, 1, -1, -1, -1, -1, -1}));
  const double t = 0.75 + 1 + 2.0 / 3; /* intercepts -l*u/(u-l) */
  const double want_A[2][10] = {
      {1, 0, 1, 0, 0, -0.75, -0.5, -1, 0, -1.0 / 3},
      {0.75, 0.5, 1, 0, 1.0 / 3, -1, 0, -1, 0, 0}};
  const double want_b[2][2] = {{0, -t}, {t, 0}};
  for (int side = 0; side < 2; side++) {
    double got[10], zero[2] = {0, 0};
    OK(be->tensor_write(ctx, bias, 0, 2, SB_DTYPE_F64, zero));
    backward(r, side, A, pl, pu, NULL, Ai, 0, bias);
    read_into(Ai, 10, got);
    assert_close(got, want_A[side], 10, 1e-6, side ? "upper A" : "lower A");
    read_into(bias, 2, got);
    assert_close(got, want_b[side], 2, 1e-6, side ? "upper b" : "lower b");
  }
  sb_tensor *all[] = {pl, pu, A, Ai, bias};
  for (int i = 0; i < 5; i++)
    be->tensor_free(ctx, all[i]);
  be->layer_free(ctx, r);
}
END_TEST

START_TEST(test_crown_is_exact_without_unstable_relu) {
  /* z1 = x1+3 in [2,4] (active), z2 = -x2-3 in [-4,-2] (inactive):
   * y = 2*z1 + 5*relu(z2) + 1 = 2*x1 + 7 in [5, 9]. */
  const float w1[] = {1, 0, 0, -1}, b1[] = {3, -3}, w2[] = {2, 5}, b2[] = {1};
  sb_layer *l1 = linear(2, 2, w1, b1), *r = relu(2), *l2 = linear(2, 1, w2, b2);
  sb_tensor *xl = bounds_from(1, 2, (double[]){-1, -1});
  sb_tensor *xu = bounds_from(1, 2, (double[]){1, 1});
  sb_tensor *zl = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  sb_tensor *zu = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  ibp(l1, xl, xu, zl, zu);
  const double want[2] = {5, 9};
  for (int side = 0; side < 2; side++) {
    sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 1);
    sb_tensor *Ar = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
    sb_tensor *Az = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
    sb_tensor *Ax = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
    sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, 1, 1, 0);
    sb_tensor *out = tensor(SB_MEM_BOUNDS, 2, 1, 1, 0);
    int64_t idx = 0;
    OK(be->tensor_set_unit_rows(ctx, A, &idx));
    backward(l2, side, A, NULL, NULL, NULL, Ar, 0, bias);
    backward(r, side, Ar, zl, zu, NULL, Az, 0, bias);
    backward(l1, side, Az, NULL, NULL, NULL, Ax, 0, bias);
    OK(be->concretize(ctx, Ax, bias, xl, xu, side, out));
    double v, ax[2];
    read_into(out, 1, &v);
    read_into(Ax, 2, ax);
    ck_assert_double_eq_tol(v, want[side], 1e-6);
    assert_close(ax, (double[]){2, 0}, 2, 1e-6, "A_x");
    sb_tensor *all[] = {A, Ar, Az, Ax, bias, out};
    for (int i = 0; i < 6; i++)
      be->tensor_free(ctx, all[i]);
  }
  be->layer_free(ctx, l1), be->layer_free(ctx, r), be->layer_free(ctx, l2);
  be->tensor_free(ctx, xl), be->tensor_free(ctx, xu);
  be->tensor_free(ctx, zl), be->tensor_free(ctx, zu);
}
END_TEST

/* 1 channel 3x3 image, 3x3 kernel, stride 2, pad 1: a 2x2 output. */
static sb_layer *conv_3x3_stride2(void) {
  static const float k[] = {1, 0, -1, 0, 2, 0, -1, 0, 1}, b[] = {0.5f};
  sb_layer_desc_v1 d = desc_of(SB_LAYER_CONV2D, 9, 4);
  d.weight = k;
  d.bias = b;
  d.in_c = 1, d.in_h = 3, d.in_w = 3;
  d.out_c = 1, d.out_h = 2, d.out_w = 2;
  d.kernel_h = 3, d.kernel_w = 3;
  d.stride_h = 2, d.stride_w = 2;
  d.pad_top = d.pad_left = d.pad_bottom = d.pad_right = 1;
  d.dilation_h = d.dilation_w = 1;
  d.groups = 1;
  return make_layer(&d);
}

START_TEST(test_conv_stride_padding_matches_hand_computation) {
  sb_layer *c = conv_3x3_stride2();
  const double x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  double xl[9], xu[9], got[4];
  for (int i = 0; i < 9; i++)
    xl[i] = x[i] - 1, xu[i] = x[i] + 1;
  sb_tensor *tx = bounds_from(1, 9, x);
  sb_tensor *y = tensor(SB_MEM_BOUNDS, 2, 1, 4, 0);
  const sb_tensor *in[1] = {tx};
  OK(be->layer_forward(ctx, c, in, y));
  read_into(y, 4, got);
  assert_close(got, (double[]){7.5, 1.5, 9.5, 23.5}, 4, 1e-5, "forward");
  /* Every output sees |k| = 2 + 1 inside the image: radius 3. */
  sb_tensor *lo = bounds_from(1, 9, xl), *up = bounds_from(1, 9, xu);
  sb_tensor *yl = tensor(SB_MEM_BOUNDS, 2, 1, 4, 0);
  sb_tensor *yu = tensor(SB_MEM_BOUNDS, 2, 1, 4, 0);
  ibp(c, lo, up, yl, yu);
  read_into(yl, 4, got);
  assert_close(got, (double[]){4.5, -1.5, 6.5, 20.5}, 4, 1e-5, "ibp lower");
  read_into(yu, 4, got);
  assert_close(got, (double[]){10.5, 4.5, 12.5, 26.5}, 4, 1e-5, "ibp upper");
  /* Backward of unit rows gives the rows of the conv matrix. */
  sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 4, 1, 4);
  sb_tensor *Ax = tensor(SB_MEM_COEFFICIENTS, 3, 4, 1, 9);
  sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, 4, 1, 0);
  sb_tensor *out = tensor(SB_MEM_BOUNDS, 2, 4, 1, 0);
  const int64_t idx[4] = {0, 1, 2, 3};
  OK(be->tensor_set_unit_rows(ctx, A, idx));
  backward(c, SB_SIDE_LOWER, A, NULL, NULL, NULL, Ax, 0, bias);
  double rows[36];
  read_into(Ax, 36, rows);
  const double want[36] = {2, 0, 0, 0, 1, 0, 0, 0, 0, /* (0,0) */
                           0, 0, 2, 0, -1, 0, 0, 0, 0, /* (0,1) */
                           0, 0, 0, 0, -1, 0, 2, 0, 0, /* (1,0) */
                           0, 0, 0, 0, 1, 0, 0, 0, 2}; /* (1,1) */
  assert_close(rows, want, 36, 1e-6, "conv rows");
  read_into(bias, 4, got);
  assert_close(got, (double[]){0.5, 0.5, 0.5, 0.5}, 4, 1e-6, "bias");
  OK(be->concretize(ctx, Ax, bias, lo, up, SB_SIDE_LOWER, out));
  read_into(out, 4, got);
  assert_close(got, (double[]){4.5, -1.5, 6.5, 20.5}, 4, 1e-5, "crown lower");
  sb_tensor *all[] = {tx, y, lo, up, yl, yu, A, Ax, bias, out};
  for (int i = 0; i < 10; i++)
    be->tensor_free(ctx, all[i]);
  be->layer_free(ctx, c);
}
END_TEST

START_TEST(test_affine_ibp_and_crown_match_hand_computation) {
  const float scale[] = {2, -3}, shift[] = {1, 0.5f};
  sb_layer_desc_v1 d = desc_of(SB_LAYER_AFFINE, 4, 4);
  d.weight = scale, d.bias = shift, d.channels = 2, d.spatial = 2;
  sb_layer *l = make_layer(&d);
  sb_tensor *xl = bounds_from(1, 4, (double[]){0, 0, 0, 0});
  sb_tensor *xu = bounds_from(1, 4, (double[]){1, 1, 1, 1});
  sb_tensor *yl = tensor(SB_MEM_BOUNDS, 2, 1, 4, 0);
  sb_tensor *yu = tensor(SB_MEM_BOUNDS, 2, 1, 4, 0);
  ibp(l, xl, xu, yl, yu);
  double got[4];
  read_into(yl, 4, got);
  assert_close(got, (double[]){1, 1, -2.5, -2.5}, 4, 1e-6, "ibp lower");
  read_into(yu, 4, got);
  assert_close(got, (double[]){3, 3, 0.5, 0.5}, 4, 1e-6, "ibp upper");
  /* Spec: the sum of all outputs = 2x0+2x1-3x2-3x3+3 in [-3, 7]. */
  sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 4);
  sb_tensor *Ax = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 4);
  sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, 1, 1, 0);
  sb_tensor *out = tensor(SB_MEM_BOUNDS, 2, 1, 1, 0);
  OK(be->tensor_write(ctx, A, 0, 4, SB_DTYPE_F64, (double[]){1, 1, 1, 1}));
  backward(l, SB_SIDE_LOWER, A, NULL, NULL, NULL, Ax, 0, bias);
  read_into(Ax, 4, got);
  assert_close(got, (double[]){2, 2, -3, -3}, 4, 1e-6, "A_x");
  double v;
  OK(be->concretize(ctx, Ax, bias, xl, xu, SB_SIDE_LOWER, out));
  read_into(out, 1, &v);
  ck_assert_double_eq_tol(v, -3.0, 1e-6);
  OK(be->concretize(ctx, Ax, bias, xl, xu, SB_SIDE_UPPER, out));
  read_into(out, 1, &v);
  ck_assert_double_eq_tol(v, 7.0, 1e-6);
  sb_tensor *all[] = {xl, xu, yl, yu, A, Ax, bias, out};
  for (int i = 0; i < 8; i++)
    be->tensor_free(ctx, all[i]);
  be->layer_free(ctx, l);
}
END_TEST

START_TEST(test_residual_add_crown_matches_hand_computation) {
  /* y = x + relu(x), x1 in [-1,3] (unstable, slope 1), x2 in [1,2]. */
  sb_layer_desc_v1 d = desc_of(SB_LAYER_ADD, 2, 2);
  sb_layer *add = make_layer(&d), *r = relu(2);
  sb_tensor *xl = bounds_from(1, 2, (double[]){-1, 1});
  sb_tensor *xu = bounds_from(1, 2, (double[]){3, 2});
  sb_tensor *rl = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  sb_tensor *ru = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  sb_tensor *yl = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  sb_tensor *yu = tensor(SB_MEM_BOUNDS, 2, 1, 2, 0);
  ibp(r, xl, xu, rl, ru);
  const sb_tensor *lo[2] = {xl, rl}, *up[2] = {xu, ru};
  OK(be->layer_ibp(ctx, add, lo, up, yl, yu));
  double got[4];
  read_into(yl, 2, got);
  assert_close(got, (double[]){-1, 2}, 2, 1e-6, "ibp lower");
  read_into(yu, 2, got);
  assert_close(got, (double[]){6, 4}, 2, 1e-6, "ibp upper");
  const double want[2][2] = {{-2, 2}, {6, 4}};
  for (int side = 0; side < 2; side++) {
    sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 2, 1, 2);
    sb_tensor *Ax = tensor(SB_MEM_COEFFICIENTS, 3, 2, 1, 2);
    sb_tensor *Ar = tensor(SB_MEM_COEFFICIENTS, 3, 2, 1, 2);
    sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, 2, 1, 0);
    sb_tensor *out = tensor(SB_MEM_BOUNDS, 2, 2, 1, 0);
    const int64_t idx[2] = {0, 1};
    OK(be->tensor_set_unit_rows(ctx, A, idx));
    sb_backward_args_v1 a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.side = side;
    a.A_out = A;
    a.A_in[0] = Ax;
    a.A_in[1] = Ar;
    a.bias = bias;
    OK(be->layer_backward(ctx, add, &a));
    /* x has two consumers: the ReLU's contribution is accumulated. */
    backward(r, side, Ar, xl, xu, NULL, Ax, 1, bias);
    OK(be->concretize(ctx, Ax, bias, xl, xu, side, out));
    read_into(out, 2, got);
    assert_close(got, want[side], 2, 1e-6, side ? "upper" : "lower");
    sb_tensor *all[] = {A, Ax, Ar, bias, out};
    for (int i = 0; i < 5; i++)
      be->tensor_free(ctx, all[i]);
  }
  sb_tensor *all[] = {xl, xu, rl, ru, yl, yu};
  for (int i = 0; i < 6; i++)
    be->tensor_free(ctx, all[i]);
  be->layer_free(ctx, add), be->layer_free(ctx, r);
}
END_TEST

/* ---- reference networks in float64 ---- */

typedef struct {
  sb_layer_desc_v1 d;
  float *w, *b;
  sb_layer *layer;
} RefLayer;

static double frand(GRand *g, double lo, double hi) {
  return g_rand_double_range(g, lo, hi);
}

static float *rand_floats(GRand *g, int64_t n, double scale) {
  float *v = g_new(float, n);
  for (int64_t i = 0; i < n; i++)
    v[i] = (float)frand(g, -scale, scale);
  return v;
}

static void ref_conv(const sb_layer_desc_v1 *d, const float *w,
                     const float *b, const double *x, double *y) {
  int64_t cg = d->in_c / d->groups, og = d->out_c / d->groups;
  for (int64_t o = 0; o < d->out_c; o++)
    for (int64_t oh = 0; oh < d->out_h; oh++)
      for (int64_t ow = 0; ow < d->out_w; ow++) {
        double s = b ? b[o] : 0.0;
        int64_t g = o / og;
        for (int64_t c = 0; c < cg; c++)
          for (int64_t i = 0; i < d->kernel_h; i++)
            for (int64_t j = 0; j < d->kernel_w; j++) {
              int64_t ih = oh * d->stride_h - d->pad_top + i * d->dilation_h;
              int64_t iw = ow * d->stride_w - d->pad_left + j * d->dilation_w;
              if (ih < 0 || ih >= d->in_h || iw < 0 || iw >= d->in_w)
                continue;
              s += (double)w[((o * cg + c) * d->kernel_h + i) * d->kernel_w +
                             j] *
                   x[((g * cg + c) * d->in_h + ih) * d->in_w + iw];
            }
        y[(o * d->out_h + oh) * d->out_w + ow] = s;
      }
}

static void ref_forward(const RefLayer *l, const double *x, double *y) {
  const sb_layer_desc_v1 *d = &l->d;
  switch (d->kind) {
  case SB_LAYER_LINEAR:
    for (int64_t o = 0; o < d->out_size; o++) {
      double s = l->b ? l->b[o] : 0.0;
      for (int64_t i = 0; i < d->in_size; i++)
        s += (double)l->w[o * d->in_size + i] * x[i];
      y[o] = s;
    }
    break;
  case SB_LAYER_CONV2D:
    ref_conv(d, l->w, l->b, x, y);
    break;
  case SB_LAYER_AFFINE:
    for (int64_t c = 0; c < d->channels; c++)
      for (int64_t s = 0; s < d->spatial; s++)
        y[c * d->spatial + s] =
            (double)l->w[c] * x[c * d->spatial + s] + l->b[c];
    break;
  case SB_LAYER_RELU:
    for (int64_t i = 0; i < d->out_size; i++)
      y[i] = x[i] > 0 ? x[i] : 0;
    break;
  default:
    ck_abort_msg("unexpected layer kind %d", d->kind);
  }
}

static sb_layer_desc_v1 conv_desc(int64_t ic, int64_t ih, int64_t iw,
                                  int64_t oc, int64_t kh, int64_t kw,
                                  int64_t sh, int64_t sw, int64_t pt,
                                  int64_t pl, int64_t pb, int64_t pr,
                                  int64_t dh, int64_t dw, int64_t groups) {
  sb_layer_desc_v1 d = desc_of(SB_LAYER_CONV2D, 0, 0);
  d.in_c = ic, d.in_h = ih, d.in_w = iw, d.out_c = oc;
  d.kernel_h = kh, d.kernel_w = kw, d.stride_h = sh, d.stride_w = sw;
  d.pad_top = pt, d.pad_left = pl, d.pad_bottom = pb, d.pad_right = pr;
  d.dilation_h = dh, d.dilation_w = dw, d.groups = groups;
  d.out_h = (ih + pt + pb - dh * (kh - 1) - 1) / sh + 1;
  d.out_w = (iw + pl + pr - dw * (kw - 1) - 1) / sw + 1;
  d.in_size = ic * ih * iw;
  d.out_size = oc * d.out_h * d.out_w;
  return d;
}

static RefLayer ref_layer(GRand *g, sb_layer_desc_v1 d) {
  RefLayer l = {d, NULL, NULL, NULL};
  switch (d.kind) {
  case SB_LAYER_LINEAR:
    l.w = rand_floats(g, d.in_size * d.out_size, 1.0 / sqrt(d.in_size) * 1.5);
    l.b = rand_floats(g, d.out_size, 0.5);
    break;
  case SB_LAYER_CONV2D:
    l.w = rand_floats(g, d.out_c * d.in_c / d.groups * d.kernel_h * d.kernel_w,
                      0.6);
    l.b = rand_floats(g, d.out_c, 0.5);
    break;
  case SB_LAYER_AFFINE:
    l.w = rand_floats(g, d.channels, 1.5);
    l.b = rand_floats(g, d.channels, 0.5);
    break;
  default:
    break;
  }
  l.d.weight = l.w;
  l.d.bias = l.b;
  l.layer = make_layer(&l.d);
  return l;
}

static void ref_layer_free(RefLayer *l) {
  be->layer_free(ctx, l->layer);
  g_free(l->w);
  g_free(l->b);
}

START_TEST(test_conv_backward_is_transpose_of_forward) {
  GRand *g = g_rand_new_with_seed(7);
  const sb_layer_desc_v1 geoms[] = {
      /* stride 2 with asymmetric padding */
      conv_desc(2, 7, 6, 3, 3, 3, 2, 2, 1, 0, 2, 1, 1, 1, 1),
      /* dilation 2 */
      conv_desc(2, 7, 7, 2, 3, 2, 1, 1, 1, 1, 1, 1, 2, 2, 1),
      /* groups 2 */
      conv_desc(4, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2),
      /* all at once, non-square */
      conv_desc(4, 9, 6, 2, 2, 3, 2, 1, 0, 2, 1, 0, 2, 1, 2),
  };
  const int64_t S = 3, B = 2;
  for (size_t gi = 0; gi < G_N_ELEMENTS(geoms); gi++) {
    sb_layer_desc_v1 d = geoms[gi];
    RefLayer l = ref_layer(g, d);
    int64_t nin = d.in_size, nout = d.out_size;
    double *x = g_new(double, B * nin), *y = g_new(double, B * nout);
    double *A = g_new(double, S * B * nout), *Ai = g_new(double, S * B * nin);
    for (int64_t i = 0; i < B * nin; i++)
      x[i] = frand(g, -1, 1);
    for (int64_t i = 0; i < S * B * nout; i++)
      A[i] = frand(g, -1, 1);
    /* The backend's forward agrees with the float64 reference. */
    sb_tensor *tx = bounds_from(B, nin, x), *ty = tensor(SB_MEM_BOUNDS, 2, B,
                                                         nout, 0);
    const sb_tensor *in[1] = {tx};
    OK(be->layer_forward(ctx, l.layer, in, ty));
    read_into(ty, B * nout, y);
    for (int64_t b = 0; b < B; b++) {
      double *want = g_new(double, nout);
      ref_conv(&d, l.w, l.b, x + b * nin, want);
      for (int64_t o = 0; o < nout; o++)
        ck_assert_msg(fabs(y[b * nout + o] - want[o]) <= 1e-4,
                      "geometry %zu: forward[%lld] %g vs reference %g", gi,
                      (long long)o, y[b * nout + o], want[o]);
      g_free(want);
    }
    sb_tensor *tA = tensor(SB_MEM_COEFFICIENTS, 3, S, B, nout);
    sb_tensor *tAi = tensor(SB_MEM_COEFFICIENTS, 3, S, B, nin);
    sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, S, B, 0);
    OK(be->tensor_write(ctx, tA, 0, S * B * nout, SB_DTYPE_F64, A));
    backward(l.layer, SB_SIDE_LOWER, tA, NULL, NULL, NULL, tAi, 0, bias);
    read_into(tAi, S * B * nin, Ai);
    double *bv = g_new(double, S * B);
    read_into(bias, S * B, bv);
    /* <A, conv(x)> = <A_in, x> + bias, per row (conv includes its bias). */
    for (int64_t s = 0; s < S; s++)
      for (int64_t b = 0; b < B; b++) {
        const double *a = A + (s * B + b) * nout;
        const double *ai = Ai + (s * B + b) * nin;
        double lhs = 0, rhs = bv[s * B + b], mag = 1;
        for (int64_t o = 0; o < nout; o++)
          lhs += a[o] * y[b * nout + o], mag += fabs(a[o] * y[b * nout + o]);
        for (int64_t i = 0; i < nin; i++)
          rhs += ai[i] * x[b * nin + i];
        ck_assert_msg(fabs(lhs - rhs) <= 1e-4 * mag,
                      "geometry %zu row (%lld,%lld): <A,conv x> = %.8g but "
                      "<A_in,x> + bias = %.8g",
                      gi, (long long)s, (long long)b, lhs, rhs);
      }
    g_free(bv);
    g_free(x), g_free(y), g_free(A), g_free(Ai);
    be->tensor_free(ctx, tx), be->tensor_free(ctx, ty);
    be->tensor_free(ctx, tA), be->tensor_free(ctx, tAi);
    be->tensor_free(ctx, bias);
    ref_layer_free(&l);
  }
  g_rand_free(g);
}
END_TEST

/* ---- soundness on random sequential networks ---- */

typedef struct {
  int n;
  RefLayer l[8];
} RefNet;

/* IBP bounds of every layer input (lo[i], up[i], i = 0..n) for B boxes. */
static void net_ibp(RefNet *net, int64_t B, sb_tensor **lo, sb_tensor **up) {
  for (int i = 0; i < net->n; i++) {
    int64_t n = net->l[i].d.out_size;
    lo[i + 1] = tensor(SB_MEM_BOUNDS, 2, B, n, 0);
    up[i + 1] = tensor(SB_MEM_BOUNDS, 2, B, n, 0);
    ibp(net->l[i].layer, lo[i], up[i], lo[i + 1], up[i + 1]);
  }
}

/* CROWN bounds of every output (S = out_size specs) into out [S,B]. The
 * intermediate bounds of ReLU inputs are the IBP ones: sound, if loose. */
static void net_crown(RefNet *net, int64_t B, sb_tensor **lo, sb_tensor **up,
                      int side, double *result) {
  int64_t S = net->l[net->n - 1].d.out_size;
  int64_t *idx = g_new(int64_t, S);
  for (int64_t s = 0; s < S; s++)
    idx[s] = s;
  sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, S, B, S);
  sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, S, B, 0);
  sb_tensor *out = tensor(SB_MEM_BOUNDS, 2, S, B, 0);
  OK(be->tensor_set_unit_rows(ctx, A, idx));
  for (int i = net->n - 1; i >= 0; i--) {
    sb_tensor *Ai =
        tensor(SB_MEM_COEFFICIENTS, 3, S, B, net->l[i].d.in_size);
    /* Garbage in A_in proves the overwrite (accumulate = 0). */
    double junk = 1e6;
    OK(be->tensor_write(ctx, Ai, 0, 1, SB_DTYPE_F64, &junk));
    int is_relu = net->l[i].d.kind == SB_LAYER_RELU;
    backward(net->l[i].layer, side, A, is_relu ? lo[i] : NULL,
             is_relu ? up[i] : NULL, NULL, Ai, 0, bias);
    be->tensor_free(ctx, A);
    A = Ai;
  }
  OK(be->concretize(ctx, A, bias, lo[0], up[0], side, out));
  read_into(out, S * B, result);
  be->tensor_free(ctx, A), be->tensor_free(ctx, bias);
  be->tensor_free(ctx, out);
  g_free(idx);
}

static void net_eval(RefNet *net, const double *x, double *y) {
  double buf[2][512];
  memcpy(buf[0], x, net->l[0].d.in_size * sizeof(double));
  int cur = 0;
  for (int i = 0; i < net->n; i++) {
    g_assert(net->l[i].d.out_size <= 512);
    ref_forward(&net->l[i], buf[cur], buf[1 - cur]);
    cur = 1 - cur;
  }
  memcpy(y, buf[cur], net->l[net->n - 1].d.out_size * sizeof(double));
}

static void check_soundness(RefNet *net, GRand *g, int64_t B,
                            int max_corners) {
  int64_t nin = net->l[0].d.in_size, S = net->l[net->n - 1].d.out_size;
  double *xl = g_new(double, B * nin), *xu = g_new(double, B * nin);
  for (int64_t i = 0; i < B * nin; i++) {
    double c = frand(g, -1, 1), r = frand(g, 0.05, 0.4);
    xl[i] = c - r, xu[i] = c + r;
  }
  sb_tensor *lo[9] = {0}, *up[9] = {0};
  lo[0] = bounds_from(B, nin, xl);
  up[0] = bounds_from(B, nin, xu);
  net_ibp(net, B, lo, up);
  double *il = g_new(double, B * S), *iu = g_new(double, B * S);
  double *cl = g_new(double, S * B), *cu = g_new(double, S * B);
  read_into(lo[net->n], B * S, il);
  read_into(up[net->n], B * S, iu);
  net_crown(net, B, lo, up, SB_SIDE_LOWER, cl);
  net_crown(net, B, lo, up, SB_SIDE_UPPER, cu);
  double *x = g_new(double, nin), y[512];
  int64_t corners = (int64_t)1 << (nin < 20 ? nin : 20);
  if (corners > max_corners)
    corners = max_corners;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < corners + 1000; t++) {
      for (int64_t i = 0; i < nin; i++) {
        double l = xl[b * nin + i], u = xu[b * nin + i];
        if (t < corners)
          /* all corners when there are few, else random ones */
          x[i] = (corners == ((int64_t)1 << nin) ? (t >> i) & 1
                                                  : g_rand_boolean(g))
                     ? u
                     : l;
        else
          x[i] = frand(g, l, u);
      }
      net_eval(net, x, y);
      for (int64_t s = 0; s < S; s++) {
        double tol = 1e-4 * (1 + fabs(y[s]));
        ck_assert_msg(y[s] >= il[b * S + s] - tol && y[s] <= iu[b * S + s] + tol,
                      "IBP [%g, %g] misses y[%lld] = %g (batch %lld)",
                      il[b * S + s], iu[b * S + s], (long long)s, y[s],
                      (long long)b);
        ck_assert_msg(y[s] >= cl[s * B + b] - tol &&
                          y[s] <= cu[s * B + b] + tol,
                      "CROWN [%g, %g] misses y[%lld] = %g (batch %lld)",
                      cl[s * B + b], cu[s * B + b], (long long)s, y[s],
                      (long long)b);
      }
    }
  for (int i = 0; i <= net->n; i++)
    be->tensor_free(ctx, lo[i]), be->tensor_free(ctx, up[i]);
  g_free(xl), g_free(xu), g_free(il), g_free(iu), g_free(cl), g_free(cu);
  g_free(x);
}

START_TEST(test_random_mlp_bounds_contain_samples) {
  GRand *g = g_rand_new_with_seed(11 + _i);
  RefNet net = {0};
  const int64_t sizes[] = {4, 12, 9, 3};
  for (int i = 0; i < 3; i++) {
    net.l[net.n++] = ref_layer(g, desc_of(SB_LAYER_LINEAR, sizes[i],
                                          sizes[i + 1]));
    if (i < 2)
      net.l[net.n++] = ref_layer(g, desc_of(SB_LAYER_RELU, sizes[i + 1],
                                            sizes[i + 1]));
  }
  check_soundness(&net, g, 2, 1 << 4);
  for (int i = 0; i < net.n; i++)
    ref_layer_free(&net.l[i]);
  g_rand_free(g);
}
END_TEST

START_TEST(test_random_conv_net_bounds_contain_samples) {
  GRand *g = g_rand_new_with_seed(23 + _i);
  RefNet net = {0};
  /* 1x3x3 -> conv 2x3x3 (pad 1) -> relu -> conv 2x2x2 (groups 2) ->
   * affine -> relu -> linear 8->3 */
  sb_layer_desc_v1 c1 = conv_desc(1, 3, 3, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
  sb_layer_desc_v1 c2 = conv_desc(2, 3, 3, 2, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1, 2);
  sb_layer_desc_v1 af = desc_of(SB_LAYER_AFFINE, 8, 8);
  af.channels = 2, af.spatial = 4;
  net.l[net.n++] = ref_layer(g, c1);
  net.l[net.n++] = ref_layer(g, desc_of(SB_LAYER_RELU, 18, 18));
  net.l[net.n++] = ref_layer(g, c2);
  net.l[net.n++] = ref_layer(g, af);
  net.l[net.n++] = ref_layer(g, desc_of(SB_LAYER_RELU, 8, 8));
  net.l[net.n++] = ref_layer(g, desc_of(SB_LAYER_LINEAR, 8, 3));
  check_soundness(&net, g, 2, 1 << 9);
  for (int i = 0; i < net.n; i++)
    ref_layer_free(&net.l[i]);
  g_rand_free(g);
}
END_TEST

/* ---- ABI housekeeping ---- */

START_TEST(test_backward_accumulate_adds_and_bias_always_adds) {
  const float w[] = {1, 2, 3, 4, 5, 6}, b[] = {1, -1};
  sb_layer *l = linear(3, 2, w, b);
  sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
  sb_tensor *Ai = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 3);
  sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, 1, 1, 0);
  OK(be->tensor_write(ctx, A, 0, 2, SB_DTYPE_F64, (double[]){1, 2}));
  OK(be->tensor_write(ctx, Ai, 0, 3, SB_DTYPE_F64, (double[]){10, 20, 30}));
  OK(be->tensor_write(ctx, bias, 0, 1, SB_DTYPE_F64, (double[]){5}));
  double got[3];
  /* A W = [9, 12, 15]; A b = -1. */
  backward(l, SB_SIDE_LOWER, A, NULL, NULL, NULL, Ai, 1, bias);
  read_into(Ai, 3, got);
  assert_close(got, (double[]){19, 32, 45}, 3, 1e-6, "accumulated");
  read_into(bias, 1, got);
  ck_assert_double_eq_tol(got[0], 4.0, 1e-6);
  backward(l, SB_SIDE_LOWER, A, NULL, NULL, NULL, Ai, 0, bias);
  read_into(Ai, 3, got);
  assert_close(got, (double[]){9, 12, 15}, 3, 1e-6, "overwritten");
  read_into(bias, 1, got);
  ck_assert_double_eq_tol(got[0], 3.0, 1e-6);
  be->tensor_free(ctx, A), be->tensor_free(ctx, Ai);
  be->tensor_free(ctx, bias);
  be->layer_free(ctx, l);
}
END_TEST

START_TEST(test_unit_rows_set_one_per_spec_and_batch) {
  sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 2, 2, 3);
  OK(be->tensor_write(ctx, A, 0, 12, SB_DTYPE_F64,
                      (double[]){9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}));
  const int64_t idx[2] = {2, 0};
  OK(be->tensor_set_unit_rows(ctx, A, idx));
  double got[12];
  read_into(A, 12, got);
  assert_close(got, (double[]){0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0}, 12, 0,
               "A");
  const int64_t bad[2] = {0, 3};
  ck_assert_int_eq(be->tensor_set_unit_rows(ctx, A, bad),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "index[1] = 3"));
  be->tensor_free(ctx, A);
}
END_TEST

START_TEST(test_tensor_write_read_f64_at_offset) {
  sb_tensor *t = tensor(SB_MEM_BOUNDS, 2, 2, 3, 0);
  OK(be->tensor_write(ctx, t, 2, 3, SB_DTYPE_F64, (double[]){1.5, -2, 3.25}));
  double got[5];
  OK(be->tensor_read(ctx, t, 1, 5, SB_DTYPE_F64, got));
  assert_close(got, (double[]){0, 1.5, -2, 3.25, 0}, 5, 0, "f64");
  float f[2];
  OK(be->tensor_read(ctx, t, 3, 2, SB_DTYPE_F32, f));
  ck_assert_float_eq(f[0], -2.0f);
  ck_assert_float_eq(f[1], 3.25f);
  ck_assert_int_eq(be->tensor_write(ctx, t, 4, 3, SB_DTYPE_F64, got),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "outside the tensor"));
  ck_assert_int_eq(be->tensor_read(ctx, t, 0, 1, 7, got),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "dtype"));
  be->tensor_free(ctx, t);
  /* Larger than any internal conversion buffer. */
  const int64_t n = 10000;
  double *big = g_new(double, n), *back = g_new(double, n);
  for (int64_t i = 0; i < n; i++)
    big[i] = i * 0.5;
  t = tensor(SB_MEM_BOUNDS, 2, 2, n, 0);
  OK(be->tensor_write(ctx, t, 3, n, SB_DTYPE_F64, big));
  OK(be->tensor_read(ctx, t, 3, n, SB_DTYPE_F64, back));
  assert_close(back, big, (int)n, 0, "big");
  be->tensor_free(ctx, t);
  g_free(big), g_free(back);
}
END_TEST

START_TEST(test_tensor_create_out_of_memory_names_bytes_and_category) {
  /* 2^48 bytes: more than any process can map. */
  int64_t shape[2] = {(int64_t)1 << 20, (int64_t)1 << 26};
  sb_tensor *t = NULL;
  ck_assert_int_eq(be->tensor_create(ctx, SB_MEM_COEFFICIENTS, 2, shape, &t),
                   SB_ERR_OUT_OF_MEMORY);
  ck_assert_ptr_null(t);
  const char *msg = be->last_error(ctx);
  ck_assert_msg(strstr(msg, "281474976710656 bytes") &&
                    strstr(msg, "coefficients"),
                "message: %s", msg);
  sb_memory_stats_v1 s = {.struct_size = sizeof s};
  OK(be->memory_stats(ctx, 0, &s));
  ck_assert_uint_eq(s.current_bytes[SB_MEM_COEFFICIENTS], 0);
}
END_TEST

START_TEST(test_context_rejects_unknown_option_by_name) {
  char err[256] = "";
  sb_context *c = NULL;
  sb_option opt[] = {{"device", "0"}, {"frobnicate", "1"}};
  ck_assert_int_eq(be->context_create(NULL, opt, 2, &c, err, sizeof err),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_null(c);
  ck_assert_msg(strstr(err, "frobnicate") != NULL, "message: %s", err);
  sb_option dev1[] = {{"device", "1"}};
  ck_assert_int_eq(be->context_create(NULL, dev1, 1, &c, err, sizeof err),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err, "device 1") != NULL, "message: %s", err);
  sb_option devx[] = {{"device", "x"}};
  ck_assert_int_eq(be->context_create(NULL, devx, 1, &c, err, sizeof err),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err, "device='x'") != NULL, "message: %s", err);
  ck_assert_int_eq(be->context_create(NULL, opt, 1, &c, err, sizeof err),
                   SB_OK);
  ck_assert_int_eq(be->rank_count(c), 1);
  be->context_destroy(c);
}
END_TEST

static sb_memory_stats_v1 stats(void) {
  sb_memory_stats_v1 s;
  memset(&s, 0xab, sizeof s);
  s.struct_size = sizeof s;
  OK(be->memory_stats(ctx, 0, &s));
  ck_assert_uint_eq(s.rank, 0);
  for (int c = 0; c < SB_MEM_CATEGORY_COUNT; c++)
    ck_assert_uint_ge(s.peak_bytes[c], s.current_bytes[c]);
  ck_assert_uint_ge(s.total_peak_bytes, s.total_current_bytes);
  ck_assert_int_eq(s.device_used_bytes, -1);
  return s;
}

START_TEST(test_memory_stats_track_weights_peak_and_baseline) {
  sb_memory_stats_v1 s0 = stats();
  float w[12] = {0}, b[3] = {0};
  sb_layer *l = linear(4, 3, w, b);
  sb_memory_stats_v1 s1 = stats();
  ck_assert_uint_eq(s1.current_bytes[SB_MEM_WEIGHTS] -
                        s0.current_bytes[SB_MEM_WEIGHTS],
                    sizeof w + sizeof b);
  ck_assert_uint_eq(s1.total_current_bytes - s0.total_current_bytes,
                    sizeof w + sizeof b);
  OK(be->memory_mark_baseline(ctx));
  sb_memory_stats_v1 s2 = stats();
  ck_assert_uint_eq(s2.baseline_bytes, s2.total_current_bytes);
  /* IBP needs workspace that it returns: peak rises, current does not. */
  sb_tensor *lo = tensor(SB_MEM_BOUNDS, 2, 1, 4, 0);
  sb_tensor *up = tensor(SB_MEM_BOUNDS, 2, 1, 4, 0);
  sb_tensor *ol = tensor(SB_MEM_BOUNDS, 2, 1, 3, 0);
  sb_tensor *ou = tensor(SB_MEM_BOUNDS, 2, 1, 3, 0);
  ibp(l, lo, up, ol, ou);
  sb_memory_stats_v1 s3 = stats();
  ck_assert_uint_eq(s3.current_bytes[SB_MEM_BOUNDS], 14 * sizeof(float));
  ck_assert_uint_eq(s3.current_bytes[SB_MEM_WORKSPACE], 0);
  ck_assert_uint_gt(s3.peak_bytes[SB_MEM_WORKSPACE], 0);
  OK(be->memory_reset_peak(ctx));
  sb_memory_stats_v1 s4 = stats();
  for (int c = 0; c < SB_MEM_CATEGORY_COUNT; c++)
    ck_assert_uint_eq(s4.peak_bytes[c], s4.current_bytes[c]);
  ck_assert_uint_eq(s4.total_peak_bytes, s4.total_current_bytes);
  be->tensor_free(ctx, lo), be->tensor_free(ctx, up);
  be->tensor_free(ctx, ol), be->tensor_free(ctx, ou);
  be->layer_free(ctx, l);
  sb_memory_stats_v1 s5 = stats();
  ck_assert_uint_eq(s5.current_bytes[SB_MEM_WEIGHTS],
                    s0.current_bytes[SB_MEM_WEIGHTS]);
  ck_assert_uint_eq(s5.total_current_bytes, s0.total_current_bytes);
  ck_assert_uint_eq(s5.baseline_bytes, s2.baseline_bytes);
  ck_assert_int_eq(be->memory_stats(ctx, 1, &s5), SB_ERR_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_bad_layers_and_shapes_are_rejected_with_messages) {
  float w[9] = {0};
  sb_layer *l = NULL;
  sb_layer_desc_v1 d = conv_desc(1, 3, 3, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
  d.weight = w;
  d.out_h = 4; /* geometry gives 3 */
  ck_assert_int_eq(be->layer_create(ctx, &d, &l), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "gives 3x3"));
  d = conv_desc(3, 3, 3, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 2);
  d.weight = w;
  ck_assert_int_eq(be->layer_create(ctx, &d, &l), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "groups=2"));
  d = desc_of(42, 1, 1);
  ck_assert_int_eq(be->layer_create(ctx, &d, &l), SB_ERR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "kind 42"));
  d = desc_of(SB_LAYER_LINEAR, 3, 2);
  ck_assert_int_eq(be->layer_create(ctx, &d, &l), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "weight"));
  ck_assert_ptr_null(l);
  l = linear(3, 2, w, NULL);
  sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
  sb_tensor *Ai = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 4);
  sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, 1, 1, 0);
  sb_backward_args_v1 a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.A_out = A, a.A_in[0] = Ai, a.bias = bias;
  ck_assert_int_eq(be->layer_backward(ctx, l, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "A_in[0] has 4"));
  sb_layer *r = relu(2);
  a.A_in[0] = A;
  sb_tensor *A2 = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
  a.A_in[0] = A2;
  ck_assert_int_eq(be->layer_backward(ctx, r, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "pre_lower"));
  be->tensor_free(ctx, A), be->tensor_free(ctx, Ai);
  be->tensor_free(ctx, A2), be->tensor_free(ctx, bias);
  be->layer_free(ctx, l), be->layer_free(ctx, r);
}
END_TEST

static Suite *backend_cpu_suite(void) {
  Suite *s = suite_create("backend-cpu");
  TCase *hand = tcase_create("hand-computed");
  tcase_add_checked_fixture(hand, setup, teardown);
  tcase_add_test(hand, test_linear_ibp_matches_hand_computation);
  tcase_add_test(hand, test_crown_2_2_1_matches_hand_computation);
  tcase_add_test(hand, test_relu_backward_uses_given_alpha);
  tcase_add_test(hand, test_relu_backward_relaxation_per_neuron_and_side);
  tcase_add_test(hand, test_crown_is_exact_without_unstable_relu);
  tcase_add_test(hand, test_conv_stride_padding_matches_hand_computation);
  tcase_add_test(hand, test_affine_ibp_and_crown_match_hand_computation);
  tcase_add_test(hand, test_residual_add_crown_matches_hand_computation);
  suite_add_tcase(s, hand);

  TCase *random = tcase_create("random");
  tcase_add_checked_fixture(random, setup, teardown);
  tcase_add_test(random, test_conv_backward_is_transpose_of_forward);
  tcase_add_loop_test(random, test_random_mlp_bounds_contain_samples, 0, 3);
  tcase_add_loop_test(random, test_random_conv_net_bounds_contain_samples, 0,
                      3);
  suite_add_tcase(s, random);

  TCase *abi = tcase_create("abi");
  tcase_add_checked_fixture(abi, setup, teardown);
  tcase_add_test(abi, test_backward_accumulate_adds_and_bias_always_adds);
  tcase_add_test(abi, test_unit_rows_set_one_per_spec_and_batch);
  tcase_add_test(abi, test_tensor_write_read_f64_at_offset);
  tcase_add_test(abi, test_tensor_create_out_of_memory_names_bytes_and_category);
  tcase_add_test(abi, test_context_rejects_unknown_option_by_name);
  tcase_add_test(abi, test_memory_stats_track_weights_peak_and_baseline);
  tcase_add_test(abi, test_bad_layers_and_shapes_are_rejected_with_messages);
  suite_add_tcase(s, abi);
  return s;
}

int main(void) {
  load_backend();
  SRunner *sr = srunner_create(backend_cpu_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
