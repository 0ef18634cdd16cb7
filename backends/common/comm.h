/* SPDX-License-Identifier: MIT */
/* The communicator interface between the ranks of a multi-rank backend:
 * collectives over device buffers, one call per rank, behind a function
 * table so that the in-process loopback and a later NCCL implementation
 * are interchangeable. */
#ifndef SB_BACKENDS_COMM_H
#define SB_BACKENDS_COMM_H

#include <stdint.h>

#include "backends/common/layer.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Conventions for every collective below:
 * - Every rank of the communicator calls it, in the same order, with the
 *   same counts; `rank` is the caller's index and `x` its own execution
 *   context (device, tracker, error buffer). Buffers are float32 device
 *   buffers of the caller's device.
 * - Counts are element counts per rank (`counts[size]`); they may differ
 *   between ranks (FSDP shards are uneven when P does not divide a size)
 *   and may be zero. Rank q's block starts at the sum of counts[0..q-1].
 * - Returns SB_OK on every rank, or an error on every rank: a rank that
 *   fails inside the collective (bad argument, allocation) makes all of
 *   them fail, and abort() makes every pending and later call fail, so no
 *   rank is ever left waiting. On failure x->error says why and which rank
 *   caused it.
 * - Sums are taken over ranks 0..size-1 in that order, so the result never
 *   depends on thread timing.
 * - Temporary buffers are allocated through x under SB_MEM_COMMUNICATION.
 */
typedef struct SbComm SbComm;

typedef struct SbCommOps {
  const char *name;
  /* recv [sum(counts)] receives every rank's send [counts[rank]] at its
   * block. send MAY lie at the caller's own block of recv (in place). */
  int (*all_gather)(SbComm *c, int rank, SbExec *x, const float *send,
                    const int64_t *counts, float *recv);
  /* send [sum(counts)] on every rank; recv [counts[rank]] = the sum over
   * ranks of their send block `rank`. recv MUST NOT overlap send. */
  int (*reduce_scatter)(SbComm *c, int rank, SbExec *x, const float *send,
                        const int64_t *counts, float *recv);
  /* recv [count] = sum over ranks of send [count]; recv MAY equal send. */
  int (*all_reduce)(SbComm *c, int rank, SbExec *x, const float *send,
                    float *recv, int64_t count);
  /* buf [count] of every rank := buf of `root`. */
  int (*broadcast)(SbComm *c, int rank, SbExec *x, float *buf, int64_t count,
                   int root);
  int (*barrier)(SbComm *c, int rank, SbExec *x);
  /* Host-memory collectives, for what the host reads (so that every
   * process sees the same bytes) and for its decisions. buf [bytes] of
   * every rank := buf of `root`. */
  int (*broadcast_host)(SbComm *c, int rank, SbExec *x, void *buf, size_t bytes,
                        int root);
  /* In place: buf [sum(byte_counts)] of every rank receives rank q's block
   * (byte_counts[q] bytes at the sum of byte_counts[0..q-1]) from rank q.
   * Ranks that share one buffer (threads) have nothing to copy. */
  int (*all_gather_host)(SbComm *c, int rank, SbExec *x, void *buf,
                         const int64_t *byte_counts);
  /* Root's send is cut into one part per rank: recv [byte_counts[rank]]
   * of every rank receives root's bytes [offsets[rank], +byte_counts[rank])
   * of send. Parts MAY overlap (ranks that keep the same bytes). Only root
   * reads send (NULL elsewhere is fine); on root, recv MAY be send +
   * offsets[root] (nothing to copy). So that a process receives only what
   * it keeps instead of a broadcast of the whole. */
  int (*scatter_host)(SbComm *c, int rank, SbExec *x, const void *send,
                      const int64_t *offsets, const int64_t *byte_counts,
                      void *recv, int root);
  /* Called by (or on behalf of) a rank that failed outside a collective:
   * every rank blocked in a collective, and every later call, fails with
   * SB_ERR_COMMUNICATION naming `rank`, until reset(). Never blocks. */
  void (*abort)(SbComm *c, int rank);
  /* The first rank that failed or aborted since the last reset, or -1. */
  int (*failed_rank)(SbComm *c);
  /* Make the communicator usable again after a failure. MUST only be
   * called while no rank is inside a collective. */
  void (*reset)(SbComm *c);
  void (*destroy)(SbComm *c);
  /* ---- only communicators between processes (local_rank >= 0) ---- */
  /* Called by the local rank once its work of one sb_ranks_run is done,
   * with its status: returns SB_OK on every process when every rank
   * succeeded, else on every process the status of the lowest failing
   * rank, whose message lands in x->error and whose index failed_rank()
   * returns. A rank whose work already saw a collective fail does not
   * vote again. */
  int (*settle)(SbComm *c, int rank, SbExec *x, int status);
  /* The lowest rank whose process is known to have vanished (checked
   * without blocking: by process id on this host, through a socket to
   * each peer on another host, comm_mpi.c), or -1. Async-signal safe: a
   * host calls it from a signal handler when the launcher terminates the
   * job. */
  int (*lost_rank)(const SbComm *c);
} SbCommOps;

