/* SPDX-License-Identifier: MIT */
/* The multi-rank backends on GPUs (device=cuda), a suite of
 * check-backend-cuda, which runs it only where a GPU is usable: every
 * collective of the loopback (ranks sharing a GPU) and NCCL communicators
 * on device buffers, summing in rank order bit for bit; FSDP bitwise
 * equal to the cuda backend (the same device operations on the same row
 * blocks) and to float rounding of cpu, TP to float rounding of cuda, for
 * 1..4 ranks sharing one GPU over the loopback communicator; NCCL with one
 * GPU per rank, bitwise equal to the loopback (ordered sums). */
#include "config.h"

#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi/shardbound.h"
#include "backends/common/device_module.h"
#include "backends/common/layer.h"
#include "backends/common/ranks.h"
#include "tests/backend-testlib.h"

Suite *cuda_ranks_suite(void);

enum { BATCH = 2 };

/* context_create without asserting: status, context and message. */
static int try_gpu_ranks(const Backend *b, int P, const char *comm,
                         const char *devices, sb_context **ctx, char *err,
                         size_t err_size) {
  char v[8];
  snprintf(v, sizeof v, "%d", P);
  sb_option o[4] = {
      {"ranks", v}, {"device", "cuda"}, {"comm", comm}, {"devices", devices}};
  err[0] = '\0';
  *ctx = NULL;
  return b->d->context_create(NULL, o, devices ? 4 : 3, ctx, err, err_size);
}

static Ctx gpu_ranks(const Backend *b, int P, const char *comm) {
  Ctx c = {b->d, NULL};
  char err[1024];
  int st = try_gpu_ranks(b, P, comm, NULL, &c.ctx, err, sizeof err);
  ck_assert_msg(st == SB_OK, "%s ranks=%d device=cuda comm=%s: %s", b->d->name,
                P, comm, err);
  ck_assert_int_eq(b->d->rank_count(c.ctx), P);
  return c;
}

/* GPU against CPU: cuBLAS and OpenBLAS sum in other orders, so equal to
 * float rounding (relative 1e-4, absolute below 1). */
static void gpu_close(Ctx *a, const sb_tensor *ta, Ctx *b, const sb_tensor *tb,
                      int64_t n, const char *what, int P) {
  float *x = read_all(a, ta, n), *y = read_all(b, tb, n);
  for (int64_t i = 0; i < n; i++) {
    float m = fmaxf(1.0f, fmaxf(fabsf(x[i]), fabsf(y[i])));
    ck_assert_msg(isfinite(y[i]) && fabsf(x[i] - y[i]) <= 1e-4f * m,
                  "P=%d %s[%lld]: %s %.9g, %s %.9g", P, what, (long long)i,
                  a->d->name, x[i], b->d->name, y[i]);
  }
  free(x);
  free(y);
}

static void compare_ibp(Run *ref, Run *other, const Net *net, CompareFn cmp,
                        int P) {
  for (int k = 1; k < net->n; k++) {
    char what[32];
    snprintf(what, sizeof what, "IBP lower of node %d", k);
    cmp(&ref->c, ref->lo[k], &other->c, other->lo[k], BATCH * net->size[k],
        what, P);
    snprintf(what, sizeof what, "IBP upper of node %d", k);
    cmp(&ref->c, ref->hi[k], &other->c, other->hi[k], BATCH * net->size[k],
        what, P);
  }
}

static void close_run(Run *r, const Net *net) {
  run_free(r, net);
  r->c.d->context_destroy(r->c.ctx);
}

/* backend at device=cuda over comm, P = 1..4 ranks, against the cuda
 * backend (vs_cuda) and against cpu (to rounding). */
