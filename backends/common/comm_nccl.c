/* SPDX-License-Identifier: MIT */
/* The NCCL communicator: collectives queued on each GPU rank's stream,
 * waited for while NCCL's asynchronous errors and the other ranks' failures
 * are polled, within a deadline (comm_timeout) past which the communicator
 * is aborted, so that a failure anywhere, or a peer that hangs, ends every
 * wait. */
#include "backends/common/comm_nccl.h"
#include "backends/common/comm_join.h"
#include "backends/common/comm_wait.h"
#include "backends/common/ranks.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
#include <nccl.h>

typedef struct Nccl {
  SbComm base;
  int first, n_local;    /* this process holds ranks first..first+n_local-1 */
  int *ordinals;         /* per local rank */
  cudaStream_t *streams; /* per local rank, owned by the ranks' devices */
  ncclComm_t *comms;     /* per local rank; NULL once aborted */
  pthread_mutex_t lock;
  int aborted;      /* some rank failed: every wait gives up */
  int origin;       /* first rank that failed, or -1 */
  double timeout_s; /* bound on every wait (comm_timeout) */
  char lost[256];   /* why reset() could not re-create the communicator */
} Nccl;

static Nccl *nc(SbComm *c) { return (Nccl *)c; }

static int whole(const Nccl *s) {
  return s->first == 0 && s->n_local == s->base.size;
}

static void mark_failed(Nccl *s, int rank) {
  pthread_mutex_lock(&s->lock);
  if (s->origin < 0)
    s->origin = rank;
  s->aborted = 1;
  pthread_mutex_unlock(&s->lock);
}

static int failed_origin(Nccl *s) {
  pthread_mutex_lock(&s->lock);
  int origin = s->aborted ? s->origin : -2;
  pthread_mutex_unlock(&s->lock);
  return origin;
}

/* Only the thread of local rank i (or the owner of the whole communicator,
 * while no rank runs) touches comms[i]. */
static void abort_local(Nccl *s, int i) {
  if (s->comms[i] != NULL) {
    (void)cudaSetDevice(s->ordinals[i]);
    ncclCommAbort(s->comms[i]);
    s->comms[i] = NULL;
  }
}

/* A failure of this rank: its message, then every local rank gives up and
 * this rank's communicator is aborted (so its peers in other processes see
 * it go too). */
static int rank_fails(Nccl *s, int rank, SbExec *x, const char *what,
                      const char *lib, const char *name, const char *detail) {
  sb_exec_fail(x, SB_ERR_COMMUNICATION, "%s failed on rank %d: %s %s%s%s", what,
               rank, lib, name, detail && *detail ? ": " : "",
               detail ? detail : "");
  mark_failed(s, rank);
  abort_local(s, rank - s->first);
  return SB_ERR_COMMUNICATION;
}

static int nccl_fails(Nccl *s, int rank, SbExec *x, const char *what,
                      ncclResult_t r) {
  ncclComm_t comm = s->comms[rank - s->first];
  return rank_fails(s, rank, x, what, "NCCL", ncclGetErrorString(r),
                    comm ? ncclGetLastError(comm) : NULL);
}

static int cuda_fails(Nccl *s, int rank, SbExec *x, const char *what,
                      cudaError_t e) {
  (void)cudaGetLastError();
  return rank_fails(s, rank, x, what, "CUDA", cudaGetErrorName(e),
                    cudaGetErrorString(e));
}

/* Another rank failed: this one stops waiting and aborts its part. */
static int abandoned(Nccl *s, int rank, SbExec *x, const char *what,
                     int origin) {
  abort_local(s, rank - s->first);
  if (s->lost[0])
    return sb_exec_fail(x, SB_ERR_COMMUNICATION, "%s on rank %d: %s", what,
                        rank, s->lost);
  return sb_exec_fail(x, SB_ERR_COMMUNICATION,
                      "%s abandoned on rank %d: rank %d failed", what, rank,
                      origin);
}

/* NCCL's reason: its status and, where it has one, its last message. */
static void nccl_why(ncclComm_t comm, ncclResult_t r, char *why, size_t size) {
  const char *detail = comm ? ncclGetLastError(comm) : ncclGetLastError(NULL);
  snprintf(why, size, "NCCL %s%s%s", ncclGetErrorString(r),
           detail && *detail ? ": " : "", detail ? detail : "");
}

