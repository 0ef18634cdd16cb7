/* SPDX-License-Identifier: MIT */
/* Tests of the FSDP backend against the CPU reference through the ABI:
 * bit-identical IBP, CROWN backward and concretize for 1..4 ranks on MLPs,
 * conv nets and residual nets; sharded memory; failing ranks. */
#include <check.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi/shardbound.h"
#include "backends/common/layer.h"
#include "tests/backend-testlib.h"

enum { BATCH = 2 };

static void check_gathered_released(Ctx *c) {
  for (int r = 0; r < c->d->rank_count(c->ctx); r++) {
    sb_memory_stats_v1 s = {.struct_size = sizeof s};
    ok(c, c->d->memory_stats(c->ctx, r, &s), "memory_stats");
    ck_assert_uint_eq(s.current_bytes[SB_MEM_GATHERED_WEIGHTS], 0);
  }
}

static void compare_net(const Net *net, unsigned seed) {
  Backend cpu_b = load("cpu"), fsdp_b = load("fsdp");
  rng_state = seed;
  float *xl = rand_vec(BATCH * net->size[0], 1.0f);
  float *xu = malloc((size_t)(BATCH * net->size[0]) * sizeof(float));
  for (int64_t i = 0; i < BATCH * net->size[0]; i++)
    xu[i] = xl[i] + 0.2f + 0.1f * (frand() + 1.0f);
  for (int P = 1; P <= 4; P++) {
    Run cpu = {open_ctx(&cpu_b, NULL, 0)}, fs = {open_ranks(&fsdp_b, P)};
    ck_assert_int_eq(fs.c.d->rank_count(fs.c.ctx), P);
    run_ibp(&cpu, net, BATCH, xl, xu);
    run_ibp(&fs, net, BATCH, xl, xu);
    for (int k = 1; k < net->n; k++) {
      char what[32];
      snprintf(what, sizeof what, "IBP lower of node %d", k);
      same_bits(&cpu.c, cpu.lo[k], &fs.c, fs.lo[k], BATCH * net->size[k], what,
                P);
      snprintf(what, sizeof what, "IBP upper of node %d", k);
      same_bits(&cpu.c, cpu.hi[k], &fs.c, fs.hi[k], BATCH * net->size[k], what,
                P);
    }
    backward_compare(&cpu, &fs, net, BATCH, SB_SIDE_LOWER, 0, same_bits, P);
    backward_compare(&cpu, &fs, net, BATCH, SB_SIDE_UPPER, 0, same_bits, P);
    check_gathered_released(&fs.c);
    run_free(&cpu, net);
    run_free(&fs, net);
    cpu.c.d->context_destroy(cpu.c.ctx);
    fs.c.d->context_destroy(fs.c.ctx);
  }
  free(xl);
  free(xu);
}

START_TEST(test_mlp_bounds_equal_cpu_bit_for_bit) {
  Net net;
  rng_state = 11;
  net_init(&net, 13);
  int a = net_linear(&net, 0, 23);
  a = net_simple(&net, SB_LAYER_RELU, a);
  a = net_linear(&net, a, 17);
  a = net_simple(&net, SB_LAYER_RELU, a);
  net_linear(&net, a, 5);
  compare_net(&net, 101);
  net_free(&net);
}
END_TEST

START_TEST(test_conv_net_bounds_equal_cpu_bit_for_bit) {
  Net net;
  rng_state = 12;
  net_init(&net, 3 * 7 * 7);
  int a = net_conv(&net, 0, 3, 7, 7, 6, 3, 2, 1, 1); /* 6x4x4 */
  a = net_affine(&net, a, 6);
  a = net_simple(&net, SB_LAYER_RELU, a);
  a = net_conv(&net, a, 6, 4, 4, 9, 3, 1, 1, 3); /* groups 3: 9x4x4 */
  a = net_simple(&net, SB_LAYER_RELU, a);
  a = net_conv(&net, a, 9, 4, 4, 5, 2, 1, 0, 1); /* 5x3x3 */
  a = net_simple(&net, SB_LAYER_RELU, a);
  net_linear(&net, a, 7);
  compare_net(&net, 202);
  net_free(&net);
}
END_TEST

START_TEST(test_residual_net_bounds_equal_cpu_bit_for_bit) {
  Net net;
  rng_state = 13;
  net_init(&net, 10);
  int a = net_linear(&net, 0, 19);
  int r = net_simple(&net, SB_LAYER_RELU, a);
  int b = net_linear(&net, r, 19);
  b = net_simple(&net, SB_LAYER_RELU, b);
  b = net_linear(&net, b, 19);
  net_add(&net, SB_LAYER_ADD, r, b, 19);
  int s = net_simple(&net, SB_LAYER_RELU, net.n - 1);
  net_linear(&net, s, 3);
  compare_net(&net, 303);
  net_free(&net);
}
END_TEST

/* Row splitting keeps each element's arithmetic only if the BLAS computes
 * an element of C the same way whatever M is: checked on GEMMs large
 * enough for OpenBLAS's blocking and with row counts that are not
 * multiples of its kernel widths. */
START_TEST(test_large_linear_backward_equals_cpu_bit_for_bit) {
  Backend cpu_b = load("cpu"), fsdp_b = load("fsdp");
  const int64_t S = 61, B = 1, IN = 301, OUT = 257;
  rng_state = 77;
  float *w = rand_vec(OUT * IN, 0.1f), *bias = rand_vec(OUT, 0.1f);
  float *A0 = rand_vec(S * B * OUT, 1.0f);
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_LINEAR,
                        .in_size = IN,
                        .out_size = OUT,
                        .weight = w,
                        .bias = bias};
  Ctx cpu = open_ctx(&cpu_b, NULL, 0);
  for (int P = 1; P <= 4; P++) {
    Ctx fs = open_ranks(&fsdp_b, P);
    Ctx *cs[2] = {&cpu, &fs};
    sb_layer *l[2];
    sb_tensor *A[2], *Ai[2], *bt[2];
    for (int i = 0; i < 2; i++) {
      Ctx *c = cs[i];
      ok(c, c->d->layer_create(c->ctx, &d, &l[i]), "layer_create");
      A[i] = tensor(c, SB_MEM_COEFFICIENTS, S, B, OUT, A0);
      Ai[i] = tensor(c, SB_MEM_COEFFICIENTS, S, B, IN, NULL);
      bt[i] = tensor(c, SB_MEM_COEFFICIENTS, S, B, 0, NULL);
      sb_backward_args_v1 a = {.struct_size = sizeof a,
                               .side = SB_SIDE_LOWER,
                               .A_out = A[i],
                               .A_in = {Ai[i]},
                               .bias = bt[i]};
      ok(c, c->d->layer_backward(c->ctx, l[i], &a), "layer_backward");
    }
    same_bits(&cpu, Ai[0], &fs, Ai[1], S * B * IN, "A_in", P);
    same_bits(&cpu, bt[0], &fs, bt[1], S * B, "bias", P);
    for (int i = 0; i < 2; i++) {
      Ctx *c = cs[i];
      c->d->tensor_free(c->ctx, A[i]);
      c->d->tensor_free(c->ctx, Ai[i]);
      c->d->tensor_free(c->ctx, bt[i]);
      c->d->layer_free(c->ctx, l[i]);
    }
    fs.d->context_destroy(fs.ctx);
  }
  cpu.d->context_destroy(cpu.ctx);
  free(w);
  free(bias);
  free(A0);
}
END_TEST