static void compare_net(const Net *net, unsigned seed, const char *backend,
                        CompareFn vs_cuda) {
  Backend cpu_b = load("cpu"), cuda_b = load("cuda"), rb = load(backend);
  rng_state = seed;
  float *xl = rand_vec(BATCH * net->size[0], 1.0f);
  float *xu = malloc((size_t)(BATCH * net->size[0]) * sizeof(float));
  for (int64_t i = 0; i < BATCH * net->size[0]; i++)
    xu[i] = xl[i] + 0.2f + 0.1f * (frand() + 1.0f);
  for (int P = 1; P <= 4; P++) {
    Run cpu = {open_ctx(&cpu_b, NULL, 0)}, cuda = {open_ctx(&cuda_b, NULL, 0)};
    Run rk = {gpu_ranks(&rb, P, "loopback")};
    run_ibp(&cpu, net, BATCH, xl, xu);
    run_ibp(&cuda, net, BATCH, xl, xu);
    run_ibp(&rk, net, BATCH, xl, xu);
    compare_ibp(&cuda, &rk, net, vs_cuda, P);
    compare_ibp(&cpu, &rk, net, gpu_close, P);
    for (int alpha = 0; alpha <= 1; alpha++) {
      backward_compare(&cuda, &rk, net, BATCH, SB_SIDE_LOWER, alpha, vs_cuda,
                       P);
      backward_compare(&cuda, &rk, net, BATCH, SB_SIDE_UPPER, alpha, vs_cuda,
                       P);
    }
    backward_compare(&cpu, &rk, net, BATCH, SB_SIDE_LOWER, 0, gpu_close, P);
    close_run(&cpu, net);
    close_run(&cuda, net);
    close_run(&rk, net);
  }
  free(xl);
  free(xu);
}

static void mlp(Net *net) {
  rng_state = 11;
  net_init(net, 13);
  int a = net_linear(net, 0, 23);
  a = net_simple(net, SB_LAYER_RELU, a);
  a = net_linear(net, a, 17);
  a = net_simple(net, SB_LAYER_RELU, a);
  net_linear(net, a, 5);
}

static void conv_net(Net *net) {
  rng_state = 12;
  net_init(net, 3 * 7 * 7);
  int a = net_conv(net, 0, 3, 7, 7, 6, 3, 2, 1, 1); /* 6x4x4 */
  a = net_affine(net, a, 6);
  a = net_simple(net, SB_LAYER_RELU, a);
  a = net_conv(net, a, 6, 4, 4, 9, 3, 1, 1, 3); /* groups 3: 9x4x4 */
  a = net_simple(net, SB_LAYER_RELU, a);
  net_linear(net, a, 7);
}

static void residual_net(Net *net) {
  rng_state = 13;
  net_init(net, 10);
  int a = net_linear(net, 0, 19);
  int r = net_simple(net, SB_LAYER_RELU, a);
  int b = net_linear(net, r, 19);
  b = net_simple(net, SB_LAYER_RELU, b);
  b = net_linear(net, b, 19);
  net_add(net, SB_LAYER_ADD, r, b, 19);
  int s = net_simple(net, SB_LAYER_RELU, net->n - 1);
  net_linear(net, s, 3);
}

static void (*const nets[])(Net *) = {mlp, conv_net, residual_net};

START_TEST(test_fsdp_cuda_ranks_equal_cuda_bit_for_bit) {
  for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
    Net net;
    nets[i](&net);
    compare_net(&net, 101 + (unsigned)i, "fsdp", same_bits);
    net_free(&net);
  }
}
END_TEST

START_TEST(test_tp_cuda_ranks_equal_cuda_to_rounding) {
  for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++) {
    Net net;
    nets[i](&net);
    compare_net(&net, 201 + (unsigned)i, "tp", same_values);
    net_free(&net);
  }
}
END_TEST

/* Linear backward with spec rows across several row blocks, so that FSDP
 * ranks really split them (the nets above have fewer specs than a block). */