/* The awaited work of local rank i. */
typedef struct Awaited {
  Nccl *s;
  int i;
} Awaited;

/* A call that answered ncclInProgress: its work is queued once the
 * communicator's state leaves that value. */
static SbPoll poll_call(void *arg, char *why, size_t why_size) {
  Awaited *a = arg;
  if (failed_origin(a->s) >= -1)
    return SB_POLL_STOP;
  ncclComm_t comm = a->s->comms[a->i];
  ncclResult_t state = ncclSuccess, r = ncclCommGetAsyncError(comm, &state);
  if (r != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
    nccl_why(comm, r != ncclSuccess ? r : state, why, why_size);
    return SB_POLL_FAILED;
  }
  return state == ncclInProgress ? SB_POLL_PENDING : SB_POLL_DONE;
}

/* Everything queued on the rank's stream so far, NCCL's asynchronous
 * errors and the other local ranks' failures polled meanwhile. */
static SbPoll poll_stream(void *arg, char *why, size_t why_size) {
  Awaited *a = arg;
  Nccl *s = a->s;
  cudaError_t e = cudaStreamQuery(s->streams[a->i]);
  if (e == cudaSuccess)
    return SB_POLL_DONE;
  if (e != cudaErrorNotReady) {
    (void)cudaGetLastError();
    snprintf(why, why_size, "CUDA %s: %s", cudaGetErrorName(e),
             cudaGetErrorString(e));
    return SB_POLL_FAILED;
  }
  ncclResult_t async = ncclSuccess,
               r = ncclCommGetAsyncError(s->comms[a->i], &async);
  if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress)) {
    nccl_why(s->comms[a->i], r != ncclSuccess ? r : async, why, why_size);
    return SB_POLL_FAILED;
  }
  return failed_origin(s) >= -1 ? SB_POLL_STOP : SB_POLL_PENDING;
}

/* A failure or the deadline: every local rank gives up, and this rank's
 * communicator is aborted (so its peers in other processes see it go). */
static void abort_awaited(void *arg) {
  Awaited *a = arg;
  mark_failed(a->s, a->s->first + a->i);
  abort_local(a->s, a->i);
}

static int wait_for(Nccl *s, int rank, SbExec *x, const char *what,
                    SbPoll (*poll)(void *, char *, size_t)) {
  Awaited a = {s, rank - s->first};
  SbWait w = {poll, abort_awaited, &a, s->timeout_s, NULL};
  char msg[768];
  int st = sb_comm_wait(&w, rank, what, msg, sizeof msg);
  if (st == SB_COMM_WAIT_STOPPED)
    return abandoned(s, rank, x, what, failed_origin(s));
  return st == SB_OK ? SB_OK : sb_exec_fail(x, st, "%s", msg);
}

/* Checks common to every collective; SB_OK or the failure, already
 * reported. */
static int enter(Nccl *s, int rank, SbExec *x, const char *what) {
  if (rank < s->first || rank >= s->first + s->n_local)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "%s: rank %d is not one of this process's ranks "
                        "(%d..%d)",
                        what, rank, s->first, s->first + s->n_local - 1);
  int origin = failed_origin(s);
  if (origin >= -1)
    return abandoned(s, rank, x, what, origin);
  int i = rank - s->first;
  cudaError_t e = cudaSetDevice(s->ordinals[i]);
  if (e != cudaSuccess)
    return cuda_fails(s, rank, x, what, e);
  return SB_OK;
}

/* After a call or ncclGroupEnd answered r: SB_OK once its work is on the
 * rank's stream (only then may more work be queued behind it), or the
 * failure, reported. */
static int queued(Nccl *s, int rank, SbExec *x, const char *what,
                  ncclResult_t r) {
  if (r == ncclSuccess)
    return SB_OK;
  if (r != ncclInProgress)
    return nccl_fails(s, rank, x, what, r);
  return wait_for(s, rank, x, what, poll_call);
}

