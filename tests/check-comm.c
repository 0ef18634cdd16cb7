/* SPDX-License-Identifier: MIT */
/* Tests of the rank pool and the loopback communicator: every collective
 * for 1..4 ranks with uneven counts, deterministic sums, failures that end
 * every rank's call with the failing rank named, never a hang, and devices
 * whose work is queued and that cannot read each other's memory (GPUs). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/comm.h"
#include "backends/common/device_cpu.h"
#include "backends/common/ranks.h"

static SbRanks *pool_new(int P, int fail_rank, long fail_at) {
  SbRanksConfig cfg = {P, &sb_device_cpu_ops, fail_rank, fail_at};
  SbRanks *p = NULL;
  char err[256];
  int st = sb_ranks_new(&cfg, &p, err, sizeof err);
  ck_assert_msg(st == SB_OK, "sb_ranks_new: %s", err);
  return p;
}

/* Uneven counts: rank q owns q+1 elements (rank 0 of P=4 also 0 below). */
static void uneven_counts(int P, int64_t *counts, int64_t *total) {
  *total = 0;
  for (int q = 0; q < P; q++) {
    counts[q] = (q * 7 + 3) % 5; /* 3, 0, 2, 4: includes an empty block */
    *total += counts[q];
  }
}

static float value(int rank, int64_t i) {
  return (float)(rank * 1000 + i) + 0.25f;
}

typedef struct {
  int64_t counts[SB_RANKS_MAX];
  int64_t total;
  float *out[SB_RANKS_MAX]; /* per rank, host memory (cpu device) */
} Job;

static int gather_fn(SbRank *r, SbComm *c, void *arg) {
  Job *j = arg;
  float send[8];
  for (int64_t i = 0; i < j->counts[r->index]; i++)
    send[i] = value(r->index, i);
  return c->ops->all_gather(c, r->index, &r->x, send, j->counts,
                            j->out[r->index]);
}

START_TEST(test_all_gather_uneven_counts_gives_every_block) {
  for (int P = 1; P <= 4; P++) {
    SbRanks *p = pool_new(P, -1, -1);
    Job j;
    uneven_counts(P, j.counts, &j.total);
    for (int q = 0; q < P; q++)
      j.out[q] = calloc((size_t)j.total + 1, sizeof(float));
    char err[256];
    ck_assert_int_eq(sb_ranks_run(p, gather_fn, &j, err, sizeof err), SB_OK);
    for (int q = 0; q < P; q++) {
      int64_t at = 0;
      for (int s = 0; s < P; s++)
        for (int64_t i = 0; i < j.counts[s]; i++, at++)
          ck_assert_float_eq(j.out[q][at], value(s, i));
      free(j.out[q]);
    }
    sb_ranks_destroy(p);
  }
}
END_TEST

/* Values whose float sum depends on the order of the additions. */
static float order_sensitive(int rank, int64_t i) {
  static const float v[4] = {1e8f, 1.0f, -1e8f, 3.0f};
  return v[rank % 4] * (float)(i + 1);
}

static float sum_in_rank_order(int P, int64_t i) {
  float s = order_sensitive(0, i);
  for (int q = 1; q < P; q++)
    s = s + order_sensitive(q, i);
  return s;
}

static int reduce_scatter_fn(SbRank *r, SbComm *c, void *arg) {
  Job *j = arg;
  float send[32];
  for (int64_t i = 0; i < j->total; i++)
    send[i] = order_sensitive(r->index, i);
  return c->ops->reduce_scatter(c, r->index, &r->x, send, j->counts,
                                j->out[r->index]);
}