static float *blocked_backward(Ctx *c, int64_t S, int64_t *n) {
  const int64_t B = 2, IN = 257, OUT = 300;
  rng_state = 77;
  float *w = rand_vec(OUT * IN, 0.1f), *bias = rand_vec(OUT, 0.1f);
  float *A0 = rand_vec(S * B * OUT, 1.0f);
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_LINEAR,
                        .in_size = IN,
                        .out_size = OUT,
                        .weight = w,
                        .bias = bias};
  sb_layer *l = NULL;
  ok(c, c->d->layer_create(c->ctx, &d, &l), "layer_create");
  sb_tensor *A = tensor(c, SB_MEM_COEFFICIENTS, S, B, OUT, A0);
  sb_tensor *Ai = tensor(c, SB_MEM_COEFFICIENTS, S, B, IN, NULL);
  sb_tensor *bt = tensor(c, SB_MEM_COEFFICIENTS, S, B, 0, NULL);
  sb_backward_args_v1 a = {.struct_size = sizeof a,
                           .side = SB_SIDE_LOWER,
                           .A_out = A,
                           .A_in = {Ai},
                           .bias = bt};
  ok(c, c->d->layer_backward(c->ctx, l, &a), "layer_backward");
  *n = S * B * IN + S * B;
  float *out = malloc((size_t)*n * sizeof(float));
  float *ai = read_all(c, Ai, S * B * IN), *bb = read_all(c, bt, S * B);
  memcpy(out, ai, (size_t)(S * B * IN) * sizeof(float));
  memcpy(out + S * B * IN, bb, (size_t)(S * B) * sizeof(float));
  free(ai), free(bb);
  c->d->tensor_free(c->ctx, A);
  c->d->tensor_free(c->ctx, Ai);
  c->d->tensor_free(c->ctx, bt);
  c->d->layer_free(c->ctx, l);
  free(w), free(bias), free(A0);
  return out;
}

START_TEST(test_fsdp_cuda_split_spec_rows_equal_cuda_bit_for_bit) {
  const int64_t S = 2 * SB_ROW_BLOCK + 3;
  Backend cuda_b = load("cuda"), fsdp_b = load("fsdp");
  Ctx cuda = open_ctx(&cuda_b, NULL, 0);
  int64_t n_want = 0;
  float *want = blocked_backward(&cuda, S, &n_want);
  for (int P = 2; P <= 4; P++) {
    Ctx fs = gpu_ranks(&fsdp_b, P, "loopback");
    int64_t n = 0;
    float *got = blocked_backward(&fs, S, &n);
    ck_assert_int_eq(n, n_want);
    for (int64_t k = 0; k < n; k++)
      ck_assert_msg(memcmp(&got[k], &want[k], sizeof(float)) == 0,
                    "P=%d result %lld: cuda %.9g, fsdp %.9g", P, (long long)k,
                    want[k], got[k]);
    free(got);
    fs.d->context_destroy(fs.ctx);
  }
  free(want);
  cuda.d->context_destroy(cuda.ctx);
}
END_TEST

#ifdef HAVE_NCCL
/* One rank over NCCL: the communicator is created, used (gathers of one
 * block) and gives the cuda backend's bounds. */
START_TEST(test_nccl_one_rank_equals_cuda) {
  Backend cuda_b = load("cuda");
  const char *backends[2] = {"fsdp", "tp"};
  CompareFn cmp[2] = {same_bits, same_values};
  for (int k = 0; k < 2; k++) {
    Backend rb = load(backends[k]);
    Net net;
    mlp(&net);
    rng_state = 301;
    float *xl = rand_vec(BATCH * net.size[0], 1.0f);
    float *xu = malloc((size_t)(BATCH * net.size[0]) * sizeof(float));
    for (int64_t i = 0; i < BATCH * net.size[0]; i++)
      xu[i] = xl[i] + 0.3f;
    Run cuda = {open_ctx(&cuda_b, NULL, 0)}, rk = {gpu_ranks(&rb, 1, "nccl")};
    run_ibp(&cuda, &net, BATCH, xl, xu);
    run_ibp(&rk, &net, BATCH, xl, xu);
    compare_ibp(&cuda, &rk, &net, cmp[k], 1);
    backward_compare(&cuda, &rk, &net, BATCH, SB_SIDE_LOWER, 1, cmp[k], 1);
    close_run(&cuda, &net);
    close_run(&rk, &net);
    net_free(&net);
    free(xl);
    free(xu);
  }
}
END_TEST

