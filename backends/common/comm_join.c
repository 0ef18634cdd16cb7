/* SPDX-License-Identifier: MIT */
/* A communicator made in agreed steps: prepare, vote, start, vote, wait
 * (bounded), vote. */
#include "backends/common/comm_join.h"

#include <stdio.h>

#include "abi/shardbound.h"

/* This process's status as every process agrees on it (itself alone
 * without an agreement). */
static int agreed(const SbCommSetup *setup, int status, const char *why) {
  if (setup == NULL || setup->agree == NULL)
    return status;
  return setup->agree(setup->agree_arg, status, why);
}

/* A step whose outcome every process learns before the next one; error
 * keeps this process's own reason when it failed, else says another did. */
static int step(const SbCommSetup *setup, int status, const char *what,
                char *error, size_t error_size) {
  if (status != SB_OK && error[0] == '\0')
    snprintf(error, error_size, "%s failed: %s", what,
             sb_status_to_string(status));
  int st = agreed(setup, status, status == SB_OK ? "" : error);
  if (st != SB_OK && status == SB_OK)
    snprintf(error, error_size, "%s: another process failed", what);
  return st;
}

int sb_comm_join(const SbCommJoinSteps *steps, const SbCommSetup *setup,
                 int rank, char *error, size_t error_size) {
  static const char what[] = "initialising the communicator";
  error[0] = '\0';
  /* Nobody enters the collective initialisation unless all are ready: one
   * that cannot would leave the others waiting in it. */
  int st = step(setup, steps->prepare(steps->arg, error, error_size), what,
                error, error_size);
  if (st != SB_OK)
    return st;
  st = step(setup, steps->start(steps->arg, error, error_size), what, error,
            error_size);
  if (st == SB_OK) {
    SbWait w = {steps->poll, steps->abort, steps->arg,
                setup ? setup->timeout_s : 0, NULL};
    int waited = sb_comm_wait(&w, rank, what, error, error_size);
    if (waited == SB_COMM_WAIT_STOPPED) {
      snprintf(error, error_size, "%s on rank %d: given up", what, rank);
      steps->abort(steps->arg);
      waited = SB_ERR_COMMUNICATION;
    }
    /* A failure here has already aborted. */
    st = step(setup, waited, what, error, error_size);
    if (st == SB_OK || waited != SB_OK)
      return st;
  }
  steps->abort(steps->arg);
  return st;
}