START_TEST(test_reduce_scatter_sums_in_rank_order) {
  for (int P = 1; P <= 4; P++) {
    SbRanks *p = pool_new(P, -1, -1);
    Job j;
    uneven_counts(P, j.counts, &j.total);
    for (int rep = 0; rep < 20; rep++) {
      for (int q = 0; q < P; q++)
        j.out[q] = calloc((size_t)j.counts[q] + 1, sizeof(float));
      char err[256];
      ck_assert_int_eq(sb_ranks_run(p, reduce_scatter_fn, &j, err, sizeof err),
                       SB_OK);
      int64_t at = 0;
      for (int q = 0; q < P; q++) {
        for (int64_t i = 0; i < j.counts[q]; i++, at++) {
          float want = sum_in_rank_order(P, at);
          ck_assert_msg(memcmp(&j.out[q][i], &want, sizeof want) == 0,
                        "P=%d rank %d element %lld: %g != %g", P, q,
                        (long long)i, j.out[q][i], want);
        }
        free(j.out[q]);
      }
    }
    sb_ranks_destroy(p);
  }
}
END_TEST

static int all_reduce_fn(SbRank *r, SbComm *c, void *arg) {
  Job *j = arg;
  float *buf = j->out[r->index];
  for (int64_t i = 0; i < j->total; i++)
    buf[i] = order_sensitive(r->index, i);
  /* In place: recv == send. */
  return c->ops->all_reduce(c, r->index, &r->x, buf, buf, j->total);
}

START_TEST(test_all_reduce_in_place_is_identical_on_every_rank) {
  for (int P = 1; P <= 4; P++) {
    SbRanks *p = pool_new(P, -1, -1);
    Job j;
    j.total = 9;
    for (int q = 0; q < P; q++)
      j.out[q] = calloc((size_t)j.total, sizeof(float));
    char err[256];
    ck_assert_int_eq(sb_ranks_run(p, all_reduce_fn, &j, err, sizeof err),
                     SB_OK);
    for (int q = 0; q < P; q++) {
      for (int64_t i = 0; i < j.total; i++) {
        float want = sum_in_rank_order(P, i);
        ck_assert(memcmp(&j.out[q][i], &want, sizeof want) == 0);
      }
      free(j.out[q]);
    }
    /* The temporary sum buffer is counted as communication and freed. */
    sb_memory_stats_v1 s = {.struct_size = sizeof s};
    sb_mem_tracker_snapshot(&sb_ranks_rank(p, 0)->mem, 0, &s);
    ck_assert_uint_eq(s.peak_bytes[SB_MEM_COMMUNICATION],
                      j.total * sizeof(float));
    ck_assert_uint_eq(s.current_bytes[SB_MEM_COMMUNICATION], 0);
    sb_ranks_destroy(p);
  }
}
END_TEST

typedef struct {
  int root;
  float buf[SB_RANKS_MAX][5];
} BcastJob;

static int broadcast_fn(SbRank *r, SbComm *c, void *arg) {
  BcastJob *j = arg;
  for (int i = 0; i < 5; i++)
    j->buf[r->index][i] = value(r->index, i);
  int st = c->ops->broadcast(c, r->index, &r->x, j->buf[r->index], 5, j->root);
  return st == SB_OK ? c->ops->barrier(c, r->index, &r->x) : st;
}

START_TEST(test_broadcast_copies_the_root_buffer) {
  for (int P = 1; P <= 4; P++) {
    SbRanks *p = pool_new(P, -1, -1);
    BcastJob j;
    j.root = P - 1;
    char err[256];
    ck_assert_int_eq(sb_ranks_run(p, broadcast_fn, &j, err, sizeof err), SB_OK);
    for (int q = 0; q < P; q++)
      for (int i = 0; i < 5; i++)
        ck_assert_float_eq(j.buf[q][i], value(P - 1, i));
    sb_ranks_destroy(p);
  }
}
END_TEST

/* Root holds 20 bytes; rank q receives [2q, 2q + 3 + q): parts that
 * overlap and grow, rank 0's in place. */
typedef struct {
  int root;
  char send[20];
  char recv[SB_RANKS_MAX][8];
  int64_t offsets[SB_RANKS_MAX], bytes[SB_RANKS_MAX];
} ScatterJob;