/* With one GPU per rank (a machine with several), NCCL's collectives give
 * the loopback's bits: FSDP only gathers, and TP's sums are taken in rank
 * order by both. Stops at the number of GPUs. */
START_TEST(test_nccl_ranks_equal_loopback_ranks_bit_for_bit) {
  const char *backends[2] = {"fsdp", "tp"};
  for (int k = 0; k < 2; k++) {
    Backend rb = load(backends[k]);
    for (int P = 2; P <= 4; P++) {
      Run nccl = {{rb.d, NULL}};
      char err[1024];
      int st =
          try_gpu_ranks(&rb, P, "nccl", NULL, &nccl.c.ctx, err, sizeof err);
      if (st != SB_OK) {
        ck_assert_msg(strstr(err, "needs one GPU per rank") != NULL, "%s", err);
        break;
      }
      Net net;
      residual_net(&net);
      rng_state = 401;
      float *xl = rand_vec(BATCH * net.size[0], 1.0f);
      float *xu = malloc((size_t)(BATCH * net.size[0]) * sizeof(float));
      for (int64_t i = 0; i < BATCH * net.size[0]; i++)
        xu[i] = xl[i] + 0.3f;
      Run loop = {gpu_ranks(&rb, P, "loopback")};
      run_ibp(&loop, &net, BATCH, xl, xu);
      run_ibp(&nccl, &net, BATCH, xl, xu);
      compare_ibp(&loop, &nccl, &net, same_bits, P);
      backward_compare(&loop, &nccl, &net, BATCH, SB_SIDE_LOWER, 1, same_bits,
                       P);
      close_run(&loop, &net);
      close_run(&nccl, &net);
      net_free(&net);
      free(xl);
      free(xu);
    }
  }
}
END_TEST

START_TEST(test_nccl_refuses_two_ranks_on_one_gpu) {
  Backend fsdp_b = load("fsdp");
  sb_context *ctx;
  char err[1024];
  int st = try_gpu_ranks(&fsdp_b, 2, "nccl", "0", &ctx, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(err, "needs one GPU per rank, but ranks 0 and 1 would "
                            "share cuda device 0") != NULL,
                "%s", err);
}
END_TEST

#else
START_TEST(test_nccl_is_refused_by_a_build_without_it) {
  Backend fsdp_b = load("fsdp");
  sb_context *ctx;
  char err[1024];
  int st = try_gpu_ranks(&fsdp_b, 1, "nccl", NULL, &ctx, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_UNSUPPORTED);
  ck_assert_msg(strstr(err, "comm='nccl' is not available: this build has no "
                            "NCCL") != NULL,
                "%s", err);
}
END_TEST
#endif

START_TEST(test_devices_option_places_ranks_and_names_missing_gpus) {
  Backend tp_b = load("tp");
  sb_context *ctx;
  char err[1024];
  ck_assert_msg(try_gpu_ranks(&tp_b, 3, "loopback", "0,0", &ctx, err,
                              sizeof err) == SB_OK,
                "%s", err);
  ck_assert_int_eq(tp_b.d->rank_count(ctx), 3);
  tp_b.d->context_destroy(ctx);
  int st = try_gpu_ranks(&tp_b, 2, "loopback", "0,4096", &ctx, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_INVALID_ARGUMENT);
  ck_assert_msg(strstr(err, "option devices='0,4096' names cuda device 4096") !=
                    NULL,
                "%s", err);
}
END_TEST

/* The shard lives in GPU memory, and a rank that fails in the middle of a
 * weight gather is named without leaving the others waiting. */