/* Wait until everything queued on the rank's stream so far has finished;
 * no wait outlives a failure or the deadline. */
static int drained(Nccl *s, int rank, SbExec *x, const char *what) {
  return wait_for(s, rank, x, what, poll_stream);
}

static int finish(Nccl *s, int rank, SbExec *x, const char *what,
                  ncclResult_t r) {
  int st = queued(s, rank, x, what, r);
  return st == SB_OK ? drained(s, rank, x, what) : st;
}

/* A rank whose own checks failed never joins the collective: the others
 * must stop waiting for it. */
static int refused(Nccl *s, int rank, int st) {
  if (st != SB_OK)
    mark_failed(s, rank);
  return st;
}

static int device_fails(SbExec *x, int st, const char *what) {
  return sb_exec_device_fail(x, st, what);
}

/* recv = every rank's block at its place. NCCL's all-gather wants equal
 * blocks; uneven ones (FSDP shards) are one broadcast per root, grouped. */
static ncclResult_t queue_all_gather(Nccl *s, int rank, const float *send,
                                     const int64_t *counts, float *recv) {
  int i = rank - s->first;
  int equal = 1;
  for (int q = 1; q < s->base.size; q++)
    equal &= counts[q] == counts[0];
  if (equal)
    return counts[0] == 0
               ? ncclSuccess
               : ncclAllGather(send, recv, (size_t)counts[0], ncclFloat,
                               s->comms[i], s->streams[i]);
  int64_t at = 0;
  ncclResult_t r = ncclSuccess;
  for (int q = 0; q < s->base.size && r == ncclSuccess; at += counts[q], q++)
    if (counts[q] > 0)
      r = ncclBroadcast(q == rank ? (const void *)send : recv + at, recv + at,
                        (size_t)counts[q], ncclFloat, q, s->comms[i],
                        s->streams[i]);
  return r;
}

static int nccl_all_gather(SbComm *c, int rank, SbExec *x, const float *send,
                           const int64_t *counts, float *recv) {
  static const char what[] = "all_gather";
  Nccl *s = nc(c);
  int64_t total;
  int st = enter(s, rank, x, what);
  if (st == SB_OK)
    st = sb_comm_check_blocks(c->size, rank, x, what, counts, recv, send,
                              &total);
  if (st != SB_OK || total == 0)
    return refused(s, rank, st);
  ncclResult_t r = ncclGroupStart();
  if (r == ncclSuccess)
    r = queue_all_gather(s, rank, send, counts, recv);
  ncclResult_t end = ncclGroupEnd();
  return finish(s, rank, x, what, r != ncclSuccess ? r : end);
}

/* The exchange half of a reduce-scatter: stage [size, counts[rank]] gets
 * every rank's block `rank` (this rank's own by a device copy). */
static ncclResult_t queue_exchange(Nccl *s, int rank, SbExec *x,
                                   const float *send, const int64_t *counts,
                                   float *stage, int *device_st) {
  int i = rank - s->first;
  int64_t mine = counts[rank], at = 0;
  ncclResult_t r = ncclSuccess;
  for (int q = 0; q < s->base.size && r == ncclSuccess; at += counts[q], q++) {
    if (q == rank) {
      if (mine > 0)
        *device_st = x->ops->copy(x->dev, stage + (int64_t)q * mine, send + at,
                                  (size_t)mine * sizeof(float));
      continue;
    }
    if (counts[q] > 0)
      r = ncclSend(send + at, (size_t)counts[q], ncclFloat, q, s->comms[i],
                   s->streams[i]);
    if (r == ncclSuccess && mine > 0)
      r = ncclRecv(stage + (int64_t)q * mine, (size_t)mine, ncclFloat, q,
                   s->comms[i], s->streams[i]);
  }
  return r;
}

/* recv [n] = stage[0] + stage[1] + ... in rank order, by the same device
 * operations as the loopback communicator's sum, so the bits agree. */
static int sum_in_order(Nccl *s, SbExec *x, const float *stage, int64_t n,
                        float *recv) {
  int st = x->ops->copy(x->dev, recv, stage, (size_t)n * sizeof(float));
  for (int q = 1; q < s->base.size && st == SB_OK; q++)
    st = x->ops->add(x->dev, n, recv, stage + (int64_t)q * n, recv);
  return st == SB_OK ? st : device_fails(x, st, "collective sum");
}

