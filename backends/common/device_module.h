/* SPDX-License-Identifier: MIT */
/* Device modules: a device (and its own communicator) built as a separate
 * shared object that a multi-rank backend opens only when a user asks for
 * that device, so the backend itself links no GPU library and loads, and
 * runs on the CPU, on machines without one. */
#ifndef SB_BACKENDS_DEVICE_MODULE_H
#define SB_BACKENDS_DEVICE_MODULE_H

#include <stddef.h>

#include "backends/common/comm.h"
#include "backends/common/comm_nccl.h"
#include "backends/common/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The module's one exported symbol, an SbDeviceModuleGetFn; its version
 * changes with the table's members (v2: comm_new takes an SbCommSetup), so
 * that a module of another build is refused instead of called wrongly. */
#define SB_DEVICE_MODULE_SYMBOL "sb_device_module_get_v2"

typedef struct SbDeviceModule {
  /* sizeof(SbDeviceModule) of the module's build; members past it are
   * absent. */
  size_t struct_size;
  const char *name; /* the device kind, as in device=NAME */
  const SbDeviceOps *ops;
  /* How many devices of this kind the process sees: SB_OK with *count >= 1,
   * or a negative status with the reason in error (error_size bytes). */
  int (*device_count)(int *count, char *error, size_t error_size);
  /* The device's own communicator (comm=NAME), or NULL members and, in
   * comm_missing, why this build has none. */
  const char *comm_name;
  const char *comm_missing;
  /* See sb_comm_nccl_unique_id and sb_comm_nccl_new: devs are this
   * process's ranks' devices, opened by ops; setup bounds its waits and,
   * across processes, agrees on each step of its making. */
  int (*comm_unique_id)(unsigned char id[SB_COMM_ID_BYTES], char *error,
                        size_t error_size);
  int (*comm_new)(const unsigned char *id, int size, int first_rank,
                  int n_local, SbDevice *const *devs, const SbCommSetup *setup,
                  SbComm **out, char *error, size_t error_size);
} SbDeviceModule;

typedef int (*SbDeviceModuleGetFn)(const SbDeviceModule **out);

/* Opens shardbound-device-NAME.so from the directory of the shared object
 * that calls this (where the backends are installed and built) and returns
 * its table. SB_OK, or SB_ERR_UNSUPPORTED with the file and the loader's
 * reason in error. A loaded module stays loaded (GPU runtimes do not
 * survive unloading). */
int sb_device_module_load(const char *name, const SbDeviceModule **out,
                          char *error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_DEVICE_MODULE_H */
