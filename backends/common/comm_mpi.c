/* SPDX-License-Identifier: MIT */
/* The MPI communicator: one rank per process, every collective preceded by
 * a vote so that a rank that failed anywhere makes all of them fail
 * together, and sums taken in rank order so that every process holds the
 * same bits as the loopback communicator would. */
#include "config.h"

#include "backends/common/comm.h"
#include "backends/common/ranks.h"

#include <stdio.h>
#include <string.h>

#ifndef HAVE_MPI

int sb_comm_mpi_new(SbComm **out, char *error, size_t error_size) {
  *out = NULL;
  snprintf(error, error_size,
           "comm=mpi is not available: this build has no MPI (configure "
           "found no Open MPI; install libopenmpi-dev and reconfigure with "
           "--with-mpi)");
  return SB_ERR_UNSUPPORTED;
}

#else

#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

/* What a failing rank tells the others. */
typedef struct Verdict {
  int32_t status;
  char message[1000];
} Verdict;

typedef struct Mpi {
  SbComm base;
  MPI_Comm comm;
  int me;
  int initialized_here; /* MPI_Init was ours, so MPI_Finalize is too */
  /* State of the current sb_ranks_run: once a vote failed, every later
   * collective of the run fails at once without touching MPI, and the run
   * does not vote again, so every process makes the same MPI calls. */
  int failed;
  Verdict verdict; /* of the failed vote */
  int origin;      /* its lowest failing rank, or -1 */
  /* Peers' process ids and whether they run on this host, for lost_rank. */
  pid_t *pids;
  char *same_host;
} Mpi;

static Mpi *mp(SbComm *c) { return (Mpi *)c; }

static int mpi_fail(Mpi *s, SbExec *x, const char *what, int rc) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
    snprintf(msg, sizeof msg, "MPI error %d", rc);
  /* After an MPI error the processes no longer agree on the call sequence:
   * the communicator stays broken for the rest of the run. */
  s->failed = 1;
  s->verdict.status = SB_ERR_COMMUNICATION;
  snprintf(s->verdict.message, sizeof s->verdict.message,
           "%s failed on rank %d: %s", what, s->me, msg);
  if (s->origin < 0)
    s->origin = s->me;
  return sb_exec_fail(x, SB_ERR_COMMUNICATION, "%s", s->verdict.message);
}

/* Every rank states whether it is fine; all learn the lowest failing rank
 * and its status and message. Returns SB_OK when every rank is, else
 * `status` itself on a rank that failed and SB_ERR_COMMUNICATION on the
 * others, whose message names the culprit. */
static int vote(Mpi *s, SbExec *x, const char *what, int status) {
  if (s->failed) {
    if (status == SB_OK)
      sb_exec_fail(x, SB_ERR_COMMUNICATION,
                   "%s abandoned on rank %d: rank %d failed: %s", what, s->me,
                   s->origin, s->verdict.message);
    return status != SB_OK ? status : SB_ERR_COMMUNICATION;
  }
  int mine = status == SB_OK ? INT_MAX : s->me, lowest = INT_MAX;
  int rc = MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, s->comm);
  if (rc != MPI_SUCCESS)
    return mpi_fail(s, x, what, rc);
  if (lowest == INT_MAX)
    return SB_OK;
  Verdict v = {0};
  if (s->me == lowest) {
    v.status = status;
    snprintf(v.message, sizeof v.message, "%s",
             x->error && x->error[0] ? x->error : sb_status_to_string(status));
  }
  rc = MPI_Bcast(&v, (int)sizeof v, MPI_BYTE, lowest, s->comm);
  if (rc != MPI_SUCCESS)
    return mpi_fail(s, x, what, rc);
  s->failed = 1;
  s->verdict = v;
  s->origin = lowest;
  if (status == SB_OK)
    sb_exec_fail(x, SB_ERR_COMMUNICATION,
                 "%s abandoned on rank %d: rank %d failed: %s", what, s->me,
                 lowest, v.message);
  return status != SB_OK ? status : SB_ERR_COMMUNICATION;
}

