/* SPDX-License-Identifier: MIT */
/* The rank pool: the calling thread (rank 0) and persistent worker threads
 * (the other ranks) run one function on every rank at once and report the
 * first failure by rank. */
#include "backends/common/ranks.h"
#include "backends/common/comm_wait.h"
#include "backends/common/spin_wait.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct Worker {
  SbRanks *pool;
  SbRank rank;
  pthread_t thread;
  int started;
  int status; /* of the last run */
} Worker;

struct SbRanks {
  int size;
  const SbDeviceOps *ops;
  SbComm *comm;
  Worker *workers;
  pthread_mutex_t run_lock; /* serialises run() */
  pthread_mutex_t lock;
  pthread_cond_t work; /* a new job (generation) or quit */
  pthread_cond_t done; /* a worker finished its job */
  uint64_t generation;
  int finished;
  int quit;
  SbRankFn fn;
  void *arg;
  long runs; /* run() calls so far, for fault injection */
  int fail_rank;
  long fail_at;
  int local; /* the rank of this process when ranks are processes, or -1 */
  int spin;  /* waiting threads poll before sleeping (spin_wait.h) */
};

static void run_one(Worker *w, SbRankFn fn, void *arg, long run_index) {
  SbRanks *p = w->pool;
  SbRank *r = &w->rank;
  r->error[0] = '\0';
  if (r->index == p->fail_rank && run_index == p->fail_at)
    w->status = sb_exec_fail(&r->x, SB_ERR_OUT_OF_MEMORY,
                             "injected fault (fail_rank=%d fail_at=%ld): "
                             "simulated out of memory",
                             p->fail_rank, p->fail_at);
  else
    w->status = fn(r, p->comm, arg);
  /* The others may be waiting for this rank in a collective. */
  if (w->status != SB_OK)
    p->comm->ops->abort(p->comm, r->index);
}

static void *worker_main(void *data) {
  Worker *w = data;
  SbRanks *p = w->pool;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    if (p->spin && !p->quit && p->generation == seen) {
      pthread_mutex_unlock(&p->lock);
      sb_spin_while_equal(&p->generation, seen, &p->quit);
      pthread_mutex_lock(&p->lock);
    }
    while (!p->quit && p->generation == seen)
      pthread_cond_wait(&p->work, &p->lock);
    if (p->quit)
      break;
    seen = p->generation;
    SbRankFn fn = p->fn;
    void *arg = p->arg;
    long run_index = p->runs;
    pthread_mutex_unlock(&p->lock);
    run_one(w, fn, arg, run_index);
    pthread_mutex_lock(&p->lock);
    if (__atomic_add_fetch(&p->finished, 1, __ATOMIC_RELEASE) == p->size)
      pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

void sb_ranks_destroy(SbRanks *p) {
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->lock);
  __atomic_store_n(&p->quit, 1, __ATOMIC_RELEASE);
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  for (int i = 0; i < p->size; i++)
    if (p->workers[i].started)
      pthread_join(p->workers[i].thread, NULL);
  /* The communicator before the devices: NCCL's queues on their streams. */
  if (p->comm)
    p->comm->ops->destroy(p->comm);
  for (int i = 0; i < p->size; i++) {
    Worker *w = &p->workers[i];
    if (w->rank.dev)
      p->ops->close(w->rank.dev);
    sb_mem_tracker_destroy(&w->rank.mem);
  }
  pthread_cond_destroy(&p->done);
  pthread_cond_destroy(&p->work);
  pthread_mutex_destroy(&p->lock);
  pthread_mutex_destroy(&p->run_lock);
  free(p->workers);
  free(p);
}

/* The pool of `size` ranks with no device, thread or communicator yet:
 * every rank's tracker is initialised (destroy() releases them all, opened
 * or not). NULL, with the reason in error, when out of host memory. */
static SbRanks *pool_alloc(const SbRanksConfig *cfg, int size, char *error,
                           size_t error_size) {
  SbRanks *p = calloc(1, sizeof *p);
  Worker *ws = calloc((size_t)size, sizeof *ws);
  if (p == NULL || ws == NULL) {
    free(p);
    free(ws);
    snprintf(error, error_size, "out of host memory creating %d ranks", size);
    return NULL;
  }
  p->size = size;
  p->ops = cfg->ops;
  p->workers = ws;
  p->local = -1;
  p->fail_rank = cfg->fail_rank;
  p->fail_at = cfg->fail_at;
  pthread_mutex_init(&p->run_lock, NULL);
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->done, NULL);
  for (int i = 0; i < size; i++) {
    sb_mem_tracker_init(&ws[i].rank.mem);
    ws[i].pool = p;
    ws[i].rank.index = i;
  }
  return p;
}

