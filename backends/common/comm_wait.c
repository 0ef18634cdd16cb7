/* SPDX-License-Identifier: MIT */
/* Polling with a deadline, and the abort that ends a wait for good. */
#include "backends/common/comm_wait.h"

#include <sched.h>
#include <stdio.h>
#include <time.h>

#include "abi/shardbound.h"

static double monotonic_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now(const SbWait *w) {
  return w->clock ? w->clock(w->arg) : monotonic_s();
}

/* Short waits first (collectives are usually quick), then sleeps. */
static void pause_briefly(unsigned *spins) {
  if ((*spins)++ < 1000) {
    sched_yield();
  } else {
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
  }
}

int sb_comm_wait(const SbWait *w, int rank, const char *what, char *error,
                 size_t error_size) {
  double start = now(w);
  unsigned spins = 0;
  char why[512];
  for (;;) {
    why[0] = '\0';
    SbPoll p = w->poll(w->arg, why, sizeof why);
    if (p == SB_POLL_DONE)
      return SB_OK;
    if (p == SB_POLL_STOP)
      return SB_COMM_WAIT_STOPPED;
    if (p == SB_POLL_FAILED) {
      snprintf(error, error_size, "%s failed on rank %d: %s", what, rank,
               why[0] ? why : "unknown error");
      w->abort(w->arg);
      return SB_ERR_COMMUNICATION;
    }
    if (w->timeout_s > 0 && now(w) - start >= w->timeout_s) {
      snprintf(error, error_size,
               "%s on rank %d: no progress within %g s (comm_timeout): a "
               "peer may have failed or hung; the communicator was aborted",
               what, rank, w->timeout_s);
      w->abort(w->arg);
      return SB_ERR_COMMUNICATION;
    }
    pause_briefly(&spins);
  }
}