/* MPI counts are ints: element counts and displacements above INT_MAX
 * need a chunked protocol this communicator does not have. */
static int fits_int(int64_t n) { return n >= 0 && n <= INT_MAX; }

static int too_large(SbExec *x, const char *what, int64_t n) {
  return sb_exec_fail(x, SB_ERR_UNSUPPORTED,
                      "%s: %lld elements exceed MPI's int counts", what,
                      (long long)n);
}

/* The shared rules, then MPI's int counts. */
static int check_counts(Mpi *s, SbExec *x, const char *what, int rank,
                        const int64_t *counts, const void *whole,
                        const void *block, int64_t *total) {
  int st = sb_comm_check_blocks(s->base.size, rank, x, what, counts, whole,
                                block, total);
  if (st == SB_OK && !fits_int(*total))
    st = too_large(x, what, *total);
  return st;
}

/* counts and displacements as MPI ints (the caller checked the total). */
static void int_layout(int size, const int64_t *counts, int *n, int *at) {
  int64_t sum = 0;
  for (int q = 0; q < size; q++) {
    n[q] = (int)counts[q];
    at[q] = (int)sum;
    sum += counts[q];
  }
}

static int mpi_all_gather(SbComm *c, int rank, SbExec *x, const float *send,
                          const int64_t *counts, float *recv) {
  static const char what[] = "all_gather";
  Mpi *s = mp(c);
  int64_t total = 0;
  int st = s->failed
               ? SB_OK
               : check_counts(s, x, what, rank, counts, recv, send, &total);
  if ((st = vote(s, x, what, st)) != SB_OK)
    return st;
  int n[SB_RANKS_MAX], at[SB_RANKS_MAX];
  int_layout(c->size, counts, n, at);
  const void *src = send == recv + at[rank] ? MPI_IN_PLACE : (const void *)send;
  int rc =
      MPI_Allgatherv(src, n[rank], MPI_FLOAT, recv, n, at, MPI_FLOAT, s->comm);
  return rc == MPI_SUCCESS ? SB_OK : mpi_fail(s, x, what, rc);
}

/* recv [counts[rank]] = sum over q in order of rank q's block `rank`. */
static int mpi_reduce_scatter(SbComm *c, int rank, SbExec *x, const float *send,
                              const int64_t *counts, float *recv) {
  static const char what[] = "reduce_scatter";
  Mpi *s = mp(c);
  int64_t total = 0, mine = 0;
  SbBuffer blocks = {0};
  int st = s->failed
               ? SB_OK
               : check_counts(s, x, what, rank, counts, send, recv, &total);
  if (st == SB_OK && !s->failed) {
    mine = counts[rank];
    if (!fits_int(mine * c->size))
      st = too_large(x, what, mine * c->size);
    else
      st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, mine * c->size, &blocks);
  }
  if ((st = vote(s, x, what, st)) != SB_OK) {
    sb_exec_free(x, &blocks);
    return st;
  }
  int sn[SB_RANKS_MAX], sat[SB_RANKS_MAX];
  int rn[SB_RANKS_MAX], rat[SB_RANKS_MAX];
  int_layout(c->size, counts, sn, sat);
  for (int q = 0; q < c->size; q++) {
    rn[q] = (int)mine;
    rat[q] = (int)(q * mine);
  }
  int rc = MPI_Alltoallv(send, sn, sat, MPI_FLOAT, blocks.ptr, rn, rat,
                         MPI_FLOAT, s->comm);
  if (rc != MPI_SUCCESS) {
    sb_exec_free(x, &blocks);
    return mpi_fail(s, x, what, rc);
  }
  /* The same additions, in the same order, as the loopback's. */
  const float *b = blocks.ptr;
  if (mine > 0) {
    st = x->ops->copy(x->dev, recv, b, (size_t)mine * sizeof(float));
    for (int q = 1; q < c->size && st == SB_OK; q++)
      st = x->ops->add(x->dev, mine, recv, b + q * mine, recv);
    if (st != SB_OK)
      st = sb_exec_device_fail(x, st, "collective sum");
  }
  sb_exec_free(x, &blocks);
  /* A local device failure after the exchange is this rank's alone: it
   * must still be agreed on, or the peers would go on without it. */
  return vote(s, x, what, st);
}

