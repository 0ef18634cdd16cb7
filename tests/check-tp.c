/* SPDX-License-Identifier: MIT */
/* Tests of the TP backend against the CPU reference through the ABI: IBP,
 * forward, CROWN backward, concretize and the ABI 1.1 operations equal to
 * float rounding for 1..4 ranks on MLPs, conv nets and residual nets whose
 * sizes P does not divide; weights, coefficients and peak memory sharded by
 * neuron; failing ranks; bad arguments. */
#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi/shardbound.h"
#include "tests/backend-testlib.h"

static int64_t batch = 2;

static void check_nothing_left(Ctx *c) {
  for (int r = 0; r < c->d->rank_count(c->ctx); r++) {
    sb_memory_stats_v1 s = {.struct_size = sizeof s};
    ok(c, c->d->memory_stats(c->ctx, r, &s), "memory_stats");
    ck_assert_uint_eq(s.current_bytes[SB_MEM_WORKSPACE], 0);
    ck_assert_uint_eq(s.current_bytes[SB_MEM_COMMUNICATION], 0);
    ck_assert_uint_eq(s.current_bytes[SB_MEM_COEFFICIENTS], 0);
  }
}

/* Every check for P = 1..4 and batches of 1 and 2 (a batch of one takes
 * the unpacked paths). */
static void compare_net(const Net *net, unsigned seed) {
  Backend cpu_b = load("cpu"), tp_b = load("tp");
  for (batch = 1; batch <= 2; batch++) {
    rng_state = seed;
    float *xl = rand_vec(batch * net->size[0], 1.0f);
    float *xu = malloc((size_t)(batch * net->size[0]) * sizeof(float));
    for (int64_t i = 0; i < batch * net->size[0]; i++)
      xu[i] = xl[i] + 0.2f + 0.1f * (frand() + 1.0f);
    for (int P = 1; P <= 4; P++) {
      Run cpu = {open_ctx(&cpu_b, NULL, 0)}, tp = {open_ranks(&tp_b, P)};
      ck_assert_int_eq(tp.c.d->rank_count(tp.c.ctx), P);
      run_ibp(&cpu, net, batch, xl, xu);
      run_ibp(&tp, net, batch, xl, xu);
      for (int k = 1; k < net->n; k++) {
        char what[32];
        snprintf(what, sizeof what, "IBP lower of node %d", k);
        same_values(&cpu.c, cpu.lo[k], &tp.c, tp.lo[k], batch * net->size[k],
                    what, P);
        snprintf(what, sizeof what, "IBP upper of node %d", k);
        same_values(&cpu.c, cpu.hi[k], &tp.c, tp.hi[k], batch * net->size[k],
                    what, P);
      }
      /* Plain evaluation of every layer at the lower corner. */
      for (int k = 1; k < net->n; k++) {
        Run *rs[2] = {&cpu, &tp};
        sb_tensor *o[2];
        for (int i = 0; i < 2; i++) {
          Ctx *c = &rs[i]->c;
          const sb_tensor *in[2] = {
              rs[i]->lo[net->in[k][0]],
              net->in[k][1] >= 0 ? rs[i]->hi[net->in[k][1]] : NULL};
          o[i] = tensor(c, SB_MEM_BOUNDS, batch, net->size[k], 0, NULL);
          ok(c, c->d->layer_forward(c->ctx, rs[i]->layer[k], in, o[i]),
             "layer_forward");
        }
        same_values(&cpu.c, o[0], &tp.c, o[1], batch * net->size[k], "forward",
                    P);
        for (int i = 0; i < 2; i++)
          rs[i]->c.d->tensor_free(rs[i]->c.ctx, o[i]);
      }
      backward_compare(&cpu, &tp, net, batch, SB_SIDE_LOWER, 0, same_values, P);
      backward_compare(&cpu, &tp, net, batch, SB_SIDE_UPPER, 0, same_values, P);
      backward_compare(&cpu, &tp, net, batch, SB_SIDE_LOWER, 1, same_values, P);
      backward_compare(&cpu, &tp, net, batch, SB_SIDE_UPPER, 1, same_values, P);
      check_nothing_left(&tp.c);
      run_free(&cpu, net);
      run_free(&tp, net);
      cpu.c.d->context_destroy(cpu.c.ctx);
      tp.c.d->context_destroy(tp.c.ctx);
    }
    free(xl);
    free(xu);
  }
}

static void build_mlp(Net *net) {
  rng_state = 11;
  net_init(net, 13);
  int a = net_linear(net, 0, 23);
  a = net_simple(net, SB_LAYER_RELU, a);
  a = net_linear(net, a, 17);
  a = net_simple(net, SB_LAYER_RELU, a);
  net_linear(net, a, 5);
}

/* Strides, padding, groups (and depthwise), affine layers, and channel
 * counts that P does not divide, so neuron slices cut channels. */
