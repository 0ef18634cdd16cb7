/* SPDX-License-Identifier: MIT */
/* Bounded waiting for a communicator's asynchronous work (an NCCL call in
 * progress, a stream behind a collective): poll until it is done, it fails,
 * or a deadline passes, and end it for good (abort) on failure or timeout,
 * so that no wait outlives a peer that failed or hung. Independent of any
 * GPU library, so that the logic is tested on the CPU. */
#ifndef SB_BACKENDS_COMM_WAIT_H
#define SB_BACKENDS_COMM_WAIT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Default of the comm_timeout option, in seconds: far above any collective
 * of a healthy job, short enough that a hung peer ends the run. */
#define SB_COMM_TIMEOUT_DEFAULT 60.0

/* What one look at the awaited work found. */
typedef enum SbPoll {
  SB_POLL_DONE,    /* finished */
  SB_POLL_PENDING, /* still running */
  SB_POLL_FAILED,  /* failed; the reason is in poll's `why` */
  SB_POLL_STOP     /* give up without a failure of its own (another rank
                    * of this process failed and aborts for all) */
} SbPoll;

typedef struct SbWait {
  SbPoll (*poll)(void *arg, char *why, size_t why_size);
  /* Ends the work for good (ncclCommAbort); called once, on a failure or
   * when the deadline passed, never after done or stop. */
  void (*abort)(void *arg);
  void *arg;
  /* Seconds without completion after which the work is aborted; <= 0
   * means no deadline. */
  double timeout_s;
  /* Seconds on a monotonic clock; NULL means CLOCK_MONOTONIC (tests pass
   * their own to reach a deadline at once). */
  double (*clock)(void *arg);
} SbWait;

/* sb_comm_wait's answer when poll said SB_POLL_STOP (not a status). */
#define SB_COMM_WAIT_STOPPED 1

/*
 * Polls w until the work is done (SB_OK), it failed (abort called,
 * SB_ERR_COMMUNICATION with "WHAT failed on rank RANK: WHY" in error), the
 * deadline passed (abort called, SB_ERR_COMMUNICATION with a message naming
 * WHAT, RANK and the timeout), or poll said stop (SB_COMM_WAIT_STOPPED,
 * error untouched, no abort). Short yields first, then short sleeps that
 * leave the cores to ranks still computing.
 */
int sb_comm_wait(const SbWait *w, int rank, const char *what, char *error,
                 size_t error_size);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_COMM_WAIT_H */