/* A reduce-scatter over an even split of the elements, then an all-gather:
 * each element is summed once, in rank order, by the rank that owns it,
 * so every process receives the same bits. */
static int mpi_all_reduce(SbComm *c, int rank, SbExec *x, const float *send,
                          float *recv, int64_t count) {
  static const char what[] = "all_reduce";
  Mpi *s = mp(c);
  int64_t counts[SB_RANKS_MAX] = {0}, start, mine = 0;
  SbBuffer part = {0};
  int st = SB_OK;
  if (!s->failed) {
    st = sb_comm_check_all_reduce(rank, x, what, send, recv, count);
    if (st == SB_OK) {
      for (int q = 0; q < c->size; q++)
        sb_split_range(count, c->size, q, &start, &counts[q]);
      mine = counts[rank];
      st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, mine, &part);
    }
  }
  if (st == SB_OK || s->failed)
    st = mpi_reduce_scatter(c, rank, x, send, counts, part.ptr);
  else
    st = vote(s, x, what, st);
  if (st == SB_OK)
    st = mpi_all_gather(c, rank, x, part.ptr, counts, recv);
  sb_exec_free(x, &part);
  return st;
}

/* count is in the caller's units (elements of elem_bytes). */
static int mpi_broadcast_bytes(Mpi *s, SbExec *x, const char *what, void *buf,
                               int64_t count, size_t elem_bytes, int root) {
  int st = s->failed ? SB_OK
                     : sb_comm_check_broadcast(s->base.size, s->me, x, what,
                                               buf, count, root);
  int64_t bytes = count * (int64_t)elem_bytes;
  if ((st = vote(s, x, what, st)) != SB_OK)
    return st;
  /* MPI_BYTE counts are ints: large buffers go in pieces. */
  for (int64_t done = 0; done < bytes;) {
    int64_t k = bytes - done < (1 << 30) ? bytes - done : (1 << 30);
    int rc = MPI_Bcast((char *)buf + done, (int)k, MPI_BYTE, root, s->comm);
    if (rc != MPI_SUCCESS)
      return mpi_fail(s, x, what, rc);
    done += k;
  }
  return SB_OK;
}

static int mpi_broadcast(SbComm *c, int rank, SbExec *x, float *buf,
                         int64_t count, int root) {
  return mpi_broadcast_bytes(mp(c), x, "broadcast", buf, count, sizeof(float),
                             root);
}

static int mpi_broadcast_host(SbComm *c, int rank, SbExec *x, void *buf,
                              size_t bytes, int root) {
  return mpi_broadcast_bytes(mp(c), x, "broadcast_host", buf, (int64_t)bytes, 1,
                             root);
}

static int mpi_all_gather_host(SbComm *c, int rank, SbExec *x, void *buf,
                               const int64_t *byte_counts) {
  static const char what[] = "all_gather_host";
  Mpi *s = mp(c);
  int64_t total = 0;
  int st = s->failed
               ? SB_OK
               : check_counts(s, x, what, rank, byte_counts, buf, buf, &total);
  if ((st = vote(s, x, what, st)) != SB_OK)
    return st;
  int n[SB_RANKS_MAX], at[SB_RANKS_MAX];
  int_layout(c->size, byte_counts, n, at);
  int rc =
      MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_BYTE, buf, n, at, MPI_BYTE, s->comm);
  return rc == MPI_SUCCESS ? SB_OK : mpi_fail(s, x, what, rc);
}

/* MPI_Scatterv's counts and displacements are ints: root's buffer is sent
 * in windows of SCATTER_WINDOW bytes, each rank receiving, per window, the
 * piece of its part that lies in it. Every process derives the same
 * windows from the same offsets and counts, so they make the same calls. */
#define SCATTER_WINDOW ((int64_t)1 << 30)

