/* SPDX-License-Identifier: MIT */
/* The command as one process of an MPI job (backends with -o comm=mpi,
 * docs/embedding.md): process 0 alone prints and writes files, and a
 * process the job lost ends the others with a message naming its rank. */
#ifndef SB_CLI_PROCESSES_H
#define SB_CLI_PROCESSES_H

#include <glib.h>

#include "hosts/api/shardbound-host.h"

/* Once the session exists: with several processes, installs the handler
 * of the launcher's SIGTERM and, on processes other than 0, sends stdout
 * and stderr to /dev/null. Returns this process's index (0 with one). */
int sb_cli_join_processes(const ShardboundSession *session);

/* Before the session closes: the launcher's SIGTERM after this point is an
 * ordinary end, not a loss. */
void sb_cli_leave_processes(void);

/* For a function with several exits: a variable declared after the
 * session's, g_auto (SbCliJoined), leaves before the session closes. */
typedef int SbCliJoined;
static inline void sb_cli_joined_clear(SbCliJoined *joined) {
  (void)joined;
  sb_cli_leave_processes();
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(SbCliJoined, sb_cli_joined_clear)

#endif