/* The reduce-scatter of send [sum(counts)] into recv [counts[rank]],
 * without the checks. */
static int reduce_scatter_checked(Nccl *s, int rank, SbExec *x,
                                  const char *what, const float *send,
                                  const int64_t *counts, float *recv) {
  int64_t mine = counts[rank];
  SbBuffer stage = {0};
  int st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, s->base.size * mine, &stage);
  if (st != SB_OK) {
    mark_failed(s, rank);
    return st;
  }
  int device_st = SB_OK;
  ncclResult_t r = ncclGroupStart();
  if (r == ncclSuccess)
    r = queue_exchange(s, rank, x, send, counts, stage.ptr, &device_st);
  ncclResult_t end = ncclGroupEnd();
  st = queued(s, rank, x, what, r != ncclSuccess ? r : end);
  /* The sum goes on the same stream, behind the exchange. */
  if (device_st != SB_OK)
    device_st = device_fails(x, device_st, "collective copy");
  else if (st == SB_OK && mine > 0)
    device_st = sum_in_order(s, x, stage.ptr, mine, recv);
  if (st == SB_OK)
    st = drained(s, rank, x, what);
  if (st == SB_OK && device_st != SB_OK) {
    mark_failed(s, rank);
    st = device_st;
  }
  /* Freeing waits for the stream, so only after finish() saw it drain or
   * aborted the communicator. */
  sb_exec_free(x, &stage);
  return st;
}

static int nccl_reduce_scatter(SbComm *c, int rank, SbExec *x,
                               const float *send, const int64_t *counts,
                               float *recv) {
  static const char what[] = "reduce_scatter";
  Nccl *s = nc(c);
  int64_t total;
  int st = enter(s, rank, x, what);
  if (st == SB_OK)
    st = sb_comm_check_blocks(c->size, rank, x, what, counts, send, recv,
                              &total);
  if (st != SB_OK || total == 0)
    return refused(s, rank, st);
  return reduce_scatter_checked(s, rank, x, what, send, counts, recv);
}

/* A reduce-scatter over an even split of the vector, then an all-gather of
 * the sums: a ring's traffic, and every element summed in rank order. */
static int nccl_all_reduce(SbComm *c, int rank, SbExec *x, const float *send,
                           float *recv, int64_t count) {
  static const char what[] = "all_reduce";
  Nccl *s = nc(c);
  int st = enter(s, rank, x, what);
  if (st == SB_OK)
    st = sb_comm_check_all_reduce(rank, x, what, send, recv, count);
  if (st != SB_OK || count == 0)
    return refused(s, rank, st);
  int64_t counts[SB_RANKS_MAX], start, mine;
  for (int q = 0; q < s->base.size; q++)
    sb_split_range(count, s->base.size, q, &start, &counts[q]);
  sb_split_range(count, s->base.size, rank, &start, &mine);
  SbBuffer part = {0};
  st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, mine, &part);
  if (st != SB_OK) {
    mark_failed(s, rank);
    return st;
  }
  st = reduce_scatter_checked(s, rank, x, what, send, counts, part.ptr);
  if (st == SB_OK) {
    ncclResult_t r = ncclGroupStart();
    if (r == ncclSuccess)
      r = queue_all_gather(s, rank, part.ptr, counts, recv);
    ncclResult_t end = ncclGroupEnd();
    st = finish(s, rank, x, what, r != ncclSuccess ? r : end);
  }
  sb_exec_free(x, &part);
  return st;
}

static int nccl_broadcast(SbComm *c, int rank, SbExec *x, float *buf,
                          int64_t count, int root) {
  static const char what[] = "broadcast";
  Nccl *s = nc(c);
  int st = enter(s, rank, x, what);
  if (st == SB_OK)
    st = sb_comm_check_broadcast(c->size, rank, x, what, buf, count, root);
  if (st != SB_OK || count == 0)
    return refused(s, rank, st);
  int i = rank - s->first;
  return finish(s, rank, x, what,
                ncclBroadcast(buf, buf, (size_t)count, ncclFloat, root,
                              s->comms[i], s->streams[i]));
}

