/* SPDX-License-Identifier: MIT */
/* Process 0 prints; a lost process stops the job with its rank named. */
#include "config.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_processes.h"

/* What the handler needs, set before it is installed. */
static const ShardboundSession *lost_session;
static int message_fd = 2;

static size_t append(char *buf, size_t at, size_t size, const char *text) {
  while (*text != '\0' && at + 1 < size)
    buf[at++] = *text++;
  return at;
}

/* When a process of the job dies, mpirun sends SIGTERM to all the others.
 * Only async-signal-safe calls here: shardbound_session_lost_rank is one. */
static void on_terminate(int signo) {
  (void)signo;
  char msg[160];
  size_t n = 0;
  int lost = shardbound_session_lost_rank(lost_session);
  if (lost >= 0) {
    char digits[12];
    int k = 0;
    do
      digits[k++] = (char)('0' + lost % 10);
    while ((lost /= 10) > 0 && k < 11);
    n = append(msg, n, sizeof msg, "shardbound: rank ");
    while (k > 0 && n + 1 < sizeof msg)
      msg[n++] = digits[--k];
    n = append(msg, n, sizeof msg, " was lost (its process ended); stopping\n");
  } else
    n = append(msg, n, sizeof msg,
               "shardbound: stopped by the launcher (a process of the job was "
               "lost); stopping\n");
  ssize_t w = write(message_fd, msg, n);
  (void)w;
  /* The other survivors run this handler at about the same time. Were
   * this process to end at once, one of them could find it gone before
   * the rank that was really lost, and name it instead (seen in a clean
   * checkout's make check: "rank 0 was lost" beside "rank 1 was lost"). */
  struct timespec pause = {0, 300 * 1000 * 1000};
  nanosleep(&pause, NULL);
  _exit(1);
}

int sb_cli_join_processes(const ShardboundSession *session) {
  if (shardbound_session_process_count(session) <= 1)
    return 0;
  int index = shardbound_session_process_index(session);
  lost_session = session;
  /* The handler's message must reach the user even from a silenced
   * process. */
  int keep = dup(2);
  if (keep >= 0)
    message_fd = keep;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_terminate;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  if (index != 0) {
    fflush(stdout);
    fflush(stderr);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
      close(null);
    }
  }
  return index;
}

void sb_cli_leave_processes(void) {
  if (lost_session == NULL)
    return;
  signal(SIGTERM, SIG_DFL);
  lost_session = NULL;
}