START_TEST(test_fsdp_cuda_failing_rank_is_named_and_memory_is_the_gpus) {
  Backend fsdp_b = load("fsdp");
  /* Runs on the ranks: layer_create 0, three memory_stats 1-3, two writes
   * 4-5, IBP 6 (creating a tensor allocates on the calling thread). */
  sb_option o[5] = {{"ranks", "3"},
                    {"device", "cuda"},
                    {"fail_rank", "2"},
                    {"fail_at", "6"},
                    {"comm", "loopback"}};
  Ctx c = open_ctx(&fsdp_b, o, 5);
  rng_state = 9;
  float *w = rand_vec(8 * 5, 1.0f), *x = rand_vec(5, 1.0f);
  sb_layer_desc_v1 d = {.struct_size = sizeof d,
                        .kind = SB_LAYER_LINEAR,
                        .in_size = 5,
                        .out_size = 8,
                        .weight = w};
  sb_layer *l = NULL;
  ok(&c, c.d->layer_create(c.ctx, &d, &l), "layer_create");
  for (int r = 0; r < 3; r++) {
    sb_memory_stats_v1 s = {.struct_size = sizeof s};
    ok(&c, c.d->memory_stats(c.ctx, r, &s), "memory_stats");
    ck_assert_uint_gt(s.current_bytes[SB_MEM_WEIGHTS], 0);
    ck_assert_int_gt(s.device_used_bytes, 0);
  }
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
  ok(&c, c.d->layer_ibp(c.ctx, l, lo, up, ol, ou), "layer_ibp after fault");
  sb_tensor *ts[] = {il, iu, ol, ou};
  for (int i = 0; i < 4; i++)
    c.d->tensor_free(c.ctx, ts[i]);
  c.d->layer_free(c.ctx, l);
  c.d->context_destroy(c.ctx);
  free(w);
  free(x);
}
END_TEST

/* ---- the communicators themselves, on GPU buffers ---- */

static const SbDeviceModule *cuda_module(void) {
  const char *dir = getenv("SHARDBOUND_BACKEND_PATH");
  char path[4096];
  snprintf(path, sizeof path, "%s/shardbound-device-cuda.so",
           dir ? dir : "backends/.libs");
  void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  ck_assert_msg(so != NULL, "dlopen %s: %s", path, dlerror());
  SbDeviceModuleGetFn get;
  *(void **)&get = dlsym(so, SB_DEVICE_MODULE_SYMBOL);
  const SbDeviceModule *m = NULL;
  ck_assert(get != NULL && get(&m) == SB_OK && m != NULL);
  return m;
}

static int module_comm(void *module, int size, SbDevice *const *devs,
                       double timeout_s, SbComm **out, char *error,
                       size_t error_size) {
  const SbDeviceModule *m = module;
  SbCommSetup setup = {timeout_s, NULL, NULL};
  return m->comm_new(NULL, size, 0, size, devs, &setup, out, error, error_size);
}

/* Values whose float sum depends on the order of the additions. */
static float order_sensitive(int rank, int64_t i) {
  static const float v[4] = {1e8f, 1.0f, -1e8f, 3.0f};
  return v[rank % 4] * (float)(i + 1) + 0.25f * (float)rank;
}

static float sum_in_rank_order(int P, int64_t i) {
  float s = order_sensitive(0, i);
  for (int q = 1; q < P; q++)
    s = s + order_sensitive(q, i);
  return s;
}

enum { TOTAL_MAX = 64 };

typedef struct {
  int64_t counts[SB_RANKS_MAX], even[SB_RANKS_MAX];
  int64_t total;
  float scattered[SB_RANKS_MAX][TOTAL_MAX], reduced[SB_RANKS_MAX][TOTAL_MAX];
  float gathered[SB_RANKS_MAX][TOTAL_MAX],
      gathered_even[SB_RANKS_MAX][TOTAL_MAX];
  float bcast[SB_RANKS_MAX][TOTAL_MAX];
} CollJob;

