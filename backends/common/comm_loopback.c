/* SPDX-License-Identifier: MIT */
/* The loopback communicator: ranks are threads of one process that exchange
 * device pointers and meet at status-carrying barriers. Only device ops
 * touch the buffers, so the ranks' devices may be CPUs or GPUs (several
 * ranks on one GPU included): a rank drains its device queue before others
 * may read what it wrote, and before they may reuse what it read. */
#include "backends/common/comm.h"
#include "backends/common/spin_wait.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Loopback {
  SbComm base;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int arrived;
  uint64_t generation;
  int gen_failed;  /* some rank of the running generation reported failure */
  int last_failed; /* outcome of the generation that completed last */
  int aborted;
  int origin; /* first rank that failed or aborted, or -1 */
  int spin;   /* waiters poll before sleeping (spin_wait.h) */
  /* Published by each rank before the first barrier of a collective. */
  const float **send;
  float **recv;
  const int64_t **counts;
  const int64_t **offsets; /* of scatter_host */
  void **host;             /* host buffers of the host-memory collectives */
  SbDevice **devs;
} Loopback;

static Loopback *lb(SbComm *c) { return (Loopback *)c; }

/* Every rank arrives with ok = 1 or 0; all leave with SB_OK only if every
 * rank was ok and nobody aborted. The mutex also orders the pointer
 * publication before any read of it. */
static int lb_sync(Loopback *s, int rank, SbExec *x, const char *what, int ok) {
  pthread_mutex_lock(&s->lock);
  if (!ok && s->origin < 0)
    s->origin = rank;
  int failed;
  if (s->aborted) {
    failed = 1;
  } else {
    uint64_t gen = s->generation;
    if (!ok)
      s->gen_failed = 1;
    if (++s->arrived == s->base.size) {
      s->arrived = 0;
      s->last_failed = s->gen_failed;
      s->gen_failed = 0;
      /* Atomic: waiters poll it without the lock. */
      __atomic_store_n(&s->generation, s->generation + 1, __ATOMIC_RELEASE);
      pthread_cond_broadcast(&s->cond);
      failed = s->last_failed;
    } else {
      if (s->spin) {
        pthread_mutex_unlock(&s->lock);
        sb_spin_while_equal(&s->generation, gen, &s->aborted);
        pthread_mutex_lock(&s->lock);
      }
      while (gen == s->generation && !s->aborted)
        pthread_cond_wait(&s->cond, &s->lock);
      failed = gen == s->generation ? 1 : s->last_failed;
    }
  }
  int origin = s->origin;
  pthread_mutex_unlock(&s->lock);
  if (!failed)
    return SB_OK;
  /* The rank that caused the failure keeps its own, more precise message. */
  if (ok)
    sb_exec_fail(x, SB_ERR_COMMUNICATION,
                 "%s abandoned on rank %d: rank %d failed", what, rank, origin);
  return SB_ERR_COMMUNICATION;
}

/* The first failure wins: a rank's own status is more precise than the
 * communication error the barrier reports for it. */
static int keep(int first, int second) {
  return first != SB_OK ? first : second;
}

/* After the first barrier: every rank must have passed the same counts
 * (or offsets, `name`), published in arrays[]. */
static int same_arrays(Loopback *s, SbExec *x, const char *what,
                       const int64_t **arrays, const char *name) {
  for (int q = 0; q < s->base.size; q++)
    if (memcmp(arrays[q], arrays[0], (size_t)s->base.size * sizeof(int64_t)) !=
        0)
      return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                          "%s: rank %d passed %s that differ from rank 0's",
                          what, q, name);
  return SB_OK;
}

static int same_counts(Loopback *s, int rank, SbExec *x, const char *what) {
  (void)rank;
  return same_arrays(s, x, what, s->counts, "counts");
}

static int dev_copy(SbExec *x, float *dst, const float *src, int64_t n) {
  int st = x->ops->copy(x->dev, dst, src, (size_t)n * sizeof(float));
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "collective copy");
}

/* Device work is queued asynchronously (on a GPU): a rank's buffers are
 * complete for the other ranks, or no longer read by it, only once its
 * device has finished everything issued so far. Keeps an earlier failure. */
