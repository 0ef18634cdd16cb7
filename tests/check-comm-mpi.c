/* SPDX-License-Identifier: MIT */
/* Tests of the MPI communicator, run by tests/check-mpi.sh under mpirun
 * (every process runs this same program, one rank each): collectives with
 * uneven counts, sums in rank order with the same bits on every process,
 * host-memory collectives, and a failure on one rank that ends the work of
 * every process with the same status and message. Then the communicator of
 * GPU ranks as processes (comm_nccl_mpi.c: bootstrap over MPI, a vote
 * before every data collective, made anew after a failure), driven on the
 * CPU by a stand-in device module whose "device communicator" is another
 * MPI one, made in the same agreed steps as NCCL's (comm_join.c: nobody
 * starts unless all are ready, an initialisation that never ends times
 * out everywhere), and each process's device chosen by its rank on its
 * host. */
#include <check.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/common/comm.h"
#include "backends/common/comm_nccl_mpi.h"
#include "backends/common/device_module.h"
#include "backends/common/device_cpu.h"
#include "backends/common/ranks.h"

static SbRanks *pool_new(int fail_rank, long fail_at) {
  SbRanksConfig cfg = {.size = 0,
                       .ops = &sb_device_cpu_ops,
                       .fail_rank = fail_rank,
                       .fail_at = fail_at,
                       .processes = 1};
  SbRanks *p = NULL;
  char err[256];
  int st = sb_ranks_new(&cfg, &p, err, sizeof err);
  ck_assert_msg(st == SB_OK, "sb_ranks_new: %s", err);
  return p;
}

static float value(int rank, int64_t i) {
  return (float)(rank * 1000 + i) + 0.25f;
}

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

typedef struct {
  int64_t counts[SB_RANKS_MAX];
  int64_t total;
  float out[64];
} Job;

static void uneven_counts(int P, Job *j) {
  j->total = 0;
  for (int q = 0; q < P; q++) {
    j->counts[q] = (q * 7 + 3) % 5; /* 3, 0, 2, 4: includes an empty block */
    j->total += j->counts[q];
  }
}

static int gather_fn(SbRank *r, SbComm *c, void *arg) {
  Job *j = arg;
  float send[8];
  for (int64_t i = 0; i < j->counts[r->index]; i++)
    send[i] = value(r->index, i);
  return c->ops->all_gather(c, r->index, &r->x, send, j->counts, j->out);
}

START_TEST(test_mpi_all_gather_uneven_counts_gives_every_block) {
  SbRanks *p = pool_new(-1, -1);
  int P = sb_ranks_size(p);
  ck_assert_int_ge(P, 2);
  ck_assert(sb_ranks_local_rank(p) >= 0);
  Job j = {0};
  uneven_counts(P, &j);
  char err[256];
  ck_assert_int_eq(sb_ranks_run(p, gather_fn, &j, err, sizeof err), SB_OK);
  int64_t at = 0;
  for (int s = 0; s < P; s++)
    for (int64_t i = 0; i < j.counts[s]; i++, at++)
      ck_assert_float_eq(j.out[at], value(s, i));
  sb_ranks_destroy(p);
}
END_TEST

static int reduce_scatter_fn(SbRank *r, SbComm *c, void *arg) {
  Job *j = arg;
  float send[64];
  for (int64_t i = 0; i < j->total; i++)
    send[i] = order_sensitive(r->index, i);
  return c->ops->reduce_scatter(c, r->index, &r->x, send, j->counts, j->out);
}

START_TEST(test_mpi_reduce_scatter_sums_in_rank_order) {
  SbRanks *p = pool_new(-1, -1);
  int P = sb_ranks_size(p), me = sb_ranks_local_rank(p);
  Job j = {0};
  uneven_counts(P, &j);
  char err[256];
  ck_assert_int_eq(sb_ranks_run(p, reduce_scatter_fn, &j, err, sizeof err),
                   SB_OK);
  int64_t at = 0;
  for (int q = 0; q < me; q++)
    at += j.counts[q];
  for (int64_t i = 0; i < j.counts[me]; i++) {
    float want = sum_in_rank_order(P, at + i);
    ck_assert_msg(memcmp(&j.out[i], &want, sizeof want) == 0,
                  "rank %d element %lld: %g != %g", me, (long long)i, j.out[i],
                  want);
  }
  sb_ranks_destroy(p);
}
END_TEST

