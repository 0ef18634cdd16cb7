/* SPDX-License-Identifier: MIT */
/* GPU ranks as MPI processes: NCCL for the device buffers, bootstrapped and
 * kept in lockstep by the MPI communicator, which also serves the host. */
#include "backends/common/comm_nccl_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/device_module.h"

typedef struct NcclMpi {
  SbComm base;
  SbComm *host; /* MPI: host collectives, votes, process loss */
  SbComm *data; /* NCCL for this process's rank; NULL once lost */
  const SbDeviceModule *module;
  SbRank *rank;     /* this process's rank: its device */
  double timeout_s; /* bound on NCCL's waits (comm_timeout) */
  SbExec *joining;  /* during join(): where the agreed verdicts go */
  char lost[600];   /* why data is NULL */
} NcclMpi;

static NcclMpi *nm(SbComm *c) { return (NcclMpi *)c; }

/* Every process's verdict on a local status (MPI's settle is a vote that
 * every process takes in the same order). */
static int agree(NcclMpi *s, SbExec *x, int st) {
  return s->host->ops->settle(s->host, s->base.local_rank, x, st);
}

/* SbCommSetup's agreement: a step of making the NCCL communicator, voted
 * over MPI. */
static int join_agree(void *arg, int status, const char *why) {
  NcclMpi *s = arg;
  if (status != SB_OK)
    sb_exec_fail(s->joining, status, "%s", why);
  return agree(s, s->joining, status);
}

/* The NCCL communicator of this process's rank, made by every process at
 * once from one id; agreed, so data is set on every process or on none. */
static int join(NcclMpi *s, SbExec *x) {
  int me = s->base.local_rank;
  unsigned char id[SB_COMM_ID_BYTES] = {0};
  char why[512];
  int st = SB_OK;
  if (me == 0 && (st = s->module->comm_unique_id(id, why, sizeof why)) != SB_OK)
    sb_exec_fail(x, st, "cannot make an NCCL id: %s", why);
  if ((st = agree(s, x, st)) != SB_OK)
    return st;
  st = s->host->ops->broadcast_host(s->host, me, x, id, sizeof id, 0);
  if (st != SB_OK)
    return st;
  SbComm *data = NULL;
  SbCommSetup setup = {s->timeout_s, join_agree, s};
  s->joining = x;
  why[0] = '\0';
  st = s->module->comm_new(id, s->base.size, me, 1, &s->rank->dev, &setup,
                           &data, why, sizeof why);
  s->joining = NULL;
  /* A failure before comm_new's first vote is voted here (after a failed
   * vote this one returns at once): every process votes alike. */
  if (st != SB_OK)
    sb_exec_fail(x, st, "%s", why);
  if ((st = agree(s, x, st)) != SB_OK) {
    /* Another process failed: abort, as finalizing would wait for it. */
    if (data != NULL) {
      data->ops->abort(data, me);
      data->ops->destroy(data);
    }
    return st;
  }
  s->data = data;
  s->lost[0] = '\0';
  return SB_OK;
}

/* Before NCCL is entered: this rank's argument check `st` and whether its
 * NCCL communicator exists, agreed by every process. */
static int enter(NcclMpi *s, int rank, SbExec *x, const char *what, int st) {
  if (st == SB_OK && s->data == NULL)
    st = sb_exec_fail(x, SB_ERR_COMMUNICATION, "%s on rank %d: %s", what, rank,
                      s->lost);
  return agree(s, x, st);
}

static int nm_all_gather(SbComm *c, int rank, SbExec *x, const float *send,
                         const int64_t *counts, float *recv) {
  static const char what[] = "all_gather";
  NcclMpi *s = nm(c);
  int64_t total;
  int st = enter(
      s, rank, x, what,
      sb_comm_check_blocks(c->size, rank, x, what, counts, recv, send, &total));
  return st != SB_OK
             ? st
             : s->data->ops->all_gather(s->data, rank, x, send, counts, recv);
}

static int nm_reduce_scatter(SbComm *c, int rank, SbExec *x, const float *send,
                             const int64_t *counts, float *recv) {
  static const char what[] = "reduce_scatter";
  NcclMpi *s = nm(c);
  int64_t total;
  int st = enter(
      s, rank, x, what,
      sb_comm_check_blocks(c->size, rank, x, what, counts, send, recv, &total));
  return st != SB_OK ? st
                     : s->data->ops->reduce_scatter(s->data, rank, x, send,
                                                    counts, recv);
}

static int nm_all_reduce(SbComm *c, int rank, SbExec *x, const float *send,
                         float *recv, int64_t count) {
  static const char what[] = "all_reduce";
  NcclMpi *s = nm(c);
  int st = enter(s, rank, x, what,
                 sb_comm_check_all_reduce(rank, x, what, send, recv, count));
  return st != SB_OK
             ? st
             : s->data->ops->all_reduce(s->data, rank, x, send, recv, count);
}

static int nm_broadcast(SbComm *c, int rank, SbExec *x, float *buf,
                        int64_t count, int root) {
  static const char what[] = "broadcast";
  NcclMpi *s = nm(c);
  int st =
      enter(s, rank, x, what,
            sb_comm_check_broadcast(c->size, rank, x, what, buf, count, root));
  return st != SB_OK
             ? st
             : s->data->ops->broadcast(s->data, rank, x, buf, count, root);
}

/* The vote alone holds the processes together; NCCL's barrier also waits
 * for what the device has queued. */
