/* SPDX-License-Identifier: MIT */
/* The backends' OpenBLAS module (openblas_module.h). Linked with
 * OpenBLAS's static archive where configure finds one, else with its
 * shared library; either way it exports only the table below. */
#include "config.h"

#include "backends/common/openblas_module.h"

/* Weak: an OpenBLAS without them still links, and they are NULL. */
extern int blas_thread_shutdown_(void) __attribute__((weak));
extern void *blas_memory_alloc(int procpos) __attribute__((weak));
extern void blas_memory_free(void *buffer) __attribute__((weak));

static const SbOpenblasModule module = {
    .struct_size = sizeof(SbOpenblasModule),
    .sgemm = cblas_sgemm,
    .sgemv = cblas_sgemv,
    .get_num_threads = openblas_get_num_threads,
    .set_num_threads = openblas_set_num_threads,
    .get_parallel = openblas_get_parallel,
    .thread_shutdown = blas_thread_shutdown_,
    .memory_alloc = blas_memory_alloc,
    .memory_free = blas_memory_free,
};

const SbOpenblasModule *sb_openblas_module_get_v1(void);
const SbOpenblasModule *sb_openblas_module_get_v1(void) { return &module; }
