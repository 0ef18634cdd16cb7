/* SPDX-License-Identifier: MIT */
#include "backends/common/spin_wait.h"

#include <time.h>
#include <unistd.h>

/* Longer than most gaps between two backend calls of branch-and-bound
 * (tens of microseconds), far shorter than a call worth sleeping through.
 * On the 2-core bench machine 200 us beat 50 us and 1 ms, and beat not
 * polling at all in every one of three interleaved rounds (docs/
 * verification.md). */
#define SB_SPIN_NS 200000

int sb_spin_fits(int threads) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > 0 && threads <= cpus;
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Polls the condition `done`, reading the clock every 64 tries. */
#define SPIN(done)                                                             \
  do {                                                                         \
    int64_t end = now_ns() + SB_SPIN_NS;                                       \
    for (unsigned i = 1;; i++) {                                               \
      if (done)                                                                \
        return 1;                                                              \
      cpu_relax();                                                             \
      if (i % 64 == 0 && now_ns() > end)                                       \
        return 0;                                                              \
    }                                                                          \
  } while (0)

int sb_spin_while_equal(const uint64_t *word, uint64_t old, const int *stop) {
  SPIN(__atomic_load_n(word, __ATOMIC_ACQUIRE) != old ||
       __atomic_load_n(stop, __ATOMIC_ACQUIRE));
}

int sb_spin_until_at_least(const int *count, int target) {
  SPIN(__atomic_load_n(count, __ATOMIC_ACQUIRE) >= target);
}
