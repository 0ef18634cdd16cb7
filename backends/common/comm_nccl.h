/* SPDX-License-Identifier: MIT */
/* The NCCL communicator: the SbCommOps collectives between GPU ranks, queued
 * on each rank's own stream. Built only when configure finds NCCL, inside
 * the CUDA device module (backends reach it through SbDeviceModule, so that
 * they load on machines without CUDA or NCCL). */
#ifndef SB_BACKENDS_COMM_NCCL_H
#define SB_BACKENDS_COMM_NCCL_H

#include <stddef.h>

#include "backends/common/comm.h"
#include "backends/common/comm_join.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Size of the id that names one communicator (ncclUniqueId). */
#define SB_COMM_ID_BYTES 128

/* A new id, made by one process (rank 0) and handed to every process of the
 * communicator before sb_comm_nccl_new (over MPI, say). SB_OK, or
 * SB_ERR_COMMUNICATION with NCCL's message in error. */
int sb_comm_nccl_unique_id(unsigned char id[SB_COMM_ID_BYTES], char *error,
                           size_t error_size);

/*
 * This process's part of a communicator of `size` ranks: the local ranks
 * first_rank .. first_rank+n_local-1, rank first_rank+i on GPU ordinals[i]
 * with its collectives queued on streams[i] (a cudaStream_t, the stream of
 * that rank's device, which MUST outlive the communicator). Every process
 * of the communicator calls this with the same id and size; id NULL (only
 * when this process holds every rank) makes a fresh one. The communicator
 * is non-blocking (NCCL >= 2.14) and made in agreed steps (sb_comm_join,
 * with setup's agreement between the processes): no process enters
 * ncclCommInitRankConfig unless every one is ready, and all learn its
 * outcome. Returns SB_OK, or SB_ERR_INVALID_ARGUMENT / SB_ERR_COMMUNICATION
 * with the rank and NCCL's message in error; nothing is left initialised on
 * failure. setup NULL: one process, SB_COMM_TIMEOUT_DEFAULT.
 *
 * Collectives take the caller's global rank. Every wait (a call in
 * progress, the rank's stream behind a collective) polls NCCL's
 * asynchronous errors (ncclCommGetAsyncError) and the other local ranks'
 * failures, and ends after setup->timeout_s without completion. Every NCCL
 * or CUDA failure, and the deadline, is SB_ERR_COMMUNICATION naming the
 * rank and NCCL's message (or the timeout), and aborts the communicator
 * (ncclCommAbort), so no rank is left waiting for it. reset() re-creates an
 * aborted communicator when this process holds every rank; across
 * processes a new id is needed, so it stays failed.
 *
 * Sums are bitwise those of the loopback communicator: NCCL's own
 * reductions do not promise an order, so reduce_scatter is an exchange of
 * blocks (ncclSend/ncclRecv, the same traffic as a ring) followed by the
 * sum over ranks 0..size-1 in order on each rank's device, and all_reduce
 * is that reduce_scatter followed by an all-gather. Ownership: *out is
 * released by its destroy.
 */
int sb_comm_nccl_new(const unsigned char *id, int size, int first_rank,
                     int n_local, const int *ordinals, void *const *streams,
                     const SbCommSetup *setup, SbComm **out, char *error,
                     size_t error_size);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_COMM_NCCL_H */