static void build_conv(Net *net) {
  rng_state = 12;
  net_init(net, 3 * 7 * 7);
  int a = net_conv(net, 0, 3, 7, 7, 6, 3, 2, 1, 1); /* 6x4x4 */
  a = net_affine(net, a, 6);
  a = net_simple(net, SB_LAYER_RELU, a);
  a = net_conv(net, a, 6, 4, 4, 9, 3, 1, 1, 3); /* groups 3: 9x4x4 */
  a = net_simple(net, SB_LAYER_RELU, a);
  a = net_conv(net, a, 9, 4, 4, 5, 2, 1, 0, 1); /* 5x3x3 */
  a = net_affine(net, a, 5);
  a = net_simple(net, SB_LAYER_RELU, a);
  a = net_conv(net, a, 5, 3, 3, 5, 3, 1, 1, 5); /* depthwise 5x3x3 */
  a = net_simple(net, SB_LAYER_RELU, a);
  net_linear(net, a, 7);
}

static void build_residual(Net *net) {
  rng_state = 13;
  net_init(net, 10);
  int a = net_linear(net, 0, 19);
  int r = net_simple(net, SB_LAYER_RELU, a);
  int b = net_linear(net, r, 19);
  b = net_simple(net, SB_LAYER_RELU, b);
  b = net_linear(net, b, 19);
  net_add(net, SB_LAYER_ADD, r, b, 19);
  int s = net_simple(net, SB_LAYER_RELU, net->n - 1);
  s = net_affine(net, s, 19);
  net_linear(net, s, 3);
}

START_TEST(test_mlp_bounds_equal_cpu_within_rounding) {
  Net net;
  build_mlp(&net);
  compare_net(&net, 101);
  net_free(&net);
}
END_TEST

START_TEST(test_conv_net_bounds_equal_cpu_within_rounding) {
  Net net;
  build_conv(&net);
  compare_net(&net, 202);
  net_free(&net);
}
END_TEST

START_TEST(test_residual_net_bounds_equal_cpu_within_rounding) {
  Net net;
  build_residual(&net);
  compare_net(&net, 303);
  net_free(&net);
}
END_TEST

/* More ranks than neurons: some ranks own nothing of a layer. */
START_TEST(test_layers_narrower_than_the_rank_count_equal_cpu) {
  Net net;
  rng_state = 14;
  net_init(&net, 3);
  int a = net_linear(&net, 0, 2);
  a = net_simple(&net, SB_LAYER_RELU, a);
  a = net_linear(&net, a, 3);
  a = net_simple(&net, SB_LAYER_RELU, a);
  net_linear(&net, a, 1);
  compare_net(&net, 404);
  net_free(&net);
}
END_TEST

static uint64_t stat_of(Ctx *c, int r, int category) {
  sb_memory_stats_v1 s = {.struct_size = sizeof s};
  ok(c, c->d->memory_stats(c->ctx, r, &s), "memory_stats");
  return category < 0 ? s.total_current_bytes : s.current_bytes[category];
}

START_TEST(test_linear_weights_and_coefficients_are_sharded_by_neuron) {
  Backend tp_b = load("tp");
  const int64_t OUT = 1000, IN = 999, S = 5;
  rng_state = 5;
  float *w = rand_vec(OUT * IN, 0.1f), *bias = rand_vec(OUT, 0.1f);
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_LINEAR,
                        .in_size = IN,
                        .out_size = OUT,
                        .weight = w,
                        .bias = bias};
  for (int P = 1; P <= 4; P++) {
    Ctx c = open_ranks(&tp_b, P);
    sb_layer *l = NULL;
    ok(&c, c.d->layer_create(c.ctx, &d, &l), "layer_create");
    ok(&c, c.d->memory_mark_baseline(c.ctx), "mark_baseline");
    uint64_t total = 0;
    const int64_t rows_max = (OUT + P - 1) / P;
    for (int r = 0; r < P; r++) {
      uint64_t wb = stat_of(&c, r, SB_MEM_WEIGHTS);
      /* Its rows of W and of the bias: nothing else, nothing replicated. */
      ck_assert_uint_le(wb, (uint64_t)rows_max * (IN + 1) * sizeof(float));
      total += wb;
    }
    ck_assert_uint_eq(total, (uint64_t)(OUT * IN + OUT) * sizeof(float));
    sb_tensor *A = tensor(&c, SB_MEM_COEFFICIENTS, S, 1, OUT, NULL);
    for (int r = 0; r < P; r++)
      ck_assert_uint_le(stat_of(&c, r, SB_MEM_COEFFICIENTS),
                        (uint64_t)S * rows_max * sizeof(float));
    c.d->tensor_free(c.ctx, A);
    c.d->layer_free(c.ctx, l);
    for (int r = 0; r < P; r++)
      ck_assert_uint_eq(stat_of(&c, r, -1), 0);
    c.d->context_destroy(c.ctx);
  }
  free(w);
  free(bias);
}
END_TEST