START_TEST(test_baseline_is_a_shard_and_gathered_weights_are_transient) {
  Backend fsdp_b = load("fsdp");
  const int64_t OUT = 1000, IN = 999;
  rng_state = 5;
  float *w = rand_vec(OUT * IN, 0.1f), *bias = rand_vec(OUT, 0.1f);
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_LINEAR,
                        .in_size = IN,
                        .out_size = OUT,
                        .weight = w,
                        .bias = bias};
  for (int P = 1; P <= 4; P++) {
    Ctx c = open_ranks(&fsdp_b, P);
    sb_layer *l = NULL;
    ok(&c, c.d->layer_create(c.ctx, &d, &l), "layer_create");
    ok(&c, c.d->memory_mark_baseline(c.ctx), "mark_baseline");
    uint64_t total_weights = 0;
    const uint64_t shard_max =
        (uint64_t)((OUT + P - 1) / P) * IN * sizeof(float);
    for (int r = 0; r < P; r++) {
      sb_memory_stats_v1 s = {.struct_size = sizeof s};
      ok(&c, c.d->memory_stats(c.ctx, r, &s), "memory_stats");
      /* A shard of at most one row more than W/P, plus the bias. */
      ck_assert_uint_le(s.current_bytes[SB_MEM_WEIGHTS],
                        shard_max + OUT * sizeof(float));
      ck_assert_uint_le(s.baseline_bytes, shard_max + OUT * sizeof(float));
      total_weights += s.current_bytes[SB_MEM_WEIGHTS];
    }
    ck_assert_uint_eq(total_weights,
                      (uint64_t)(OUT * IN + P * OUT) * sizeof(float));
    ok(&c, c.d->memory_reset_peak(c.ctx), "reset_peak");
    sb_tensor *A = tensor(&c, SB_MEM_COEFFICIENTS, 3, 1, OUT, NULL);
    sb_tensor *Ai = tensor(&c, SB_MEM_COEFFICIENTS, 3, 1, IN, NULL);
    sb_tensor *b = tensor(&c, SB_MEM_COEFFICIENTS, 3, 1, 0, NULL);
    sb_backward_args_v1 a = {.struct_size = sizeof a,
                             .side = SB_SIDE_LOWER,
                             .A_out = A,
                             .A_in = {Ai},
                             .bias = b};
    ok(&c, c.d->layer_backward(c.ctx, l, &a), "layer_backward");
    for (int r = 0; r < P; r++) {
      sb_memory_stats_v1 s = {.struct_size = sizeof s};
      ok(&c, c.d->memory_stats(c.ctx, r, &s), "memory_stats");
      /* One rank computes on its shard, which is the whole layer. */
      ck_assert_uint_eq(s.peak_bytes[SB_MEM_GATHERED_WEIGHTS],
                        P == 1 ? 0 : (uint64_t)OUT * IN * sizeof(float));
      ck_assert_uint_eq(s.current_bytes[SB_MEM_GATHERED_WEIGHTS], 0);
    }
    c.d->tensor_free(c.ctx, A);
    c.d->tensor_free(c.ctx, Ai);
    c.d->tensor_free(c.ctx, b);
    c.d->layer_free(c.ctx, l);
    for (int r = 0; r < P; r++) {
      sb_memory_stats_v1 s = {.struct_size = sizeof s};
      ok(&c, c.d->memory_stats(c.ctx, r, &s), "memory_stats");
      ck_assert_uint_eq(s.total_current_bytes, 0);
    }
    c.d->context_destroy(c.ctx);
  }
  free(w);
  free(bias);
}
END_TEST