static int drain(SbExec *x, int st) {
  if (st != SB_OK)
    return st;
  st = x->ops->sync(x->dev);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "collective sync");
}

/* Whether this rank's kernels may read rank q's buffers in place. */
static int peer_readable(Loopback *s, SbExec *x, int q) {
  return x->ops->readable_from == NULL || s->devs[q] == x->dev ||
         x->ops->readable_from(x->dev, s->devs[q]);
}

/* dst [n] = sum over ranks in order of src[q] + offset. A peer's block that
 * this device cannot read in place is copied over first; the additions,
 * and so the result, are the same either way. */
static int sum_in_order(Loopback *s, SbExec *x, float *dst, int64_t offset,
                        int64_t n) {
  SbBuffer stage = {0};
  int st = dev_copy(x, dst, s->send[0] + offset, n);
  for (int q = 1; q < s->base.size && st == SB_OK; q++) {
    const float *src = s->send[q] + offset;
    if (!peer_readable(s, x, q)) {
      if (stage.ptr == NULL)
        st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, n, &stage);
      if (st == SB_OK)
        st = dev_copy(x, stage.ptr, src, n);
      if (st != SB_OK)
        break;
      src = stage.ptr;
    }
    st = x->ops->add(x->dev, n, dst, src, dst);
    if (st != SB_OK)
      st = sb_exec_device_fail(x, st, "collective sum");
  }
  sb_exec_free(x, &stage);
  return st;
}

static int lb_all_gather(SbComm *c, int rank, SbExec *x, const float *send,
                         const int64_t *counts, float *recv) {
  static const char what[] = "all_gather";
  Loopback *s = lb(c);
  int64_t total;
  int st =
      sb_comm_check_blocks(c->size, rank, x, what, counts, recv, send, &total);
  s->send[rank] = send;
  s->counts[rank] = counts;
  s->devs[rank] = x->dev;
  st = drain(x, st);
  if ((st = keep(st, lb_sync(s, rank, x, what, st == SB_OK))) != SB_OK)
    return st;
  st = same_counts(s, rank, x, what);
  int64_t at = 0;
  for (int q = 0; q < c->size && st == SB_OK; at += counts[q], q++)
    if (counts[q] > 0 && s->send[q] != recv + at)
      st = dev_copy(x, recv + at, s->send[q], counts[q]);
  /* Nobody may reuse its send buffer before every rank has read it. */
  st = drain(x, st);
  int st2 = lb_sync(s, rank, x, what, st == SB_OK);
  return st != SB_OK ? st : st2;
}

static int lb_reduce_scatter(SbComm *c, int rank, SbExec *x, const float *send,
                             const int64_t *counts, float *recv) {
  static const char what[] = "reduce_scatter";
  Loopback *s = lb(c);
  int64_t total;
  int st =
      sb_comm_check_blocks(c->size, rank, x, what, counts, send, recv, &total);
  s->send[rank] = send;
  s->counts[rank] = counts;
  s->devs[rank] = x->dev;
  st = drain(x, st);
  if ((st = keep(st, lb_sync(s, rank, x, what, st == SB_OK))) != SB_OK)
    return st;
  st = same_counts(s, rank, x, what);
  int64_t at = 0;
  for (int q = 0; q < rank; q++)
    at += counts[q];
  if (st == SB_OK && counts[rank] > 0)
    st = sum_in_order(s, x, recv, at, counts[rank]);
  st = drain(x, st);
  int st2 = lb_sync(s, rank, x, what, st == SB_OK);
  return st != SB_OK ? st : st2;
}