/* Every collective on device buffers: reduce-scatter and all-reduce of
 * order-sensitive values, uneven and even all-gathers, a broadcast from
 * the last rank and a barrier; results downloaded for the host to check. */
static int collectives_fn(SbRank *r, SbComm *c, void *arg) {
  CollJob *j = arg;
  SbExec *x = &r->x;
  int q = r->index, P = c->size;
  float host[TOTAL_MAX];
  for (int64_t i = 0; i < j->total; i++)
    host[i] = order_sensitive(q, i);
  size_t bytes = (size_t)j->total * sizeof(float);
  SbBuffer send = {0}, out = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, j->total, &send);
  if (st == SB_OK)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, j->total, &out);
  if (st == SB_OK)
    st = x->ops->upload(x->dev, send.ptr, host, bytes);
  if (st == SB_OK)
    st = c->ops->reduce_scatter(c, q, x, send.ptr, j->counts, out.ptr);
  if (st == SB_OK)
    st = x->ops->download(x->dev, j->scattered[q], out.ptr,
                          (size_t)j->counts[q] * sizeof(float));
  if (st == SB_OK) /* in place */
    st = c->ops->all_reduce(c, q, x, send.ptr, send.ptr, j->total);
  if (st == SB_OK)
    st = x->ops->download(x->dev, j->reduced[q], send.ptr, bytes);
  int64_t at = 0, at_even = 0;
  for (int s = 0; s < q; s++)
    at += j->counts[s], at_even += j->even[s];
  if (st == SB_OK)
    st = x->ops->upload(x->dev, (float *)out.ptr + at, host,
                        (size_t)j->counts[q] * sizeof(float));
  if (st == SB_OK)
    st = c->ops->all_gather(c, q, x, (float *)out.ptr + at, j->counts, out.ptr);
  if (st == SB_OK)
    st = x->ops->download(x->dev, j->gathered[q], out.ptr, bytes);
  if (st == SB_OK) /* not in place */
    st = x->ops->upload(x->dev, send.ptr, host,
                        (size_t)j->even[q] * sizeof(float));
  if (st == SB_OK)
    st = c->ops->all_gather(c, q, x, send.ptr, j->even, out.ptr);
  if (st == SB_OK)
    st = x->ops->download(x->dev, j->gathered_even[q], out.ptr,
                          (size_t)(j->even[0] * P) * sizeof(float));
  if (st == SB_OK)
    st = x->ops->upload(x->dev, out.ptr, host, bytes);
  if (st == SB_OK)
    st = c->ops->broadcast(c, q, x, out.ptr, j->total, P - 1);
  if (st == SB_OK)
    st = x->ops->download(x->dev, j->bcast[q], out.ptr, bytes);
  if (st == SB_OK)
    st = c->ops->barrier(c, q, x);
  sb_exec_free(x, &send);
  sb_exec_free(x, &out);
  return st;
}