static int scatter_fn(SbRank *r, SbComm *c, void *arg) {
  ScatterJob *j = arg;
  int q = r->index;
  void *recv = q == j->root ? j->send + j->offsets[q] : j->recv[q];
  return c->ops->scatter_host(c, q, &r->x, q == j->root ? j->send : NULL,
                              j->offsets, j->bytes, recv, j->root);
}

START_TEST(test_scatter_host_gives_each_rank_its_part) {
  for (int P = 1; P <= 4; P++) {
    SbRanks *p = pool_new(P, -1, -1);
    ScatterJob j;
    memset(&j, 0, sizeof j);
    j.root = P - 1;
    for (int i = 0; i < 20; i++)
      j.send[i] = (char)('a' + i);
    for (int q = 0; q < P; q++)
      j.offsets[q] = 2 * q, j.bytes[q] = 3 + q;
    char err[256];
    ck_assert_int_eq(sb_ranks_run(p, scatter_fn, &j, err, sizeof err), SB_OK);
    for (int q = 0; q < P; q++)
      if (q != j.root)
        ck_assert_int_eq(memcmp(j.recv[q], j.send + 2 * q, (size_t)(3 + q)), 0);
    for (int i = 0; i < 20; i++)
      ck_assert_int_eq(j.send[i], 'a' + i);
    /* A negative count on one rank fails every rank. */
    j.bytes[P - 1] = -1;
    ck_assert_int_eq(sb_ranks_run(p, scatter_fn, &j, err, sizeof err),
                     SB_ERR_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err, "scatter_host") != NULL, "%s", err);
    sb_ranks_destroy(p);
  }
}
END_TEST

typedef struct {
  int bad_rank;
  int status[SB_RANKS_MAX];
} FailJob;

/* Rank bad_rank passes a negative count: an argument error inside the
 * collective, which every rank must see. */
static int bad_count_fn(SbRank *r, SbComm *c, void *arg) {
  FailJob *j = arg;
  float buf[4] = {0};
  int64_t n = r->index == j->bad_rank ? -1 : 4;
  int st = c->ops->all_reduce(c, r->index, &r->x, buf, buf, n);
  j->status[r->index] = st;
  return st;
}

START_TEST(test_collective_fails_on_every_rank_when_one_rank_is_wrong) {
  for (int P = 2; P <= 4; P++) {
    SbRanks *p = pool_new(P, -1, -1);
    FailJob j = {.bad_rank = P - 1};
    char err[512];
    int st = sb_ranks_run(p, bad_count_fn, &j, err, sizeof err);
    ck_assert_int_eq(st, SB_ERR_INVALID_ARGUMENT);
    for (int q = 0; q < P; q++)
      ck_assert_int_ne(j.status[q], SB_OK);
    char want[32];
    snprintf(want, sizeof want, "rank %d: ", P - 1);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "error: %s", err);
    ck_assert_ptr_nonnull(strstr(err, "negative count"));
    /* The pool and communicator work again afterwards. */
    Job g;
    uneven_counts(P, g.counts, &g.total);
    for (int q = 0; q < P; q++)
      g.out[q] = calloc((size_t)g.total + 1, sizeof(float));
    ck_assert_int_eq(sb_ranks_run(p, gather_fn, &g, err, sizeof err), SB_OK);
    for (int q = 0; q < P; q++)
      free(g.out[q]);
    sb_ranks_destroy(p);
  }
}
END_TEST

/* Rank 2 fails before it reaches the collective the others wait in. */
static int early_failure_fn(SbRank *r, SbComm *c, void *arg) {
  FailJob *j = arg;
  if (r->index == j->bad_rank) {
    j->status[r->index] = sb_exec_fail(&r->x, SB_ERR_OUT_OF_MEMORY,
                                       "could not allocate 1 GiB of bounds");
    return j->status[r->index];
  }
  int st = c->ops->barrier(c, r->index, &r->x);
  j->status[r->index] = st;
  return st;
}