static double timeout_of(const SbRanksConfig *cfg) {
  return cfg->comm_timeout_s > 0 ? cfg->comm_timeout_s
                                 : SB_COMM_TIMEOUT_DEFAULT;
}

int sb_ranks_device_ordinal(int index, int count, const int *devices,
                            int n_devices) {
  if (index < 0)
    index = 0;
  if (devices != NULL && n_devices > 0)
    return devices[index % n_devices];
  return count > 0 ? index % count : 0;
}

/* One rank per MPI process: the pool holds every rank's slot (so that
 * per-rank arrays keep their indices) but opens, and runs, only its own. */
static int ranks_new_processes(const SbRanksConfig *cfg, SbRanks **out,
                               char *error, size_t error_size) {
  SbComm *comm = NULL;
  int st = sb_comm_mpi_new(&comm, error, error_size);
  if (st != SB_OK)
    return st;
  if (cfg->size != 0 && cfg->size != comm->size) {
    snprintf(error, error_size,
             "ranks=%d but the MPI job has %d processes (comm=mpi runs one "
             "rank per process: leave ranks out or match mpirun -np)",
             cfg->size, comm->size);
    comm->ops->destroy(comm);
    return SB_ERR_INVALID_ARGUMENT;
  }
  SbRanks *p = pool_alloc(cfg, comm->size, error, error_size);
  if (p == NULL) {
    comm->ops->destroy(comm);
    return SB_ERR_OUT_OF_MEMORY;
  }
  p->comm = comm;
  p->local = comm->local_rank;
  Worker *ws = p->workers;
  SbRank *r = &ws[p->local].rank;
  r->x = (SbExec){p->ops, NULL, &r->mem, r->error, sizeof r->error};
  char msg[256];
  if (cfg->refusal != NULL) {
    st = sb_exec_fail(&r->x, cfg->refusal_status, "%s", cfg->refusal);
  } else {
    /* The GPUs a process sees are its host's: counted from its rank there. */
    st = p->ops->open(cfg->ordinals ? cfg->ordinals[comm->node_rank] : 0,
                      &r->dev, msg, sizeof msg);
    r->x.dev = r->dev;
    if (st != SB_OK)
      sb_exec_fail(&r->x, st, "cannot open the %s device: %s", p->ops->name,
                   msg);
  }
  /* Whether every process could open its device is itself agreed on. */
  st = comm->ops->settle(comm, p->local, &r->x, st);
  /* The device's own communicator, over MPI (agreed on inside). */
  SbComm *over = NULL;
  if (st == SB_OK && cfg->process_comm_new != NULL)
    st = cfg->process_comm_new(cfg->comm_arg, comm, r, timeout_of(cfg), &over);
  if (st != SB_OK) {
    snprintf(error, error_size, "rank %d: %s", comm->ops->failed_rank(comm),
             r->error);
    sb_ranks_destroy(p);
    return st;
  }
  comm->ops->reset(comm);
  if (over != NULL)
    p->comm = over;
  *out = p;
  return SB_OK;
}

int sb_ranks_new(const SbRanksConfig *cfg, SbRanks **out, char *error,
                 size_t error_size) {
  *out = NULL;
  if (cfg->processes)
    return ranks_new_processes(cfg, out, error, error_size);
  if (cfg->size < 1 || cfg->size > SB_RANKS_MAX) {
    snprintf(error, error_size, "ranks=%d is out of range (1..%d)", cfg->size,
             SB_RANKS_MAX);
    return SB_ERR_INVALID_ARGUMENT;
  }
  SbRanks *p = pool_alloc(cfg, cfg->size, error, error_size);
  if (p == NULL)
    return SB_ERR_OUT_OF_MEMORY;
  Worker *ws = p->workers;
  p->spin = p->size > 1 && sb_spin_fits(p->size);
  /* Devices first: a device's communicator (NCCL) is made over them. */
  int st = SB_OK;
  SbDevice *devs[SB_RANKS_MAX];
  for (int i = 0; i < p->size && st == SB_OK; i++) {
    SbRank *r = &ws[i].rank;
    int ordinal = cfg->ordinals ? cfg->ordinals[i] : 0;
    char msg[512];
    st = p->ops->open(ordinal, &r->dev, msg, sizeof msg);
    if (st != SB_OK)
      snprintf(error, error_size, "rank %d: cannot open %s device %d: %s", i,
               p->ops->name, ordinal, msg);
    r->x = (SbExec){p->ops, r->dev, &r->mem, r->error, sizeof r->error};
    devs[i] = r->dev;
  }
  if (st == SB_OK)
    st = cfg->comm_new
             ? cfg->comm_new(cfg->comm_arg, p->size, devs, timeout_of(cfg),
                             &p->comm, error, error_size)
             : sb_comm_loopback_new(p->size, &p->comm, error, error_size);
  /* Rank 0 runs on the thread that calls sb_ranks_run. */
  for (int i = 1; i < p->size && st == SB_OK; i++) {
    Worker *w = &ws[i];
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
      snprintf(error, error_size, "rank %d: cannot start its thread", i);
      st = SB_ERR_INTERNAL;
      break;
    }
    w->started = 1;
  }
  if (st != SB_OK) {
    sb_ranks_destroy(p);
    return st;
  }
  *out = p;
  return SB_OK;
}

