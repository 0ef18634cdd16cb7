/* SPDX-License-Identifier: MIT */
/* The CUDA device module: the CUDA device and, when built with NCCL, the
 * NCCL communicator, for the multi-rank backends' device=cuda. */
#include "config.h"

#include <stdio.h>

#include "backends/common/device_module.h"
#include "backends/common/ranks.h"
#include "backends/cuda/device_cuda.h"

int sb_device_module_get_v2(const SbDeviceModule **out);

#ifdef HAVE_NCCL
static int cuda_comm_new(const unsigned char *id, int size, int first_rank,
                         int n_local, SbDevice *const *devs,
                         const SbCommSetup *setup, SbComm **out, char *error,
                         size_t error_size) {
  *out = NULL;
  if (n_local < 1 || n_local > SB_RANKS_MAX || devs == NULL) {
    snprintf(error, error_size,
             "NCCL communicator: %d local ranks (expected 1..%d)", n_local,
             SB_RANKS_MAX);
    return SB_ERR_INVALID_ARGUMENT;
  }
  int ordinals[SB_RANKS_MAX];
  void *streams[SB_RANKS_MAX];
  for (int i = 0; i < n_local; i++) {
    ordinals[i] = sb_device_cuda_ordinal(devs[i]);
    streams[i] = (void *)sb_device_cuda_stream(devs[i]);
  }
  return sb_comm_nccl_new(id, size, first_rank, n_local, ordinals, streams,
                          setup, out, error, error_size);
}
#endif

static const SbDeviceModule cuda_module = {
    .struct_size = sizeof(SbDeviceModule),
    .name = "cuda",
    .ops = &sb_device_cuda_ops,
    .device_count = sb_device_cuda_count,
#ifdef HAVE_NCCL
    .comm_name = "nccl",
    .comm_unique_id = sb_comm_nccl_unique_id,
    .comm_new = cuda_comm_new,
#else
    .comm_missing = "this build has no NCCL (configure found no nccl.h and "
                    "libnccl; see ./configure --with-nccl)",
#endif
};

int sb_device_module_get_v2(const SbDeviceModule **out) {
  if (out == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  *out = &cuda_module;
  return SB_OK;
}