static int nm_barrier(SbComm *c, int rank, SbExec *x) {
  NcclMpi *s = nm(c);
  int st = enter(s, rank, x, "barrier", SB_OK);
  return st != SB_OK ? st : s->data->ops->barrier(s->data, rank, x);
}

static int nm_broadcast_host(SbComm *c, int rank, SbExec *x, void *buf,
                             size_t bytes, int root) {
  SbComm *h = nm(c)->host;
  return h->ops->broadcast_host(h, rank, x, buf, bytes, root);
}

static int nm_all_gather_host(SbComm *c, int rank, SbExec *x, void *buf,
                              const int64_t *byte_counts) {
  SbComm *h = nm(c)->host;
  return h->ops->all_gather_host(h, rank, x, buf, byte_counts);
}

static int nm_scatter_host(SbComm *c, int rank, SbExec *x, const void *send,
                           const int64_t *offsets, const int64_t *byte_counts,
                           void *recv, int root) {
  SbComm *h = nm(c)->host;
  return h->ops->scatter_host(h, rank, x, send, offsets, byte_counts, recv,
                              root);
}

/* The failure is voted in settle; NCCL is aborted too, so that a peer
 * already waiting in NCCL for this rank sees it go. */
static void nm_abort(SbComm *c, int rank) {
  NcclMpi *s = nm(c);
  s->host->ops->abort(s->host, rank);
  if (s->data != NULL)
    s->data->ops->abort(s->data, rank);
}

static int nm_failed_rank(SbComm *c) {
  NcclMpi *s = nm(c);
  int r = s->host->ops->failed_rank(s->host);
  return r >= 0 || s->data == NULL ? r : s->data->ops->failed_rank(s->data);
}

/* After a failed run (agreed: every process saw the same vote) the NCCL
 * communicator may be aborted on some process, and NCCL cannot rejoin an
 * aborted one: every process makes a new one. */
static void nm_reset(SbComm *c) {
  NcclMpi *s = nm(c);
  int failed = s->host->ops->failed_rank(s->host) >= 0;
  s->host->ops->reset(s->host);
  if (!failed)
    return;
  if (s->data != NULL) {
    s->data->ops->abort(s->data, s->base.local_rank);
    s->data->ops->destroy(s->data);
    s->data = NULL;
  }
  /* The rank's own error buffer keeps the run's message. */
  char why[sizeof s->lost - 64];
  why[0] = '\0';
  SbExec x = s->rank->x;
  x.error = why;
  x.error_size = sizeof why;
  if (join(s, &x) != SB_OK) {
    snprintf(s->lost, sizeof s->lost,
             "the NCCL communicator could not be made again after a "
             "failure: %s",
             why);
    s->host->ops->reset(s->host);
  }
}

static int nm_settle(SbComm *c, int rank, SbExec *x, int status) {
  SbComm *h = nm(c)->host;
  return h->ops->settle(h, rank, x, status);
}

static int nm_lost_rank(const SbComm *c) {
  const SbComm *h = ((const NcclMpi *)c)->host;
  return h->ops->lost_rank(h);
}

/* NCCL first: it may still talk to its peers, and MPI may be finalized. */
static void nm_destroy(SbComm *c) {
  if (c == NULL)
    return;
  NcclMpi *s = nm(c);
  if (s->data != NULL)
    s->data->ops->destroy(s->data);
  s->host->ops->destroy(s->host);
  free(s);
}

static const SbCommOps nccl_mpi_ops = {
    .name = "nccl+mpi",
    .all_gather = nm_all_gather,
    .reduce_scatter = nm_reduce_scatter,
    .all_reduce = nm_all_reduce,
    .broadcast = nm_broadcast,
    .barrier = nm_barrier,
    .broadcast_host = nm_broadcast_host,
    .all_gather_host = nm_all_gather_host,
    .scatter_host = nm_scatter_host,
    .abort = nm_abort,
    .failed_rank = nm_failed_rank,
    .reset = nm_reset,
    .destroy = nm_destroy,
    .settle = nm_settle,
    .lost_rank = nm_lost_rank,
};

int sb_comm_nccl_mpi_new(void *module, SbComm *mpi, SbRank *rank,
                         double timeout_s, SbComm **out) {
  *out = NULL;
  const SbDeviceModule *m = module;
  SbExec *x = &rank->x;
  int st = SB_OK;
  NcclMpi *s = NULL;
  if (m->comm_unique_id == NULL || m->comm_new == NULL)
    st = sb_exec_fail(x, SB_ERR_UNSUPPORTED,
                      "the %s device has no communicator between processes: "
                      "%s",
                      m->name,
                      m->comm_missing ? m->comm_missing : "none in its module");
  else if ((s = calloc(1, sizeof *s)) == NULL)
    st = sb_exec_fail(x, SB_ERR_OUT_OF_MEMORY,
                      "out of host memory creating the NCCL communicator");
  if (st == SB_OK) {
    s->base.ops = &nccl_mpi_ops;
    s->base.size = mpi->size;
    s->base.local_rank = mpi->local_rank;
    s->host = mpi;
    s->module = m;
    s->rank = rank;
    s->timeout_s = timeout_s;
    st = join(s, x);
  } else {
    st = mpi->ops->settle(mpi, mpi->local_rank, x, st);
  }
  if (st != SB_OK) {
    free(s);
    return st;
  }
  *out = &s->base;
  return SB_OK;
}