static int lb_all_reduce(SbComm *c, int rank, SbExec *x, const float *send,
                         float *recv, int64_t count) {
  static const char what[] = "all_reduce";
  Loopback *s = lb(c);
  SbBuffer tmp = {0};
  int st = sb_comm_check_all_reduce(rank, x, what, send, recv, count);
  /* The sum cannot go straight into recv: recv may be this rank's send,
   * which the other ranks are still reading. */
  if (st == SB_OK)
    st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, count, &tmp);
  s->send[rank] = send;
  s->devs[rank] = x->dev;
  st = drain(x, st);
  if ((st = keep(st, lb_sync(s, rank, x, what, st == SB_OK))) != SB_OK) {
    sb_exec_free(x, &tmp);
    return st;
  }
  if (count > 0)
    st = sum_in_order(s, x, tmp.ptr, 0, count);
  st = drain(x, st);
  if ((st = lb_sync(s, rank, x, what, st == SB_OK)) == SB_OK && count > 0)
    st = dev_copy(x, recv, tmp.ptr, count);
  st = drain(x, st);
  sb_exec_free(x, &tmp);
  int st2 = lb_sync(s, rank, x, what, st == SB_OK);
  return st != SB_OK ? st : st2;
}

static int lb_broadcast(SbComm *c, int rank, SbExec *x, float *buf,
                        int64_t count, int root) {
  static const char what[] = "broadcast";
  Loopback *s = lb(c);
  int st = sb_comm_check_broadcast(c->size, rank, x, what, buf, count, root);
  s->send[rank] = buf;
  s->devs[rank] = x->dev;
  st = drain(x, st);
  if ((st = keep(st, lb_sync(s, rank, x, what, st == SB_OK))) != SB_OK)
    return st;
  if (rank != root && count > 0)
    st = dev_copy(x, buf, s->send[root], count);
  st = drain(x, st);
  int st2 = lb_sync(s, rank, x, what, st == SB_OK);
  return st != SB_OK ? st : st2;
}

static int lb_broadcast_host(SbComm *c, int rank, SbExec *x, void *buf,
                             size_t bytes, int root) {
  static const char what[] = "broadcast_host";
  Loopback *s = lb(c);
  int st = sb_comm_check_broadcast(c->size, rank, x, what, buf, (int64_t)bytes,
                                   root);
  s->host[rank] = buf;
  if ((st = keep(st, lb_sync(s, rank, x, what, st == SB_OK))) != SB_OK)
    return st;
  if (rank != root && bytes > 0 && buf != s->host[root])
    memcpy(buf, s->host[root], bytes);
  return lb_sync(s, rank, x, what, 1);
}

static int lb_all_gather_host(SbComm *c, int rank, SbExec *x, void *buf,
                              const int64_t *byte_counts) {
  static const char what[] = "all_gather_host";
  Loopback *s = lb(c);
  int64_t total;
  int st = sb_comm_check_blocks(c->size, rank, x, what, byte_counts, buf, buf,
                                &total);
  s->host[rank] = buf;
  s->counts[rank] = byte_counts;
  if ((st = keep(st, lb_sync(s, rank, x, what, st == SB_OK))) != SB_OK)
    return st;
  st = same_counts(s, rank, x, what);
  int64_t at = 0;
  for (int q = 0; q < c->size && st == SB_OK; at += byte_counts[q], q++)
    if (q != rank && byte_counts[q] > 0 && s->host[q] != buf)
      memcpy((char *)buf + at, (const char *)s->host[q] + at,
             (size_t)byte_counts[q]);
  int st2 = lb_sync(s, rank, x, what, st == SB_OK);
  return st != SB_OK ? st : st2;
}

static int lb_scatter_host(SbComm *c, int rank, SbExec *x, const void *send,
                           const int64_t *offsets, const int64_t *byte_counts,
                           void *recv, int root) {
  static const char what[] = "scatter_host";
  Loopback *s = lb(c);
  int64_t extent;
  int st = sb_comm_check_scatter(c->size, rank, x, what, send, offsets,
                                 byte_counts, recv, root, &extent);
  s->host[rank] = (void *)send;
  s->counts[rank] = byte_counts;
  s->offsets[rank] = offsets;
  if ((st = keep(st, lb_sync(s, rank, x, what, st == SB_OK))) != SB_OK)
    return st;
  st = same_counts(s, rank, x, what);
  if (st == SB_OK)
    st = same_arrays(s, x, what, s->offsets, "offsets");
  if (st == SB_OK && byte_counts[rank] > 0) {
    const char *from = (const char *)s->host[root] + offsets[rank];
    if (from != recv)
      memmove(recv, from, (size_t)byte_counts[rank]);
  }
  /* Root's buffer must outlive every rank's copy. */
  int st2 = lb_sync(s, rank, x, what, st == SB_OK);
  return st != SB_OK ? st : st2;
}