START_TEST(test_run_names_the_failing_rank_and_nobody_hangs) {
  SbRanks *p = pool_new(4, -1, -1);
  FailJob j = {.bad_rank = 2};
  char err[512];
  int st = sb_ranks_run(p, early_failure_fn, &j, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_OUT_OF_MEMORY);
  ck_assert_str_eq(err, "rank 2: could not allocate 1 GiB of bounds");
  for (int q = 0; q < 4; q++)
    ck_assert_int_ne(j.status[q], SB_OK);
  ck_assert_int_eq(j.status[0], SB_ERR_COMMUNICATION);
  sb_ranks_destroy(p);
}
END_TEST

START_TEST(test_injected_fault_fails_the_chosen_call_only) {
  SbRanks *p = pool_new(3, 1, 1);
  Job g;
  uneven_counts(3, g.counts, &g.total);
  for (int q = 0; q < 3; q++)
    g.out[q] = calloc((size_t)g.total + 1, sizeof(float));
  char err[512];
  ck_assert_int_eq(sb_ranks_run(p, gather_fn, &g, err, sizeof err), SB_OK);
  int st = sb_ranks_run(p, gather_fn, &g, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_OUT_OF_MEMORY);
  ck_assert_msg(strncmp(err, "rank 1: injected fault", 22) == 0, "error: %s",
                err);
  ck_assert_int_eq(sb_ranks_run(p, gather_fn, &g, err, sizeof err), SB_OK);
  for (int q = 0; q < 3; q++)
    free(g.out[q]);
  sb_ranks_destroy(p);
}
END_TEST

START_TEST(test_pool_refuses_a_bad_rank_count) {
  SbRanksConfig cfg = {0, &sb_device_cpu_ops, -1, -1};
  SbRanks *p = NULL;
  char err[256];
  ck_assert_int_eq(sb_ranks_new(&cfg, &p, err, sizeof err),
                   SB_ERR_INVALID_ARGUMENT);
  ck_assert_ptr_null(p);
  ck_assert_ptr_nonnull(strstr(err, "ranks=0"));
}
END_TEST

/* ---- a device whose work is queued, like a GPU's ---- */

/* Host memory, but copy, add and zero only run when the queue is drained
 * (sync, free), and kernels may not read another rank's buffers: what a
 * GPU rank looks like to the loopback communicator. */
typedef struct QueuedOp {
  int kind; /* 0 copy, 1 add, 2 zero */
  float *dst;
  const float *a, *b;
  size_t n; /* floats */
} QueuedOp;

typedef struct LazyDevice {
  SbDevice *cpu;
  QueuedOp queue[64];
  int pending;
  int overflow;
} LazyDevice;

static int lazy_peer_checks; /* readable_from calls, all answered no */

static LazyDevice *lazy(SbDevice *d) { return (LazyDevice *)d; }

static int lazy_open(int ordinal, SbDevice **out, char *error, size_t size) {
  LazyDevice *d = calloc(1, sizeof *d);
  if (d == NULL)
    return SB_ERR_OUT_OF_MEMORY;
  int st = sb_device_cpu_ops.open(ordinal, &d->cpu, error, size);
  if (st != SB_OK) {
    free(d);
    return st;
  }
  *out = (SbDevice *)d;
  return SB_OK;
}

static int lazy_sync(SbDevice *dev) {
  LazyDevice *d = lazy(dev);
  for (int i = 0; i < d->pending; i++) {
    QueuedOp *o = &d->queue[i];
    for (size_t k = 0; k < o->n; k++)
      o->dst[k] = o->kind == 0   ? o->a[k]
                  : o->kind == 1 ? o->a[k] + o->b[k]
                                 : 0.0f;
  }
  d->pending = 0;
  return d->overflow ? SB_ERR_INTERNAL : SB_OK;
}

