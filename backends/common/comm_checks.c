/* SPDX-License-Identifier: MIT */
/* The argument rules of the collectives (comm.h), one definition shared by
 * every communicator, so that a call one of them refuses is refused by all
 * with the same message. */
#include "backends/common/comm.h"

int sb_comm_check_counts(int size, SbExec *x, const char *what,
                         const int64_t *counts, int64_t *total) {
  *total = 0;
  if (counts == NULL)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT, "%s: NULL counts", what);
  for (int q = 0; q < size; q++) {
    if (counts[q] < 0)
      return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                          "%s: negative count %lld for rank %d", what,
                          (long long)counts[q], q);
    *total += counts[q];
  }
  return SB_OK;
}

int sb_comm_check_blocks(int size, int rank, SbExec *x, const char *what,
                         const int64_t *counts, const void *whole,
                         const void *block, int64_t *total) {
  int st = sb_comm_check_counts(size, x, what, counts, total);
  if (st == SB_OK &&
      ((*total > 0 && whole == NULL) || (counts[rank] > 0 && block == NULL)))
    st = sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT, "%s: NULL buffer on rank %d",
                      what, rank);
  return st;
}

int sb_comm_check_all_reduce(int rank, SbExec *x, const char *what,
                             const void *send, const void *recv,
                             int64_t count) {
  if (count < 0)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "%s: negative count %lld on rank %d", what,
                        (long long)count, rank);
  if (count > 0 && (send == NULL || recv == NULL))
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "%s: NULL buffer on rank %d", what, rank);
  return SB_OK;
}

int sb_comm_check_broadcast(int size, int rank, SbExec *x, const char *what,
                            const void *buf, int64_t count, int root) {
  if (root < 0 || root >= size)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "%s: root %d is not a rank (0..%d)", what, root,
                        size - 1);
  if (count < 0 || (count > 0 && buf == NULL))
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "%s: bad buffer or count %lld on rank %d", what,
                        (long long)count, rank);
  return SB_OK;
}

int sb_comm_check_scatter(int size, int rank, SbExec *x, const char *what,
                          const void *send, const int64_t *offsets,
                          const int64_t *byte_counts, const void *recv,
                          int root, int64_t *extent) {
  *extent = 0;
  int64_t total = 0;
  if (root < 0 || root >= size)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "%s: root %d is not a rank (0..%d)", what, root,
                        size - 1);
  int st = sb_comm_check_counts(size, x, what, byte_counts, &total);
  if (st != SB_OK)
    return st;
  if (offsets == NULL)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT, "%s: NULL offsets", what);
  for (int q = 0; q < size; q++) {
    if (offsets[q] < 0 || offsets[q] > INT64_MAX - byte_counts[q])
      return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                          "%s: bad offset %lld for rank %d", what,
                          (long long)offsets[q], q);
    if (byte_counts[q] > 0 && offsets[q] + byte_counts[q] > *extent)
      *extent = offsets[q] + byte_counts[q];
  }
  if ((byte_counts[rank] > 0 && recv == NULL) ||
      (rank == root && *extent > 0 && send == NULL))
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "%s: NULL buffer on rank %d", what, rank);
  return SB_OK;
}