/* A one-float all-reduce: no rank leaves before every rank has arrived. */
static int nccl_barrier(SbComm *c, int rank, SbExec *x) {
  static const char what[] = "barrier";
  Nccl *s = nc(c);
  int st = enter(s, rank, x, what);
  if (st != SB_OK)
    return refused(s, rank, st);
  SbBuffer one = {0};
  if ((st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, 1, &one)) != SB_OK) {
    mark_failed(s, rank);
    return st;
  }
  int i = rank - s->first;
  st = x->ops->zero(x->dev, one.ptr, sizeof(float));
  if (st != SB_OK) {
    st = device_fails(x, st, what);
    mark_failed(s, rank);
  } else {
    st = finish(s, rank, x, what,
                ncclAllReduce(one.ptr, one.ptr, 1, ncclFloat, ncclSum,
                              s->comms[i], s->streams[i]));
  }
  sb_exec_free(x, &one);
  return st;
}

static void nccl_abort(SbComm *c, int rank) {
  Nccl *s = nc(c);
  mark_failed(s, rank);
  /* Called from the failing rank's own thread: its communicator goes too,
   * so that ranks in other processes stop waiting for it. */
  if (rank >= s->first && rank < s->first + s->n_local)
    abort_local(s, rank - s->first);
}

static int nccl_failed_rank(SbComm *c) {
  Nccl *s = nc(c);
  pthread_mutex_lock(&s->lock);
  int r = s->origin;
  pthread_mutex_unlock(&s->lock);
  return r;
}

/* The making of this process's communicators, in the steps of
 * sb_comm_join. */
typedef struct Init {
  Nccl *s;
  ncclUniqueId id;
  ncclConfig_t *configs; /* per local rank, alive until the init is done */
} Init;

static int init_prepare(void *arg, char *error, size_t error_size) {
  Init *in = arg;
  Nccl *s = in->s;
  for (int i = 0; i < s->n_local; i++) {
    cudaError_t e = cudaSetDevice(s->ordinals[i]);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      snprintf(error, error_size,
               "NCCL communicator: rank %d cannot use cuda device %d: %s",
               s->first + i, s->ordinals[i], cudaGetErrorString(e));
      return SB_ERR_COMMUNICATION;
    }
  }
  return SB_OK;
}

static int init_start(void *arg, char *error, size_t error_size) {
  Init *in = arg;
  Nccl *s = in->s;
  int failed = -1; /* local rank whose initialisation failed */
  ncclResult_t r = ncclGroupStart();
  for (int i = 0; i < s->n_local && r == ncclSuccess; i++) {
    ncclConfig_t init = NCCL_CONFIG_INITIALIZER;
    in->configs[i] = init;
    /* Non-blocking: no call waits inside NCCL, so every wait is polled,
     * with a deadline. */
    in->configs[i].blocking = 0;
    (void)cudaSetDevice(s->ordinals[i]);
    r = ncclCommInitRankConfig(&s->comms[i], s->base.size, in->id, s->first + i,
                               &in->configs[i]);
    if (r != ncclSuccess && r != ncclInProgress)
      failed = i;
    else
      r = ncclSuccess;
  }
  ncclResult_t end = ncclGroupEnd();
  if (r == ncclSuccess && end != ncclSuccess && end != ncclInProgress) {
    r = end;
    failed = 0;
  }
  if (failed < 0)
    return SB_OK;
  char why[400];
  nccl_why(s->comms[failed], r, why, sizeof why);
  snprintf(error, error_size,
           "NCCL communicator: initialising rank %d of %d (cuda device %d) "
           "failed: %s",
           s->first + failed, s->base.size, s->ordinals[failed], why);
  return SB_ERR_COMMUNICATION;
}