static void lazy_close(SbDevice *dev) {
  lazy_sync(dev);
  sb_device_cpu_ops.close(lazy(dev)->cpu);
  free(dev);
}

static const char *lazy_last_error(const SbDevice *dev) {
  return ((const LazyDevice *)dev)->overflow ? "queue overflow" : "";
}

static int64_t lazy_used_bytes(SbDevice *dev) { return -1; }

static int lazy_alloc(SbDevice *dev, size_t bytes, void **out) {
  return sb_device_cpu_ops.alloc(lazy(dev)->cpu, bytes, out);
}

static void lazy_free(SbDevice *dev, void *ptr) {
  lazy_sync(dev); /* queued work may still use it, as on a GPU */
  sb_device_cpu_ops.free(lazy(dev)->cpu, ptr);
}

static int enqueue(SbDevice *dev, int kind, float *dst, const float *a,
                   const float *b, size_t n) {
  LazyDevice *d = lazy(dev);
  if (d->pending == 64) {
    d->overflow = 1;
    return SB_ERR_INTERNAL;
  }
  d->queue[d->pending++] = (QueuedOp){kind, dst, a, b, n};
  return SB_OK;
}

static int lazy_copy(SbDevice *dev, void *dst, const void *src, size_t bytes) {
  return enqueue(dev, 0, dst, src, NULL, bytes / sizeof(float));
}

static int lazy_add(SbDevice *dev, int64_t n, const float *a, const float *b,
                    float *out) {
  return enqueue(dev, 1, out, a, b, (size_t)n);
}

static int lazy_zero(SbDevice *dev, void *dst, size_t bytes) {
  return enqueue(dev, 2, dst, NULL, NULL, bytes / sizeof(float));
}

static int lazy_readable_from(SbDevice *dev, SbDevice *peer) {
  __atomic_add_fetch(&lazy_peer_checks, 1, __ATOMIC_RELAXED);
  return 0;
}

static const SbDeviceOps lazy_ops = {
    .name = "lazy",
    .open = lazy_open,
    .close = lazy_close,
    .last_error = lazy_last_error,
    .used_bytes = lazy_used_bytes,
    .alloc = lazy_alloc,
    .free = lazy_free,
    .copy = lazy_copy,
    .zero = lazy_zero,
    .sync = lazy_sync,
    .add = lazy_add,
    .readable_from = lazy_readable_from,
};

/* Each rank writes its send buffer through its (queued) device, as a GPU
 * kernel would, then reduce-scatters, all-reduces and all-gathers. */
typedef struct {
  int64_t counts[SB_RANKS_MAX];
  int64_t total;
  float *send[SB_RANKS_MAX], *scattered[SB_RANKS_MAX], *reduced[SB_RANKS_MAX];
  float *gathered[SB_RANKS_MAX];
} LazyJob;

static int lazy_fn(SbRank *r, SbComm *c, void *arg) {
  LazyJob *j = arg;
  int q = r->index;
  float host[32];
  for (int64_t i = 0; i < j->total; i++)
    host[i] = order_sensitive(q, i);
  SbExec *x = &r->x;
  int st = x->ops->copy(x->dev, j->send[q], host, j->total * sizeof(float));
  if (st == SB_OK)
    st =
        c->ops->reduce_scatter(c, q, x, j->send[q], j->counts, j->scattered[q]);
  if (st == SB_OK)
    st = x->ops->copy(x->dev, j->reduced[q], host, j->total * sizeof(float));
  if (st == SB_OK)
    st = c->ops->all_reduce(c, q, x, j->reduced[q], j->reduced[q], j->total);
  int64_t at = 0;
  for (int s = 0; s < q; s++)
    at += j->counts[s];
  if (st == SB_OK)
    st = x->ops->copy(x->dev, j->gathered[q] + at, host,
                      j->counts[q] * sizeof(float));
  if (st == SB_OK)
    st = c->ops->all_gather(c, q, x, j->gathered[q] + at, j->counts,
                            j->gathered[q]);
  return st == SB_OK ? x->ops->sync(x->dev) : st;
}