static int all_reduce_fn(SbRank *r, SbComm *c, void *arg) {
  Job *j = arg;
  for (int64_t i = 0; i < j->total; i++)
    j->out[i] = order_sensitive(r->index, i);
  return c->ops->all_reduce(c, r->index, &r->x, j->out, j->out, j->total);
}

START_TEST(test_mpi_all_reduce_gives_every_process_the_same_bits) {
  SbRanks *p = pool_new(-1, -1);
  int P = sb_ranks_size(p);
  Job j = {0};
  j.total = 11;
  char err[256];
  ck_assert_int_eq(sb_ranks_run(p, all_reduce_fn, &j, err, sizeof err), SB_OK);
  for (int64_t i = 0; i < j.total; i++) {
    float want = sum_in_rank_order(P, i);
    ck_assert(memcmp(&j.out[i], &want, sizeof want) == 0);
  }
  /* And the same bits as rank 0's. */
  float root[64];
  memcpy(root, j.out, sizeof root);
  MPI_Bcast(root, (int)j.total, MPI_FLOAT, 0, MPI_COMM_WORLD);
  ck_assert(memcmp(root, j.out, (size_t)j.total * sizeof(float)) == 0);
  sb_ranks_destroy(p);
}
END_TEST

typedef struct {
  double decision[3];
  char blocks[64];
  int64_t bytes[SB_RANKS_MAX];
} HostJob;

static int host_fn(SbRank *r, SbComm *c, void *arg) {
  HostJob *j = arg;
  int st = c->ops->broadcast_host(c, r->index, &r->x, j->decision,
                                  sizeof j->decision, 0);
  int64_t at = 0;
  for (int q = 0; q < r->index; q++)
    at += j->bytes[q];
  memset(j->blocks + at, 'a' + r->index, (size_t)j->bytes[r->index]);
  return st == SB_OK
             ? c->ops->all_gather_host(c, r->index, &r->x, j->blocks, j->bytes)
             : st;
}

START_TEST(test_mpi_host_collectives_share_process_0_and_every_block) {
  SbRanks *p = pool_new(-1, -1);
  int P = sb_ranks_size(p), me = sb_ranks_local_rank(p);
  HostJob j;
  memset(&j, 0, sizeof j);
  for (int i = 0; i < 3; i++)
    j.decision[i] = me == 0 ? 1.5 * (i + 1) : -1.0;
  for (int q = 0; q < P; q++)
    j.bytes[q] = q + 1;
  char err[256];
  ck_assert_int_eq(sb_ranks_run(p, host_fn, &j, err, sizeof err), SB_OK);
  for (int i = 0; i < 3; i++)
    ck_assert(j.decision[i] == 1.5 * (i + 1));
  int64_t at = 0;
  for (int q = 0; q < P; q++)
    for (int k = 0; k <= q; k++, at++)
      ck_assert_int_eq(j.blocks[at], 'a' + q);
  sb_ranks_destroy(p);
}
END_TEST

/* scatter_host from the last rank: rank q receives root's floats
 * [3q, 3q + 4 + q) (overlapping, uneven parts), root's own in place. */
typedef struct {
  int root;
  float send[64], recv[16];
  int64_t offsets[SB_RANKS_MAX], bytes[SB_RANKS_MAX];
} ScatterJob;

static int scatter_fn(SbRank *r, SbComm *c, void *arg) {
  ScatterJob *j = arg;
  int q = r->index;
  void *recv = q == j->root ? (char *)j->send + j->offsets[q] : (void *)j->recv;
  return c->ops->scatter_host(c, q, &r->x, q == j->root ? j->send : NULL,
                              j->offsets, j->bytes, recv, j->root);
}

