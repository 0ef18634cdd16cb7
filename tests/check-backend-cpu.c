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
#ifdef __linux__
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#ifdef __GLIBC__
#include <malloc.h>
#endif

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
    ck_assert_msg(fabs(got[i] - want[i]) <= tol, "%s[%d]: got %.7g, want %.7g",
                  what, i, got[i], want[i]);
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
  ck_assert_double_eq_tol(net221_crown(&n, SB_SIDE_LOWER, (double[]){0.5, 0.5}),
                          -0.5, 1e-6);
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
  const double want_A[2][10] = {{1, 0, 1, 0, 0, -0.75, -0.5, -1, 0, -1.0 / 3},
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
  const double want[36] = {2, 0, 0, 0, 1,  0, 0, 0, 0,  /* (0,0) */
                           0, 0, 2, 0, -1, 0, 0, 0, 0,  /* (0,1) */
                           0, 0, 0, 0, -1, 0, 2, 0, 0,  /* (1,0) */
                           0, 0, 0, 0, 1,  0, 0, 0, 2}; /* (1,1) */
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
  /* pass_on: x's coefficients are the Add's A_out tensor itself, as the
   * engine hands a spent A_out on (the ABI lets an Add's A_in be its
   * A_out); the bounds must be the same. */
  for (int side = 0; side < 2; side++)
    for (int pass_on = 0; pass_on < 2; pass_on++) {
      sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 2, 1, 2);
      sb_tensor *Ax = pass_on ? A : tensor(SB_MEM_COEFFICIENTS, 3, 2, 1, 2);
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
      sb_tensor *all[] = {A, Ar, bias, out, pass_on ? NULL : Ax};
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

static void ref_conv(const sb_layer_desc_v1 *d, const float *w, const float *b,
                     const double *x, double *y) {
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
              s += (double)
                       w[((o * cg + c) * d->kernel_h + i) * d->kernel_w + j] *
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
      /* rows wider than the CPU kernel's 8 lanes, with a tail; 12 input
       * channels, one block of 8 and one padded block */
      conv_desc(12, 5, 19, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1),
      /* an RGB stem at stride 2 (the half-width channel block) */
      conv_desc(3, 6, 32, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1),
      /* stride 3 over a kernel of 2: input columns no output reaches */
      conv_desc(1, 4, 26, 9, 2, 2, 3, 3, 0, 0, 0, 0, 1, 1, 1),
  };
  const int64_t S = 3, B = 2;
  for (size_t gi = 0; gi < G_N_ELEMENTS(geoms); gi++) {
    sb_layer_desc_v1 d = geoms[gi];
    RefLayer l = ref_layer(g, d);
    int64_t nin = d.in_size, nout = d.out_size;
    double *x = g_new(double, B *nin), *y = g_new(double, B *nout);
    double *A = g_new(double, S *B *nout), *Ai = g_new(double, S *B *nin);
    for (int64_t i = 0; i < B * nin; i++)
      x[i] = frand(g, -1, 1);
    for (int64_t i = 0; i < S * B * nout; i++)
      A[i] = frand(g, -1, 1);
    /* The backend's forward agrees with the float64 reference. */
    sb_tensor *tx = bounds_from(B, nin, x),
              *ty = tensor(SB_MEM_BOUNDS, 2, B, nout, 0);
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
    double *bv = g_new(double, S *B);
    read_into(bias, S * B, bv);
    /* A second pass with accumulate set adds the same coefficients. */
    double *twice = g_new(double, S *B *nin);
    backward(l.layer, SB_SIDE_LOWER, tA, NULL, NULL, NULL, tAi, 1, bias);
    read_into(tAi, S * B * nin, twice);
    for (int64_t i = 0; i < S * B * nin; i++)
      ck_assert_msg(fabs(twice[i] - 2 * Ai[i]) <= 1e-5 * (1 + fabs(Ai[i])),
                    "geometry %zu: accumulated A_in[%lld] %g, not twice %g", gi,
                    (long long)i, twice[i], Ai[i]);
    g_free(twice);
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
    sb_tensor *Ai = tensor(SB_MEM_COEFFICIENTS, 3, S, B, net->l[i].d.in_size);
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

static void check_soundness(RefNet *net, GRand *g, int64_t B, int max_corners) {
  int64_t nin = net->l[0].d.in_size, S = net->l[net->n - 1].d.out_size;
  double *xl = g_new(double, B *nin), *xu = g_new(double, B *nin);
  for (int64_t i = 0; i < B * nin; i++) {
    double c = frand(g, -1, 1), r = frand(g, 0.05, 0.4);
    xl[i] = c - r, xu[i] = c + r;
  }
  sb_tensor *lo[9] = {0}, *up[9] = {0};
  lo[0] = bounds_from(B, nin, xl);
  up[0] = bounds_from(B, nin, xu);
  net_ibp(net, B, lo, up);
  double *il = g_new(double, B *S), *iu = g_new(double, B *S);
  double *cl = g_new(double, S *B), *cu = g_new(double, S *B);
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
        ck_assert_msg(
            y[s] >= il[b * S + s] - tol && y[s] <= iu[b * S + s] + tol,
            "IBP [%g, %g] misses y[%lld] = %g (batch %lld)", il[b * S + s],
            iu[b * S + s], (long long)s, y[s], (long long)b);
        ck_assert_msg(
            y[s] >= cl[s * B + b] - tol && y[s] <= cu[s * B + b] + tol,
            "CROWN [%g, %g] misses y[%lld] = %g (batch %lld)", cl[s * B + b],
            cu[s * B + b], (long long)s, y[s], (long long)b);
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
    net.l[net.n++] =
        ref_layer(g, desc_of(SB_LAYER_LINEAR, sizes[i], sizes[i + 1]));
    if (i < 2)
      net.l[net.n++] =
          ref_layer(g, desc_of(SB_LAYER_RELU, sizes[i + 1], sizes[i + 1]));
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
  assert_close(got, (double[]){0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0}, 12, 0, "A");
  const int64_t bad[2] = {0, 3};
  ck_assert_int_eq(be->tensor_set_unit_rows(ctx, A, bad),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "index[1] = 3"));
  be->tensor_free(ctx, A);
}
END_TEST
/* Linear backward from tensor_set_unit_rows gathers rows of W instead of
 * multiplying: the result must be bitwise the GEMM's (here forced by
 * writing the same unit rows with tensor_write), with and without
 * accumulation, and a write after set_unit_rows must be honoured. */
START_TEST(test_linear_backward_from_unit_rows_equals_gemm_bitwise) {
  enum { S = 3, B = 2, IN = 5, OUT = 4 };
  GRand *g = g_rand_new_with_seed(17);
  float *w = rand_floats(g, OUT * IN, 1.0), *b = rand_floats(g, OUT, 1.0);
  sb_layer *l = linear(IN, OUT, w, b);
  const int64_t idx[S] = {3, 0, 3};
  double dense[S * B * OUT] = {0};
  for (int s = 0; s < S; s++)
    for (int k = 0; k < B; k++)
      dense[(s * B + k) * OUT + idx[s]] = 1.0;
  sb_tensor *U = tensor(SB_MEM_COEFFICIENTS, 3, S, B, OUT);
  sb_tensor *D = tensor(SB_MEM_COEFFICIENTS, 3, S, B, OUT);
  OK(be->tensor_set_unit_rows(ctx, U, idx));
  OK(be->tensor_write(ctx, D, 0, S * B * OUT, SB_DTYPE_F64, dense));
  sb_tensor *from[2] = {U, D}, *Ai[2], *bias[2];
  float got[2][S * B * IN + S * B];
  for (int i = 0; i < 2; i++) {
    Ai[i] = tensor(SB_MEM_COEFFICIENTS, 3, S, B, IN);
    bias[i] = tensor(SB_MEM_COEFFICIENTS, 2, S, B, 1);
    OK(be->tensor_write(ctx, bias[i], 0, S * B, SB_DTYPE_F64,
                        (double[]){0.1, -0.2, 0.3, 1e-3, 7, -7}));
    backward(l, SB_SIDE_LOWER, from[i], NULL, NULL, NULL, Ai[i], 0, bias[i]);
    backward(l, SB_SIDE_LOWER, from[i], NULL, NULL, NULL, Ai[i], 1, bias[i]);
    OK(be->tensor_read(ctx, Ai[i], 0, S * B * IN, SB_DTYPE_F32, got[i]));
    OK(be->tensor_read(ctx, bias[i], 0, S * B, SB_DTYPE_F32,
                       got[i] + S * B * IN));
  }
  ck_assert_int_eq(memcmp(got[0], got[1], sizeof got[0]), 0);
  ck_assert_float_eq(got[0][IN], 2.0f * w[3 * IN]); /* row (0,1), col 0 */
  /* Row (0,0) rewritten to 2*e_1: no longer the unit rows of the index. */
  OK(be->tensor_write(ctx, U, 0, OUT, SB_DTYPE_F64, (double[]){0, 2, 0, 0}));
  backward(l, SB_SIDE_LOWER, U, NULL, NULL, NULL, Ai[0], 0, bias[0]);
  float row[IN];
  OK(be->tensor_read(ctx, Ai[0], 0, IN, SB_DTYPE_F32, row));
  for (int j = 0; j < IN; j++)
    ck_assert_float_eq(row[j], 2.0f * w[IN + j]);
  for (int i = 0; i < 2; i++) {
    be->tensor_free(ctx, Ai[i]);
    be->tensor_free(ctx, bias[i]);
  }
  be->tensor_free(ctx, U);
  be->tensor_free(ctx, D);
  be->layer_free(ctx, l);
  g_free(w);
  g_free(b);
  g_rand_free(g);
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

/* The test suite's guard on backward steps that miss an element (ABI 1.3):
 * with SHARDBOUND_POISON_EMPTY set, tensor_create_empty fills with NaN
 * (here more than one upload chunk), and tensor_create still zero-fills. */
START_TEST(test_empty_tensor_is_nan_when_poisoned_and_created_is_zero) {
  ck_assert(SB_HAS_MEMBER(be, sb_backend_v1, tensor_create_empty));
  g_setenv("SHARDBOUND_POISON_EMPTY", "1", TRUE);
  sb_context *poisoned = NULL;
  char err[256] = "";
  ck_assert_msg(be->context_create(NULL, NULL, 0, &poisoned, err, sizeof err) ==
                    SB_OK,
                "context_create: %s", err);
  const int64_t n = 10000;
  int64_t shape[2] = {2, n};
  double *got = g_new(double, 2 * n);
  sb_tensor *t = NULL;
  ck_assert_int_eq(
      be->tensor_create_empty(poisoned, SB_MEM_COEFFICIENTS, 2, shape, &t),
      SB_OK);
  ck_assert_int_eq(be->tensor_read(poisoned, t, 0, 2 * n, SB_DTYPE_F64, got),
                   SB_OK);
  for (int64_t i = 0; i < 2 * n; i++)
    ck_assert_msg(isnan(got[i]), "empty tensor element %lld is %g",
                  (long long)i, got[i]);
  be->tensor_free(poisoned, t);
  ck_assert_int_eq(
      be->tensor_create(poisoned, SB_MEM_COEFFICIENTS, 2, shape, &t), SB_OK);
  ck_assert_int_eq(be->tensor_read(poisoned, t, 0, 2 * n, SB_DTYPE_F64, got),
                   SB_OK);
  for (int64_t i = 0; i < 2 * n; i++)
    ck_assert_msg(got[i] == 0.0, "new tensor element %lld is %g", (long long)i,
                  got[i]);
  be->tensor_free(poisoned, t);
  be->context_destroy(poisoned);
  g_free(got);
  g_unsetenv("SHARDBOUND_POISON_EMPTY");
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

/* ---- ABI 1.1: VJPs against central finite differences ---- */

static sb_tensor *coef_from(int32_t cat, int64_t S, int64_t B, int64_t N,
                            const double *v) {
  sb_tensor *t = tensor(cat, 3, S, B, N);
  if (v)
    OK(be->tensor_write(ctx, t, 0, S * B * N, SB_DTYPE_F64, v));
  return t;
}

static double *rand_doubles(GRand *g, int64_t n, double lo, double hi) {
  double *v = g_new(double, n);
  for (int64_t i = 0; i < n; i++)
    v[i] = frand(g, lo, hi);
  return v;
}

/* Random values of magnitude in [0.1, 1]: away from the kinks of ReLU and
 * |.|, so a central difference sees one smooth piece. */
static double *rand_away_from_zero(GRand *g, int64_t n) {
  double *v = g_new(double, n);
  for (int64_t i = 0; i < n; i++)
    v[i] = frand(g, 0.1, 1.0) * (g_rand_boolean(g) ? 1 : -1);
  return v;
}

/* The conv layer's CROWN step in float64: the transposed convolution. */
static void ref_conv_transpose(const sb_layer_desc_v1 *d, const float *w,
                               const double *a, double *x) {
  int64_t cg = d->in_c / d->groups, og = d->out_c / d->groups;
  memset(x, 0, (size_t)d->in_size * sizeof *x);
  for (int64_t o = 0; o < d->out_c; o++)
    for (int64_t oh = 0; oh < d->out_h; oh++)
      for (int64_t ow = 0; ow < d->out_w; ow++) {
        double v = a[(o * d->out_h + oh) * d->out_w + ow];
        int64_t g = o / og;
        for (int64_t c = 0; c < cg; c++)
          for (int64_t i = 0; i < d->kernel_h; i++)
            for (int64_t j = 0; j < d->kernel_w; j++) {
              int64_t ih = oh * d->stride_h - d->pad_top + i * d->dilation_h;
              int64_t iw = ow * d->stride_w - d->pad_left + j * d->dilation_w;
              if (ih < 0 || ih >= d->in_h || iw < 0 || iw >= d->in_w)
                continue;
              x[((g * cg + c) * d->in_h + ih) * d->in_w + iw] +=
                  v * w[((o * cg + c) * d->kernel_h + i) * d->kernel_w + j];
            }
      }
}

/* One CROWN backward step in float64 (the function whose VJP is tested):
 * A_in[i] [R,N_in] overwritten, bias [R] overwritten with this layer's
 * contribution. */
typedef struct {
  const RefLayer *l;
  int side;
  int64_t S, B;
  const double *pl, *pu; /* relu: [B,N] */
} RefStep;

static void ref_step(const RefStep *c, const double *A, const double *alpha,
                     double *const *A_in, double *bias) {
  const sb_layer_desc_v1 *d = &c->l->d;
  const int64_t R = c->S * c->B, NO = d->out_size, NI = d->in_size;
  for (int64_t r = 0; r < R; r++) {
    const double *a = A + r * NO;
    double *ai = A_in[0] + r * NI, bsum = 0;
    switch (d->kind) {
    case SB_LAYER_LINEAR:
      for (int64_t i = 0; i < NI; i++) {
        double v = 0;
        for (int64_t o = 0; o < NO; o++)
          v += a[o] * c->l->w[o * NI + i];
        ai[i] = v;
      }
      for (int64_t o = 0; o < NO; o++)
        bsum += a[o] * (c->l->b ? c->l->b[o] : 0);
      break;
    case SB_LAYER_CONV2D: {
      ref_conv_transpose(d, c->l->w, a, ai);
      int64_t P = d->out_h * d->out_w;
      for (int64_t o = 0; o < NO; o++)
        bsum += a[o] * c->l->b[o / P];
      break;
    }
    case SB_LAYER_AFFINE:
      for (int64_t k = 0; k < NO; k++) {
        ai[k] = c->l->w[k / d->spatial] * a[k];
        bsum += a[k] * c->l->b[k / d->spatial];
      }
      break;
    case SB_LAYER_ADD:
      memcpy(ai, a, (size_t)NO * sizeof *a);
      memcpy(A_in[1] + r * NI, a, (size_t)NO * sizeof *a);
      break;
    case SB_LAYER_RELU: {
      const int64_t b = r % c->B;
      for (int64_t n = 0; n < NO; n++) {
        double l = c->pl[b * NO + n], u = c->pu[b * NO + n], v = a[n];
        if (l >= 0) {
          ai[n] = v;
        } else if (u <= 0) {
          ai[n] = 0;
        } else {
          double sl = u / (u - l), t = -l * sl, al = alpha[r * NO + n];
          double pos = v > 0 ? v : 0, neg = v < 0 ? v : 0;
          ai[n] = c->side == SB_SIDE_LOWER ? al * pos + sl * neg
                                           : al * neg + sl * pos;
          bsum += t * (c->side == SB_SIDE_LOWER ? neg : pos);
        }
      }
      break;
    }
    default:
      ck_abort_msg("unexpected kind");
    }
    bias[r] = bsum;
  }
}

/* L = sum_i <G_i, A_in[i]> + <g, bias>: a random linear functional. */
static double ref_loss(const RefStep *c, const double *A, const double *alpha,
                       double *const *G, const double *g) {
  const int64_t R = c->S * c->B, NI = c->l->d.in_size;
  int n_in = c->l->d.kind == SB_LAYER_ADD ? 2 : 1;
  double *ai[2] = {g_new0(double, R *NI), g_new0(double, R *NI)};
  double *bias = g_new0(double, R);
  ref_step(c, A, alpha, ai, bias);
  double L = 0;
  for (int i = 0; i < n_in; i++)
    for (int64_t k = 0; k < R * NI; k++)
      L += G[i][k] * ai[i][k];
  for (int64_t r = 0; r < R; r++)
    L += g[r] * bias[r];
  g_free(ai[0]), g_free(ai[1]), g_free(bias);
  return L;
}

/* dL/dv[k] by central differences, v being A_out or alpha (modified and
 * restored in place). */
static double central_diff(const RefStep *c, double *A, double *alpha,
                           double *v, int64_t k, double *const *G,
                           const double *g) {
  const double h = 1e-4, keep = v[k];
  v[k] = keep + h;
  double up = ref_loss(c, A, alpha, G, g);
  v[k] = keep - h;
  double down = ref_loss(c, A, alpha, G, g);
  v[k] = keep;
  return (up - down) / (2 * h);
}

static void assert_grad(const double *got, const double *want, int64_t n,
                        const char *what) {
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(fabs(got[i] - want[i]) <= 1e-3 * (1 + fabs(want[i])),
                  "%s[%lld]: backend %.7g, finite difference %.7g", what,
                  (long long)i, got[i], want[i]);
}

/* Runs layer_backward_vjp on the backend twice (explicit grad_bias and
 * overwrite; NULL grad_bias, i.e. ones, accumulated onto ones) and
 * compares with finite differences of ref_loss. alpha_mode: 0 no alpha
 * tensor (the default slopes), 1 a random alpha. */
static void check_layer_vjp(GRand *rng, const RefLayer *l, int side, int64_t S,
                            int64_t B, int alpha_mode) {
  const sb_layer_desc_v1 *d = &l->d;
  const int64_t R = S * B, NO = d->out_size, NI = d->in_size;
  const int relu = d->kind == SB_LAYER_RELU;
  const int n_in = d->kind == SB_LAYER_ADD ? 2 : 1;
  RefStep c = {l, side, S, B, NULL, NULL};
  double *pl = NULL, *pu = NULL, *alpha = g_new0(double, R *NO);
  sb_tensor *tpl = NULL, *tpu = NULL, *talpha = NULL, *tga = NULL;
  if (relu) {
    /* Cycle through active, inactive, unstable with u > -l and u < -l. */
    pl = g_new(double, B *NO), pu = g_new(double, B *NO);
    for (int64_t k = 0; k < B * NO; k++) {
      double lo[] = {0.2, -1.0, -0.5, -1.2}, hi[] = {1.0, -0.1, 1.3, 0.4};
      pl[k] = lo[k % 4] + frand(rng, -0.05, 0.05);
      pu[k] = hi[k % 4] + frand(rng, -0.05, 0.05);
    }
    c.pl = pl, c.pu = pu;
    tpl = bounds_from(B, NO, pl), tpu = bounds_from(B, NO, pu);
    for (int64_t r = 0; r < R; r++)
      for (int64_t n = 0; n < NO; n++) {
        double lo = pl[(r % B) * NO + n], hi = pu[(r % B) * NO + n];
        alpha[r * NO + n] =
            alpha_mode ? frand(rng, 0, 1) : (hi > -lo ? 1.0 : 0.0);
      }
    if (alpha_mode)
      talpha = coef_from(SB_MEM_ALPHA, S, B, NO, alpha);
    tga = coef_from(SB_MEM_ALPHA, S, B, NO, NULL);
  }
  double *A = rand_away_from_zero(rng, R * NO);
  double *G[2] = {rand_doubles(rng, R * NI, -1, 1),
                  rand_doubles(rng, R * NI, -1, 1)};
  double *gb = rand_doubles(rng, R, -1, 1), *ones = g_new(double, R);
  for (int64_t r = 0; r < R; r++)
    ones[r] = 1;
  sb_tensor *tA = coef_from(SB_MEM_COEFFICIENTS, S, B, NO, A);
  sb_tensor *tG[2] = {coef_from(SB_MEM_COEFFICIENTS, S, B, NI, G[0]),
                      coef_from(SB_MEM_COEFFICIENTS, S, B, NI, G[1])};
  sb_tensor *tg = tensor(SB_MEM_COEFFICIENTS, 2, S, B, 0);
  OK(be->tensor_write(ctx, tg, 0, R, SB_DTYPE_F64, gb));
  sb_tensor *tgA = coef_from(SB_MEM_COEFFICIENTS, S, B, NO, NULL);
  double *got = g_new(double, R *NO), *want = g_new(double, R *NO);
  for (int pass = 0; pass < 2; pass++) {
    const double *g = pass == 0 ? gb : ones;
    sb_vjp_args_v1 a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.side = side;
    a.A_out = tA;
    a.pre_lower = tpl, a.pre_upper = tpu, a.alpha = talpha;
    for (int i = 0; i < n_in; i++)
      a.grad_A_in[i] = tG[i];
    a.grad_bias = pass == 0 ? tg : NULL;
    a.grad_A_out = tgA;
    a.grad_alpha = tga;
    if (pass == 1) {
      /* Accumulation onto ones, for both outputs. */
      for (int64_t k = 0; k < R * NO; k++)
        got[k] = 1;
      OK(be->tensor_write(ctx, tgA, 0, R * NO, SB_DTYPE_F64, got));
      if (tga)
        OK(be->tensor_write(ctx, tga, 0, R * NO, SB_DTYPE_F64, got));
      a.accumulate_A_out = a.accumulate_alpha = 1;
    }
    OK(be->layer_backward_vjp(ctx, l->layer, &a));
    read_into(tgA, R * NO, got);
    for (int64_t k = 0; k < R * NO; k++)
      want[k] = central_diff(&c, A, alpha, A, k, G, g) + pass;
    assert_grad(got, want, R * NO, "dL/dA_out");
    if (tga) {
      read_into(tga, R * NO, got);
      for (int64_t k = 0; k < R * NO; k++)
        want[k] = central_diff(&c, A, alpha, alpha, k, G, g) + pass;
      assert_grad(got, want, R * NO, "dL/dalpha");
    }
  }
  g_free(got), g_free(want), g_free(A), g_free(G[0]), g_free(G[1]);
  g_free(gb), g_free(ones), g_free(alpha), g_free(pl), g_free(pu);
  be->tensor_free(ctx, tA), be->tensor_free(ctx, tG[0]);
  be->tensor_free(ctx, tG[1]), be->tensor_free(ctx, tg);
  be->tensor_free(ctx, tgA), be->tensor_free(ctx, tga);
  be->tensor_free(ctx, tpl), be->tensor_free(ctx, tpu);
  be->tensor_free(ctx, talpha);
}

/* A_in [R,IN] = A [R,OUT] . W [OUT,IN] in double, and the scale each
 * element's rounding is relative to (sum of |a||w|, so that cancellation
 * does not make the tolerance vanish). */
static void ref_linear_backward(const float *A, const float *w, int64_t R,
                                int64_t OUT, int64_t IN, double *want,
                                double *scale) {
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < IN; j++) {
      double acc = 0.0, mag = 0.0;
      for (int64_t k = 0; k < OUT; k++) {
        acc += (double)A[r * OUT + k] * w[k * IN + j];
        mag += fabs((double)A[r * OUT + k] * w[k * IN + j]);
      }
      want[r * IN + j] = acc;
      scale[r * IN + j] = mag;
    }
}

static void assert_linear_backward_dense(const sb_tensor *A, const float *w,
                                         const sb_tensor *Ai, int64_t R,
                                         int64_t OUT, int64_t IN,
                                         const char *what) {
  float *a = g_new(float, R *OUT), *got = g_new(float, R *IN);
  double *want = g_new(double, R *IN), *scale = g_new(double, R *IN);
  OK(be->tensor_read(ctx, A, 0, R * OUT, SB_DTYPE_F32, a));
  OK(be->tensor_read(ctx, Ai, 0, R * IN, SB_DTYPE_F32, got));
  ref_linear_backward(a, w, R, OUT, IN, want, scale);
  for (int64_t i = 0; i < R * IN; i++)
    ck_assert_msg(fabs(got[i] - want[i]) <= 1e-6 * scale[i] + 1e-30,
                  "%s: A_in[%lld] = %.9g, dense %.9g (scale %.3g)", what,
                  (long long)i, got[i], want[i], scale[i]);
  g_free(a), g_free(got), g_free(want), g_free(scale);
}

static uint64_t workspace_peak(void) {
  sb_memory_stats_v1 m = {.struct_size = sizeof m};
  OK(be->memory_stats(ctx, 0, &m));
  return m.peak_bytes[SB_MEM_WORKSPACE];
}

/* After a ReLU backward, the columns of stably inactive neurons are exact
 * zeros and a linear backward multiplies only the live ones (its
 * workspace shows it did): the result equals the dense product to
 * rounding, over several row blocks, and a later write into a dead column
 * is honoured. */
START_TEST(test_linear_backward_after_inactive_relu_equals_dense) {
  enum { S = 2 * 128 + 3, B = 2, IN = 48, OUT = 64 };
  const int64_t R = S * B;
  GRand *g = g_rand_new_with_seed(29);
  float *w = rand_floats(g, OUT * IN, 1.0), *b = rand_floats(g, OUT, 1.0);
  sb_layer *lin = linear(IN, OUT, w, b), *re = relu(OUT);
  /* Neurons 0..39 inactive in both batch elements, the rest unstable or
   * active, so 24 of 64 columns stay live. */
  double pl[B * OUT], pu[B * OUT];
  for (int k = 0; k < B; k++)
    for (int n = 0; n < OUT; n++) {
      pl[k * OUT + n] = n < 40 ? -2.0 : n % 2 ? -0.5 : 0.25;
      pu[k * OUT + n] = n < 40 ? (n % 3 ? -0.1 : 0.0) : 1.0;
    }
  sb_tensor *lo = bounds_from(B, OUT, pl), *up = bounds_from(B, OUT, pu);
  double *a0 = g_new(double, R *OUT);
  for (int64_t i = 0; i < R * OUT; i++)
    a0[i] = frand(g, -1.0, 1.0);
  sb_tensor *A = coef_from(SB_MEM_COEFFICIENTS, S, B, OUT, a0);
  sb_tensor *Am = coef_from(SB_MEM_COEFFICIENTS, S, B, OUT, NULL);
  sb_tensor *Ai = coef_from(SB_MEM_COEFFICIENTS, S, B, IN, NULL);
  sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, S, B, 0);
  backward(re, SB_SIDE_LOWER, A, lo, up, NULL, Am, 0, bias);
  uint64_t ws0 = workspace_peak();
  backward(lin, SB_SIDE_LOWER, Am, NULL, NULL, NULL, Ai, 0, bias);
  ck_assert_uint_gt(workspace_peak(), ws0);
  assert_linear_backward_dense(Am, w, Ai, R, OUT, IN, "after relu");

  /* Row (1,0) of the middle block gets a value in dead column 3. */
  OK(be->tensor_write(ctx, Am, (128 * B) * OUT + 3, 1, SB_DTYPE_F64,
                      (double[]){0.75}));
  backward(lin, SB_SIDE_LOWER, Am, NULL, NULL, NULL, Ai, 0, bias);
  assert_linear_backward_dense(Am, w, Ai, R, OUT, IN, "after a write");
  float probe[IN];
  OK(be->tensor_read(ctx, Ai, (128 * B) * IN, IN, SB_DTYPE_F32, probe));
  float *am = g_new(float, OUT);
  OK(be->tensor_read(ctx, Am, (128 * B) * OUT, OUT, SB_DTYPE_F32, am));
  double with3 = 0.0;
  for (int k = 0; k < OUT; k++)
    with3 += (double)am[k] * w[k * IN];
  ck_assert_msg(fabs(probe[0] - with3) <= 1e-5 * (1.0 + fabs(with3)),
                "the write into dead column 3 was ignored: %.9g vs %.9g",
                probe[0], with3);
  g_free(am);

  be->tensor_free(ctx, A);
  be->tensor_free(ctx, Am);
  be->tensor_free(ctx, Ai);
  be->tensor_free(ctx, bias);
  be->tensor_free(ctx, lo);
  be->tensor_free(ctx, up);
  be->layer_free(ctx, lin);
  be->layer_free(ctx, re);
  g_free(a0), g_free(w), g_free(b);
  g_rand_free(g);
}
END_TEST

/* Every neuron inactive: A is all zeros after the ReLU, and the linear
 * backward must still overwrite A_in with zeros, or leave it as it was
 * when accumulating. */
START_TEST(test_linear_backward_of_all_zero_columns_overwrites_or_keeps) {
  enum { S = 3, B = 1, IN = 5, OUT = 4 };
  const float w[OUT * IN] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                             11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
  sb_layer *lin = linear(IN, OUT, w, NULL), *re = relu(OUT);
  sb_tensor *lo = bounds_from(B, OUT, (double[]){-2, -1, -3, -1});
  sb_tensor *up = bounds_from(B, OUT, (double[]){-1, 0, -1, -0.5});
  double ones[S * B * OUT], prior[S * B * IN];
  for (int i = 0; i < S * B * OUT; i++)
    ones[i] = 1.0;
  for (int i = 0; i < S * B * IN; i++)
    prior[i] = i + 0.5;
  sb_tensor *A = coef_from(SB_MEM_COEFFICIENTS, S, B, OUT, ones);
  sb_tensor *Am = coef_from(SB_MEM_COEFFICIENTS, S, B, OUT, NULL);
  sb_tensor *Ai = coef_from(SB_MEM_COEFFICIENTS, S, B, IN, prior);
  sb_tensor *bias = tensor(SB_MEM_COEFFICIENTS, 2, S, B, 0);
  backward(re, SB_SIDE_UPPER, A, lo, up, NULL, Am, 0, bias);
  double got[S * B * IN];
  backward(lin, SB_SIDE_UPPER, Am, NULL, NULL, NULL, Ai, 1, bias);
  read_into(Ai, S * B * IN, got);
  assert_close(got, prior, S * B * IN, 0.0, "accumulated A_in");
  backward(lin, SB_SIDE_UPPER, Am, NULL, NULL, NULL, Ai, 0, bias);
  read_into(Ai, S * B * IN, got);
  double zeros[S * B * IN] = {0};
  assert_close(got, zeros, S * B * IN, 0.0, "overwritten A_in");
  be->tensor_free(ctx, A);
  be->tensor_free(ctx, Am);
  be->tensor_free(ctx, Ai);
  be->tensor_free(ctx, bias);
  be->tensor_free(ctx, lo);
  be->tensor_free(ctx, up);
  be->layer_free(ctx, lin);
  be->layer_free(ctx, re);
}
END_TEST

static sb_tensor *linear_vjp(const sb_layer *l, const sb_tensor *A,
                             const sb_tensor *G, const sb_tensor *g,
                             sb_tensor *gA) {
  sb_vjp_args_v1 v;
  memset(&v, 0, sizeof v);
  v.struct_size = sizeof v;
  v.side = SB_SIDE_LOWER;
  v.A_out = A;
  v.grad_A_in[0] = G;
  v.grad_bias = g;
  v.grad_A_out = gA;
  OK(be->layer_backward_vjp(ctx, l, &v));
  return gA;
}

/* The VJP G . W^T + g b^T skips the columns of G that are exactly zero
 * (outputs of inactive ReLUs below the layer): equal to the dense product
 * to rounding, with blocks whose zero columns differ, and with a block
 * whose G is all zeros. */
START_TEST(test_linear_vjp_with_zero_columns_equals_dense) {
  enum { S = 2 * 128 + 3, B = 1, IN = 40, OUT = 33 };
  const int64_t R = S * B;
  GRand *g = g_rand_new_with_seed(31);
  float *w = rand_floats(g, OUT * IN, 1.0), *b = rand_floats(g, OUT, 1.0);
  sb_layer *lin = linear(IN, OUT, w, b);
  double *G0 = g_new(double, R *IN), *g0 = g_new(double, R);
  for (int64_t r = 0; r < R; r++) {
    g0[r] = frand(g, -1.0, 1.0);
    for (int64_t j = 0; j < IN; j++) {
      int dead = r < 128 * B ? j % 2 : j % 3 != 1;
      G0[r * IN + j] = r >= 256 * B || dead ? 0.0 : frand(g, -1.0, 1.0);
    }
  }
  sb_tensor *A = coef_from(SB_MEM_COEFFICIENTS, S, B, OUT, NULL);
  sb_tensor *G = coef_from(SB_MEM_COEFFICIENTS, S, B, IN, G0);
  sb_tensor *gt = tensor(SB_MEM_COEFFICIENTS, 2, S, B, 0);
  OK(be->tensor_write(ctx, gt, 0, R, SB_DTYPE_F64, g0));
  sb_tensor *gA = coef_from(SB_MEM_COEFFICIENTS, S, B, OUT, NULL);
  uint64_t ws0 = workspace_peak();
  linear_vjp(lin, A, G, gt, gA);
  ck_assert_uint_gt(workspace_peak(), ws0);
  float *got = g_new(float, R *OUT);
  OK(be->tensor_read(ctx, gA, 0, R * OUT, SB_DTYPE_F32, got));
  for (int64_t r = 0; r < R; r++)
    for (int64_t o = 0; o < OUT; o++) {
      double want = g0[r] * b[o], scale = fabs(want);
      for (int64_t j = 0; j < IN; j++) {
        want += G0[r * IN + j] * w[o * IN + j];
        scale += fabs(G0[r * IN + j] * w[o * IN + j]);
      }
      ck_assert_msg(fabs(got[r * OUT + o] - want) <= 1e-6 * scale + 1e-30,
                    "grad_A_out[%lld,%lld] = %.9g, dense %.9g", (long long)r,
                    (long long)o, got[r * OUT + o], want);
    }
  g_free(got), g_free(G0), g_free(g0), g_free(w), g_free(b);
  be->tensor_free(ctx, A);
  be->tensor_free(ctx, G);
  be->tensor_free(ctx, gt);
  be->tensor_free(ctx, gA);
  be->layer_free(ctx, lin);
  g_rand_free(g);
}
END_TEST

START_TEST(test_linear_vjp_matches_finite_differences) {
  GRand *g = g_rand_new_with_seed(11);
  RefLayer l = ref_layer(g, desc_of(SB_LAYER_LINEAR, 5, 4));
  check_layer_vjp(g, &l, SB_SIDE_LOWER, 3, 2, 0);
  ref_layer_free(&l);
  g_rand_free(g);
}
END_TEST

START_TEST(test_conv_vjp_matches_finite_differences_for_every_geometry) {
  GRand *g = g_rand_new_with_seed(12);
  const sb_layer_desc_v1 geoms[] = {
      conv_desc(2, 7, 6, 3, 3, 3, 2, 2, 1, 0, 2, 1, 1, 1, 1), /* stride 2 */
      conv_desc(2, 7, 7, 2, 3, 2, 1, 1, 1, 1, 1, 1, 2, 2, 1), /* dilation */
      conv_desc(4, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2), /* groups */
      conv_desc(4, 9, 6, 2, 2, 3, 2, 1, 0, 2, 1, 0, 2, 1, 2), /* all */
  };
  for (size_t i = 0; i < G_N_ELEMENTS(geoms); i++) {
    RefLayer l = ref_layer(g, geoms[i]);
    check_layer_vjp(g, &l, SB_SIDE_UPPER, 2, 1, 0);
    ref_layer_free(&l);
  }
  g_rand_free(g);
}
END_TEST

START_TEST(test_affine_and_add_vjp_match_finite_differences) {
  GRand *g = g_rand_new_with_seed(13);
  sb_layer_desc_v1 d = desc_of(SB_LAYER_AFFINE, 6, 6);
  d.channels = 3, d.spatial = 2;
  RefLayer aff = ref_layer(g, d);
  check_layer_vjp(g, &aff, SB_SIDE_LOWER, 2, 2, 0);
  ref_layer_free(&aff);
  RefLayer add = ref_layer(g, desc_of(SB_LAYER_ADD, 5, 5));
  check_layer_vjp(g, &add, SB_SIDE_UPPER, 2, 2, 0);
  ref_layer_free(&add);
  g_rand_free(g);
}
END_TEST

/* _i: 0 lower/default slopes, 1 lower/alpha, 2 upper/default, 3 upper/alpha */
START_TEST(test_relu_vjp_matches_finite_differences_per_side_and_alpha) {
  GRand *g = g_rand_new_with_seed(14 + _i);
  RefLayer l = ref_layer(g, desc_of(SB_LAYER_RELU, 8, 8));
  check_layer_vjp(g, &l, _i < 2 ? SB_SIDE_LOWER : SB_SIDE_UPPER, 3, 2, _i % 2);
  ref_layer_free(&l);
  g_rand_free(g);
}
END_TEST

START_TEST(test_concretize_vjp_matches_finite_differences) {
  GRand *rng = g_rand_new_with_seed(21);
  const int64_t S = 3, B = 2, N = 5, R = S * B;
  double *A = rand_away_from_zero(rng, R * N);
  double *xl = rand_doubles(rng, B * N, -1, 0), *xu = g_new(double, B *N);
  for (int64_t k = 0; k < B * N; k++)
    xu[k] = xl[k] + frand(rng, 0.1, 1);
  double *gout = rand_doubles(rng, R, -1, 1);
  sb_tensor *tA = coef_from(SB_MEM_COEFFICIENTS, S, B, N, A);
  sb_tensor *tl = bounds_from(B, N, xl), *tu = bounds_from(B, N, xu);
  sb_tensor *tg = tensor(SB_MEM_BOUNDS, 2, S, B, 0);
  OK(be->tensor_write(ctx, tg, 0, R, SB_DTYPE_F64, gout));
  sb_tensor *tgA = coef_from(SB_MEM_COEFFICIENTS, S, B, N, NULL);
  double got[30], want[30];
  for (int side = 0; side < 2; side++)
    for (int with_g = 0; with_g < 2; with_g++) {
      OK(be->concretize_vjp(ctx, tA, tl, tu, side, with_g ? tg : NULL, tgA));
      read_into(tgA, R * N, got);
      /* L = sum_r g_r (A_r.c -/+ |A_r|.r), differenced in float64. */
      for (int64_t k = 0; k < R * N; k++) {
        double h = 1e-4, Ls[2];
        for (int e = 0; e < 2; e++) {
          double keep = A[k];
          A[k] = keep + (e ? -h : h);
          double L = 0;
          for (int64_t r = 0; r < R; r++) {
            int64_t b = r % B;
            double dot = 0, spread = 0;
            for (int64_t n = 0; n < N; n++) {
              double c = (xl[b * N + n] + xu[b * N + n]) / 2;
              double rad = (xu[b * N + n] - xl[b * N + n]) / 2;
              dot += A[r * N + n] * c, spread += fabs(A[r * N + n]) * rad;
            }
            L += (with_g ? gout[r] : 1) *
                 (dot + (side == SB_SIDE_LOWER ? -spread : spread));
          }
          Ls[e] = L;
          A[k] = keep;
        }
        want[k] = (Ls[0] - Ls[1]) / (2 * h);
      }
      assert_grad(got, want, R * N, side ? "upper dL/dA" : "lower dL/dA");
    }
  g_free(A), g_free(xl), g_free(xu), g_free(gout);
  be->tensor_free(ctx, tA), be->tensor_free(ctx, tl), be->tensor_free(ctx, tu);
  be->tensor_free(ctx, tg), be->tensor_free(ctx, tgA);
  g_rand_free(rng);
}
END_TEST

START_TEST(test_beta_apply_and_vjp_match_definition_and_differences) {
  GRand *rng = g_rand_new_with_seed(22);
  const int64_t S = 2, B = 2, N = 3, R = S * B;
  double *A = rand_doubles(rng, R * N, -1, 1);
  double *beta = rand_doubles(rng, R * N, 0, 1);
  double *G = rand_doubles(rng, R * N, -1, 1);
  const double sign[] = {-1, 0, 1, 1, -1, 0};
  sb_tensor *tsign = bounds_from(B, N, sign);
  sb_tensor *tbeta = coef_from(SB_MEM_ALPHA, S, B, N, beta);
  sb_tensor *tG = coef_from(SB_MEM_COEFFICIENTS, S, B, N, G);
  sb_tensor *tgb = coef_from(SB_MEM_ALPHA, S, B, N, NULL);
  double got[12], want[12];
  for (int side = 0; side < 2; side++) {
    const double d = side == SB_SIDE_LOWER ? 1 : -1;
    sb_tensor *tA = coef_from(SB_MEM_COEFFICIENTS, S, B, N, A);
    OK(be->beta_apply(ctx, tA, tbeta, tsign, side));
    read_into(tA, R * N, got);
    for (int64_t k = 0; k < R * N; k++)
      want[k] = A[k] + d * beta[k] * sign[k % (B * N)];
    assert_close(got, want, (int)(R * N), 1e-6, "beta_apply");
    be->tensor_free(ctx, tA);
    /* L(beta) = <G, A + d beta sign> is linear in beta. */
    for (int acc = 0; acc < 2; acc++) {
      OK(be->beta_vjp(ctx, tG, tsign, side, tgb, acc));
      read_into(tgb, R * N, got);
      for (int64_t k = 0; k < R * N; k++) {
        double h = 1e-4, L[2];
        for (int e = 0; e < 2; e++) {
          double b = beta[k] + (e ? -h : h);
          L[e] = G[k] * (A[k] + d * b * sign[k % (B * N)]);
        }
        /* The accumulating call added the same gradient once more. */
        want[k] = (L[0] - L[1]) / (2 * h) * (acc ? 2 : 1);
      }
      assert_grad(got, want, R * N, "dL/dbeta");
    }
  }
  g_free(A), g_free(beta), g_free(G);
  be->tensor_free(ctx, tsign), be->tensor_free(ctx, tbeta);
  be->tensor_free(ctx, tG), be->tensor_free(ctx, tgb);
  g_rand_free(rng);
}
END_TEST

START_TEST(test_adam_step_matches_hand_computation_with_projection) {
  const double p0[] = {0.5, 0.5, 0.95, 0.02};
  const double gr[] = {0.2, -0.4, -1.0, 3.0};
  sb_tensor *p = bounds_from(1, 4, p0), *g = bounds_from(1, 4, gr);
  sb_tensor *m = tensor(SB_MEM_ALPHA, 2, 1, 4, 0);
  sb_tensor *v = tensor(SB_MEM_ALPHA, 2, 1, 4, 0);
  sb_adam_args_v1 a = {sizeof a, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0, 0.0f, 1.0f};
  OK(be->adam_step(ctx, p, g, m, v, &a));
  /* Step 1: m = 0.1 g, v = 0.001 g^2; the bias-corrected ratio is sign(g),
   * so each parameter moves by lr against its gradient, then is clamped to
   * [0,1]: 0.95 + 0.1 -> 1, 0.02 - 0.1 -> 0. */
  double got[4];
  read_into(p, 4, got);
  assert_close(got, (double[]){0.4, 0.6, 1.0, 0.0}, 4, 1e-6, "step 1");
  read_into(m, 4, got);
  assert_close(got, (double[]){0.02, -0.04, -0.1, 0.3}, 4, 1e-7, "m");
  read_into(v, 4, got);
  assert_close(got, (double[]){4e-5, 1.6e-4, 1e-3, 9e-3}, 4, 5e-7, "v");
  /* Step 2 ascending (maximize) on the same gradient: PyTorch negates the
   * gradient, so m2 = 0.9 m1 - 0.1 g = -0.08 g ... */
  a.step = 2, a.maximize = 1;
  OK(be->adam_step(ctx, p, g, m, v, &a));
  read_into(p, 4, got);
  double want[4];
  for (int i = 0; i < 4; i++) {
    double m2 = 0.9 * 0.1 * gr[i] - 0.1 * gr[i];
    double v2 = 0.999 * 0.001 * gr[i] * gr[i] + 0.001 * gr[i] * gr[i];
    double mh = m2 / (1 - 0.81), vh = v2 / (1 - 0.999 * 0.999);
    double p1[] = {0.4, 0.6, 1.0, 0.0};
    double q = p1[i] - 0.1 * mh / (sqrt(vh) + 1e-8);
    want[i] = q < 0 ? 0 : q > 1 ? 1 : q;
  }
  assert_close(got, want, 4, 1e-5, "step 2 (maximize)");
  /* Bad hyper-parameters are refused with a message naming them. */
  a.beta1 = 1.0f;
  ck_assert_int_eq(be->adam_step(ctx, p, g, m, v, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "beta1"));
  a.beta1 = 0.9f, a.step = 0;
  ck_assert_int_eq(be->adam_step(ctx, p, g, m, v, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "step"));
  a.step = 1;
  ck_assert_int_eq(be->adam_step(ctx, p, g, p, v, &a), SB_ERR_INVALID_ARGUMENT);
  be->tensor_free(ctx, p), be->tensor_free(ctx, g);
  be->tensor_free(ctx, m), be->tensor_free(ctx, v);
}
END_TEST

START_TEST(test_relu_init_alpha_is_default_slope_for_every_spec) {
  const double l[] = {-1, -2, 0.5, -1, -0.5, -3};
  const double u[] = {2, 1, 1, -0.5, 0.5, 4};
  sb_tensor *tl = bounds_from(2, 3, l), *tu = bounds_from(2, 3, u);
  sb_tensor *al = tensor(SB_MEM_ALPHA, 3, 3, 2, 3);
  OK(be->relu_init_alpha(ctx, tl, tu, al));
  double got[18];
  read_into(al, 18, got);
  const double one[] = {1, 0, 1, 0, 0, 1}; /* u > -l */
  for (int s = 0; s < 3; s++)
    assert_close(got + 6 * s, one, 6, 0, "alpha");
  sb_tensor *bad = tensor(SB_MEM_ALPHA, 3, 3, 2, 4);
  ck_assert_int_eq(be->relu_init_alpha(ctx, tl, tu, bad),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "pre_lower"));
  be->tensor_free(ctx, tl), be->tensor_free(ctx, tu);
  be->tensor_free(ctx, al), be->tensor_free(ctx, bad);
}
END_TEST

