/* SPDX-License-Identifier: MIT */
/* The backends' OpenBLAS: a module installed (and built) beside them,
 * shardbound-openblas.so, that carries OpenBLAS with its symbols hidden
 * and exports only a table of what the CPU device takes from it (why:
 * blas_cpu.c). */
#ifndef SB_BACKENDS_OPENBLAS_MODULE_H
#define SB_BACKENDS_OPENBLAS_MODULE_H

#include <cblas.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SB_OPENBLAS_MODULE_FILE "shardbound-openblas.so"
/* The module's one exported symbol, an SbOpenblasModuleGetFn; its version
 * changes with the table's members. */
#define SB_OPENBLAS_MODULE_SYMBOL "sb_openblas_module_get_v1"

typedef __typeof__(cblas_sgemm) SbCpuSgemmFn;
typedef __typeof__(cblas_sgemv) SbCpuSgemvFn;

typedef struct SbOpenblasModule {
  /* sizeof(SbOpenblasModule) of the module's build. */
  size_t struct_size;
  SbCpuSgemmFn *sgemm;
  SbCpuSgemvFn *sgemv;
  __typeof__(openblas_get_num_threads) *get_num_threads;
  __typeof__(openblas_set_num_threads) *set_num_threads;
  __typeof__(openblas_get_parallel) *get_parallel;
  /* Exported by every OpenBLAS but missing from its headers, so each may
   * be NULL. */
  int (*thread_shutdown)(void);
  void *(*memory_alloc)(int procpos);
  void (*memory_free)(void *buffer);
} SbOpenblasModule;

typedef const SbOpenblasModule *SbOpenblasModuleGetFn(void);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_OPENBLAS_MODULE_H */