START_TEST(test_conv_weights_are_sharded_by_output_channel) {
  Backend tp_b = load("tp");
  /* 40 output channels of 5x5 over 3 input channels, 3x3 kernels. */
  const int64_t OC = 40, IC = 3, K = 3, H = 5;
  rng_state = 6;
  float *w = rand_vec(OC * IC * K * K, 0.1f), *bias = rand_vec(OC, 0.1f);
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_CONV2D,
                        .in_size = IC * H * H,
                        .out_size = OC * H * H,
                        .weight = w,
                        .bias = bias,
                        .in_c = IC,
                        .in_h = H,
                        .in_w = H,
                        .out_c = OC,
                        .out_h = H,
                        .out_w = H,
                        .kernel_h = K,
                        .kernel_w = K,
                        .stride_h = 1,
                        .stride_w = 1,
                        .pad_top = 1,
                        .pad_left = 1,
                        .pad_bottom = 1,
                        .pad_right = 1,
                        .dilation_h = 1,
                        .dilation_w = 1,
                        .groups = 1};
  const uint64_t per_channel = (uint64_t)(IC * K * K + 1) * sizeof(float);
  for (int P = 1; P <= 4; P++) {
    Ctx c = open_ranks(&tp_b, P);
    sb_layer *l = NULL;
    ok(&c, c.d->layer_create(c.ctx, &d, &l), "layer_create");
    for (int r = 0; r < P; r++)
      /* Its channels, plus at most one channel shared at each end of its
       * neuron range. */
      ck_assert_uint_le(stat_of(&c, r, SB_MEM_WEIGHTS),
                        ((OC + P - 1) / P + 2) * per_channel);
    c.d->layer_free(c.ctx, l);
    c.d->context_destroy(c.ctx);
  }
  free(w);
  free(bias);
}
END_TEST

/* The memory goal in miniature: the peak of a CROWN step through
 * a square linear layer (W, A_out and A_in of equal size) is about 1/P of
 * the single-device peak, the transient full-width partial included. */
START_TEST(test_backward_peak_per_rank_is_about_a_pth_of_cpu) {
  Backend cpu_b = load("cpu"), tp_b = load("tp");
  const int64_t N = 700, S = 700;
  rng_state = 8;
  float *w = rand_vec(N * N, 0.05f), *bias = rand_vec(N, 0.1f);
  float *A0 = rand_vec(S * N, 1.0f);
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_LINEAR,
                        .in_size = N,
                        .out_size = N,
                        .weight = w,
                        .bias = bias};
  uint64_t cpu_peak = 0;
  /* P=1 pays the transient (an eighth of A_in) over the cpu backend; the
   * issue asks for <= 55% at P=2 and <= 30% at P=4. */
  const double limit[5] = {0, 1.10, 0.55, 0.40, 0.30};
  for (int P = 0; P <= 4; P++) {
    Ctx c = P == 0 ? open_ctx(&cpu_b, NULL, 0) : open_ranks(&tp_b, P);
    sb_layer *l = NULL;
    ok(&c, c.d->layer_create(c.ctx, &d, &l), "layer_create");
    sb_tensor *A = tensor(&c, SB_MEM_COEFFICIENTS, S, 1, N, A0);
    sb_tensor *Ai = tensor(&c, SB_MEM_COEFFICIENTS, S, 1, N, NULL);
    sb_tensor *b = tensor(&c, SB_MEM_COEFFICIENTS, S, 1, 0, NULL);
    ok(&c, c.d->memory_reset_peak(c.ctx), "reset_peak");
    sb_backward_args_v1 a = {.struct_size = sizeof a,
                             .side = SB_SIDE_LOWER,
                             .A_out = A,
                             .A_in = {Ai},
                             .bias = b};
    ok(&c, c.d->layer_backward(c.ctx, l, &a), "layer_backward");
    for (int r = 0; r < c.d->rank_count(c.ctx); r++) {
      sb_memory_stats_v1 s = {.struct_size = sizeof s};
      ok(&c, c.d->memory_stats(c.ctx, r, &s), "memory_stats");
      if (P == 0)
        cpu_peak = s.total_peak_bytes;
      else
        ck_assert_msg(s.total_peak_bytes <= limit[P] * cpu_peak,
                      "P=%d rank %d peak %llu bytes, cpu %llu", P, r,
                      (unsigned long long)s.total_peak_bytes,
                      (unsigned long long)cpu_peak);
    }
    c.d->tensor_free(c.ctx, A);
    c.d->tensor_free(c.ctx, Ai);
    c.d->tensor_free(c.ctx, b);
    c.d->layer_free(c.ctx, l);
    c.d->context_destroy(c.ctx);
  }
  free(w);
  free(bias);
  free(A0);
}
END_TEST

