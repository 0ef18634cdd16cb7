/* SPDX-License-Identifier: MIT */
/* SB_CPU_CLONES: marks a hot CPU kernel to be compiled three times, for
 * the build's baseline, x86-64-v3 (AVX2 and FMA) and x86-64-v4 (AVX-512),
 * the copy being picked when the library is loaded. A distribution builds
 * for the x86-64 baseline, which vectorises 4 floats at a time without
 * fused multiply-adds; the machines this runs on nearly all have AVX2, and
 * AVX-512 (32 registers, masks; resnet_2b's CROWN pass took 5-8% less)
 * where they have it. The copies' vector reductions differ in width, so
 * their last bits may differ from one kind of CPU to another; on one
 * machine every rank and thread runs the same copy. */
#ifndef SB_BACKENDS_CPU_CLONES_H
#define SB_BACKENDS_CPU_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define SB_CPU_CLONES                                                          \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef SB_CPU_CLONES
#define SB_CPU_CLONES
#endif

/* SB_CPU_V4: kernels written for AVX-512 alone (target("arch=x86-64-v4"),
 * 16-lane vectors and masks that the compiler would not find in the
 * portable loop), each called only where sb_cpu_has_v4() says the CPU
 * runs them, next to a portable copy; and the few written for AVX2
 * (target("arch=x86-64-v3"), where sb_cpu_has_v3() says so). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target)
#define SB_CPU_V4 1
/* Whether the CPU has what "arch=x86-64-v4" code may use. */
static inline int sb_cpu_has_v4(void) {
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512cd");
}

/* Whether the CPU has what "arch=x86-64-v3" code may use (F16C, MOVBE and
 * LZCNT come with these on every such CPU, and clang cannot test them). */
static inline int sb_cpu_has_v3(void) {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
}
#endif
#endif

#endif /* SB_BACKENDS_CPU_CLONES_H */
