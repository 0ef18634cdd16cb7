/* SPDX-License-Identifier: MIT */
#include "backends/common/cpu_parts.h"

#include <pthread.h>
#include <signal.h>
#include <stddef.h>

/*
 * The threads that run parts 1 to n-1 are kept between calls. Starting a
 * thread costs about 50 us on the virtual machines measured, and a conv
 * network's branch-and-bound makes thousands of calls (7% of its time went
 * into starting threads on 2 cores; a 16-core machine would start 15 per
 * call). Waking a kept thread costs about half as much (a condition
 * variable's round trip took 24-34 us there).
 *
 * One call uses the pool at a time: a call that finds it in use (ranks on
 * threads calling at once) starts threads of its own, as every call did
 * before. Which thread runs a part does not change what it computes: each
 * part writes its own slice.
 */
typedef struct {
  pthread_mutex_t in_use; /* held by the call that uses the pool */
  pthread_mutex_t lock;   /* guards everything below */
  pthread_cond_t wake;    /* workers: a job was posted, or stop */
  pthread_cond_t done;    /* the caller: the job's last part finished */
  int workers;
  int stopping;
  pthread_t thread[SB_CPU_MAX_PARTS];
  /* The job; run is NULL between jobs. */
  void *(*run)(void *part);
  char *parts;
  size_t part_size;
  int n;
  int next;       /* the first part nobody has taken */
  int unfinished; /* parts not yet finished */
} Pool;

static Pool pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
                    PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};

/* With pool.lock held: takes and runs parts of the job until none is
 * left, and tells the caller when the last one finishes. */
static void run_untaken_parts(void) {
  while (pool.run != NULL && pool.next < pool.n) {
    void *(*run)(void *) = pool.run;
    void *part = pool.parts + (size_t)pool.next++ * pool.part_size;
    pthread_mutex_unlock(&pool.lock);
    run(part);
    pthread_mutex_lock(&pool.lock);
    if (--pool.unfinished == 0)
      pthread_cond_signal(&pool.done);
  }
}

static void *worker(void *unused) {
  (void)unused;
  pthread_mutex_lock(&pool.lock);
  while (!pool.stopping) {
    run_untaken_parts();
    if (!pool.stopping)
      pthread_cond_wait(&pool.wake, &pool.lock);
  }
  pthread_mutex_unlock(&pool.lock);
  return NULL;
}

/* With pool.lock held: starts workers up to `wanted` (fewer if a thread
 * cannot be started: the parts are then taken by the others). Workers
 * block the signals that come from outside, so that a host's handlers run
 * on its own threads; a fault in a part is still reported where it
 * happens. */
static void start_workers(int wanted) {
  static const int faults[] = {SIGSEGV, SIGBUS,  SIGFPE,
                               SIGILL,  SIGTRAP, SIGABRT};
  sigset_t blocked, old;
  sigfillset(&blocked);
  for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
    sigdelset(&blocked, faults[i]);
  pthread_sigmask(SIG_SETMASK, &blocked, &old);
  while (pool.workers < wanted &&
         pthread_create(&pool.thread[pool.workers], NULL, worker, NULL) == 0)
    pool.workers++;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* A child of fork has none of the parent's workers, and may have copied
 * the locks held: it starts with an empty pool. */
static void reset_in_child(void) {
  pthread_mutex_init(&pool.in_use, NULL);
  pthread_mutex_init(&pool.lock, NULL);
  pthread_cond_init(&pool.wake, NULL);
  pthread_cond_init(&pool.done, NULL);
  pool.workers = 0;
  pool.stopping = 0;
  pool.run = NULL;
}

static void register_fork_handler(void) {
  pthread_atfork(NULL, NULL, reset_in_child);
}

/* When the backend is unloaded, or the process ends: no worker may be
 * left running this library's code once it is unmapped. */
__attribute__((destructor)) static void stop_workers(void) {
  pthread_mutex_lock(&pool.lock);
  pool.stopping = 1;
  pthread_cond_broadcast(&pool.wake);
  int workers = pool.workers;
  pool.workers = 0;
  pthread_mutex_unlock(&pool.lock);
  for (int t = 0; t < workers; t++)
    pthread_join(pool.thread[t], NULL);
}

static void run_on_new_threads(char *parts, size_t part_size, int n,
                               void *(*run)(void *part)) {
  pthread_t thread[SB_CPU_MAX_PARTS];
  int started[SB_CPU_MAX_PARTS] = {0};

  for (int t = 1; t < n; t++)
    started[t] =
        pthread_create(&thread[t], NULL, run, parts + t * part_size) == 0;
  for (int t = 0; t < n; t++)
    if (!started[t])
      run(parts + t * part_size);
  for (int t = 1; t < n; t++)
    if (started[t])
      pthread_join(thread[t], NULL);
}

void sb_cpu_run_parts(void *parts, size_t part_size, int n,
                      void *(*run)(void *part)) {
  static pthread_once_t fork_handler = PTHREAD_ONCE_INIT;

  if (n <= 1) {
    if (n == 1)
      run(parts);
    return;
  }
  if (pthread_mutex_trylock(&pool.in_use) != 0) {
    run_on_new_threads(parts, part_size, n, run);
    return;
  }
  pthread_once(&fork_handler, register_fork_handler);
  pthread_mutex_lock(&pool.lock);
  start_workers(n - 1);
  pool.run = run;
  pool.parts = parts;
  pool.part_size = part_size;
  pool.n = n;
  pool.next = 1; /* part 0 is the caller's */
  pool.unfinished = n;
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);

  run(parts);
  pthread_mutex_lock(&pool.lock);
  pool.unfinished--;
  run_untaken_parts();
  while (pool.unfinished > 0)
    pthread_cond_wait(&pool.done, &pool.lock);
  pool.run = NULL;
  pthread_mutex_unlock(&pool.lock);
  pthread_mutex_unlock(&pool.in_use);
}