int sb_ranks_size(const SbRanks *p) { return p->size; }

SbRank *sb_ranks_rank(SbRanks *p, int index) {
  return index >= 0 && index < p->size ? &p->workers[index].rank : NULL;
}

SbComm *sb_ranks_comm(SbRanks *p) { return p->comm; }

int sb_ranks_is_local(const SbRanks *p, int index) {
  return index >= 0 && index < p->size && (p->local < 0 || index == p->local);
}

int sb_ranks_local_rank(const SbRanks *p) { return p->local; }

/* The local rank's work, then the verdict every process agrees on. */
static int run_processes(SbRanks *p, SbRankFn fn, void *arg, char *error,
                         size_t error_size) {
  Worker *w = &p->workers[p->local];
  run_one(w, fn, arg, p->runs++);
  int st = p->comm->ops->settle(p->comm, p->local, &w->rank.x, w->status);
  if (st != SB_OK)
    snprintf(error, error_size, "rank %d: %s",
             p->comm->ops->failed_rank(p->comm), w->rank.error);
  p->comm->ops->reset(p->comm);
  return st;
}

/* Rank 0 runs on the calling thread, the others on their workers: one
 * thread hand-off fewer per call, and on a machine with as many cores as
 * ranks no idle caller competing with them. Branch-and-bound makes tens of
 * thousands of these calls, so the hand-off was a quarter of the wall time
 * at two ranks. Device ops never depend on the thread (the CUDA device
 * makes its GPU current on every call). */
int sb_ranks_run(SbRanks *p, SbRankFn fn, void *arg, char *error,
                 size_t error_size) {
  if (p->local >= 0)
    return run_processes(p, fn, arg, error, error_size);
  pthread_mutex_lock(&p->run_lock);
  pthread_mutex_lock(&p->lock);
  p->fn = fn;
  p->arg = arg;
  /* Atomic stores: pollers read these without the lock. */
  __atomic_store_n(&p->finished, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&p->generation, p->generation + 1, __ATOMIC_RELEASE);
  long run_index = p->runs;
  if (p->size > 1)
    pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  run_one(&p->workers[0], fn, arg, run_index);
  if (p->spin)
    sb_spin_until_at_least(&p->finished, p->size - 1);
  pthread_mutex_lock(&p->lock);
  __atomic_add_fetch(&p->finished, 1, __ATOMIC_RELAXED);
  while (p->finished < p->size)
    pthread_cond_wait(&p->done, &p->lock);
  p->runs++;
  pthread_mutex_unlock(&p->lock);

  /* Report the rank that failed first, not one that merely saw the
   * collective abandoned because of it. */
  int culprit = p->comm->ops->failed_rank(p->comm);
  if (culprit < 0 || p->workers[culprit].status == SB_OK) {
    culprit = -1;
    for (int i = 0; i < p->size && culprit < 0; i++)
      if (p->workers[i].status != SB_OK)
        culprit = i;
  }
  p->comm->ops->reset(p->comm);
  int st = SB_OK;
  if (culprit >= 0) {
    st = p->workers[culprit].status;
    const char *why = p->workers[culprit].rank.error;
    snprintf(error, error_size, "rank %d: %s", culprit,
             why[0] ? why : sb_status_to_string(st));
  }
  pthread_mutex_unlock(&p->run_lock);
  return st;
}