START_TEST(test_mpi_scatter_host_sends_each_process_its_part) {
  SbRanks *p = pool_new(-1, -1);
  int P = sb_ranks_size(p), me = sb_ranks_local_rank(p);
  ScatterJob j;
  memset(&j, 0, sizeof j);
  j.root = P - 1;
  for (int i = 0; i < 64; i++)
    j.send[i] = me == j.root ? value(0, i) : -1.0f;
  for (int q = 0; q < P; q++)
    j.offsets[q] = 3 * q * (int64_t)sizeof(float),
    j.bytes[q] = (4 + q) * (int64_t)sizeof(float);
  char err[256];
  ck_assert_int_eq(sb_ranks_run(p, scatter_fn, &j, err, sizeof err), SB_OK);
  const float *got = me == j.root ? j.send + 3 * me : j.recv;
  for (int i = 0; i < 4 + me; i++)
    ck_assert_float_eq(got[i], value(0, 3 * me + i));
  if (me != j.root)
    ck_assert_float_eq(j.recv[4 + me], 0.0f); /* nothing beyond the part */
  /* A bad offset on the last process fails every process, naming it. */
  j.offsets[P - 1] = me == P - 1 ? -4 : j.offsets[P - 1];
  ck_assert_int_ne(sb_ranks_run(p, scatter_fn, &j, err, sizeof err), SB_OK);
  ck_assert_msg(strstr(err, "scatter_host") != NULL, "%s", err);
  sb_ranks_destroy(p);
}
END_TEST

/* Every rank goes into a collective; the injected fault stops rank 1 before
 * its work, as an allocation failure would. */
static int collective_fn(SbRank *r, SbComm *c, void *arg) {
  float buf[4] = {1, 2, 3, 4};
  return c->ops->all_reduce(c, r->index, &r->x, buf, buf, 4);
}

START_TEST(test_mpi_failure_on_one_rank_fails_every_process_alike) {
  SbRanks *p = pool_new(1, 1);
  char err[512];
  ck_assert_int_eq(sb_ranks_run(p, collective_fn, NULL, err, sizeof err),
                   SB_OK);
  int st = sb_ranks_run(p, collective_fn, NULL, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_OUT_OF_MEMORY);
  ck_assert_msg(strncmp(err, "rank 1: injected fault", 22) == 0, "%s", err);
  /* Same message everywhere: compare with process 0's. */
  char root[512];
  memcpy(root, err, sizeof root);
  MPI_Bcast(root, (int)sizeof root, MPI_CHAR, 0, MPI_COMM_WORLD);
  ck_assert_str_eq(root, err);
  /* The communicator is usable again afterwards. */
  ck_assert_int_eq(sb_ranks_run(p, collective_fn, NULL, err, sizeof err),
                   SB_OK);
  sb_ranks_destroy(p);
}
END_TEST

typedef struct {
  int bad_rank;
} BadJob;

/* A bad argument inside a collective on one rank only. */
static int bad_count_fn(SbRank *r, SbComm *c, void *arg) {
  BadJob *j = arg;
  float buf[4] = {0};
  int64_t n = r->index == j->bad_rank ? -1 : 4;
  return c->ops->all_reduce(c, r->index, &r->x, buf, buf, n);
}

START_TEST(test_mpi_bad_argument_on_last_rank_names_it_everywhere) {
  SbRanks *p = pool_new(-1, -1);
  BadJob j = {sb_ranks_size(p) - 1};
  char err[512];
  int st = sb_ranks_run(p, bad_count_fn, &j, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_INVALID_ARGUMENT);
  char want[32];
  snprintf(want, sizeof want, "rank %d: ", j.bad_rank);
  ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
  ck_assert_msg(strstr(err, "negative count") != NULL, "%s", err);
  sb_ranks_destroy(p);
}
END_TEST

/* ---- comm_nccl_mpi over a stand-in device module ---------------------- */