static void check_collectives(const SbDeviceModule *m, int P, int nccl) {
  int ordinals[SB_RANKS_MAX];
  for (int q = 0; q < P; q++)
    ordinals[q] = nccl ? q : 0;
  SbRanksConfig cfg = {
      P, m->ops, -1, -1, ordinals, nccl ? module_comm : NULL, (void *)m};
  SbRanks *pool = NULL;
  char err[1024];
  ck_assert_msg(sb_ranks_new(&cfg, &pool, err, sizeof err) == SB_OK,
                "P=%d %s: %s", P, nccl ? "nccl" : "loopback", err);
  CollJob *j = calloc(1, sizeof *j);
  for (int q = 0; q < P; q++) {
    j->counts[q] = (q * 7 + 3) % 5; /* 3, 0, 2, 4: an empty block too */
    j->even[q] = 3;
    j->total += j->counts[q];
  }
  ck_assert_msg(sb_ranks_run(pool, collectives_fn, j, err, sizeof err) == SB_OK,
                "P=%d %s: %s", P, nccl ? "nccl" : "loopback", err);
  int64_t at = 0;
  for (int q = 0; q < P; q++) {
    for (int64_t i = 0; i < j->counts[q]; i++) {
      float want = sum_in_rank_order(P, at + i);
      ck_assert_msg(memcmp(&j->scattered[q][i], &want, sizeof want) == 0,
                    "P=%d reduce_scatter rank %d [%lld]: %.9g != %.9g", P, q,
                    (long long)i, j->scattered[q][i], want);
    }
    at += j->counts[q];
    int64_t g = 0;
    for (int s = 0; s < P; s++)
      for (int64_t i = 0; i < j->counts[s]; i++, g++)
        ck_assert_float_eq(j->gathered[q][g], order_sensitive(s, i));
    for (int s = 0; s < P; s++)
      for (int64_t i = 0; i < 3; i++)
        ck_assert_float_eq(j->gathered_even[q][s * 3 + i],
                           order_sensitive(s, i));
    for (int64_t i = 0; i < j->total; i++) {
      float want = sum_in_rank_order(P, i);
      ck_assert_msg(memcmp(&j->reduced[q][i], &want, sizeof want) == 0,
                    "P=%d all_reduce rank %d [%lld]: %.9g != %.9g", P, q,
                    (long long)i, j->reduced[q][i], want);
      ck_assert_float_eq(j->bcast[q][i], order_sensitive(P - 1, i));
    }
    sb_memory_stats_v1 st = {.struct_size = sizeof st};
    sb_mem_tracker_snapshot(&sb_ranks_rank(pool, q)->mem, (uint32_t)q, &st);
    ck_assert_uint_eq(st.current_bytes[SB_MEM_COMMUNICATION], 0);
  }
  free(j);
  sb_ranks_destroy(pool);
}

/* Ranks sharing the GPU: device copies between their buffers, sums in rank
 * order, bit for bit the host's float additions. */
START_TEST(test_loopback_collectives_on_one_gpu_sum_in_rank_order) {
  const SbDeviceModule *m = cuda_module();
  for (int P = 1; P <= 4; P++)
    check_collectives(m, P, 0);
}
END_TEST

#ifdef HAVE_NCCL
/* NCCL, one GPU per rank, as many ranks as GPUs (up to 4): the same bits. */
START_TEST(test_nccl_collectives_sum_in_rank_order) {
  const SbDeviceModule *m = cuda_module();
  int count = 0;
  char err[512];
  ck_assert_msg(m->device_count(&count, err, sizeof err) == SB_OK, "%s", err);
  for (int P = 1; P <= 4 && P <= count; P++)
    check_collectives(m, P, 1);
}
END_TEST
#endif

Suite *cuda_ranks_suite(void) {
  Suite *s = suite_create("cuda-ranks");
  TCase *tc = tcase_create("device=cuda");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_loopback_collectives_on_one_gpu_sum_in_rank_order);
  tcase_add_test(tc, test_fsdp_cuda_ranks_equal_cuda_bit_for_bit);
  tcase_add_test(tc, test_tp_cuda_ranks_equal_cuda_to_rounding);
  tcase_add_test(tc, test_fsdp_cuda_split_spec_rows_equal_cuda_bit_for_bit);
#ifdef HAVE_NCCL
  tcase_add_test(tc, test_nccl_collectives_sum_in_rank_order);
  tcase_add_test(tc, test_nccl_one_rank_equals_cuda);
  tcase_add_test(tc, test_nccl_ranks_equal_loopback_ranks_bit_for_bit);
  tcase_add_test(tc, test_nccl_refuses_two_ranks_on_one_gpu);
#else
  tcase_add_test(tc, test_nccl_is_refused_by_a_build_without_it);
#endif
  tcase_add_test(tc, test_devices_option_places_ranks_and_names_missing_gpus);
  tcase_add_test(tc,
                 test_fsdp_cuda_failing_rank_is_named_and_memory_is_the_gpus);
  suite_add_tcase(s, tc);
  return s;
}