START_TEST(test_loopback_waits_for_queued_devices_and_stages_peer_blocks) {
  for (int P = 1; P <= 4; P++) {
    SbRanksConfig cfg = {P, &lazy_ops, -1, -1};
    SbRanks *p = NULL;
    char err[256];
    ck_assert_msg(sb_ranks_new(&cfg, &p, err, sizeof err) == SB_OK, "%s", err);
    LazyJob j;
    uneven_counts(P, j.counts, &j.total);
    for (int q = 0; q < P; q++) {
      j.send[q] = calloc((size_t)j.total + 1, sizeof(float));
      j.scattered[q] = calloc((size_t)j.counts[q] + 1, sizeof(float));
      j.reduced[q] = calloc((size_t)j.total + 1, sizeof(float));
      j.gathered[q] = calloc((size_t)j.total + 1, sizeof(float));
    }
    lazy_peer_checks = 0;
    ck_assert_msg(sb_ranks_run(p, lazy_fn, &j, err, sizeof err) == SB_OK,
                  "P=%d: %s", P, err);
    int64_t at = 0;
    for (int q = 0; q < P; q++) {
      for (int64_t i = 0; i < j.counts[q]; i++) {
        float want = sum_in_rank_order(P, at + i);
        ck_assert_msg(memcmp(&j.scattered[q][i], &want, sizeof want) == 0,
                      "P=%d reduce_scatter rank %d element %lld: %g != %g", P,
                      q, (long long)i, j.scattered[q][i], want);
        ck_assert_float_eq(j.gathered[0][at + i], order_sensitive(q, i));
      }
      at += j.counts[q];
      for (int64_t i = 0; i < j.total; i++) {
        float want = sum_in_rank_order(P, i);
        ck_assert_msg(memcmp(&j.reduced[q][i], &want, sizeof want) == 0,
                      "P=%d all_reduce rank %d element %lld", P, q,
                      (long long)i);
      }
      for (int s = 0; s < P; s++)
        ck_assert(memcmp(j.gathered[q], j.gathered[s],
                         (size_t)j.total * sizeof(float)) == 0);
    }
    /* Peers' blocks were copied over before being added, in tracked
     * communication buffers that are gone again. */
    if (P > 1)
      ck_assert_int_gt(lazy_peer_checks, 0);
    for (int q = 0; q < P; q++) {
      sb_memory_stats_v1 s = {.struct_size = sizeof s};
      sb_mem_tracker_snapshot(&sb_ranks_rank(p, q)->mem, (uint32_t)q, &s);
      ck_assert_uint_eq(s.current_bytes[SB_MEM_COMMUNICATION], 0);
      free(j.send[q]);
      free(j.scattered[q]);
      free(j.reduced[q]);
      free(j.gathered[q]);
    }
    sb_ranks_destroy(p);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("comm");
  TCase *tc = tcase_create("collectives");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_all_gather_uneven_counts_gives_every_block);
  tcase_add_test(tc, test_reduce_scatter_sums_in_rank_order);
  tcase_add_test(tc, test_all_reduce_in_place_is_identical_on_every_rank);
  tcase_add_test(tc, test_broadcast_copies_the_root_buffer);
  tcase_add_test(tc, test_scatter_host_gives_each_rank_its_part);
  tcase_add_test(tc,
                 test_collective_fails_on_every_rank_when_one_rank_is_wrong);
  tcase_add_test(tc, test_run_names_the_failing_rank_and_nobody_hangs);
  tcase_add_test(tc, test_injected_fault_fails_the_chosen_call_only);
  tcase_add_test(tc, test_pool_refuses_a_bad_rank_count);
  tcase_add_test(tc,
                 test_loopback_waits_for_queued_devices_and_stages_peer_blocks);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