START_TEST(test_vjp_rejects_bad_arguments_with_messages) {
  const float w[] = {1, 2, 3, 4, 5, 6};
  sb_layer *l = linear(3, 2, w, NULL);
  sb_tensor *A = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
  sb_tensor *G = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 3);
  sb_tensor *wrong = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 4);
  sb_tensor *out = tensor(SB_MEM_COEFFICIENTS, 3, 1, 1, 2);
  sb_vjp_args_v1 a;
  memset(&a, 0, sizeof a);
  a.struct_size = sizeof a;
  a.A_out = A, a.grad_A_in[0] = G, a.grad_A_out = out;
  OK(be->layer_backward_vjp(ctx, l, &a));
  a.grad_A_out = wrong;
  ck_assert_int_eq(be->layer_backward_vjp(ctx, l, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "grad_A_out"));
  a.grad_A_out = out, a.grad_alpha = out;
  ck_assert_int_eq(be->layer_backward_vjp(ctx, l, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(
      strstr(be->last_error(ctx), "only meaningful for a relu"));
  a.grad_alpha = NULL, a.side = 7;
  ck_assert_int_eq(be->layer_backward_vjp(ctx, l, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "side 7"));
  a.side = 0, a.struct_size = 8;
  ck_assert_int_eq(be->layer_backward_vjp(ctx, l, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "struct_size"));
  sb_layer *r = relu(2);
  a.struct_size = sizeof a;
  a.grad_A_in[0] = out, a.grad_A_out = wrong;
  ck_assert_int_eq(be->layer_backward_vjp(ctx, r, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_int_eq(be->concretize_vjp(ctx, A, NULL, NULL, 0, NULL, out),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "x_lower"));
  ck_assert_int_eq(be->beta_vjp(ctx, A, G, 0, out, 0), SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_nonnull(strstr(be->last_error(ctx), "sign"));
  be->layer_free(ctx, l), be->layer_free(ctx, r);
  be->tensor_free(ctx, A), be->tensor_free(ctx, G);
  be->tensor_free(ctx, wrong), be->tensor_free(ctx, out);
}
END_TEST

#if defined(__linux__) && defined(MADV_POPULATE_WRITE) &&                      \
    !defined(__SANITIZE_ADDRESS__)
/* Page faults this process takes while `what` runs, from the kernel's
 * software counter (which, unlike getrusage, does not count pages mapped
 * by madvise); -1 where perf events are not allowed here. */
static long page_faults_of(void (*what)(void)) {
  struct perf_event_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_PAGE_FAULTS;
  attr.exclude_hv = 1;
  int fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
  if (fd < 0)
    return -1;
  what();
  long long count = -1;
  if (read(fd, &count, sizeof count) != sizeof count)
    count = -1;
  close(fd);
  return (long)count;
}

static void create_and_free_64_mib(void) {
  sb_tensor *t = tensor(SB_MEM_COEFFICIENTS, 2, 1024, 16384, 0);
  be->tensor_free(ctx, t);
}
#endif

/* A new tensor on fresh heap memory is mapped in one call, not faulted in
 * page by page while it is zero-filled (device_cpu.c, populate_fresh). */
START_TEST(test_new_tensor_on_fresh_memory_takes_few_page_faults) {
  /* Nothing to observe under AddressSanitizer (which faults in shadow
   * pages for every block), without MADV_POPULATE_WRITE (before Linux
   * 5.14) or without perf events. */
#if defined(__linux__) && defined(MADV_POPULATE_WRITE) &&                      \
    !defined(__SANITIZE_ADDRESS__)
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  void *probe = mmap(NULL, page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert(probe != MAP_FAILED);
  int supported = madvise(probe, page, MADV_POPULATE_WRITE) == 0;
  munmap(probe, page);
  long faults = supported ? page_faults_of(create_and_free_64_mib) : -1;
  if (faults < 0)
    return;
  /* Zero-filling 64 MiB touches 16,384 pages of 4 KiB. */
  ck_assert_msg(faults < (long)(((size_t)6 << 20) / page),
                "%ld page faults creating a 64 MiB tensor", faults);
#endif
}
END_TEST

/* The "VmFlags:" line of the mapping in /proc/self/smaps that holds
 * `address`, or NULL. */
static char *vm_flags_of(const void *address) {
  g_autofree char *smaps = NULL;
  if (!g_file_get_contents("/proc/self/smaps", &smaps, NULL, NULL))
    return NULL;
  gboolean inside = FALSE;
  g_auto(GStrv) lines = g_strsplit(smaps, "\n", -1);
  for (char **line = lines; *line != NULL; line++) {
    unsigned long lo, hi;
    if (sscanf(*line, "%lx-%lx ", &lo, &hi) == 2)
      inside = (uintptr_t)address >= lo && (uintptr_t)address < hi;
    else if (inside && g_str_has_prefix(*line, "VmFlags:"))
      return g_strdup(*line);
  }
  return NULL;
}

/* Once a CPU device is open, a large block from the heap lies in memory
 * the kernel was advised to back with huge pages (device_cpu.c,
 * advise_huge_heap_top). */
START_TEST(test_open_device_advises_huge_pages_for_the_heap) {
  /* Nothing to observe under AddressSanitizer (its malloc is not glibc's)
   * or on a kernel without transparent huge pages. */
#if defined(__GLIBC__) && defined(MADV_HUGEPAGE) &&                            \
    !defined(__SANITIZE_ADDRESS__)
  if (!g_file_test("/sys/kernel/mm/transparent_hugepage", G_FILE_TEST_IS_DIR))
    return;
  char *block = malloc(4 << 20);
  ck_assert_ptr_nonnull(block);
  /* Its last byte: the advice starts at the first 2 MiB boundary of the
   * heap's free top, which the block's start may precede. */
  g_autofree char *flags = vm_flags_of(block + (4 << 20) - 1);
  free(block);
  ck_assert_msg(flags != NULL, "no mapping holds the block");
  ck_assert_msg(strstr(flags, " hg") != NULL,
                "the heap is not advised for huge pages: %s", flags);
#endif
}
END_TEST

/* The heap's free top starts inside the advised range once a CPU device is
 * open: the pages below the first 2 MiB boundary of the top were taken
 * (device_cpu.c, align_heap_top), so the host's next small blocks (a
 * property's parse) land on huge pages too. */
START_TEST(test_open_device_starts_the_heap_top_on_huge_pages) {
#if defined(__GLIBC__) && defined(MADV_HUGEPAGE) &&                            \
    !defined(__SANITIZE_ADDRESS__)
  if (!g_file_test("/sys/kernel/mm/transparent_hugepage", G_FILE_TEST_IS_DIR))
    return;
  const char *top = (const char *)sbrk(0) - mallinfo2().keepcost;
  g_autofree char *flags = vm_flags_of(top);
  ck_assert_msg(flags != NULL, "no mapping holds the heap's top");
  ck_assert_msg(strstr(flags, " hg") != NULL,
                "the heap's top starts below its huge pages: %s", flags);
#endif
}
END_TEST

/* A tensor too large for the heap's advised top grows the heap; its fresh
 * pages are advised for huge pages too (device_cpu.c, populate_fresh). */
START_TEST(test_tensor_beyond_the_heap_top_is_advised_for_huge_pages) {
#if defined(__GLIBC__) && defined(MADV_HUGEPAGE) &&                            \
    !defined(__SANITIZE_ADDRESS__)
  if (!g_file_test("/sys/kernel/mm/transparent_hugepage", G_FILE_TEST_IS_DIR))
    return;
  /* 256 MiB: more than the top advised when the device opened (64 MiB
   * and the pad). */
  sb_tensor *t = tensor(SB_MEM_COEFFICIENTS, 2, 4096, 16384, 0);
  be->tensor_free(ctx, t);
  /* The freed tensor joined the heap's top, from which this is cut: its
   * last byte lies where the tensor's fresh pages were. */
  const size_t bytes = (size_t)250 << 20;
  char *block = malloc(bytes);
  ck_assert_ptr_nonnull(block);
  g_autofree char *flags = vm_flags_of(block + bytes - 1);
  free(block);
  ck_assert_msg(flags != NULL, "no mapping holds the block");
  ck_assert_msg(strstr(flags, " hg") != NULL,
                "the tensor's fresh pages are not advised for huge pages: %s",
                flags);
#endif
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
  tcase_add_test(abi, test_linear_backward_from_unit_rows_equals_gemm_bitwise);
  tcase_add_test(abi, test_linear_backward_after_inactive_relu_equals_dense);
  tcase_add_test(abi,
                 test_linear_backward_of_all_zero_columns_overwrites_or_keeps);
  tcase_add_test(abi, test_tensor_write_read_f64_at_offset);
  tcase_add_test(abi,
                 test_empty_tensor_is_nan_when_poisoned_and_created_is_zero);
  tcase_add_test(abi,
                 test_tensor_create_out_of_memory_names_bytes_and_category);
  tcase_add_test(abi, test_context_rejects_unknown_option_by_name);
  tcase_add_test(abi, test_memory_stats_track_weights_peak_and_baseline);
  tcase_add_test(abi, test_new_tensor_on_fresh_memory_takes_few_page_faults);
  tcase_add_test(abi, test_open_device_advises_huge_pages_for_the_heap);
  tcase_add_test(abi, test_open_device_starts_the_heap_top_on_huge_pages);
  tcase_add_test(abi,
                 test_tensor_beyond_the_heap_top_is_advised_for_huge_pages);
  tcase_add_test(abi, test_bad_layers_and_shapes_are_rejected_with_messages);
  suite_add_tcase(s, abi);

  TCase *vjp = tcase_create("abi-1.1");
  tcase_add_checked_fixture(vjp, setup, teardown);
  tcase_add_test(vjp, test_linear_vjp_matches_finite_differences);
  tcase_add_test(vjp, test_linear_vjp_with_zero_columns_equals_dense);
  tcase_add_test(vjp,
                 test_conv_vjp_matches_finite_differences_for_every_geometry);
  tcase_add_test(vjp, test_affine_and_add_vjp_match_finite_differences);
  tcase_add_loop_test(
      vjp, test_relu_vjp_matches_finite_differences_per_side_and_alpha, 0, 4);
  tcase_add_test(vjp, test_concretize_vjp_matches_finite_differences);
  tcase_add_test(vjp, test_beta_apply_and_vjp_match_definition_and_differences);
  tcase_add_test(vjp, test_adam_step_matches_hand_computation_with_projection);
  tcase_add_test(vjp, test_relu_init_alpha_is_default_slope_for_every_spec);
  tcase_add_test(vjp, test_vjp_rejects_bad_arguments_with_messages);
  suite_add_tcase(s, vjp);
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