static int mpi_scatter_host(SbComm *c, int rank, SbExec *x, const void *send,
                            const int64_t *offsets, const int64_t *byte_counts,
                            void *recv, int root) {
  static const char what[] = "scatter_host";
  Mpi *s = mp(c);
  int64_t extent = 0;
  int st = s->failed
               ? SB_OK
               : sb_comm_check_scatter(c->size, rank, x, what, send, offsets,
                                       byte_counts, recv, root, &extent);
  if ((st = vote(s, x, what, st)) != SB_OK)
    return st;
  /* In place on root: its part stays where it is. */
  int in_place = rank == root && byte_counts[rank] > 0 &&
                 (const char *)send + offsets[rank] == (const char *)recv;
  int n[SB_RANKS_MAX], at[SB_RANKS_MAX];
  for (int64_t w = 0; w < extent; w += SCATTER_WINDOW) {
    int any = 0;
    for (int q = 0; q < c->size; q++) {
      int64_t a = offsets[q] > w ? offsets[q] : w;
      int64_t b = offsets[q] + byte_counts[q];
      if (b > w + SCATTER_WINDOW)
        b = w + SCATTER_WINDOW;
      n[q] = b > a ? (int)(b - a) : 0;
      at[q] = b > a ? (int)(a - w) : 0;
      any |= n[q] > 0;
    }
    if (!any)
      continue;
    /* Where this window's piece lands in this rank's part. */
    int64_t from = offsets[rank] > w ? offsets[rank] : w;
    char *dst = n[rank] > 0 ? (char *)recv + (from - offsets[rank]) : recv;
    const char *base = rank == root ? (const char *)send + w : NULL;
    int rc = MPI_Scatterv(base, n, at, MPI_BYTE,
                          in_place ? MPI_IN_PLACE : (void *)dst, n[rank],
                          MPI_BYTE, root, s->comm);
    if (rc != MPI_SUCCESS)
      return mpi_fail(s, x, what, rc);
  }
  return SB_OK;
}

/* The vote itself is the synchronisation. */
static int mpi_barrier(SbComm *c, int rank, SbExec *x) {
  return vote(mp(c), x, "barrier", SB_OK);
}

/* A rank that fails outside a collective votes its failure in settle(),
 * where it meets the peers' next vote: nothing to do here but remember. */
static void mpi_abort(SbComm *c, int rank) {
  Mpi *s = mp(c);
  if (s->origin < 0)
    s->origin = rank;
}

static int mpi_failed_rank(SbComm *c) { return mp(c)->origin; }

static void mpi_reset(SbComm *c) {
  Mpi *s = mp(c);
  s->failed = 0;
  s->origin = -1;
  memset(&s->verdict, 0, sizeof s->verdict);
}

static int mpi_settle(SbComm *c, int rank, SbExec *x, int status) {
  Mpi *s = mp(c);
  if (s->failed) {
    /* Every process gets the culprit's own message. */
    sb_exec_fail(x, s->verdict.status, "%s", s->verdict.message);
    return s->verdict.status;
  }
  int st = vote(s, x, "settle", status);
  if (st == SB_OK)
    return SB_OK;
  sb_exec_fail(x, s->verdict.status, "%s", s->verdict.message);
  return s->verdict.status;
}

static int mpi_lost_rank(const SbComm *c) {
  const Mpi *s = (const Mpi *)c;
  for (int q = 0; q < c->size; q++)
    if (q != s->me && s->same_host[q] && kill(s->pids[q], 0) != 0 &&
        errno == ESRCH)
      return q;
  return -1;
}

static void mpi_destroy(SbComm *c) {
  if (c == NULL)
    return;
  Mpi *s = mp(c);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && s->comm != MPI_COMM_NULL)
    MPI_Comm_free(&s->comm);
  if (!finalized && s->initialized_here)
    MPI_Finalize();
  free(s->pids);
  free(s->same_host);
  free(s);
}