START_TEST(test_failing_rank_fails_the_call_and_is_named) {
  Backend fsdp_b = load("fsdp");
  /* Runs on the ranks: layer_create 0, two writes 1-2, IBP 3 (creating a
   * tensor allocates on the calling thread and is not counted):
   * rank 2 fails while ranks 0 and 1 wait in the weight all-gather. */
  sb_option o[3] = {{"ranks", "3"}, {"fail_rank", "2"}, {"fail_at", "3"}};
  Ctx c = open_ctx(&fsdp_b, o, 3);
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
  check_gathered_released(&c);
  /* The next call works: nothing was left half-way. */
  ok(&c, c.d->layer_ibp(c.ctx, l, lo, up, ol, ou), "layer_ibp after fault");
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
  Backend fsdp_b = load("fsdp");
  struct {
    sb_option o;
    const char *needle;
  } cases[] = {{{"rank", "2"}, "unknown option 'rank'"},
               {{"ranks", "0"}, "ranks='0'"},
               {{"ranks", "two"}, "ranks='two'"},
               {{"device", "gpu"}, "device='gpu'"},
               {{"comm", "nccl"}, "comm='nccl'"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sb_context *ctx = NULL;
    char err[512] = "";
    int st =
        fsdp_b.d->context_create(NULL, &cases[i].o, 1, &ctx, err, sizeof err);
    ck_assert_int_ne(st, SB_OK);
    ck_assert_ptr_null(ctx);
    ck_assert_msg(strstr(err, cases[i].needle) != NULL, "error: %s", err);
  }
}
END_TEST

START_TEST(test_tensor_write_read_round_trips_split_rows) {
  Backend fsdp_b = load("fsdp");
  Ctx c = open_ranks(&fsdp_b, 3);
  /* 5 rows over 3 ranks: 2, 2, 1. Read and write across shard borders, in
   * both dtypes. */
  double v[5 * 2 * 3], back[5 * 2 * 3];
  for (int i = 0; i < 30; i++)
    v[i] = i + 0.5;
  sb_tensor *A = tensor(&c, SB_MEM_COEFFICIENTS, 5, 2, 3, NULL);
  ok(&c, c.d->tensor_write(c.ctx, A, 4, 20, SB_DTYPE_F64, v + 4), "write");
  memset(back, 0, sizeof back);
  ok(&c, c.d->tensor_read(c.ctx, A, 0, 30, SB_DTYPE_F64, back), "read");
  for (int i = 0; i < 30; i++)
    ck_assert(back[i] == (i >= 4 && i < 24 ? v[i] : 0.0));
  c.d->tensor_free(c.ctx, A);
  c.d->context_destroy(c.ctx);
}
END_TEST

/* Two linear layers of different sizes through IBP and backward: a rank
 * never holds more than the largest single gathered layer at once (each is
 * freed before the next is gathered), and one rank gathers nothing. */
START_TEST(test_gathered_weights_peak_is_one_layer_and_none_at_one_rank) {
  Backend fsdp_b = load("fsdp");
  const int64_t N0 = 300, N1 = 500, N2 = 200, B = 2, S = 5;
  rng_state = 11;
  float *w1 = rand_vec(N1 * N0, 0.1f), *w2 = rand_vec(N2 * N1, 0.1f);
  float *xl = rand_vec(B * N0, 1.0f), *xu = malloc(B * N0 * sizeof(float));
  for (int64_t i = 0; i < B * N0; i++)
    xu[i] = xl[i] + 0.5f;
  sb_layer_desc_v1 d1 = {.struct_size = sizeof d1,
                         .kind = SB_LAYER_LINEAR,
                         .in_size = N0,
                         .out_size = N1,
                         .weight = w1};
  sb_layer_desc_v1 d2 = {.struct_size = sizeof d2,
                         .kind = SB_LAYER_LINEAR,
                         .in_size = N1,
                         .out_size = N2,
                         .weight = w2};
  const uint64_t largest = (uint64_t)N1 * N0 * sizeof(float);
  for (int P = 1; P <= 3; P++) {
    Ctx c = open_ranks(&fsdp_b, P);
    sb_layer *l1 = NULL, *l2 = NULL;
    ok(&c, c.d->layer_create(c.ctx, &d1, &l1), "layer_create");
    ok(&c, c.d->layer_create(c.ctx, &d2, &l2), "layer_create");
    ok(&c, c.d->memory_reset_peak(c.ctx), "reset_peak");
    sb_tensor *lo0 = tensor(&c, SB_MEM_BOUNDS, B, N0, 0, xl);
    sb_tensor *up0 = tensor(&c, SB_MEM_BOUNDS, B, N0, 0, xu);
    sb_tensor *lo1 = tensor(&c, SB_MEM_BOUNDS, B, N1, 0, NULL);
    sb_tensor *up1 = tensor(&c, SB_MEM_BOUNDS, B, N1, 0, NULL);
    sb_tensor *lo2 = tensor(&c, SB_MEM_BOUNDS, B, N2, 0, NULL);
    sb_tensor *up2 = tensor(&c, SB_MEM_BOUNDS, B, N2, 0, NULL);
    const sb_tensor *in_l[] = {lo0}, *in_u[] = {up0};
    const sb_tensor *mid_l[] = {lo1}, *mid_u[] = {up1};
    ok(&c, c.d->layer_ibp(c.ctx, l1, in_l, in_u, lo1, up1), "ibp 1");
    ok(&c, c.d->layer_ibp(c.ctx, l2, mid_l, mid_u, lo2, up2), "ibp 2");
    sb_tensor *A2 = tensor(&c, SB_MEM_COEFFICIENTS, S, B, N2, NULL);
    sb_tensor *A1 = tensor(&c, SB_MEM_COEFFICIENTS, S, B, N1, NULL);
    sb_tensor *A0 = tensor(&c, SB_MEM_COEFFICIENTS, S, B, N0, NULL);
    sb_tensor *bias = tensor(&c, SB_MEM_COEFFICIENTS, S, B, 0, NULL);
    int64_t index[5] = {0, 3, 7, 11, N2 - 1};
    ok(&c, c.d->tensor_set_unit_rows(c.ctx, A2, index), "set_unit_rows");
    sb_backward_args_v1 a2 = {.struct_size = sizeof a2,
                              .side = SB_SIDE_LOWER,
                              .A_out = A2,
                              .A_in = {A1},
                              .bias = bias};
    sb_backward_args_v1 a1 = a2;
    a1.A_out = A1;
    a1.A_in[0] = A0;
    ok(&c, c.d->layer_backward(c.ctx, l2, &a2), "backward 2");
    ok(&c, c.d->layer_backward(c.ctx, l1, &a1), "backward 1");
    for (int r = 0; r < P; r++) {
      sb_memory_stats_v1 s = {.struct_size = sizeof s};
      ok(&c, c.d->memory_stats(c.ctx, r, &s), "memory_stats");
      ck_assert_uint_eq(s.peak_bytes[SB_MEM_GATHERED_WEIGHTS],
                        P == 1 ? 0 : largest);
      ck_assert_uint_eq(s.current_bytes[SB_MEM_GATHERED_WEIGHTS], 0);
    }
    sb_tensor *all[] = {lo0, up0, lo1, up1, lo2, up2, A2, A1, A0, bias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
      c.d->tensor_free(c.ctx, all[i]);
    c.d->layer_free(c.ctx, l1);
    c.d->layer_free(c.ctx, l2);
    c.d->context_destroy(c.ctx);
  }
  free(w1);
  free(w2);
  free(xl);
  free(xu);
}
END_TEST

/* ---- ABI 1.1: every new operation, bit for bit against the CPU ---- */

/* Shapes of the ABI 1.1 comparison: S=5 is not a multiple of any P > 1
 * (uneven row splits); the others have S < SB_ROW_BLOCK and more than one
 * batch block, so their batch axis is split, in uneven blocks too. */
static const int64_t vjp_shapes[][2] = {{5, 2},
                                        {1, 2 * SB_BATCH_BLOCK + 1},
                                        {3, 3 * SB_BATCH_BLOCK + 4},
                                        {2, SB_BATCH_BLOCK + 1}};

/* Appends the n floats of t to out (at *pos). */
static void collect(Ctx *c, const sb_tensor *t, int64_t n, float *out,
                    int64_t *pos) {
  float *v = read_all(c, t, n);
  memcpy(out + *pos, v, (size_t)n * sizeof(float));
  *pos += n;
  free(v);
}

/* Runs layer_backward_vjp (and, for relu, the alpha gradient) of every
 * layer of the net on one backend, then the layer-free 1.1 operations;
 * returns every result, concatenated, in a fresh buffer of *n floats. */
static float *run_vjp_ops(Ctx *c, const Net *net, unsigned seed, int64_t S,
                          int64_t B, int64_t *n) {
  const int64_t R = S * B;
  int64_t cap = 0;
  for (int k = 1; k < net->n; k++)
    cap += 2 * R * net->size[k] + 64 * R * 64;
  float *out = malloc((size_t)cap * sizeof(float));
  int64_t pos = 0;
  rng_state = seed;
  for (int side = 0; side < 2; side++)
    for (int k = 1; k < net->n; k++) {
      const sb_layer_desc_v1 *d = &net->desc[k];
      const int64_t NO = d->out_size, NI = d->in_size;
      sb_layer *l = NULL;
      ok(c, c->d->layer_create(c->ctx, d, &l), "layer_create");
      float *A = rand_vec(R * NO, 1.0f), *G0 = rand_vec(R * NI, 1.0f);
      float *G1 = rand_vec(R * NI, 1.0f), *g = rand_vec(R, 1.0f);
      float *lo = rand_vec(B * NO, 1.0f), *hi = malloc((size_t)B * NO * 4);
      for (int64_t i = 0; i < B * NO; i++)
        hi[i] = lo[i] + 0.5f * (frand() + 1.0f);
      float *al = rand_vec(R * NO, 0.5f);
      for (int64_t i = 0; i < R * NO; i++)
        al[i] += 0.5f;
      sb_tensor *tA = tensor(c, SB_MEM_COEFFICIENTS, S, B, NO, A);
      sb_tensor *tG0 = tensor(c, SB_MEM_COEFFICIENTS, S, B, NI, G0);
      sb_tensor *tG1 = tensor(c, SB_MEM_COEFFICIENTS, S, B, NI, G1);
      sb_tensor *tg = tensor(c, SB_MEM_COEFFICIENTS, S, B, 0, g);
      sb_tensor *tlo = tensor(c, SB_MEM_BOUNDS, B, NO, 0, lo);
      sb_tensor *thi = tensor(c, SB_MEM_BOUNDS, B, NO, 0, hi);
      sb_tensor *tal = tensor(c, SB_MEM_ALPHA, S, B, NO, al);
      sb_tensor *tgA = tensor(c, SB_MEM_COEFFICIENTS, S, B, NO, NULL);
      sb_tensor *tgal = tensor(c, SB_MEM_ALPHA, S, B, NO, NULL);
      int relu = d->kind == SB_LAYER_RELU;
      sb_vjp_args_v1 a;
      memset(&a, 0, sizeof a);
      a.struct_size = sizeof a;
      a.side = side;
      a.A_out = tA;
      a.grad_A_in[0] = tG0;
      a.grad_A_in[1] = d->kind == SB_LAYER_ADD ? tG1 : NULL;
      a.grad_bias = tg;
      a.grad_A_out = tgA;
      if (relu)
        a.pre_lower = tlo, a.pre_upper = thi, a.alpha = tal,
        a.grad_alpha = tgal;
      ok(c, c->d->layer_backward_vjp(c->ctx, l, &a), "layer_backward_vjp");
      collect(c, tgA, R * NO, out, &pos);
      if (relu)
        collect(c, tgal, R * NO, out, &pos);
      /* Accumulating, with the all-ones default grad_bias. */
      a.grad_bias = NULL, a.accumulate_A_out = 1, a.accumulate_alpha = 1;
      ok(c, c->d->layer_backward_vjp(c->ctx, l, &a), "layer_backward_vjp");
      collect(c, tgA, R * NO, out, &pos);
      if (relu)
        collect(c, tgal, R * NO, out, &pos);
      if (k == 1) {
        /* The layer-free operations on this layer's shapes. */
        ok(c, c->d->concretize_vjp(c->ctx, tA, tlo, thi, side, tg, tgA),
           "concretize_vjp");
        collect(c, tgA, R * NO, out, &pos);
        ok(c, c->d->relu_init_alpha(c->ctx, tlo, thi, tgal), "relu_init_alpha");
        collect(c, tgal, R * NO, out, &pos);
        ok(c, c->d->beta_apply(c->ctx, tA, tal, tlo, side), "beta_apply");
        collect(c, tA, R * NO, out, &pos);
        ok(c, c->d->beta_vjp(c->ctx, tA, tlo, side, tgal, 1), "beta_vjp");
        collect(c, tgal, R * NO, out, &pos);
        sb_tensor *m = tensor(c, SB_MEM_ALPHA, S, B, NO, NULL);
        sb_tensor *v = tensor(c, SB_MEM_ALPHA, S, B, NO, NULL);
        sb_adam_args_v1 ad = {sizeof ad, 1,    0.05f, 0.9f, 0.999f,
                              1e-8f,     side, 0.0f,  1.0f};
        for (ad.step = 1; ad.step <= 3; ad.step++)
          ok(c, c->d->adam_step(c->ctx, tal, tA, m, v, &ad), "adam_step");
        collect(c, tal, R * NO, out, &pos);
        collect(c, m, R * NO, out, &pos);
        collect(c, v, R * NO, out, &pos);
        c->d->tensor_free(c->ctx, m), c->d->tensor_free(c->ctx, v);
      }
      sb_tensor *ts[] = {tA, tG0, tG1, tg, tlo, thi, tal, tgA, tgal};
      for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        c->d->tensor_free(c->ctx, ts[i]);
      c->d->layer_free(c->ctx, l);
      free(A), free(G0), free(G1), free(g), free(lo), free(hi), free(al);
    }
  ck_assert_int_le(pos, cap);
  *n = pos;
  return out;
}

START_TEST(test_abi_1_1_operations_equal_cpu_bit_for_bit) {
  const int64_t S = vjp_shapes[_i][0], B = vjp_shapes[_i][1];
  Net net;
  rng_state = 71;
  net_init(&net, 50);
  int c1 = net_conv(&net, 0, 2, 5, 5, 4, 3, 2, 1, 2);
  int l1 = net_linear(&net, c1, 9);
  int r1 = net_simple(&net, SB_LAYER_RELU, l1);
  int a1 = net_affine(&net, r1, 3);
  net_add(&net, SB_LAYER_ADD, a1, r1, 9);
  Backend cpu_b = load("cpu"), fsdp_b = load("fsdp");
  Ctx cpu = open_ctx(&cpu_b, NULL, 0);
  int64_t n_cpu = 0;
  float *want = run_vjp_ops(&cpu, &net, 5, S, B, &n_cpu);
  for (int P = 1; P <= 4; P++) {
    Ctx fs = open_ranks(&fsdp_b, P);
    int64_t n = 0;
    float *got = run_vjp_ops(&fs, &net, 5, S, B, &n);
    ck_assert_int_eq(n, n_cpu);
    for (int64_t i = 0; i < n; i++)
      ck_assert_msg(memcmp(&got[i], &want[i], sizeof(float)) == 0,
                    "S=%lld B=%lld P=%d result %lld: cpu %.9g, fsdp %.9g",
                    (long long)S, (long long)B, P, (long long)i, want[i],
                    got[i]);
    check_gathered_released(&fs);
    free(got);
    fs.d->context_destroy(fs.ctx);
  }
  free(want);
  cpu.d->context_destroy(cpu.ctx);
  net_free(&net);
}
END_TEST

/* Runs linear backward from unit rows and from dense rows, then the linear
 * VJP, at S spec rows on one backend; returns every result concatenated
 * (*n floats). */
static float *run_blocked_linear(Ctx *c, int64_t S, int64_t B, int64_t *n) {
  const int64_t IN = 37, OUT = 29, R = S * B;
  rng_state = 1000 + (unsigned)(S * 7 + B);
  float *w = rand_vec(OUT * IN, 0.2f), *bias = rand_vec(OUT, 0.2f);
  float *A0 = rand_vec(R * OUT, 1.0f), *G0 = rand_vec(R * IN, 1.0f);
  float *g = rand_vec(R, 1.0f);
  int64_t *index = malloc((size_t)S * sizeof *index);
  for (int64_t s = 0; s < S; s++)
    index[s] = (s * 7) % OUT;
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_LINEAR,
                        .in_size = IN,
                        .out_size = OUT,
                        .weight = w,
                        .bias = bias};
  sb_layer *l = NULL;
  ok(c, c->d->layer_create(c->ctx, &d, &l), "layer_create");
  sb_tensor *A = tensor(c, SB_MEM_COEFFICIENTS, S, B, OUT, A0);
  sb_tensor *U = tensor(c, SB_MEM_COEFFICIENTS, S, B, OUT, NULL);
  sb_tensor *Ai = tensor(c, SB_MEM_COEFFICIENTS, S, B, IN, NULL);
  sb_tensor *bt = tensor(c, SB_MEM_COEFFICIENTS, S, B, 0, NULL);
  sb_tensor *G = tensor(c, SB_MEM_COEFFICIENTS, S, B, IN, G0);
  sb_tensor *tg = tensor(c, SB_MEM_COEFFICIENTS, S, B, 0, g);
  sb_tensor *gA = tensor(c, SB_MEM_COEFFICIENTS, S, B, OUT, NULL);
  ok(c, c->d->tensor_set_unit_rows(c->ctx, U, index), "tensor_set_unit_rows");
  float *out =
      malloc((size_t)(4 * R * IN + 4 * R + 2 * R * OUT) * sizeof(float));
  int64_t pos = 0;
  sb_tensor *from[2] = {U, A};
  for (int k = 0; k < 2; k++)
    for (int acc = 0; acc < 2; acc++) {
      sb_backward_args_v1 a = {.struct_size = sizeof a,
                               .side = SB_SIDE_LOWER,
                               .A_out = from[k],
                               .A_in = {Ai},
                               .accumulate = {acc},
                               .bias = bt};
      ok(c, c->d->layer_backward(c->ctx, l, &a), "layer_backward");
      collect(c, Ai, R * IN, out, &pos);
      collect(c, bt, R, out, &pos);
    }
  for (int acc = 0; acc < 2; acc++) {
    sb_vjp_args_v1 v;
    memset(&v, 0, sizeof v);
    v.struct_size = sizeof v;
    v.side = SB_SIDE_UPPER;
    v.A_out = A;
    v.grad_A_in[0] = G;
    v.grad_bias = tg;
    v.grad_A_out = gA;
    v.accumulate_A_out = acc;
    ok(c, c->d->layer_backward_vjp(c->ctx, l, &v), "layer_backward_vjp");
    collect(c, gA, R * OUT, out, &pos);
  }
  sb_tensor *ts[] = {A, U, Ai, bt, G, tg, gA};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
    c->d->tensor_free(c->ctx, ts[i]);
  c->d->layer_free(c->ctx, l);
  free(w), free(bias), free(A0), free(G0), free(g), free(index);
  *n = pos;
  return out;
}

/* FSDP splits spec rows only at multiples of SB_ROW_BLOCK, so every GEMM
 * block is the same call as on one device: bitwise equality at row counts
 * around one and two blocks, and with ranks left without rows. */
START_TEST(test_linear_blocks_equal_cpu_bit_for_bit_around_block_size) {
  const int64_t sizes[] = {1,
                           5,
                           SB_ROW_BLOCK - 1,
                           SB_ROW_BLOCK,
                           SB_ROW_BLOCK + 1,
                           2 * SB_ROW_BLOCK + 3};
  Backend cpu_b = load("cpu"), fsdp_b = load("fsdp");
  Ctx cpu = open_ctx(&cpu_b, NULL, 0);
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    int64_t n_cpu = 0;
    float *want = run_blocked_linear(&cpu, sizes[i], 2, &n_cpu);
    for (int P = 2; P <= 4; P++) {
      Ctx fs = open_ranks(&fsdp_b, P);
      int64_t n = 0;
      float *got = run_blocked_linear(&fs, sizes[i], 2, &n);
      ck_assert_int_eq(n, n_cpu);
      for (int64_t k = 0; k < n; k++)
        ck_assert_msg(memcmp(&got[k], &want[k], sizeof(float)) == 0,
                      "S=%lld P=%d result %lld: cpu %.9g, fsdp %.9g",
                      (long long)sizes[i], P, (long long)k, want[k], got[k]);
      free(got);
      fs.d->context_destroy(fs.ctx);
    }
    free(want);
  }
  cpu.d->context_destroy(cpu.ctx);
}
END_TEST