START_TEST(test_failing_rank_fails_the_call_and_is_named) {
  Backend tp_b = load("tp");
  /* Runs on the ranks: layer_create 0, two writes 1-2, IBP 3 (creating a
   * tensor allocates on the calling thread and is not counted):
   * rank 2 fails while ranks 0 and 1 wait in the output all-gather. */
  sb_option o[3] = {{"ranks", "3"}, {"fail_rank", "2"}, {"fail_at", "3"}};
  Ctx c = open_ctx(&tp_b, o, 3);
  rng_state = 9;
  float *w = rand_vec(8 * 5, 1.0f), *x = rand_vec(5, 1.0f);
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_LINEAR,
                        .in_size = 5,
                        .out_size = 8,
                        .weight = w};
  sb_layer *l = NULL;
  ok(&c, c.d->layer_create(c.ctx, &d, &l), "layer_create");
  sb_tensor *il = tensor(&c, SB_MEM_BOUNDS, 1, 5, 0, NULL);
  sb_tensor *iu = tensor(&c, SB_MEM_BOUNDS, 1, 5, 0, NULL);
  sb_tensor *ol = tensor(&c, SB_MEM_BOUNDS, 1, 8, 0, NULL);
  sb_tensor *ou = tensor(&c, SB_MEM_BOUNDS, 1, 8, 0, NULL);
  ok(&c, c.d->tensor_write(c.ctx, il, 0, 5, SB_DTYPE_F32, x), "write");
  ok(&c, c.d->tensor_write(c.ctx, iu, 0, 5, SB_DTYPE_F32, x), "write");
  const sb_tensor *lo[1] = {il}, *up[1] = {iu};
  int st = c.d->layer_ibp(c.ctx, l, lo, up, ol, ou);
  ck_assert_int_eq(st, SB_ERR_OUT_OF_MEMORY);
  const char *err = c.d->last_error(c.ctx);
  ck_assert_msg(strncmp(err, "rank 2: ", 8) == 0, "last_error: %s", err);
  check_nothing_left(&c);
  /* The next call works: nothing was left half-way. */
  ok(&c, c.d->layer_ibp(c.ctx, l, lo, up, ol, ou), "layer_ibp after fault");
  float got[8];
  ok(&c, c.d->tensor_read(c.ctx, ol, 0, 8, SB_DTYPE_F32, got), "read");
  for (int i = 0; i < 8; i++) {
    float want = 0.0f;
    for (int k = 0; k < 5; k++)
      want += w[i * 5 + k] * x[k];
    ck_assert_msg(close_enough(got[i], want), "out[%d] %g, want %g", i, got[i],
                  want);
  }
  c.d->tensor_free(c.ctx, il);
  c.d->tensor_free(c.ctx, iu);
  c.d->tensor_free(c.ctx, ol);
  c.d->tensor_free(c.ctx, ou);
  c.d->layer_free(c.ctx, l);
  c.d->context_destroy(c.ctx);
  free(w);
  free(x);
}
END_TEST

