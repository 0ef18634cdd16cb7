/* SPDX-License-Identifier: MIT */
/* Making a device communicator (NCCL's ncclCommInitRank) in steps that the
 * processes agree on, so that no process enters the collective
 * initialisation unless every one is ready, none waits in it for one that
 * failed, and all learn the outcome together. Independent of any GPU
 * library: the steps are callbacks, tested on the CPU. */
#ifndef SB_BACKENDS_COMM_JOIN_H
#define SB_BACKENDS_COMM_JOIN_H

#include <stddef.h>

#include "backends/common/comm_wait.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a communicator is made and waited on, from its creator. */
typedef struct SbCommSetup {
  /* Bound on every wait inside the communicator, in seconds (the
   * comm_timeout option); <= 0 means none. */
  double timeout_s;
  /* With the ranks spread over processes: every process's verdict on this
   * one's status (SB_OK or a failure, `why` its reason), the same status
   * on every process (a vote over MPI; after a failed vote the later ones
   * return at once). NULL when this process holds every rank. */
  int (*agree)(void *arg, int status, const char *why);
  void *agree_arg;
} SbCommSetup;

/* This process's part of making the communicator. */
typedef struct SbCommJoinSteps {
  void *arg;
  /* Everything short of the collective initialisation (selecting the
   * devices): SB_OK, or a status with the reason in error. */
  int (*prepare)(void *arg, char *error, size_t error_size);
  /* Starts the collective initialisation (non-blocking: it may still be
   * running when this returns). */
  int (*start)(void *arg, char *error, size_t error_size);
  /* Whether the initialisation has finished. */
  SbPoll (*poll)(void *arg, char *why, size_t why_size);
  /* Undoes whatever start made (ncclCommAbort); safe after a failed start. */
  void (*abort)(void *arg);
} SbCommJoinSteps;

/*
 * prepare, then a vote that every process is ready; start, then a vote
 * that every start was accepted; the wait for the initialisation (bounded
 * by setup->timeout_s), then a vote on its outcome. A process whose step
 * failed votes its failure and stops; after a failed vote no process takes
 * the next step, and every one that started aborts. Returns SB_OK on every
 * process or a failure on every process: the failing step's status and
 * reason in error where it failed, the agreed status elsewhere (the
 * agreement says why). `rank` names this process's (first) rank in
 * messages. setup NULL: no deadline and no agreement.
 */
int sb_comm_join(const SbCommJoinSteps *steps, const SbCommSetup *setup,
                 int rank, char *error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_COMM_JOIN_H */