/* With S < SB_ROW_BLOCK, FSDP splits the batch at multiples of
 * SB_BATCH_BLOCK, and one device blocks its GEMMs per spec row and batch
 * block: the same calls, so bitwise equal at batch sizes around one and
 * several blocks, with ranks left without any. */
START_TEST(test_linear_batch_blocks_equal_cpu_bit_for_bit) {
  const int64_t batches[] = {SB_BATCH_BLOCK + 1, 3 * SB_BATCH_BLOCK - 1,
                             5 * SB_BATCH_BLOCK + 7};
  const int64_t specs[] = {1, 4, SB_ROW_BLOCK - 1};
  Backend cpu_b = load("cpu"), fsdp_b = load("fsdp");
  Ctx cpu = open_ctx(&cpu_b, NULL, 0);
  for (size_t i = 0; i < sizeof batches / sizeof batches[0]; i++)
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
      if (specs[k] > 4 && i > 0)
        continue; /* many spec rows: one batch size suffices */
      int64_t S = specs[k], B = batches[i], n_cpu = 0;
      float *want = run_blocked_linear(&cpu, S, B, &n_cpu);
      for (int P = 2; P <= 4; P++) {
        Ctx fs = open_ranks(&fsdp_b, P);
        int64_t n = 0;
        float *got = run_blocked_linear(&fs, S, B, &n);
        ck_assert_int_eq(n, n_cpu);
        for (int64_t e = 0; e < n; e++)
          ck_assert_msg(memcmp(&got[e], &want[e], sizeof(float)) == 0,
                        "S=%lld B=%lld P=%d result %lld: cpu %.9g, fsdp "
                        "%.9g",
                        (long long)S, (long long)B, P, (long long)e, want[e],
                        got[e]);
        free(got);
        fs.d->context_destroy(fs.ctx);
      }
      free(want);
    }
  cpu.d->context_destroy(cpu.ctx);
}
END_TEST