static const SbCommOps mpi_ops = {
    .name = "mpi",
    .all_gather = mpi_all_gather,
    .reduce_scatter = mpi_reduce_scatter,
    .all_reduce = mpi_all_reduce,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .broadcast_host = mpi_broadcast_host,
    .all_gather_host = mpi_all_gather_host,
    .scatter_host = mpi_scatter_host,
    .abort = mpi_abort,
    .failed_rank = mpi_failed_rank,
    .reset = mpi_reset,
    .destroy = mpi_destroy,
    .settle = mpi_settle,
    .lost_rank = mpi_lost_rank,
};

/* Who runs where: process ids and host names of every rank. */
static int learn_peers(Mpi *s, char *error, size_t error_size) {
  int size = s->base.size;
  char name[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  MPI_Get_processor_name(name, &len);
  char *names = calloc((size_t)size, MPI_MAX_PROCESSOR_NAME);
  int *pids = calloc((size_t)size, sizeof *pids);
  s->pids = calloc((size_t)size, sizeof *s->pids);
  s->same_host = calloc((size_t)size, 1);
  if (!names || !pids || !s->pids || !s->same_host) {
    free(names);
    free(pids);
    snprintf(error, error_size, "mpi communicator: out of host memory");
    return SB_ERR_OUT_OF_MEMORY;
  }
  int me = (int)getpid();
  int rc = MPI_Allgather(&me, 1, MPI_INT, pids, 1, MPI_INT, s->comm);
  if (rc == MPI_SUCCESS)
    rc = MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names,
                       MPI_MAX_PROCESSOR_NAME, MPI_CHAR, s->comm);
  for (int q = 0; q < size && rc == MPI_SUCCESS; q++) {
    s->pids[q] = (pid_t)pids[q];
    s->same_host[q] = strncmp(names + (size_t)q * MPI_MAX_PROCESSOR_NAME, name,
                              MPI_MAX_PROCESSOR_NAME) == 0;
  }
  free(names);
  free(pids);
  if (rc != MPI_SUCCESS) {
    snprintf(error, error_size,
             "mpi communicator: exchanging process ids failed (MPI error %d)",
             rc);
    return SB_ERR_COMMUNICATION;
  }
  return SB_OK;
}

int sb_comm_mpi_new(SbComm **out, char *error, size_t error_size) {
  *out = NULL;
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (finalized) {
    snprintf(error, error_size,
             "comm=mpi: MPI was already finalized in this process (a program "
             "that creates several comm=mpi contexts must call MPI_Init "
             "and MPI_Finalize itself)");
    return SB_ERR_COMMUNICATION;
  }
  int initialized_here = 0;
  if (!initialized) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
      snprintf(error, error_size, "comm=mpi: MPI_Init_thread failed (%d)", rc);
      return SB_ERR_COMMUNICATION;
    }
    initialized_here = 1;
  }
  Mpi *s = calloc(1, sizeof *s);
  if (s == NULL) {
    if (initialized_here)
      MPI_Finalize();
    snprintf(error, error_size, "mpi communicator: out of host memory");
    return SB_ERR_OUT_OF_MEMORY;
  }
  s->base.ops = &mpi_ops;
  s->initialized_here = initialized_here;
  s->origin = -1;
  s->comm = MPI_COMM_NULL;
  /* A communicator of our own: our collectives never match the
   * program's, and MPI errors come back as codes instead of aborting. */
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &s->comm);
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
  int size = 0;
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_size(s->comm, &size);
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_rank(s->comm, &s->me);
  if (rc != MPI_SUCCESS) {
    snprintf(error, error_size,
             "comm=mpi: cannot set up a communicator (MPI error %d)", rc);
    mpi_destroy(&s->base);
    return SB_ERR_COMMUNICATION;
  }
  s->base.size = size;
  s->base.local_rank = s->me;
  if (size > SB_RANKS_MAX) {
    snprintf(error, error_size,
             "comm=mpi: %d processes, more than the %d ranks a context "
             "supports",
             size, SB_RANKS_MAX);
    mpi_destroy(&s->base);
    return SB_ERR_INVALID_ARGUMENT;
  }
  int st = learn_peers(s, error, error_size);
  if (st != SB_OK) {
    mpi_destroy(&s->base);
    return st;
  }
  *out = &s->base;
  return SB_OK;
}

#endif /* HAVE_MPI */