static int lb_barrier(SbComm *c, int rank, SbExec *x) {
  int st = drain(x, SB_OK);
  return keep(st, lb_sync(lb(c), rank, x, "barrier", st == SB_OK));
}

static void lb_abort(SbComm *c, int rank) {
  Loopback *s = lb(c);
  pthread_mutex_lock(&s->lock);
  if (s->origin < 0)
    s->origin = rank;
  __atomic_store_n(&s->aborted, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

static int lb_failed_rank(SbComm *c) {
  Loopback *s = lb(c);
  pthread_mutex_lock(&s->lock);
  int r = s->origin;
  pthread_mutex_unlock(&s->lock);
  return r;
}

static void lb_reset(SbComm *c) {
  Loopback *s = lb(c);
  pthread_mutex_lock(&s->lock);
  s->arrived = 0;
  s->gen_failed = 0;
  __atomic_store_n(&s->aborted, 0, __ATOMIC_RELAXED);
  s->origin = -1;
  __atomic_store_n(&s->generation, s->generation + 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&s->lock);
}

static void lb_destroy(SbComm *c) {
  if (c == NULL)
    return;
  Loopback *s = lb(c);
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->lock);
  free(s->send);
  free(s->recv);
  free(s->counts);
  free(s->offsets);
  free(s->host);
  free(s->devs);
  free(s);
}

static const SbCommOps loopback_ops = {
    .name = "loopback",
    .all_gather = lb_all_gather,
    .reduce_scatter = lb_reduce_scatter,
    .all_reduce = lb_all_reduce,
    .broadcast = lb_broadcast,
    .barrier = lb_barrier,
    .broadcast_host = lb_broadcast_host,
    .all_gather_host = lb_all_gather_host,
    .scatter_host = lb_scatter_host,
    .abort = lb_abort,
    .failed_rank = lb_failed_rank,
    .reset = lb_reset,
    .destroy = lb_destroy,
};

int sb_comm_loopback_new(int size, SbComm **out, char *error,
                         size_t error_size) {
  *out = NULL;
  if (size < 1) {
    snprintf(error, error_size,
             "loopback communicator: %d ranks requested, need at least 1",
             size);
    return SB_ERR_INVALID_ARGUMENT;
  }
  Loopback *s = calloc(1, sizeof *s);
  if (s != NULL) {
    s->send = calloc((size_t)size, sizeof *s->send);
    s->recv = calloc((size_t)size, sizeof *s->recv);
    s->counts = calloc((size_t)size, sizeof *s->counts);
    s->offsets = calloc((size_t)size, sizeof *s->offsets);
    s->host = calloc((size_t)size, sizeof *s->host);
    s->devs = calloc((size_t)size, sizeof *s->devs);
  }
  if (s == NULL || !s->send || !s->recv || !s->counts || !s->offsets ||
      !s->host || !s->devs) {
    if (s)
      free(s->send), free(s->recv), free(s->counts), free(s->offsets),
          free(s->host), free(s->devs);
    free(s);
    snprintf(error, error_size,
             "loopback communicator: out of host memory for %d ranks", size);
    return SB_ERR_OUT_OF_MEMORY;
  }
  if (pthread_mutex_init(&s->lock, NULL) != 0) {
    free(s->send), free(s->recv), free(s->counts), free(s->offsets),
        free(s->host), free(s->devs), free(s);
    snprintf(error, error_size, "loopback communicator: mutex init failed");
    return SB_ERR_INTERNAL;
  }
  if (pthread_cond_init(&s->cond, NULL) != 0) {
    pthread_mutex_destroy(&s->lock);
    free(s->send), free(s->recv), free(s->counts), free(s->offsets),
        free(s->host), free(s->devs), free(s);
    snprintf(error, error_size, "loopback communicator: cond init failed");
    return SB_ERR_INTERNAL;
  }
  s->base.ops = &loopback_ops;
  s->base.size = size;
  s->base.local_rank = -1;
  s->origin = -1;
  s->spin = size > 1 && sb_spin_fits(size);
  *out = &s->base;
  return SB_OK;
}