/* A linear backward after a ReLU backward with stably inactive neurons
 * multiplies only the live columns of A, and the VJP only the non-zero
 * columns of G, chosen block by block from the block's own data: FSDP
 * runs the same blocks, so the products are the same calls. The later
 * blocks have extra dead columns, so blocks differ. */
/* Spec rows and batch of the zero-column comparison: blocks of spec rows,
 * then blocks of the batch (S < SB_ROW_BLOCK). */
static const int64_t zero_col_shapes[][2] = {{2 * SB_ROW_BLOCK + 3, 2},
                                             {3, 3 * SB_BATCH_BLOCK + 5}};

/* A row of the second spec block or of a later batch block: those get
 * extra dead columns, so that blocks select different columns. */
static int later_block(int64_t r, int64_t B) {
  return r / B >= SB_ROW_BLOCK || r % B >= SB_BATCH_BLOCK;
}

START_TEST(test_linear_with_zero_columns_equals_cpu_bit_for_bit) {
  const int64_t S = zero_col_shapes[_i][0], B = zero_col_shapes[_i][1];
  const int64_t IN = 257, OUT = 300, R = S * B;
  Backend cpu_b = load("cpu"), fsdp_b = load("fsdp");
  rng_state = 4242;
  float *w = rand_vec(OUT * IN, 0.1f), *bias = rand_vec(OUT, 0.1f);
  float *A0 = rand_vec(R * OUT, 1.0f);
  float *pl = malloc((size_t)(B * OUT) * sizeof(float));
  float *pu = malloc((size_t)(B * OUT) * sizeof(float));
  for (int64_t i = 0; i < B * OUT; i++) {
    int dead =
        (i % OUT) % 5 < 3 || (i / OUT >= SB_BATCH_BLOCK && (i % OUT) % 7 == 0);
    pl[i] = dead ? -1.0f - 0.5f * frand() : -0.3f + 0.2f * frand();
    pu[i] = dead ? -0.05f * (frand() + 1.0f) : 0.5f + 0.2f * frand();
  }
  for (int64_t r = 0; r < R; r++)
    for (int64_t n = 0; n < OUT && later_block(r, B); n += 7)
      A0[r * OUT + n] = 0.0f;
  float *G0 = rand_vec(R * IN, 1.0f);
  for (int64_t r = 0; r < R; r++)
    for (int64_t j = 0; j < IN; j++)
      if (j % 5 < 3 || (later_block(r, B) && j % 7 == 0))
        G0[r * IN + j] = 0.0f;
  sb_layer_desc_v1 dl = {.struct_size = sizeof dl,
                         .kind = SB_LAYER_LINEAR,
                         .in_size = IN,
                         .out_size = OUT,
                         .weight = w,
                         .bias = bias};
  sb_layer_desc_v1 dr = {.struct_size = sizeof dr,
                         .kind = SB_LAYER_RELU,
                         .in_size = OUT,
                         .out_size = OUT};
  Ctx cpu = open_ctx(&cpu_b, NULL, 0);
  for (int P = 1; P <= 4; P++) {
    Ctx fs = open_ranks(&fsdp_b, P);
    Ctx *cs[2] = {&cpu, &fs};
    sb_layer *l[2], *re[2];
    sb_tensor *A[2], *Am[2], *Ai[2], *bt[2], *lo[2], *up[2], *Gt[2], *gA[2];
    for (int i = 0; i < 2; i++) {
      Ctx *c = cs[i];
      ok(c, c->d->layer_create(c->ctx, &dl, &l[i]), "layer_create");
      ok(c, c->d->layer_create(c->ctx, &dr, &re[i]), "layer_create");
      A[i] = tensor(c, SB_MEM_COEFFICIENTS, S, B, OUT, A0);
      Am[i] = tensor(c, SB_MEM_COEFFICIENTS, S, B, OUT, NULL);
      Ai[i] = tensor(c, SB_MEM_COEFFICIENTS, S, B, IN, NULL);
      bt[i] = tensor(c, SB_MEM_COEFFICIENTS, S, B, 0, NULL);
      lo[i] = tensor(c, SB_MEM_BOUNDS, B, OUT, 0, pl);
      up[i] = tensor(c, SB_MEM_BOUNDS, B, OUT, 0, pu);
      for (int side = SB_SIDE_LOWER; side <= SB_SIDE_UPPER; side++) {
        sb_backward_args_v1 ar = {.struct_size = sizeof ar,
                                  .side = side,
                                  .A_out = A[i],
                                  .pre_lower = lo[i],
                                  .pre_upper = up[i],
                                  .A_in = {Am[i]},
                                  .bias = bt[i]};
        ok(c, c->d->layer_backward(c->ctx, re[i], &ar), "relu backward");
        sb_backward_args_v1 al = {.struct_size = sizeof al,
                                  .side = side,
                                  .A_out = Am[i],
                                  .A_in = {Ai[i]},
                                  .accumulate = {side},
                                  .bias = bt[i]};
        ok(c, c->d->layer_backward(c->ctx, l[i], &al), "linear backward");
      }
      /* G with zero columns, as a ReLU VJP below the layer leaves it. */
      Gt[i] = tensor(c, SB_MEM_COEFFICIENTS, S, B, IN, G0);
      gA[i] = tensor(c, SB_MEM_COEFFICIENTS, S, B, OUT, NULL);
      sb_vjp_args_v1 v = {.struct_size = sizeof v,
                          .side = SB_SIDE_LOWER,
                          .A_out = Am[i],
                          .grad_A_in = {Gt[i]},
                          .grad_A_out = gA[i]};
      ok(c, c->d->layer_backward_vjp(c->ctx, l[i], &v), "linear VJP");
    }
    same_bits(&cpu, Ai[0], &fs, Ai[1], R * IN, "A_in", P);
    same_bits(&cpu, bt[0], &fs, bt[1], R, "bias", P);
    same_bits(&cpu, gA[0], &fs, gA[1], R * OUT, "grad_A_out", P);
    for (int i = 0; i < 2; i++) {
      Ctx *c = cs[i];
      sb_tensor *ts[] = {A[i], Am[i], Ai[i], bt[i], lo[i], up[i], Gt[i], gA[i]};
      for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
        c->d->tensor_free(c->ctx, ts[k]);
      c->d->layer_free(c->ctx, l[i]);
      c->d->layer_free(c->ctx, re[i]);
    }
    fs.d->context_destroy(fs.ctx);
  }
  cpu.d->context_destroy(cpu.ctx);
  free(w), free(bias), free(A0), free(pl), free(pu), free(G0);
}
END_TEST