static struct {
  int joins;        /* comm_new calls on this process */
  int starts;       /* collective initialisations entered */
  int aborts;       /* aborts of what a start made */
  int fail_prepare; /* the rank that is not ready (no device), or -1 */
  int fail_join;    /* the rank whose initialisation fails, or -1 */
  int hang_join;    /* the rank whose initialisation never ends, or -1 */
  int fail_async;   /* the rank whose initialisation reports an error */
  double timeout_s; /* the deadline comm_new was given */
  int first_rank, n_local, size;
  unsigned char id[SB_COMM_ID_BYTES]; /* the id this process joined with */
} stand_in;

static int stand_in_unique_id(unsigned char id[SB_COMM_ID_BYTES], char *error,
                              size_t error_size) {
  (void)error, (void)error_size;
  /* Different for every id made, so a stale or unsent one shows. */
  static int made;
  made++;
  for (int i = 0; i < SB_COMM_ID_BYTES; i++)
    id[i] = (unsigned char)(made * 31 + i * 7 + 1);
  return SB_OK;
}

/* The steps of making the stand-in's communicator, taken by the same
 * sb_comm_join as NCCL's, so that its votes are what is tested. */
typedef struct {
  int rank;
  SbComm *made;
} StandInJoin;

static int stand_in_prepare(void *arg, char *error, size_t error_size) {
  StandInJoin *j = arg;
  if (j->rank != stand_in.fail_prepare)
    return SB_OK;
  snprintf(error, error_size, "stand-in device refused on rank %d", j->rank);
  return SB_ERR_DEVICE;
}

static int stand_in_start(void *arg, char *error, size_t error_size) {
  StandInJoin *j = arg;
  stand_in.starts++;
  /* With a rank not ready nobody may get here: the collective making is
   * left out then, so that a missing vote fails the test instead of
   * hanging it. */
  if (stand_in.fail_prepare >= 0)
    return SB_OK;
  /* Making it is collective (as ncclCommInitRank is): the failing rank
   * takes part, then reports its failure, as NCCL's initialisation does. */
  int st = sb_comm_mpi_new(&j->made, error, error_size);
  if (st == SB_OK && j->rank == stand_in.fail_join) {
    snprintf(error, error_size, "stand-in join refused on rank %d", j->rank);
    return SB_ERR_COMMUNICATION;
  }
  return st;
}

static SbPoll stand_in_poll(void *arg, char *why, size_t why_size) {
  StandInJoin *j = arg;
  if (j->rank == stand_in.hang_join)
    return SB_POLL_PENDING;
  if (j->rank == stand_in.fail_async) {
    snprintf(why, why_size, "stand-in asynchronous error");
    return SB_POLL_FAILED;
  }
  return SB_POLL_DONE;
}

static void stand_in_abort(void *arg) {
  StandInJoin *j = arg;
  stand_in.aborts++;
  if (j->made != NULL)
    j->made->ops->destroy(j->made);
  j->made = NULL;
}

static int stand_in_comm_new(const unsigned char *id, int size, int first_rank,
                             int n_local, SbDevice *const *devs,
                             const SbCommSetup *setup, SbComm **out,
                             char *error, size_t error_size) {
  (void)devs;
  *out = NULL;
  stand_in.joins++;
  stand_in.first_rank = first_rank;
  stand_in.n_local = n_local;
  stand_in.size = size;
  stand_in.timeout_s = setup ? setup->timeout_s : -1;
  memcpy(stand_in.id, id, SB_COMM_ID_BYTES);
  StandInJoin j = {first_rank, NULL};
  SbCommJoinSteps steps = {&j, stand_in_prepare, stand_in_start, stand_in_poll,
                           stand_in_abort};
  int st = sb_comm_join(&steps, setup, first_rank, error, error_size);
  if (st == SB_OK && j.made == NULL) {
    snprintf(error, error_size, "stand-in: started without every rank ready");
    return SB_ERR_INTERNAL;
  }
  *out = j.made;
  return st;
}

static SbDeviceModule stand_in_module = {
    .struct_size = sizeof(SbDeviceModule),
    .name = "stand-in",
    .ops = &sb_device_cpu_ops,
    .comm_name = "stand-in",
    .comm_unique_id = stand_in_unique_id,
    .comm_new = stand_in_comm_new,
};