static SbPoll init_poll(void *arg, char *why, size_t why_size) {
  Init *in = arg;
  Nccl *s = in->s;
  int pending = 0;
  for (int i = 0; i < s->n_local; i++) {
    ncclResult_t state = ncclSuccess,
                 r = ncclCommGetAsyncError(s->comms[i], &state);
    if (r != ncclSuccess || (state != ncclSuccess && state != ncclInProgress)) {
      char detail[400];
      nccl_why(s->comms[i], r != ncclSuccess ? r : state, detail,
               sizeof detail);
      snprintf(why, why_size, "NCCL rank %d of %d (cuda device %d): %s",
               s->first + i, s->base.size, s->ordinals[i], detail);
      return SB_POLL_FAILED;
    }
    pending |= state == ncclInProgress;
  }
  return pending ? SB_POLL_PENDING : SB_POLL_DONE;
}

static void init_abort(void *arg) {
  Init *in = arg;
  for (int i = 0; i < in->s->n_local; i++)
    abort_local(in->s, i);
}

/* Creates the local communicators (id_bytes NULL: a fresh id) in agreed
 * steps (setup's agreement, when the ranks span processes). SB_OK, or
 * every one that was created is aborted again and the reason is in
 * error. */
static int init_comms(Nccl *s, const unsigned char *id_bytes,
                      const SbCommSetup *setup, char *error,
                      size_t error_size) {
  Init in = {s, {{0}}, NULL};
  ncclResult_t r;
  if (id_bytes != NULL)
    memcpy(in.id.internal, id_bytes, sizeof in.id.internal);
  else if ((r = ncclGetUniqueId(&in.id)) != ncclSuccess) {
    char why[400];
    nccl_why(NULL, r, why, sizeof why);
    snprintf(error, error_size, "NCCL communicator: ncclGetUniqueId: %s", why);
    return SB_ERR_COMMUNICATION;
  }
  in.configs = calloc((size_t)s->n_local, sizeof *in.configs);
  if (in.configs == NULL) {
    snprintf(error, error_size, "NCCL communicator: out of host memory");
    return SB_ERR_OUT_OF_MEMORY;
  }
  SbCommJoinSteps steps = {&in, init_prepare, init_start, init_poll,
                           init_abort};
  int st = sb_comm_join(&steps, setup, s->first, error, error_size);
  free(in.configs);
  return st;
}

static void nccl_reset(SbComm *c) {
  Nccl *s = nc(c);
  if (failed_origin(s) < -1)
    return;
  for (int i = 0; i < s->n_local; i++)
    abort_local(s, i);
  if (!whole(s)) {
    snprintf(s->lost, sizeof s->lost,
             "the NCCL communicator was aborted after rank %d failed; "
             "ranks in other processes need a new communicator",
             s->origin);
    return;
  }
  char why[sizeof s->lost - 64];
  SbCommSetup alone = {s->timeout_s, NULL, NULL};
  if (init_comms(s, NULL, &alone, why, sizeof why) != SB_OK) {
    snprintf(s->lost, sizeof s->lost,
             "the NCCL communicator could not be re-created: %s", why);
    return;
  }
  pthread_mutex_lock(&s->lock);
  s->aborted = 0;
  s->origin = -1;
  s->lost[0] = '\0';
  pthread_mutex_unlock(&s->lock);
}

/* Flushes and frees the healthy communicators, all local ones at once
 * (finalizing waits for every rank), aborting any that fails or is not
 * quiescent within ten seconds (a peer process may be gone). */
static void nccl_destroy(SbComm *c) {
  if (c == NULL)
    return;
  Nccl *s = nc(c);
  ncclResult_t *state = calloc((size_t)s->n_local, sizeof *state);
  if (state != NULL) {
    ncclGroupStart();
    for (int i = 0; i < s->n_local; i++)
      if (s->comms[i] != NULL) {
        (void)cudaSetDevice(s->ordinals[i]);
        state[i] = ncclCommFinalize(s->comms[i]);
      }
    ncclGroupEnd();
    for (int k = 0; k < 200000; k++) {
      int busy = 0;
      for (int i = 0; i < s->n_local; i++)
        if (s->comms[i] != NULL && state[i] == ncclInProgress &&
            ncclCommGetAsyncError(s->comms[i], &state[i]) != ncclSuccess)
          state[i] = ncclInternalError;
      for (int i = 0; i < s->n_local; i++)
        busy |= s->comms[i] != NULL && state[i] == ncclInProgress;
      if (!busy)
        break;
      struct timespec ts = {0, 50000};
      nanosleep(&ts, NULL);
    }
  }
  for (int i = 0; i < s->n_local; i++) {
    if (s->comms[i] == NULL)
      continue;
    if (state == NULL || state[i] != ncclSuccess) {
      abort_local(s, i);
    } else {
      (void)cudaSetDevice(s->ordinals[i]);
      (void)ncclCommDestroy(s->comms[i]);
    }
    s->comms[i] = NULL;
  }
  free(state);
  pthread_mutex_destroy(&s->lock);
  free(s->ordinals);
  free(s->streams);
  free(s->comms);
  free(s);
}