/* Whole blocks per rank, as even as blocks allow, covering S exactly. */
START_TEST(test_spec_row_split_is_whole_blocks_covering_all_rows) {
  const int64_t sizes[] = {0, 1, SB_ROW_BLOCK, SB_ROW_BLOCK + 1,
                           5 * SB_ROW_BLOCK - 2};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (int P = 1; P <= 5; P++) {
      int64_t next = 0;
      for (int r = 0; r < P; r++) {
        int64_t start, count;
        sb_split_spec_rows(sizes[i], P, r, &start, &count);
        ck_assert_int_ge(count, 0);
        ck_assert_int_eq(start, next);
        ck_assert_int_eq(start % SB_ROW_BLOCK == 0 || start == sizes[i], 1);
        next = start + count;
      }
      ck_assert_int_eq(next, sizes[i]);
    }
}
END_TEST

/* Whole batch blocks per rank, as even as blocks allow, covering B. */
START_TEST(test_batch_split_is_whole_blocks_covering_all_elements) {
  const int64_t sizes[] = {0, 1, SB_BATCH_BLOCK, SB_BATCH_BLOCK + 1,
                           7 * SB_BATCH_BLOCK - 2};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (int P = 1; P <= 5; P++) {
      int64_t next = 0, most = 0, least = sizes[i] + SB_BATCH_BLOCK;
      for (int r = 0; r < P; r++) {
        int64_t start, count;
        sb_split_batch(sizes[i], P, r, &start, &count);
        ck_assert_int_ge(count, 0);
        ck_assert_int_eq(start, next);
        ck_assert_int_eq(start % SB_BATCH_BLOCK == 0 || start == sizes[i], 1);
        next = start + count;
        int64_t blocks = (count + SB_BATCH_BLOCK - 1) / SB_BATCH_BLOCK;
        most = blocks > most ? blocks : most;
        least = blocks < least ? blocks : least;
      }
      ck_assert_int_eq(next, sizes[i]);
      ck_assert_int_le(most - least, 1);
    }
  /* The batch is split only where the spec rows cannot be. */
  ck_assert(!sb_blocks_by_batch(SB_ROW_BLOCK, 10 * SB_BATCH_BLOCK));
  ck_assert(!sb_blocks_by_batch(1, SB_BATCH_BLOCK));
  ck_assert(sb_blocks_by_batch(SB_ROW_BLOCK - 1, SB_BATCH_BLOCK + 1));
}
END_TEST