static int nccl_mpi_pool_timed(int fail_rank, long fail_at, double timeout_s,
                               SbRanks **p, char *err, size_t err_size) {
  SbRanksConfig cfg = {.size = 0,
                       .ops = &sb_device_cpu_ops,
                       .fail_rank = fail_rank,
                       .fail_at = fail_at,
                       .processes = 1,
                       .process_comm_new = sb_comm_nccl_mpi_new,
                       .comm_arg = &stand_in_module,
                       .comm_timeout_s = timeout_s};
  return sb_ranks_new(&cfg, p, err, err_size);
}

static int nccl_mpi_pool_new(int fail_rank, long fail_at, SbRanks **p,
                             char *err, size_t err_size) {
  return nccl_mpi_pool_timed(fail_rank, fail_at, 0, p, err, err_size);
}

static void stand_in_reset(int fail_join) {
  memset(&stand_in, 0, sizeof stand_in);
  stand_in.fail_prepare = stand_in.hang_join = stand_in.fail_async = -1;
  stand_in.fail_join = fail_join;
  stand_in_module.comm_unique_id = stand_in_unique_id;
  stand_in_module.comm_new = stand_in_comm_new;
  stand_in_module.comm_missing = NULL;
}

/* The same text on every process: compared with process 0's. */
static void assert_same_everywhere(const char *err, size_t size) {
  char root[512] = {0};
  ck_assert_uint_le(size, sizeof root);
  memcpy(root, err, size);
  MPI_Bcast(root, (int)size, MPI_CHAR, 0, MPI_COMM_WORLD);
  ck_assert_str_eq(root, err);
}

START_TEST(test_nccl_mpi_every_process_joins_with_rank_0s_id) {
  stand_in_reset(-1);
  SbRanks *p = NULL;
  char err[512];
  ck_assert_int_eq(nccl_mpi_pool_new(-1, -1, &p, err, sizeof err), SB_OK);
  int P = sb_ranks_size(p), me = sb_ranks_local_rank(p);
  /* One rank per process: first_rank is the MPI rank. */
  ck_assert_int_eq(stand_in.joins, 1);
  ck_assert_int_eq(stand_in.first_rank, me);
  ck_assert_int_eq(stand_in.n_local, 1);
  ck_assert_int_eq(stand_in.size, P);
  unsigned char root[SB_COMM_ID_BYTES];
  memcpy(root, stand_in.id, sizeof root);
  MPI_Bcast(root, (int)sizeof root, MPI_BYTE, 0, MPI_COMM_WORLD);
  ck_assert(memcmp(root, stand_in.id, sizeof root) == 0);
  ck_assert(stand_in.id[0] != 0);
  /* Data collectives go through it, host ones through MPI. */
  Job j = {0};
  j.total = 11;
  ck_assert_int_eq(sb_ranks_run(p, all_reduce_fn, &j, err, sizeof err), SB_OK);
  for (int64_t i = 0; i < j.total; i++) {
    float want = sum_in_rank_order(P, i);
    ck_assert(memcmp(&j.out[i], &want, sizeof want) == 0);
  }
  HostJob h;
  memset(&h, 0, sizeof h);
  for (int q = 0; q < P; q++)
    h.bytes[q] = q + 1;
  h.decision[0] = me == 0 ? 2.5 : -1.0;
  ck_assert_int_eq(sb_ranks_run(p, host_fn, &h, err, sizeof err), SB_OK);
  ck_assert(h.decision[0] == 2.5);
  /* A successful run keeps the communicator. */
  ck_assert_int_eq(stand_in.joins, 1);
  sb_ranks_destroy(p);
}
END_TEST