static const SbCommOps nccl_ops = {
    .name = "nccl",
    .all_gather = nccl_all_gather,
    .reduce_scatter = nccl_reduce_scatter,
    .all_reduce = nccl_all_reduce,
    .broadcast = nccl_broadcast,
    .barrier = nccl_barrier,
    .abort = nccl_abort,
    .failed_rank = nccl_failed_rank,
    .reset = nccl_reset,
    .destroy = nccl_destroy,
};

int sb_comm_nccl_unique_id(unsigned char id[SB_COMM_ID_BYTES], char *error,
                           size_t error_size) {
  ncclUniqueId u;
  ncclResult_t r = ncclGetUniqueId(&u);
  if (r != ncclSuccess) {
    snprintf(error, error_size, "ncclGetUniqueId: %s: %s",
             ncclGetErrorString(r), ncclGetLastError(NULL));
    return SB_ERR_COMMUNICATION;
  }
  memcpy(id, u.internal, SB_COMM_ID_BYTES);
  return SB_OK;
}

int sb_comm_nccl_new(const unsigned char *id, int size, int first_rank,
                     int n_local, const int *ordinals, void *const *streams,
                     const SbCommSetup *setup, SbComm **out, char *error,
                     size_t error_size) {
  *out = NULL;
  if (size < 1 || size > SB_RANKS_MAX || n_local < 1 || first_rank < 0 ||
      first_rank + n_local > size || ordinals == NULL || streams == NULL) {
    snprintf(error, error_size,
             "NCCL communicator: local ranks %d..%d do not fit %d ranks",
             first_rank, first_rank + n_local - 1, size);
    return SB_ERR_INVALID_ARGUMENT;
  }
  if (id == NULL && n_local != size) {
    snprintf(error, error_size,
             "NCCL communicator: %d of %d ranks live elsewhere, so every "
             "process needs the same id",
             size - n_local, size);
    return SB_ERR_INVALID_ARGUMENT;
  }
  Nccl *s = calloc(1, sizeof *s);
  if (s != NULL) {
    s->ordinals = calloc((size_t)n_local, sizeof *s->ordinals);
    s->streams = calloc((size_t)n_local, sizeof *s->streams);
    s->comms = calloc((size_t)n_local, sizeof *s->comms);
  }
  if (s == NULL || !s->ordinals || !s->streams || !s->comms) {
    if (s)
      free(s->ordinals), free(s->streams), free(s->comms);
    free(s);
    snprintf(error, error_size, "NCCL communicator: out of host memory");
    return SB_ERR_OUT_OF_MEMORY;
  }
  s->base.ops = &nccl_ops;
  s->base.size = size;
  s->first = first_rank;
  s->n_local = n_local;
  s->origin = -1;
  s->timeout_s = setup ? setup->timeout_s : SB_COMM_TIMEOUT_DEFAULT;
  for (int i = 0; i < n_local; i++) {
    s->ordinals[i] = ordinals[i];
    s->streams[i] = (cudaStream_t)streams[i];
  }
  if (pthread_mutex_init(&s->lock, NULL) != 0) {
    free(s->ordinals), free(s->streams), free(s->comms), free(s);
    snprintf(error, error_size, "NCCL communicator: mutex init failed");
    return SB_ERR_INTERNAL;
  }
  int st = init_comms(s, id, setup, error, error_size);
  if (st != SB_OK) {
    nccl_destroy(&s->base);
    return st;
  }
  *out = &s->base;
  return SB_OK;
}