/* A tensor split by batch elements: every rank holds a slice of every
 * spec row. Writes and reads across slice borders, both dtypes. */
START_TEST(test_tensor_write_read_round_trips_batch_slices) {
  Backend fsdp_b = load("fsdp");
  const int64_t S = 3, B = 3 * SB_BATCH_BLOCK + 1, N = 2, n = S * B * N;
  Ctx c = open_ranks(&fsdp_b, 3);
  double *v = malloc((size_t)n * sizeof *v);
  double *back = malloc((size_t)n * sizeof *back);
  float *f = malloc((size_t)n * sizeof *f);
  for (int64_t i = 0; i < n; i++)
    v[i] = (double)i + 0.5;
  sb_tensor *A = tensor(&c, SB_MEM_COEFFICIENTS, S, B, N, NULL);
  const int64_t lo = SB_BATCH_BLOCK * N - 3, hi = n - B * N / 2;
  ok(&c, c.d->tensor_write(c.ctx, A, lo, hi - lo, SB_DTYPE_F64, v + lo),
     "write");
  memset(back, 0, (size_t)n * sizeof *back);
  ok(&c, c.d->tensor_read(c.ctx, A, 0, n, SB_DTYPE_F64, back), "read");
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(back[i] == (i >= lo && i < hi ? v[i] : 0.0),
                  "element %lld: %g", (long long)i, back[i]);
  ok(&c, c.d->tensor_read(c.ctx, A, lo + 1, 50, SB_DTYPE_F32, f), "read");
  for (int64_t i = 0; i < 50; i++)
    ck_assert(f[i] == (float)v[lo + 1 + i]);
  c.d->tensor_free(c.ctx, A);
  c.d->context_destroy(c.ctx);
  free(v), free(back), free(f);
}
END_TEST