START_TEST(test_nccl_mpi_join_failing_on_one_process_fails_all_naming_it) {
  int P = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  stand_in_reset(P - 1);
  SbRanks *p = NULL;
  char err[512] = {0};
  int st = nccl_mpi_pool_new(-1, -1, &p, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_COMMUNICATION);
  ck_assert_ptr_null(p);
  char want[64];
  snprintf(want, sizeof want, "rank %d: stand-in join refused on rank %d",
           P - 1, P - 1);
  ck_assert_msg(strcmp(err, want) == 0, "%s", err);
  assert_same_everywhere(err, sizeof err);
}
END_TEST

START_TEST(test_nccl_mpi_module_without_communicator_is_refused_alike) {
  stand_in_reset(-1);
  stand_in_module.comm_new = NULL;
  stand_in_module.comm_missing = "this build has no stand-in";
  SbRanks *p = NULL;
  char err[512] = {0};
  int st = nccl_mpi_pool_new(-1, -1, &p, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_UNSUPPORTED);
  ck_assert_msg(strstr(err, "rank 0: ") == err &&
                    strstr(err, "this build has no stand-in") != NULL,
                "%s", err);
  assert_same_everywhere(err, sizeof err);
  stand_in_reset(-1);
}
END_TEST

/* A bad argument on the last rank is agreed on before the data
 * communicator is entered; the next run works on a communicator made anew
 * (a failure may have aborted it). */
START_TEST(test_nccl_mpi_bad_argument_names_the_rank_and_rejoins) {
  stand_in_reset(-1);
  SbRanks *p = NULL;
  char err[512] = {0};
  ck_assert_int_eq(nccl_mpi_pool_new(-1, -1, &p, err, sizeof err), SB_OK);
  BadJob b = {sb_ranks_size(p) - 1};
  int st = sb_ranks_run(p, bad_count_fn, &b, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_INVALID_ARGUMENT);
  char want[32];
  snprintf(want, sizeof want, "rank %d: ", b.bad_rank);
  ck_assert_msg(strncmp(err, want, strlen(want)) == 0 &&
                    strstr(err, "negative count") != NULL,
                "%s", err);
  assert_same_everywhere(err, sizeof err);
  ck_assert_int_eq(stand_in.joins, 2);
  unsigned char root[SB_COMM_ID_BYTES];
  memcpy(root, stand_in.id, sizeof root);
  MPI_Bcast(root, (int)sizeof root, MPI_BYTE, 0, MPI_COMM_WORLD);
  ck_assert(memcmp(root, stand_in.id, sizeof root) == 0);
  ck_assert_int_eq(sb_ranks_run(p, collective_fn, NULL, err, sizeof err),
                   SB_OK);
  sb_ranks_destroy(p);
}
END_TEST

/* Rank 1 fails outside any collective while the others are in one: every
 * process fails with its message; when the communicator cannot be made
 * again, every later collective says so on every process. */
START_TEST(test_nccl_mpi_failure_then_lost_communicator_fails_alike) {
  stand_in_reset(-1);
  SbRanks *p = NULL;
  char err[512] = {0};
  ck_assert_int_eq(nccl_mpi_pool_new(1, 0, &p, err, sizeof err), SB_OK);
  stand_in.fail_join = 0; /* the remaking after the failure fails */
  int st = sb_ranks_run(p, collective_fn, NULL, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_OUT_OF_MEMORY);
  ck_assert_msg(strncmp(err, "rank 1: injected fault", 22) == 0, "%s", err);
  assert_same_everywhere(err, sizeof err);
  ck_assert_int_eq(stand_in.joins, 2);
  st = sb_ranks_run(p, collective_fn, NULL, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_COMMUNICATION);
  ck_assert_msg(strncmp(err, "rank 0: ", 8) == 0 &&
                    strstr(err, "could not be made again") != NULL &&
                    strstr(err, "stand-in join refused on rank 0") != NULL,
                "%s", err);
  assert_same_everywhere(err, sizeof err);
  /* Host collectives still work: MPI is intact. */
  HostJob h;
  memset(&h, 0, sizeof h);
  int P = sb_ranks_size(p);
  for (int q = 0; q < P; q++)
    h.bytes[q] = 1;
  ck_assert_int_eq(sb_ranks_run(p, host_fn, &h, err, sizeof err), SB_OK);
  sb_ranks_destroy(p);
}
END_TEST