START_TEST(test_context_rejects_unknown_and_bad_options) {
  Backend tp_b = load("tp");
  struct {
    sb_option o;
    const char *needle;
  } cases[] = {{{"rank", "2"}, "unknown option 'rank'"},
               {{"ranks", "0"}, "ranks='0'"},
               {{"ranks", "two"}, "ranks='two'"},
               {{"device", "gpu"}, "device='gpu'"},
               {{"comm", "nccl"}, "comm='nccl'"},
               {{"fail_rank", "1"}, "needs both"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sb_context *ctx = NULL;
    char err[512] = "";
    int st =
        tp_b.d->context_create(NULL, &cases[i].o, 1, &ctx, err, sizeof err);
    ck_assert_int_ne(st, SB_OK);
    ck_assert_ptr_null(ctx);
    ck_assert_msg(strstr(err, cases[i].needle) != NULL, "error: %s", err);
  }
}
END_TEST

START_TEST(test_tensor_write_read_round_trips_split_columns) {
  Backend tp_b = load("tp");
  Ctx c = open_ranks(&tp_b, 3);
  /* [2,3,5]: 5 columns over 3 ranks (2, 2, 1). Read and write across rows
   * and shard borders, in both dtypes. */
  double v[30], back[30];
  for (int i = 0; i < 30; i++)
    v[i] = i + 0.5;
  sb_tensor *A = tensor(&c, SB_MEM_COEFFICIENTS, 2, 3, 5, NULL);
  ok(&c, c.d->tensor_write(c.ctx, A, 4, 20, SB_DTYPE_F64, v + 4), "write");
  memset(back, 0, sizeof back);
  ok(&c, c.d->tensor_read(c.ctx, A, 0, 30, SB_DTYPE_F64, back), "read");
  for (int i = 0; i < 30; i++)
    ck_assert(back[i] == (i >= 4 && i < 24 ? v[i] : 0.0));
  float part[7];
  ok(&c, c.d->tensor_read(c.ctx, A, 3, 7, SB_DTYPE_F32, part), "read");
  for (int i = 0; i < 7; i++)
    ck_assert(part[i] == (float)back[3 + i]);
  c.d->tensor_free(c.ctx, A);
  c.d->context_destroy(c.ctx);
}
END_TEST

START_TEST(test_bad_arguments_are_refused_with_a_reason) {
  Backend tp_b = load("tp");
  Ctx c = open_ranks(&tp_b, 2);
  float w[12] = {0};
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_LINEAR,
                        .in_size = 3,
                        .out_size = 4,
                        .weight = w};
  sb_layer *l = NULL;
  ok(&c, c.d->layer_create(c.ctx, &d, &l), "layer_create");
  sb_tensor *A = tensor(&c, SB_MEM_COEFFICIENTS, 2, 1, 4, NULL);
  sb_tensor *Ai = tensor(&c, SB_MEM_COEFFICIENTS, 2, 1, 3, NULL);
  sb_tensor *Abad = tensor(&c, SB_MEM_COEFFICIENTS, 2, 1, 5, NULL);
  sb_tensor *b = tensor(&c, SB_MEM_COEFFICIENTS, 2, 1, 0, NULL);
  sb_tensor *lo = tensor(&c, SB_MEM_BOUNDS, 1, 4, 0, NULL);
  sb_backward_args_v1 a = {.struct_size = sizeof a,
                           .side = SB_SIDE_LOWER,
                           .A_out = A,
                           .A_in = {Abad},
                           .bias = b};
  ck_assert_int_eq(c.d->layer_backward(c.ctx, l, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(c.d->last_error(c.ctx), "A_in[0]"), "%s",
                c.d->last_error(c.ctx));
  a.A_in[0] = Ai;
  a.bias = Abad;
  ck_assert_int_eq(c.d->layer_backward(c.ctx, l, &a), SB_ERR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(c.d->last_error(c.ctx), "bias"), "%s",
                c.d->last_error(c.ctx));
  /* Coefficients where bounds belong. */
  ck_assert_int_eq(c.d->concretize(c.ctx, A, NULL, A, lo, SB_SIDE_LOWER, b),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(c.d->last_error(c.ctx), "x_lower"), "%s",
                c.d->last_error(c.ctx));
  int64_t idx[2] = {0, 4};
  ck_assert_int_eq(c.d->tensor_set_unit_rows(c.ctx, A, idx),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(c.d->last_error(c.ctx), "index[1] = 4"), "%s",
                c.d->last_error(c.ctx));
  c.d->tensor_free(c.ctx, A);
  c.d->tensor_free(c.ctx, Ai);
  c.d->tensor_free(c.ctx, Abad);
  c.d->tensor_free(c.ctx, b);
  c.d->tensor_free(c.ctx, lo);
  c.d->layer_free(c.ctx, l);
  c.d->context_destroy(c.ctx);
}
END_TEST

/* ---- ABI 1.1 ---- */

static sb_tensor *coef(Ctx *c, int64_t n, const float *data) {
  return tensor(c, SB_MEM_COEFFICIENTS, S_SPECS, batch, n, data);
}

/* Every layer's VJP with random A_out, gradients and slopes, with and
 * without accumulation and with the NULL (zero / ones) gradients. */
static void vjp_compare(const Net *net) {
  Backend cpu_b = load("cpu"), tp_b = load("tp");
  batch = 2;
  rng_state = 99;
  float *xl = rand_vec(batch * net->size[0], 1.0f);
  float *xu = malloc((size_t)(batch * net->size[0]) * sizeof(float));
  for (int64_t i = 0; i < batch * net->size[0]; i++)
    xu[i] = xl[i] + 0.3f;
  for (int P = 1; P <= 4; P++) {
    Run cpu = {open_ctx(&cpu_b, NULL, 0)}, tp = {open_ranks(&tp_b, P)};
    Run *runs[2] = {&cpu, &tp};
    run_ibp(&cpu, net, batch, xl, xu);
    run_ibp(&tp, net, batch, xl, xu);
    for (int k = 1; k < net->n; k++)
      for (int variant = 0; variant < 2; variant++) {
        const sb_layer_desc_v1 *d = &net->desc[k];
        int relu = d->kind == SB_LAYER_RELU;
        int n_in = d->kind == SB_LAYER_ADD ? 2 : 1;
        int64_t R = S_SPECS * batch;
        float *a0 = rand_vec(R * d->out_size, 1.0f);
        float *g0 = rand_vec(R * d->in_size * 2, 1.0f);
        float *gb0 = rand_vec(R, 1.0f);
        float *prev = rand_vec(R * d->out_size, 1.0f);
        float *al0 = rand_vec(R * d->out_size, 0.5f);
        for (int64_t i = 0; i < R * d->out_size; i++)
          al0[i] += 0.5f;
        sb_tensor *A[2], *G[2][2], *gb[2], *out[2], *al[2], *gal[2];
        for (int i = 0; i < 2; i++) {
          Ctx *c = &runs[i]->c;
          A[i] = coef(c, d->out_size, a0);
          for (int q = 0; q < n_in; q++)
            G[i][q] = coef(c, d->in_size, g0 + q * R * d->in_size);
          gb[i] = tensor(c, SB_MEM_COEFFICIENTS, S_SPECS, batch, 0, gb0);
          out[i] = coef(c, d->out_size, prev);
          al[i] = relu ? coef(c, d->out_size, al0) : NULL;
          gal[i] = relu ? coef(c, d->out_size, prev) : NULL;
          sb_vjp_args_v1 a;
          memset(&a, 0, sizeof a);
          a.struct_size = sizeof a;
          a.side = variant ? SB_SIDE_UPPER : SB_SIDE_LOWER;
          a.A_out = A[i];
          for (int q = 0; q < n_in; q++)
            a.grad_A_in[q] = variant && q == 0 ? NULL : G[i][q];
          a.grad_bias = variant ? NULL : gb[i];
          a.grad_A_out = out[i];
          a.accumulate_A_out = variant;
          if (relu) {
            a.pre_lower = runs[i]->lo[net->in[k][0]];
            a.pre_upper = runs[i]->hi[net->in[k][0]];
            a.alpha = variant ? NULL : al[i];
            a.grad_alpha = gal[i];
            a.accumulate_alpha = !variant;
          }
          ok(c, c->d->layer_backward_vjp(c->ctx, runs[i]->layer[k], &a),
             "layer_backward_vjp");
        }
        char what[64];
        snprintf(what, sizeof what, "grad_A_out of layer %d (variant %d)", k,
                 variant);
        same_values(&cpu.c, out[0], &tp.c, out[1], R * d->out_size, what, P);
        if (relu) {
          snprintf(what, sizeof what, "grad_alpha of layer %d", k);
          same_values(&cpu.c, gal[0], &tp.c, gal[1], R * d->out_size, what, P);
        }
        for (int i = 0; i < 2; i++) {
          Ctx *c = &runs[i]->c;
          c->d->tensor_free(c->ctx, A[i]);
          for (int q = 0; q < n_in; q++)
            c->d->tensor_free(c->ctx, G[i][q]);
          c->d->tensor_free(c->ctx, gb[i]);
          c->d->tensor_free(c->ctx, out[i]);
          c->d->tensor_free(c->ctx, al[i]);
          c->d->tensor_free(c->ctx, gal[i]);
        }
        free(a0), free(g0), free(gb0), free(prev), free(al0);
      }
    check_nothing_left(&tp.c);
    run_free(&cpu, net);
    run_free(&tp, net);
    cpu.c.d->context_destroy(cpu.c.ctx);
    tp.c.d->context_destroy(tp.c.ctx);
  }
  free(xl);
  free(xu);
}

START_TEST(test_backward_vjp_equals_cpu_on_every_layer_kind) {
  Net nets[3];
  build_mlp(&nets[0]);
  build_conv(&nets[1]);
  build_residual(&nets[2]);
  for (int i = 0; i < 3; i++) {
    vjp_compare(&nets[i]);
    net_free(&nets[i]);
  }
}
END_TEST

/* concretize_vjp, relu_init_alpha, beta_apply, beta_vjp and adam_step on
 * [S,B,N] tensors whose N no tested P divides. */
START_TEST(test_per_neuron_alpha_beta_operations_equal_cpu) {
  Backend cpu_b = load("cpu"), tp_b = load("tp");
  const int64_t N = 11;
  batch = 2;
  const int64_t R = S_SPECS * batch, n = R * N;
  rng_state = 21;
  float *lo0 = rand_vec(batch * N, 1.0f), *hi0 = rand_vec(batch * N, 1.0f);
  for (int64_t i = 0; i < batch * N; i++)
    if (lo0[i] > hi0[i]) {
      float t = lo0[i];
      lo0[i] = hi0[i], hi0[i] = t;
    }
  float *a0 = rand_vec(n, 1.0f), *b0 = rand_vec(n, 1.0f);
  float *g0 = rand_vec(R, 1.0f), *sign0 = rand_vec(batch * N, 1.0f);
  for (int64_t i = 0; i < n; i++)
    b0[i] = fabsf(b0[i]);
  for (int64_t i = 0; i < batch * N; i++)
    sign0[i] = sign0[i] > 0.3f ? 1.0f : sign0[i] < -0.3f ? -1.0f : 0.0f;
  Ctx cpu = open_ctx(&cpu_b, NULL, 0);
  for (int P = 1; P <= 4; P++) {
    Ctx tp = open_ranks(&tp_b, P);
    Ctx *cs[2] = {&cpu, &tp};
    sb_tensor *t[2][8];
    for (int i = 0; i < 2; i++) {
      Ctx *c = cs[i];
      sb_tensor **x = t[i];
      x[0] = tensor(c, SB_MEM_BOUNDS, batch, N, 0, lo0);
      x[1] = tensor(c, SB_MEM_BOUNDS, batch, N, 0, hi0);
      x[2] = coef(c, N, a0);
      x[3] = tensor(c, SB_MEM_COEFFICIENTS, S_SPECS, batch, 0, g0);
      x[4] = coef(c, N, NULL);
      x[5] = tensor(c, SB_MEM_BOUNDS, batch, N, 0, sign0);
      x[6] = coef(c, N, b0);
      x[7] = coef(c, N, b0);
      for (int side = 0; side < 2; side++) {
        ok(c,
           c->d->concretize_vjp(c->ctx, x[2], x[0], x[1], side,
                                side ? NULL : x[3], x[4]),
           "concretize_vjp");
        ok(c, c->d->beta_vjp(c->ctx, x[2], x[5], side, x[7], side), "beta_vjp");
      }
      ok(c, c->d->beta_apply(c->ctx, x[2], x[6], x[5], SB_SIDE_LOWER),
         "beta_apply");
      ok(c, c->d->relu_init_alpha(c->ctx, x[0], x[1], x[6]), "relu_init_alpha");
    }
    same_values(&cpu, t[0][4], &tp, t[1][4], n, "concretize_vjp", P);
    same_values(&cpu, t[0][7], &tp, t[1][7], n, "beta_vjp", P);
    same_values(&cpu, t[0][2], &tp, t[1][2], n, "beta_apply", P);
    same_values(&cpu, t[0][6], &tp, t[1][6], n, "relu_init_alpha", P);
    /* Two Adam steps on A with the concretize gradient; m, v start at 0. */
    sb_adam_args_v1 adam = {.struct_size = sizeof adam,
                            .learning_rate = 0.1f,
                            .beta1 = 0.9f,
                            .beta2 = 0.999f,
                            .epsilon = 1e-8f,
                            .clamp_min = -0.5f,
                            .clamp_max = 0.5f};
    for (int i = 0; i < 2; i++) {
      Ctx *c = cs[i];
      sb_tensor *m = coef(c, N, NULL), *v = coef(c, N, NULL);
      for (adam.step = 1; adam.step <= 2; adam.step++)
        ok(c, c->d->adam_step(c->ctx, t[i][2], t[i][4], m, v, &adam),
           "adam_step");
      ck_assert_int_eq(c->d->adam_step(c->ctx, t[i][2], t[i][3], m, v, &adam),
                       SB_ERR_INVALID_ARGUMENT);
      c->d->tensor_free(c->ctx, m);
      c->d->tensor_free(c->ctx, v);
    }
    same_values(&cpu, t[0][2], &tp, t[1][2], n, "adam_step", P);
    for (int i = 0; i < 2; i++)
      for (int k = 0; k < 8; k++)
        cs[i]->d->tensor_free(cs[i]->ctx, t[i][k]);
    check_nothing_left(&tp);
    tp.d->context_destroy(tp.ctx);
  }
  cpu.d->context_destroy(cpu.ctx);
  free(lo0), free(hi0), free(a0), free(b0), free(g0), free(sign0);
}
END_TEST

/* The ABI's argument rules (side, argument structs, Adam's
 * hyper-parameters, outputs that alias inputs) are written once, in
 * backends/common/abi_checks.c: every backend refuses the same bad call
 * with the same status and the same message. */
#define N_REFUSALS 19

static void try_refusals(Ctx *c, char msgs[N_REFUSALS][256]) {
  enum { S = 2, B = 1, N = 4 };
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_RELU,
                        .in_size = N,
                        .out_size = N};
  sb_layer *relu = NULL;
  ok(c, c->d->layer_create(c->ctx, &d, &relu), "layer_create");
  sb_tensor *x = tensor(c, SB_MEM_BOUNDS, B, N, 0, NULL);
  sb_tensor *y = tensor(c, SB_MEM_BOUNDS, B, N, 0, NULL);
  sb_tensor *z = tensor(c, SB_MEM_BOUNDS, B, N, 0, NULL);
  sb_tensor *A = tensor(c, SB_MEM_COEFFICIENTS, S, B, N, NULL);
  sb_tensor *A2 = tensor(c, SB_MEM_COEFFICIENTS, S, B, N, NULL);
  sb_tensor *A3 = tensor(c, SB_MEM_COEFFICIENTS, S, B, N, NULL);
  sb_tensor *A4 = tensor(c, SB_MEM_COEFFICIENTS, S, B, N, NULL);
  sb_tensor *bias = tensor(c, SB_MEM_COEFFICIENTS, S, B, 0, NULL);
  sb_tensor *out = tensor(c, SB_MEM_COEFFICIENTS, S, B, 0, NULL);
  const sb_tensor *in_x[1] = {x}, *in_y[1] = {y};
  int k = 0;
  /* Each bad call must fail with SB_ERR_INVALID_ARGUMENT and say why; its
   * message is kept for the comparison across backends. */
#define REFUSE(call)                                                           \
  do {                                                                         \
    int st_ = (call);                                                          \
    ck_assert_msg(st_ == SB_ERR_INVALID_ARGUMENT,                              \
                  "%s: bad call %d (%s) returned %d", c->d->name, k, #call,    \
                  st_);                                                        \
    snprintf(msgs[k], 256, "%s", c->d->last_error(c->ctx));                    \
    ck_assert_msg(msgs[k][0] != '\0', "%s: bad call %d gave no reason",        \
                  c->d->name, k);                                              \
    k++;                                                                       \
  } while (0)
  REFUSE(c->d->layer_forward(c->ctx, relu, in_x, x));
  REFUSE(c->d->layer_ibp(c->ctx, relu, in_x, in_y, z, z));
  REFUSE(c->d->layer_ibp(c->ctx, relu, in_x, in_y, z, x));
  sb_backward_args_v1 ba = {.struct_size = sizeof ba,
                            .side = 7,
                            .A_out = A,
                            .pre_lower = x,
                            .pre_upper = y,
                            .A_in = {A2},
                            .bias = bias};
  REFUSE(c->d->layer_backward(c->ctx, relu, &ba));
  ba.side = SB_SIDE_LOWER;
  ba.struct_size = 8;
  REFUSE(c->d->layer_backward(c->ctx, relu, &ba));
  ba.struct_size = sizeof ba;
  ba.A_in[0] = A;
  REFUSE(c->d->layer_backward(c->ctx, relu, &ba));
  sb_vjp_args_v1 va = {.struct_size = sizeof va,
                       .side = SB_SIDE_UPPER,
                       .A_out = A,
                       .pre_lower = x,
                       .pre_upper = y,
                       .grad_A_in = {A2},
                       .grad_A_out = A};
  REFUSE(c->d->layer_backward_vjp(c->ctx, relu, &va));
  va.grad_A_out = A3;
  va.grad_alpha = A2;
  REFUSE(c->d->layer_backward_vjp(c->ctx, relu, &va));
  REFUSE(c->d->concretize(c->ctx, A, bias, x, y, -1, out));
  REFUSE(c->d->concretize(c->ctx, A, bias, x, y, SB_SIDE_LOWER, bias));
  REFUSE(c->d->concretize_vjp(c->ctx, A, x, y, SB_SIDE_LOWER, NULL, A));
  sb_adam_args_v1 adam = {.struct_size = sizeof adam,
                          .step = 1,
                          .learning_rate = -0.1f,
                          .beta1 = 0.9f,
                          .beta2 = 0.999f,
                          .epsilon = 1e-8f,
                          .clamp_min = 0.0f,
                          .clamp_max = 1.0f};
  REFUSE(c->d->adam_step(c->ctx, A, A2, A3, A4, &adam));
  adam.learning_rate = 0.1f;
  adam.beta1 = 1.0f;
  REFUSE(c->d->adam_step(c->ctx, A, A2, A3, A4, &adam));
  adam.beta1 = 0.9f;
  adam.step = 0;
  REFUSE(c->d->adam_step(c->ctx, A, A2, A3, A4, &adam));
  adam.step = 1;
  adam.clamp_min = 2.0f;
  REFUSE(c->d->adam_step(c->ctx, A, A2, A3, A4, &adam));
  adam.clamp_min = 0.0f;
  REFUSE(c->d->adam_step(c->ctx, A, A2, A3, A3, &adam));
  REFUSE(c->d->adam_step(c->ctx, A, A2, A3, A4, NULL));
  REFUSE(c->d->beta_apply(c->ctx, A, A, x, SB_SIDE_LOWER));
  REFUSE(c->d->beta_vjp(c->ctx, A, x, 3, A2, 0));
#undef REFUSE
  ck_assert_int_eq(k, N_REFUSALS);
  sb_tensor *all[] = {x, y, z, A, A2, A3, A4, bias, out};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    c->d->tensor_free(c->ctx, all[i]);
  c->d->layer_free(c->ctx, relu);
}