/* Thread ranks allocate a new tensor on the calling thread and zero-fill it
 * at their next call: it reads zero even over memory a freed tensor had
 * filled, and a tensor freed before any call does not disturb that. */
START_TEST(test_new_tensors_read_zero_over_reused_memory) {
  Backend fsdp_b = load("fsdp");
  const int64_t S = 2, B = 2 * SB_BATCH_BLOCK + 1, N = 3, n = S * B * N;
  Ctx c = open_ranks(&fsdp_b, 3);
  float *v = malloc((size_t)n * sizeof *v);
  for (int64_t i = 0; i < n; i++)
    v[i] = (float)i + 1.0f;
  for (int round = 0; round < 3; round++) {
    sb_tensor *A = tensor(&c, SB_MEM_ALPHA, S, B, N, NULL);
    sb_tensor *dropped = tensor(&c, SB_MEM_COEFFICIENTS, S, B, N, NULL);
    c.d->tensor_free(c.ctx, dropped);
    float *back = read_all(&c, A, n);
    for (int64_t i = 0; i < n; i++)
      ck_assert_msg(back[i] == 0.0f, "round %d, element %lld: %g", round,
                    (long long)i, back[i]);
    free(back);
    ok(&c, c.d->tensor_write(c.ctx, A, 0, n, SB_DTYPE_F32, v), "write");
    c.d->tensor_free(c.ctx, A);
  }
  c.d->context_destroy(c.ctx);
  free(v);
}
END_TEST

/* A shard no rank can hold fails tensor_create itself, naming the rank,
 * and leaves nothing allocated. */
START_TEST(test_tensor_create_out_of_memory_names_the_rank) {
  Backend fsdp_b = load("fsdp");
  Ctx c = open_ranks(&fsdp_b, 2);
  /* 2^48 bytes per rank: more than any process can map. */
  int64_t shape[3] = {(int64_t)1 << 21, (int64_t)1 << 13, (int64_t)1 << 13};
  sb_tensor *t = NULL;
  ck_assert_int_eq(c.d->tensor_create(c.ctx, SB_MEM_COEFFICIENTS, 3, shape, &t),
                   SB_ERR_OUT_OF_MEMORY);
  ck_assert_ptr_null(t);
  const char *msg = c.d->last_error(c.ctx);
  ck_assert_msg(strncmp(msg, "rank 0: ", 8) == 0 &&
                    strstr(msg, "coefficients") != NULL,
                "message: %s", msg);
  for (int r = 0; r < 2; r++) {
    sb_memory_stats_v1 st = {.struct_size = sizeof st};
    ok(&c, c.d->memory_stats(c.ctx, r, &st), "memory_stats");
    ck_assert_uint_eq(st.current_bytes[SB_MEM_COEFFICIENTS], 0);
  }
  c.d->context_destroy(c.ctx);
}
END_TEST

/* Branch-and-bound's alphas, [S, B, N] with a few atoms and many domains:
 * each rank stores only its domains' slopes, its whole batch blocks: 1/P
 * of them when P divides the blocks. */
START_TEST(test_batch_split_alpha_bytes_are_a_share_per_rank) {
  Backend fsdp_b = load("fsdp");
  const int64_t S = 2, blocks = 4, B = blocks * SB_BATCH_BLOCK, N = 100;
  const uint64_t whole = (uint64_t)(S * B * N) * sizeof(float);
  for (int P = 1; P <= 4; P++) {
    const uint64_t share = whole / blocks * ((blocks + P - 1) / P);
    Ctx c = open_ranks(&fsdp_b, P);
    sb_tensor *al = tensor(&c, SB_MEM_ALPHA, S, B, N, NULL);
    uint64_t sum = 0;
    for (int r = 0; r < P; r++) {
      sb_memory_stats_v1 st = {.struct_size = sizeof st};
      ok(&c, c.d->memory_stats(c.ctx, r, &st), "memory_stats");
      ck_assert_uint_le(st.current_bytes[SB_MEM_ALPHA], share);
      sum += st.current_bytes[SB_MEM_ALPHA];
    }
    ck_assert_uint_eq(sum, whole);
    c.d->tensor_free(c.ctx, al);
    c.d->context_destroy(c.ctx);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("fsdp");
  TCase *tc = tcase_create("fsdp");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_mlp_bounds_equal_cpu_bit_for_bit);
  tcase_add_test(tc, test_conv_net_bounds_equal_cpu_bit_for_bit);
  tcase_add_test(tc, test_residual_net_bounds_equal_cpu_bit_for_bit);
  tcase_add_test(tc, test_large_linear_backward_equals_cpu_bit_for_bit);
  tcase_add_test(tc,
                 test_baseline_is_a_shard_and_gathered_weights_are_transient);
  tcase_add_test(tc, test_failing_rank_fails_the_call_and_is_named);
  tcase_add_test(tc, test_context_rejects_unknown_and_bad_options);
  tcase_add_test(tc, test_tensor_write_read_round_trips_split_rows);
  tcase_add_test(tc,
                 test_gathered_weights_peak_is_one_layer_and_none_at_one_rank);
  tcase_add_test(tc,
                 test_linear_blocks_equal_cpu_bit_for_bit_around_block_size);
  tcase_add_loop_test(tc, test_linear_with_zero_columns_equals_cpu_bit_for_bit,
                      0, sizeof zero_col_shapes / sizeof zero_col_shapes[0]);
  suite_add_tcase(s, tc);
  /* Many small multi-rank calls: slow on a loaded machine. */
  tc = tcase_create("batch split");
  tcase_set_timeout(tc, 300);
  tcase_add_loop_test(tc, test_abi_1_1_operations_equal_cpu_bit_for_bit, 0,
                      sizeof vjp_shapes / sizeof vjp_shapes[0]);
  tcase_add_test(tc, test_linear_batch_blocks_equal_cpu_bit_for_bit);
  tcase_add_test(tc, test_batch_split_is_whole_blocks_covering_all_elements);
  tcase_add_test(tc, test_tensor_write_read_round_trips_batch_slices);
  tcase_add_test(tc, test_new_tensors_read_zero_over_reused_memory);
  tcase_add_test(tc, test_tensor_create_out_of_memory_names_the_rank);
  tcase_add_test(tc, test_batch_split_alpha_bytes_are_a_share_per_rank);
  tcase_add_test(tc, test_spec_row_split_is_whole_blocks_covering_all_rows);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
