/* SPDX-License-Identifier: MIT */
/* Work split into parts, each part on a thread of its own: the CPU
 * device's large products (gemm_cpu.c) and direct convolutions
 * (conv_cpu.c). Threads are started per call (about 50 us each on the
 * virtual machines measured), so callers split only work that pays for
 * that. */
#ifndef SB_BACKENDS_CPU_PARTS_H
#define SB_BACKENDS_CPU_PARTS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most parts one call runs. */
#define SB_CPU_MAX_PARTS 64

/* Runs run(part) for the n parts of the array `parts` (part_size bytes
 * each, n <= SB_CPU_MAX_PARTS): parts 1 to n-1 on threads of their own,
 * part 0, and any part whose thread cannot be started, on the calling
 * thread. Returns when every part is done. */
void sb_cpu_run_parts(void *parts, size_t part_size, int n,
                      void *(*run)(void *part));

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_CPU_PARTS_H */