/* Sums over the job of a count of this process. */
static int job_total(int mine) {
  int total = 0;
  MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

/* A process not ready to enter the collective initialisation (it cannot
 * select its device) keeps every process out of it: nobody starts, every
 * process fails with that rank's reason. */
START_TEST(test_nccl_mpi_rank_not_ready_keeps_every_process_out_of_init) {
  int P = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  stand_in_reset(-1);
  stand_in.fail_prepare = P - 1;
  SbRanks *p = NULL;
  char err[512] = {0};
  int st = nccl_mpi_pool_new(-1, -1, &p, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_DEVICE);
  ck_assert_ptr_null(p);
  char want[80];
  snprintf(want, sizeof want, "rank %d: stand-in device refused on rank %d",
           P - 1, P - 1);
  ck_assert_msg(strcmp(err, want) == 0, "%s", err);
  assert_same_everywhere(err, sizeof err);
  ck_assert_int_eq(job_total(stand_in.starts), 0);
  ck_assert_int_eq(job_total(stand_in.aborts), 0);
  stand_in_reset(-1);
}
END_TEST

/* One process's initialisation never completes: it gives up after
 * comm_timeout, aborts, and every process fails with its reason (the
 * others, done, wait for it in the vote on the outcome and abort too). */
START_TEST(test_nccl_mpi_init_that_never_ends_times_out_everywhere) {
  int P = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  stand_in_reset(-1);
  stand_in.hang_join = P - 1;
  SbRanks *p = NULL;
  char err[512] = {0};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int st = nccl_mpi_pool_timed(-1, -1, 0.25, &p, err, sizeof err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double took =
      (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  ck_assert_int_eq(st, SB_ERR_COMMUNICATION);
  ck_assert_ptr_null(p);
  char want[80];
  snprintf(want, sizeof want,
           "rank %d: initialising the communicator on rank %d", P - 1, P - 1);
  ck_assert_msg(strncmp(err, want, strlen(want)) == 0 &&
                    strstr(err, "no progress within 0.25 s (comm_timeout)"),
                "%s", err);
  assert_same_everywhere(err, sizeof err);
  ck_assert(stand_in.timeout_s == 0.25);
  ck_assert_msg(took >= 0.25 && took < 20, "took %g s", took);
  /* Every process aborted what it had started. */
  ck_assert_int_eq(job_total(stand_in.starts), P);
  ck_assert_int_eq(job_total(stand_in.aborts), P);
  stand_in_reset(-1);
}
END_TEST

/* An asynchronous error while the initialisation runs names the rank and
 * the library's message on every process; the default deadline is used
 * when none is given. */
START_TEST(test_nccl_mpi_async_init_error_names_rank_everywhere) {
  stand_in_reset(-1);
  stand_in.fail_async = 0;
  SbRanks *p = NULL;
  char err[512] = {0};
  int st = nccl_mpi_pool_new(-1, -1, &p, err, sizeof err);
  ck_assert_int_eq(st, SB_ERR_COMMUNICATION);
  ck_assert_msg(strcmp(err, "rank 0: initialising the communicator failed on "
                            "rank 0: stand-in asynchronous error") == 0,
                "%s", err);
  assert_same_everywhere(err, sizeof err);
  ck_assert(stand_in.timeout_s == SB_COMM_TIMEOUT_DEFAULT);
  int P = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  ck_assert_int_eq(job_total(stand_in.aborts), P);
  stand_in_reset(-1);
}
END_TEST

/* ---- each process's device: its rank on its host ----------------------- */

static int opened_ordinal = -1;

static int recording_open(int ordinal, SbDevice **out, char *error,
                          size_t error_size) {
  opened_ordinal = ordinal;
  /* The CPU has one device: the ordinal is only recorded. */
  return sb_device_cpu_ops.open(0, out, error, error_size);
}

START_TEST(test_process_opens_the_device_of_its_rank_on_its_host) {
  SbComm *c = NULL;
  char err[256];
  ck_assert_int_eq(sb_comm_mpi_new(&c, err, sizeof err), SB_OK);
  /* mpirun tells each process its rank on its host. */
  const char *local = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (local != NULL)
    ck_assert_int_eq(c->node_rank, atoi(local));
  /* The processes of one host count 0, 1, ...: each node rank once. */
  int node_rank = c->node_rank, world = c->local_rank, P = c->size;
  c->ops->destroy(c);
  MPI_Comm host;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world,
                      MPI_INFO_NULL, &host);
  int host_size = 0, host_rank = -1;
  MPI_Comm_size(host, &host_size);
  MPI_Comm_rank(host, &host_rank);
  MPI_Comm_free(&host);
  ck_assert_int_eq(node_rank, host_rank);
  ck_assert(node_rank >= 0 && node_rank < host_size);
  /* The pool opens ordinals[node rank], not ordinals[rank in the job]. */
  SbDeviceOps ops = sb_device_cpu_ops;
  ops.open = recording_open;
  int ordinals[SB_RANKS_MAX];
  for (int i = 0; i < SB_RANKS_MAX; i++)
    ordinals[i] = 100 + i;
  SbRanksConfig cfg = {.size = 0,
                       .ops = &ops,
                       .fail_rank = -1,
                       .fail_at = -1,
                       .ordinals = ordinals,
                       .processes = 1};
  SbRanks *p = NULL;
  opened_ordinal = -1;
  ck_assert_int_eq(sb_ranks_new(&cfg, &p, err, sizeof err), SB_OK);
  ck_assert_int_eq(opened_ordinal, 100 + node_rank);
  ck_assert_int_eq(sb_ranks_size(p), P);
  sb_ranks_destroy(p);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("comm-mpi");
  TCase *tc = tcase_create("mpi");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_mpi_all_gather_uneven_counts_gives_every_block);
  tcase_add_test(tc, test_mpi_reduce_scatter_sums_in_rank_order);
  tcase_add_test(tc, test_mpi_all_reduce_gives_every_process_the_same_bits);
  tcase_add_test(tc, test_mpi_host_collectives_share_process_0_and_every_block);
  tcase_add_test(tc, test_mpi_scatter_host_sends_each_process_its_part);
  tcase_add_test(tc, test_mpi_failure_on_one_rank_fails_every_process_alike);
  tcase_add_test(tc, test_mpi_bad_argument_on_last_rank_names_it_everywhere);
  suite_add_tcase(s, tc);
  TCase *nm = tcase_create("nccl_mpi");
  tcase_set_timeout(nm, 60);
  tcase_add_test(nm, test_nccl_mpi_every_process_joins_with_rank_0s_id);
  tcase_add_test(nm,
                 test_nccl_mpi_join_failing_on_one_process_fails_all_naming_it);
  tcase_add_test(nm,
                 test_nccl_mpi_module_without_communicator_is_refused_alike);
  tcase_add_test(nm, test_nccl_mpi_bad_argument_names_the_rank_and_rejoins);
  tcase_add_test(nm, test_nccl_mpi_failure_then_lost_communicator_fails_alike);
  tcase_add_test(nm,
                 test_nccl_mpi_rank_not_ready_keeps_every_process_out_of_init);
  tcase_add_test(nm, test_nccl_mpi_init_that_never_ends_times_out_everywhere);
  tcase_add_test(nm, test_nccl_mpi_async_init_error_names_rank_everywhere);
  tcase_add_test(nm, test_process_opens_the_device_of_its_rank_on_its_host);
  suite_add_tcase(s, nm);
  return s;
}

int main(int argc, char **argv) {
  /* The program initialises MPI itself, as an embedding host may: the
   * communicator then leaves MPI_Finalize to it. */
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  SRunner *sr = srunner_create(suite());
  /* MPI does not survive fork(): every test runs in this process. */
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  /* Every process exits with the same status. */
  int any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any ? EXIT_FAILURE : EXIT_SUCCESS;
}