START_TEST(test_every_backend_refuses_the_same_bad_arguments_alike) {
  static const char *names[] = {"cpu", "fsdp", "tp"};
  static char msgs[3][N_REFUSALS][256];
  for (int b = 0; b < 3; b++) {
    Backend be = load(names[b]);
    Ctx c = b == 0 ? open_ctx(&be, NULL, 0) : open_ranks(&be, 2);
    try_refusals(&c, msgs[b]);
    c.d->context_destroy(c.ctx);
  }
  for (int b = 1; b < 3; b++)
    for (int i = 0; i < N_REFUSALS; i++)
      ck_assert_msg(strcmp(msgs[0][i], msgs[b][i]) == 0,
                    "bad call %d: cpu says \"%s\", %s says \"%s\"", i,
                    msgs[0][i], names[b], msgs[b][i]);
}
END_TEST

int main(void) {
  Suite *s = suite_create("tp");
  TCase *tc = tcase_create("tp");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_mlp_bounds_equal_cpu_within_rounding);
  tcase_add_test(tc, test_conv_net_bounds_equal_cpu_within_rounding);
  tcase_add_test(tc, test_residual_net_bounds_equal_cpu_within_rounding);
  tcase_add_test(tc, test_layers_narrower_than_the_rank_count_equal_cpu);
  tcase_add_test(tc,
                 test_linear_weights_and_coefficients_are_sharded_by_neuron);
  tcase_add_test(tc, test_conv_weights_are_sharded_by_output_channel);
  tcase_add_test(tc, test_backward_peak_per_rank_is_about_a_pth_of_cpu);
  tcase_add_test(tc, test_failing_rank_fails_the_call_and_is_named);
  tcase_add_test(tc, test_context_rejects_unknown_and_bad_options);
  tcase_add_test(tc, test_tensor_write_read_round_trips_split_columns);
  tcase_add_test(tc, test_bad_arguments_are_refused_with_a_reason);
  tcase_add_test(tc, test_every_backend_refuses_the_same_bad_arguments_alike);
  tcase_add_test(tc, test_backward_vjp_equals_cpu_on_every_layer_kind);
  tcase_add_test(tc, test_per_neuron_alpha_beta_operations_equal_cpu);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