struct SbComm {
  const SbCommOps *ops;
  int size; /* number of ranks */
  /* The one rank that this process runs when the ranks are processes, or
   * -1 when every rank is a thread of this process. */
  int local_rank;
  /* With processes: this process's rank among the processes of its host
   * (MPI_COMM_TYPE_SHARED), which picks its GPU; else unused. */
  int node_rank;
};

/* The in-process communicator: ranks are threads of this process sharing
 * one address space. Returns SB_ERR_INVALID_ARGUMENT for size < 1 and
 * SB_ERR_OUT_OF_MEMORY or SB_ERR_INTERNAL (message in error). Ownership:
 * *out is released by its destroy. */
int sb_comm_loopback_new(int size, SbComm **out, char *error,
                         size_t error_size);

/* The MPI communicator: one rank per process of MPI_COMM_WORLD, started by
 * mpirun. Initialises MPI (MPI_THREAD_SERIALIZED) unless the program did,
 * and finalises it in destroy if it initialised it. Every rank's float
 * buffers must be host memory (the CPU device). Sums are taken in rank
 * order on the rank that owns each element and then copied, so results are
 * bitwise those of the loopback communicator and identical on every
 * process. Fails with SB_ERR_UNSUPPORTED (reason in error) when the build
 * has no MPI. */
int sb_comm_mpi_new(SbComm **out, char *error, size_t error_size);

/* The argument rules of the conventions above (comm_checks.c), shared by
 * every communicator: SB_OK, or SB_ERR_INVALID_ARGUMENT with the reason in
 * x->error naming the collective (`what`) and the rank. */
/* counts[size] are all >= 0; *total is their sum. */
int sb_comm_check_counts(int size, SbExec *x, const char *what,
                         const int64_t *counts, int64_t *total);
/* The counts, and the buffers of a collective over blocks: `whole` holds
 * sum(counts) elements, `block` this rank's counts[rank] (recv and send of
 * all_gather, send and recv of reduce_scatter). */
int sb_comm_check_blocks(int size, int rank, SbExec *x, const char *what,
                         const int64_t *counts, const void *whole,
                         const void *block, int64_t *total);
int sb_comm_check_all_reduce(int rank, SbExec *x, const char *what,
                             const void *send, const void *recv, int64_t count);
/* root names a rank; buf holds count >= 0 elements (or bytes). */
int sb_comm_check_broadcast(int size, int rank, SbExec *x, const char *what,
                            const void *buf, int64_t count, int root);

/* root names a rank; offsets and byte_counts [size] are >= 0 and their
 * ends fit int64; recv holds counts[rank] bytes; on root, send holds every
 * part. *extent is the end of the furthest part. */
int sb_comm_check_scatter(int size, int rank, SbExec *x, const char *what,
                          const void *send, const int64_t *offsets,
                          const int64_t *byte_counts, const void *recv,
                          int root, int64_t *extent);

/* Element counts of an even split of `total` items over `parts`: the first
 * total % parts parts get one more. */
static inline void sb_split_range(int64_t total, int parts, int index,
                                  int64_t *start, int64_t *count) {
  int64_t base = total / parts, extra = total % parts;
  *start = index * base + (index < extra ? index : extra);
  *count = base + (index < extra ? 1 : 0);
}

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_COMM_H */
