/* SPDX-License-Identifier: MIT */
/* Tests of the rank pool and the loopback communicator: every collective
 * for 1..4 ranks with uneven counts, deterministic sums, and failures that
 * end every rank's call with the failing rank named, never a hang. */
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
    ck_assert_int_eq(sb_ranks_run(p, broadcast_fn, &j, err, sizeof err),
                     SB_OK);
    for (int q = 0; q < P; q++)
      for (int i = 0; i < 5; i++)
        ck_assert_float_eq(j.buf[q][i], value(P - 1, i));
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

int main(void) {
  Suite *s = suite_create("comm");
  TCase *tc = tcase_create("collectives");
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_all_gather_uneven_counts_gives_every_block);
  tcase_add_test(tc, test_reduce_scatter_sums_in_rank_order);
  tcase_add_test(tc, test_all_reduce_in_place_is_identical_on_every_rank);
  tcase_add_test(tc, test_broadcast_copies_the_root_buffer);
  tcase_add_test(tc, test_collective_fails_on_every_rank_when_one_rank_is_wrong);
  tcase_add_test(tc, test_run_names_the_failing_rank_and_nobody_hangs);
  tcase_add_test(tc, test_injected_fault_fails_the_chosen_call_only);
  tcase_add_test(tc, test_pool_refuses_a_bad_rank_count);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
