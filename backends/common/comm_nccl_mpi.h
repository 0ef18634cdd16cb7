/* SPDX-License-Identifier: MIT */
/* GPU ranks as MPI processes: the data collectives over NCCL, whose unique
 * id MPI carries, and everything the host needs over MPI. */
#ifndef SB_BACKENDS_COMM_NCCL_MPI_H
#define SB_BACKENDS_COMM_NCCL_MPI_H

#include "backends/common/comm.h"
#include "backends/common/ranks.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * An SbProcessCommNewFn (ranks.h); `module` is the SbDeviceModule of the
 * rank's device, which must have a communicator (comm_new). Every process
 * calls it at once: rank 0 makes the id (the module's comm_unique_id), an
 * MPI broadcast over `mpi` hands it to every process, and each makes its
 * one rank of the NCCL communicator (first_rank = its MPI rank, one local
 * rank) on its rank's device. Every step is agreed over MPI (the module's
 * comm_new votes through SbCommSetup's agreement right before and after
 * ncclCommInitRankConfig, so no process enters it unless all are ready,
 * and none waits in it beyond timeout_s), so on failure every process
 * returns the same status, with the failing rank's reason in rank->x.error
 * and that rank in mpi's failed_rank(). timeout_s also bounds every wait
 * in NCCL's collectives (comm_nccl.h).
 *
 * The result owns `mpi` and keeps its lockstep: each data collective
 * (all_gather, reduce_scatter, all_reduce, broadcast, barrier) first checks
 * its arguments and votes over MPI, so that a rank that failed anywhere
 * (a bad argument, an error outside a collective) stops every process
 * before any enters NCCL; then NCCL moves and sums the device buffers.
 * Host collectives, settle and lost_rank are MPI's. After a failed run the
 * NCCL communicator is made anew with a new id (an aborted one cannot be
 * rejoined); if that fails, every later collective fails with the reason.
 */
int sb_comm_nccl_mpi_new(void *module, SbComm *mpi, SbRank *rank,
                         double timeout_s, SbComm **out);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_COMM_NCCL_MPI_H */
