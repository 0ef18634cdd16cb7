/* SPDX-License-Identifier: MIT */
/* Work split into parts, each part on a thread of its own: the CPU
 * device's large products (gemm_cpu.c) and direct convolutions
 * (conv_cpu.c). The threads are kept between calls (cpu_parts.c); handing
 * them a part still costs a wake-up (tens of us on the virtual machines
 * measured), so callers split only work that pays for that. */
#ifndef SB_BACKENDS_CPU_PARTS_H
#define SB_BACKENDS_CPU_PARTS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most parts one call runs. */
#define SB_CPU_MAX_PARTS 64

/* Runs run(part) for the n parts of the array `parts` (part_size bytes
 * each, n <= SB_CPU_MAX_PARTS): part 0 on the calling thread, the others
 * on whichever thread takes them first, the calling thread included (no
 * part may depend on the thread that runs it). Returns when every part is
 * done. */
void sb_cpu_run_parts(void *parts, size_t part_size, int n,
                      void *(*run)(void *part));

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_CPU_PARTS_H */
