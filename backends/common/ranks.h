/* SPDX-License-Identifier: MIT */
/* A pool of rank workers (one thread, device, tracker and execution context
 * per rank) joined by a communicator, shared by the FSDP and TP backends. */
#ifndef SB_BACKENDS_RANKS_H
#define SB_BACKENDS_RANKS_H

#include <stddef.h>

#include "backends/common/comm.h"
#include "backends/common/device.h"
#include "backends/common/layer.h"
#include "backends/common/tracked_alloc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Upper bound on ranks, so that per-rank arrays can live on the stack. */
#define SB_RANKS_MAX 64

typedef struct SbRank {
  int index;
  SbDevice *dev;
  SbMemTracker mem;
  SbExec x; /* ops, dev, &mem and error of this rank */
  char error[1024];
} SbRank;

typedef struct SbRanks SbRanks;

/* Work run on every rank concurrently: returns SB_OK or a negative status
 * with a message in rank->x.error. */
typedef int (*SbRankFn)(SbRank *rank, SbComm *comm, void *arg);

/* Makes the communicator of the pool once every rank's device is open
 * (devs[size]), its waits bounded by timeout_s seconds (comm_timeout); on
 * failure a negative status and the reason in error. */
typedef int (*SbCommNewFn)(void *arg, int size, SbDevice *const *devs,
                           double timeout_s, SbComm **out, char *error,
                           size_t error_size);

/* With the ranks as processes: makes the communicator of the pool out of
 * the MPI one `host` (which it then owns) for this process's rank, whose
 * device is open. Every process calls it at once; on failure every process
 * returns the same status, with the reason in rank->x.error and the
 * failing rank in host's failed_rank(), and host stays the caller's. */
typedef int (*SbProcessCommNewFn)(void *arg, SbComm *host, SbRank *rank,
                                  double timeout_s, SbComm **out);

typedef struct SbRanksConfig {
  int size;               /* number of ranks, 1..SB_RANKS_MAX */
  const SbDeviceOps *ops; /* the device of every rank */
  /* Fault injection for tests: when fail_rank >= 0, run() call number
   * fail_at (counted from 0 since creation) fails on that rank before its
   * work starts, as an allocation failure would, while the other ranks go
   * on into their collectives. */
  int fail_rank;
  long fail_at;
  /* Rank r opens device ordinals[r] of ops; NULL means ordinal 0 for
   * every rank (several ranks may share a device). With processes, the
   * index is the process's rank among those of its host (its node rank),
   * not its rank in the job: see sb_ranks_device_ordinal. */
  const int *ordinals;
  /* The communicator; NULL means the loopback communicator. */
  SbCommNewFn comm_new;
  void *comm_arg; /* for comm_new or process_comm_new */
  /* Bound in seconds on every wait of a device communicator (NCCL) for
   * work that does not complete; 0 means SB_COMM_TIMEOUT_DEFAULT. */
  double comm_timeout_s;
  /* Non-zero: the ranks are the processes of an MPI job (comm=mpi), one
   * per process; this process runs only its own, in the calling thread.
   * size must then be 0 (take the job's) or equal the number of
   * processes. */
  int processes;
  /* With processes: the communicator over MPI (GPU ranks: NCCL, see
   * comm_nccl_mpi.h); NULL means MPI for every collective, which needs
   * host memory (the CPU device). */
  SbProcessCommNewFn process_comm_new;
  /* With processes: why this process cannot run its rank, found before MPI
   * was up (no GPU here, say), and the status; NULL when it can. Another
   * process may well be able to, so the refusal is agreed on like a device
   * that fails to open: every process fails with the lowest refusing
   * rank's reason instead of leaving the others waiting. */
  const char *refusal;
  int refusal_status;
} SbRanksConfig;

/* Start the pool. On failure returns a negative status with a message in
 * error (error_size bytes, caller's). Ownership: *out is released by
 * sb_ranks_destroy. */
int sb_ranks_new(const SbRanksConfig *config, SbRanks **out, char *error,
                 size_t error_size);

/* The GPU of the rank at `index` (a rank of this process's threads, or a
 * process's rank among those of its host): devices[index mod n_devices]
 * when a list is given (n_devices > 0), else index mod count (the GPUs the
 * process sees, count >= 1). So processes on several hosts each start
 * from their host's first GPU. */
int sb_ranks_device_ordinal(int index, int count, const int *devices,
                            int n_devices);
void sb_ranks_destroy(SbRanks *ranks);

int sb_ranks_size(const SbRanks *ranks);
/* Rank `index`: its device, tracker and error buffer exist only when this
 * process runs it (sb_ranks_is_local); NULL for an index out of range. */
SbRank *sb_ranks_rank(SbRanks *ranks, int index);
int sb_ranks_is_local(const SbRanks *ranks, int index);
/* The rank this process runs when the ranks are processes, else -1. */
int sb_ranks_local_rank(const SbRanks *ranks);
SbComm *sb_ranks_comm(SbRanks *ranks);

/* Run fn on every rank concurrently (rank 0 on the calling thread) and
 * wait for all. If any rank fails,
 * the communicator is aborted (no rank stays blocked in a collective) and
 * the call returns the status of the rank that failed first, with
 * "rank R: cause" in error. Calls are serialised. When the ranks are
 * processes, fn runs on the local rank and every process returns the same
 * status and message (the communicator's settle). */
int sb_ranks_run(SbRanks *ranks, SbRankFn fn, void *arg, char *error,
                 size_t error_size);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_RANKS_H */
