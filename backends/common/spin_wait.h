/* SPDX-License-Identifier: MIT */
/* Polling for a moment before sleeping, where one rank thread waits for
 * another (the rank pool's hand-offs, the loopback barrier). Branch-and-bound
 * makes tens of thousands of short backend calls, each with a hand-off and
 * often a barrier; sleeping on a condition variable costs each of them a
 * futex wake-up and a context switch, where the other thread is usually
 * microseconds away. */
#ifndef SB_BACKENDS_SPIN_WAIT_H
#define SB_BACKENDS_SPIN_WAIT_H

#include <stdint.h>

/* Non-zero when `threads` threads that all run at once fit on the online
 * CPUs: only then is polling worth it. With more threads than CPUs a
 * poller takes the CPU from the very thread it waits for. */
int sb_spin_fits(int threads);

/* Polls until *word != old or *stop is non-zero, for at most about
 * SB_SPIN_NS; returns non-zero when the wait ended that way, 0 when the
 * caller should sleep. The writers of word and stop store them atomically
 * (__atomic_store_n), under their mutex as before. */
int sb_spin_while_equal(const uint64_t *word, uint64_t old, const int *stop);

/* Polls until *count >= target, as above. */
int sb_spin_until_at_least(const int *count, int target);

#endif /* SB_BACKENDS_SPIN_WAIT_H */
