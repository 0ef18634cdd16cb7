/* SPDX-License-Identifier: MIT */
/* The context, options, memory statistics, and the tensor and layer entry
 * points' plumbing that every multi-rank backend exposes the same way. */
#include "config.h"

#include "backends/common/rank_backend.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backends/common/comm_nccl_mpi.h"
#include "backends/common/device_cpu.h"
#include "backends/common/device_module.h"
#include "backends/common/rank_checks.h"
#include "backends/common/single_backend.h"

int sb_rank_fail(sb_context *ctx, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
  va_end(ap);
  return status;
}

typedef struct {
  const sb_context *ctx;
  SbRankFn fn;
  void *arg;
} ZeroThenRunJob;

/* Zero-fills a new tensor's buffer b on rank x, as tensor_create promises. */
static int zero_new_buffer(SbExec *x, SbBuffer *b) {
  int st = b->bytes ? x->ops->zero(x->dev, b->ptr, b->bytes) : SB_OK;
  return st == SB_OK ? st
                     : sb_exec_device_fail(x, st, "zero-filling a new tensor");
}

static int zero_then_run(SbRank *rank, SbComm *comm, void *arg) {
  ZeroThenRunJob *j = arg;
  for (size_t i = 0; i < j->ctx->n_unzeroed; i++) {
    int st = zero_new_buffer(&rank->x, &j->ctx->unzeroed[i][rank->index]);
    if (st != SB_OK)
      return st;
  }
  return j->fn(rank, comm, j->arg);
}

int sb_rank_run(sb_context *ctx, SbRankFn fn, void *arg) {
  if (ctx->n_unzeroed == 0)
    return sb_ranks_run(ctx->ranks, fn, arg, ctx->error, sizeof ctx->error);
  /* Whether or not the run succeeds the new tensors are not zeroed twice:
   * after a failure their content is as undefined as the run's results. */
  ZeroThenRunJob job = {ctx, fn, arg};
  int st = sb_ranks_run(ctx->ranks, zero_then_run, &job, ctx->error,
                        sizeof ctx->error);
  ctx->n_unzeroed = 0;
  return st;
}

static const char known_options[] =
    "ranks, device, devices, comm, comm_timeout, fail_rank, fail_at";

/* What the options ask for, before any device is touched. */
typedef struct RankOptions {
  long ranks, fail_rank, fail_at;
  double comm_timeout; /* seconds; 0 until given */
  int cuda;            /* device=cuda */
  int nccl;            /* comm=nccl */
  int processes;       /* comm=mpi: one rank per MPI process */
  const char *devices; /* the devices= text, or NULL */
  int n_devices;
  int devices_list[SB_RANKS_MAX];
} RankOptions;

/* "0,1,3": 1..SB_RANKS_MAX decimal device numbers; 0 when malformed. */
static int parse_device_list(const char *s, int *list, int *n) {
  *n = 0;
  if (s == NULL || *s == '\0')
    return 0;
  for (const char *p = s;;) {
    char item[16];
    size_t len = strcspn(p, ",");
    long v;
    if (len == 0 || len >= sizeof item || *n == SB_RANKS_MAX)
      return 0;
    memcpy(item, p, len);
    item[len] = '\0';
    if (!sb_option_parse_long(item, 0, INT_MAX, &v))
      return 0;
    list[(*n)++] = (int)v;
    if (p[len] == '\0')
      return 1;
    p += len + 1;
  }
}

/* A number of seconds in (0, 1e6]: "60", "0.5". */
static int parse_seconds(const char *s, double *out) {
  /* strtod would skip leading blanks and take "inf" or "nan". */
  if (s == NULL || !((*s >= '0' && *s <= '9') || *s == '.'))
    return 0;
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v > 0) || v > 1e6)
    return 0;
  *out = v;
  return 1;
}

/* Reads and checks every option (syntax and combinations, no device yet);
 * on failure writes the reason into error. */
static int parse_options(const char *be, const sb_option *options,
                         size_t n_options, RankOptions *o, char *error,
                         size_t error_size) {
  /* ranks stays 0 unless given: with comm=mpi the job's size is only known
   * once MPI is up, and sb_ranks_new checks both; otherwise it becomes 2. */
  *o = (RankOptions){.ranks = 0, .fail_rank = -1, .fail_at = -1};
  for (size_t i = 0; i < n_options; i++) {
    const char *key = options[i].key, *value = options[i].value;
    const char *v = value ? value : "(null)";
    if (key == NULL) {
      snprintf(error, error_size, "%s: option %zu has no key", be, i);
      return SB_ERR_INVALID_ARGUMENT;
    }
    if (strcmp(key, "ranks") == 0) {
      if (!sb_option_parse_long(value, 1, SB_RANKS_MAX, &o->ranks)) {
        snprintf(error, error_size,
                 "%s: option ranks='%s' is not a rank count (expected an "
                 "integer 1..%d)",
                 be, v, SB_RANKS_MAX);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else if (strcmp(key, "device") == 0) {
      if (value != NULL && strcmp(value, "cpu") == 0) {
        o->cuda = 0;
      } else if (value != NULL && strcmp(value, "cuda") == 0) {
        o->cuda = 1;
      } else {
        snprintf(error, error_size,
                 "%s: option device='%s' is not a device kind (expected "
                 "cpu or cuda)",
                 be, v);
        return SB_ERR_UNSUPPORTED;
      }
    } else if (strcmp(key, "devices") == 0) {
      if (!parse_device_list(value, o->devices_list, &o->n_devices)) {
        snprintf(error, error_size,
                 "%s: option devices='%s' is not a list of GPU numbers "
                 "(expected up to %d integers >= 0, e.g. devices=0,1)",
                 be, v, SB_RANKS_MAX);
        return SB_ERR_INVALID_ARGUMENT;
      }
      o->devices = value;
    } else if (strcmp(key, "comm") == 0) {
      if (value != NULL && strcmp(value, "loopback") == 0) {
        o->nccl = 0, o->processes = 0;
      } else if (value != NULL && strcmp(value, "nccl") == 0) {
        o->nccl = 1, o->processes = 0;
      } else if (value != NULL && strcmp(value, "mpi") == 0) {
        o->nccl = 0, o->processes = 1;
      } else {
        snprintf(error, error_size,
                 "%s: option comm='%s' is not a communicator (expected "
                 "loopback, nccl or mpi)",
                 be, v);
        return SB_ERR_UNSUPPORTED;
      }
    } else if (strcmp(key, "comm_timeout") == 0) {
      if (!parse_seconds(value, &o->comm_timeout)) {
        snprintf(error, error_size,
                 "%s: option comm_timeout='%s' is not a number of seconds "
                 "(expected a number > 0 and <= 1e6, e.g. comm_timeout=60)",
                 be, v);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else if (strcmp(key, "fail_rank") == 0) {
      if (!sb_option_parse_long(value, 0, SB_RANKS_MAX - 1, &o->fail_rank)) {
        snprintf(error, error_size,
                 "%s: option fail_rank='%s' is not a rank index", be, v);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else if (strcmp(key, "fail_at") == 0) {
      if (!sb_option_parse_long(value, 0, LONG_MAX, &o->fail_at)) {
        snprintf(error, error_size,
                 "%s: option fail_at='%s' is not a call number (integer "
                 ">= 0)",
                 be, v);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else {
      snprintf(error, error_size,
               "%s: unknown option '%s' (this backend knows: %s)", be, key,
               known_options);
      return SB_ERR_INVALID_ARGUMENT;
    }
  }
  if ((o->fail_rank >= 0) != (o->fail_at >= 0)) {
    snprintf(error, error_size,
             "%s: fault injection needs both fail_rank and fail_at", be);
    return SB_ERR_INVALID_ARGUMENT;
  }
  if (!o->processes && o->ranks == 0)
    o->ranks = 2;
  if (o->ranks > 0 && o->fail_rank >= o->ranks) {
    snprintf(error, error_size, "%s: fail_rank=%ld names no rank (ranks=%ld)",
             be, o->fail_rank, o->ranks);
    return SB_ERR_INVALID_ARGUMENT;
  }
  if (o->devices != NULL && !o->cuda) {
    snprintf(error, error_size,
             "%s: option devices='%s' needs device=cuda (cpu ranks all run "
             "on the host)",
             be, o->devices);
    return SB_ERR_INVALID_ARGUMENT;
  }
  if (o->nccl && !o->cuda) {
    snprintf(error, error_size,
             "%s: option comm='nccl' needs device=cuda (NCCL moves GPU "
             "memory; cpu ranks use comm=loopback)",
             be);
    return SB_ERR_UNSUPPORTED;
  }
  return SB_OK;
}

#ifdef HAVE_CUDA
/* The pool's NCCL communicator, all ranks in this process. */
static int nccl_comm_new(void *module, int size, SbDevice *const *devs,
                         double timeout_s, SbComm **out, char *error,
                         size_t error_size) {
  const SbDeviceModule *m = module;
  SbCommSetup setup = {timeout_s, NULL, NULL};
  return m->comm_new(NULL, size, 0, size, devs, &setup, out, error, error_size);
}
#endif

/* device=cuda: the CUDA module, each rank's GPU (sb_ranks_device_ordinal:
 * devices[r mod n], else r mod the GPU count, r being the rank, or with
 * comm=mpi the process's rank on its host) and, with comm=nccl, its
 * communicator (with comm=mpi, NCCL between the processes). Touches CUDA
 * only here, so a cpu context never initialises it. */
static int configure_cuda(const char *be, const RankOptions *o,
                          SbRanksConfig *cfg, int *ordinals, char *error,
                          size_t error_size) {
  char why[512];
#ifndef HAVE_CUDA
  (void)o, (void)cfg, (void)ordinals, (void)why;
  snprintf(error, error_size,
           "%s: option device='cuda' is not available: this build has no "
           "CUDA support (configure found no nvcc; see ./configure "
           "--with-cuda)",
           be);
  return SB_ERR_UNSUPPORTED;
#else
  const SbDeviceModule *m = NULL;
  int st = sb_device_module_load("cuda", &m, why, sizeof why);
  if (st != SB_OK) {
    snprintf(error, error_size, "%s: option device='cuda' is not available: %s",
             be, why);
    return st;
  }
  int count = 0;
  if ((st = m->device_count(&count, why, sizeof why)) != SB_OK) {
    snprintf(error, error_size, "%s: option device='cuda' is not available: %s",
             be, why);
    return st;
  }
  for (int i = 0; i < o->n_devices; i++)
    if (o->devices_list[i] >= count) {
      snprintf(error, error_size,
               "%s: option devices='%s' names cuda device %d, but %d "
               "device(s) are visible (0..%d)",
               be, o->devices, o->devices_list[i], count, count - 1);
      return SB_ERR_INVALID_ARGUMENT;
    }
  /* comm=mpi: a process's place on its host is not known before MPI is
   * up, so every possible one gets its GPU. */
  long n_ordinals = o->ranks > 0 && !o->processes ? o->ranks : SB_RANKS_MAX;
  for (long r = 0; r < n_ordinals; r++)
    ordinals[r] =
        sb_ranks_device_ordinal((int)r, count, o->devices_list, o->n_devices);
  cfg->ops = m->ops;
  cfg->ordinals = ordinals;
  /* comm=mpi: MPI cannot read GPU memory, so the data goes over NCCL,
   * bootstrapped by MPI. */
  if (o->processes) {
    if (m->comm_new == NULL) {
      snprintf(error, error_size,
               "%s: options comm='mpi' and device='cuda' need NCCL between "
               "the processes' GPUs, which is not available: %s",
               be, m->comm_missing ? m->comm_missing : "no NCCL in this build");
      return SB_ERR_UNSUPPORTED;
    }
    cfg->process_comm_new = sb_comm_nccl_mpi_new;
    cfg->comm_arg = (void *)m;
    return SB_OK;
  }
  if (!o->nccl)
    return SB_OK;
  if (m->comm_new == NULL) {
    snprintf(error, error_size, "%s: option comm='nccl' is not available: %s",
             be, m->comm_missing ? m->comm_missing : "no NCCL in this build");
    return SB_ERR_UNSUPPORTED;
  }
  /* NCCL refuses two ranks of one communicator on one GPU. */
  for (long r = 0; r < o->ranks; r++)
    for (long q = 0; q < r; q++)
      if (ordinals[q] == ordinals[r]) {
        snprintf(error, error_size,
                 "%s: option comm='nccl' needs one GPU per rank, but ranks "
                 "%ld and %ld would share cuda device %d (%d visible; "
                 "comm=loopback lets ranks share a GPU)",
                 be, q, r, ordinals[r], count);
        return SB_ERR_INVALID_ARGUMENT;
      }
  cfg->comm_new = nccl_comm_new;
  cfg->comm_arg = (void *)m;
  return SB_OK;
#endif
}

int sb_rank_context_create(const char *be, const char *split_rule,
                           const sb_option *options, size_t n_options,
                           sb_context **out, char *error, size_t error_size) {
  char scratch[8];
  if (error == NULL || error_size == 0) {
    error = scratch;
    error_size = sizeof scratch;
  }
  error[0] = '\0';
  int check =
      sb_context_create_check(be, options, n_options, out, error, error_size);
  if (check != SB_OK)
    return check;
  RankOptions o;
  int st = parse_options(be, options, n_options, &o, error, error_size);
  if (st != SB_OK)
    return st;
  SbRanksConfig cfg = {(int)o.ranks, &sb_device_cpu_ops, (int)o.fail_rank,
                       o.fail_at};
  cfg.processes = o.processes;
  cfg.comm_timeout_s = o.comm_timeout;
  int ordinals[SB_RANKS_MAX];
  if (o.cuda && (st = configure_cuda(be, &o, &cfg, ordinals, error,
                                     error_size)) != SB_OK) {
    if (!o.processes)
      return st;
    /* Under mpirun another process may see a GPU and wait for this one:
     * the refusal is agreed on once MPI is up (reported as "be: rank R:
     * reason", so without this message's own "be: "). */
    size_t skip = strlen(be);
    cfg.refusal = strncmp(error, be, skip) == 0 && error[skip] == ':'
                      ? error + skip + 2
                      : error;
    cfg.refusal_status = st;
  }
  sb_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    snprintf(error, error_size, "%s: out of host memory creating a context",
             be);
    return SB_ERR_OUT_OF_MEMORY;
  }
  char msg[768];
  st = sb_ranks_new(&cfg, &ctx->ranks, msg, sizeof msg);
  if (st != SB_OK) {
    snprintf(error, error_size, "%s: %s", be, msg);
    free(ctx);
    return st;
  }
  ctx->size = sb_ranks_size(ctx->ranks);
  ctx->split_rule = split_rule;
  if (cfg.fail_rank >= ctx->size) {
    snprintf(error, error_size, "%s: fail_rank=%d names no rank (ranks=%d)", be,
             cfg.fail_rank, ctx->size);
    sb_ranks_destroy(ctx->ranks);
    free(ctx);
    return SB_ERR_INVALID_ARGUMENT;
  }
  *out = ctx;
  return SB_OK;
}

void sb_rank_context_destroy(sb_context *ctx) {
  if (ctx == NULL)
    return;
  sb_ranks_destroy(ctx->ranks);
  free(ctx->unzeroed);
  free(ctx);
}

const char *sb_rank_context_last_error(const sb_context *ctx) {
  return ctx ? ctx->error : "no context";
}

int sb_rank_context_size(const sb_context *ctx) { return ctx ? ctx->size : 1; }

int sb_rank_memory_mark_baseline(sb_context *ctx) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  for (int r = 0; r < ctx->size; r++)
    if (sb_ranks_is_local(ctx->ranks, r))
      sb_mem_tracker_mark_baseline(&sb_ranks_rank(ctx->ranks, r)->mem);
  return SB_OK;
}

int sb_rank_memory_reset_peak(sb_context *ctx) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  for (int r = 0; r < ctx->size; r++)
    if (sb_ranks_is_local(ctx->ranks, r))
      sb_mem_tracker_reset_peak(&sb_ranks_rank(ctx->ranks, r)->mem);
  return SB_OK;
}

typedef struct {
  int rank;
  sb_memory_stats_v1 stats;
} StatsJob;

static int stats_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  StatsJob *j = arg;
  if (rank->index == j->rank) {
    sb_mem_tracker_snapshot(&rank->mem, (uint32_t)j->rank, &j->stats);
    j->stats.device_used_bytes = rank->x.ops->used_bytes(rank->dev);
  }
  return comm->ops->broadcast_host(comm, rank->index, &rank->x, &j->stats,
                                   sizeof j->stats, j->rank);
}

int sb_rank_memory_stats(sb_context *ctx, int rank, sb_memory_stats_v1 *out) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (out == NULL)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "memory_stats: NULL output");
  if (rank < 0 || rank >= ctx->size)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "memory_stats: rank %d does not exist (this context "
                        "has %d ranks)",
                        rank, ctx->size);
  /* The figures of the process that runs the rank, sent to every process
   * (with threads, that is this one and the broadcast copies nothing). */
  StatsJob job = {rank, {0}};
  job.stats.struct_size = sizeof job.stats;
  int st = sb_rank_run(ctx, stats_on_rank, &job);
  if (st != SB_OK)
    return st;
  size_t n =
      out->struct_size < sizeof job.stats ? out->struct_size : sizeof job.stats;
  size_t skip = sizeof job.stats.struct_size;
  if (n > skip)
    memcpy((char *)out + skip, (const char *)&job.stats + skip, n - skip);
  return SB_OK;
}

int sb_rank_process_info(const sb_context *ctx, int32_t *index,
                         int32_t *count) {
  if (ctx == NULL || index == NULL || count == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  int local = sb_ranks_local_rank(ctx->ranks);
  *index = local < 0 ? 0 : local;
  *count = local < 0 ? 1 : ctx->size;
  return SB_OK;
}

typedef struct {
  void *buf;
  size_t bytes;
} HostBroadcastJob;

static int broadcast_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  HostBroadcastJob *j = arg;
  return comm->ops->broadcast_host(comm, rank->index, &rank->x, j->buf,
                                   j->bytes, 0);
}

int sb_rank_broadcast_host(sb_context *ctx, void *buf, size_t bytes) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (buf == NULL && bytes > 0)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "broadcast_host: NULL buffer");
  /* Threads share the caller's buffer: nothing to send. */
  if (sb_ranks_local_rank(ctx->ranks) < 0)
    return SB_OK;
  HostBroadcastJob job = {buf, bytes};
  return sb_rank_run(ctx, broadcast_on_rank, &job);
}

int32_t sb_rank_lost_rank(const sb_context *ctx) {
  if (ctx == NULL || sb_ranks_local_rank(ctx->ranks) < 0)
    return -1;
  SbComm *comm = sb_ranks_comm(ctx->ranks);
  return comm->ops->lost_rank ? comm->ops->lost_rank(comm) : -1;
}

/* The checks of tensor_create's arguments; *numel gets the element count. */
static int tensor_check_shape(sb_context *ctx, int32_t category, int32_t ndim,
                              const int64_t *shape, sb_tensor **out,
                              int64_t *numel) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (out == NULL)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "tensor_create: NULL output pointer");
  *out = NULL;
  if (category < 0 || category >= SB_MEM_CATEGORY_COUNT)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "tensor_create: invalid memory category %d (valid "
                        "0..%d)",
                        (int)category, SB_MEM_CATEGORY_COUNT - 1);
  if (ndim < 1 || ndim > 4 || shape == NULL)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "tensor_create: ndim %d must be 1..4 with a shape",
                        (int)ndim);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                          "tensor_create: dimension %d is negative (%lld)", i,
                          (long long)shape[i]);
    if (shape[i] > 0 && n > INT64_MAX / (int64_t)sizeof(float) / shape[i])
      return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                          "tensor_create: shape overflows the addressable "
                          "size");
    n *= shape[i];
  }
  *numel = n;
  return SB_OK;
}

int sb_rank_tensor_new(sb_context *ctx, int32_t category, int32_t ndim,
                       const int64_t *shape, sb_tensor **out, size_t size,
                       sb_tensor **t) {
  int64_t numel = 0;
  int st = tensor_check_shape(ctx, category, ndim, shape, out, &numel);
  void *obj, *bufs;
  if (st == SB_OK)
    st = sb_rank_calloc_parts(ctx, "tensor_create", size, sizeof(SbBuffer),
                              &obj, &bufs);
  if (st != SB_OK)
    return st;
  /* The head is the struct's first member (SbRankTensorHead). */
  SbRankTensorHead *h = obj;
  h->ndim = ndim;
  memcpy(h->shape, shape, (size_t)ndim * sizeof *shape);
  h->numel = numel;
  h->buf = bufs;
  *t = obj;
  return SB_OK;
}

/* Frees each local rank's buffer on the calling thread: freeing cannot fail,
 * so it needs neither the rank's own thread nor the processes' agreement,
 * and waking the ranks for it cost more than the work (half of
 * branch-and-bound's backend calls are creating and freeing tensors). The
 * ranks are idle between calls and a context serves one thread at a time,
 * so their trackers are not touched concurrently. */
static void free_buffers_here(sb_context *ctx, SbBuffer *bufs) {
  for (int r = 0; r < ctx->size; r++)
    if (sb_ranks_is_local(ctx->ranks, r))
      sb_exec_free(&sb_ranks_rank(ctx->ranks, r)->x, &bufs[r]);
}

void sb_rank_tensor_free(sb_context *ctx, sb_tensor *t) {
  if (ctx == NULL || t == NULL)
    return;
  SbBuffer *bufs = sb_rank_tensor_head(t)->buf;
  for (size_t i = 0; i < ctx->n_unzeroed; i++)
    if (ctx->unzeroed[i] == bufs) {
      ctx->unzeroed[i] = ctx->unzeroed[--ctx->n_unzeroed];
      break;
    }
  free_buffers_here(ctx, bufs);
  free(bufs);
  free(t);
}

int sb_rank_calloc_parts(sb_context *ctx, const char *fn, size_t size,
                         size_t part, void **obj, void **parts) {
  *obj = calloc(1, size);
  *parts = calloc((size_t)ctx->size, part);
  if (*obj == NULL || *parts == NULL) {
    free(*obj);
    free(*parts);
    *obj = *parts = NULL;
    return sb_rank_fail(ctx, SB_ERR_OUT_OF_MEMORY, "%s: out of host memory",
                        fn);
  }
  return SB_OK;
}

/* Freeing runs on the ranks, which may overwrite ctx->error: the message of
 * the failure that led to it is put back afterwards. */
#define KEEPING_ERROR(ctx, cleanup)                                            \
  do {                                                                         \
    char keep_[sizeof(ctx)->error];                                            \
    memcpy(keep_, (ctx)->error, sizeof keep_);                                 \
    cleanup;                                                                   \
    memcpy((ctx)->error, keep_, sizeof keep_);                                 \
  } while (0)

typedef struct {
  const sb_context *ctx;
  int32_t category;
  SbRankFloatsFn floats_of;
  sb_tensor *t;
} AllocJob;

static int alloc_zeroed_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  (void)comm;
  AllocJob *j = arg;
  SbExec *x = &rank->x;
  SbBuffer *b = &sb_rank_tensor_head(j->t)->buf[rank->index];
  int st =
      sb_exec_alloc(x, j->category, j->floats_of(j->ctx, j->t, rank->index), b);
  return st == SB_OK ? zero_new_buffer(x, b) : st;
}

/* With thread ranks every rank's buffer is allocated on the calling thread
 * (as free_buffers_here frees them), so a failure is still this call's, and
 * each rank zero-fills its own at the start of the next run, in parallel.
 * Processes allocate in a run, so that they agree on the outcome. */
static int alloc_here(sb_context *ctx, AllocJob *job) {
  SbBuffer *bufs = sb_rank_tensor_head(job->t)->buf;
  for (int r = 0; r < ctx->size; r++) {
    SbRank *rank = sb_ranks_rank(ctx->ranks, r);
    rank->error[0] = '\0';
    int st = sb_exec_alloc(&rank->x, job->category,
                           job->floats_of(ctx, job->t, r), &bufs[r]);
    if (st != SB_OK)
      return sb_rank_fail(ctx, st, "rank %d: %s", r, rank->error);
  }
  if (ctx->n_unzeroed == ctx->cap_unzeroed) {
    size_t cap = ctx->cap_unzeroed ? 2 * ctx->cap_unzeroed : 16;
    SbBuffer **grown = realloc(ctx->unzeroed, cap * sizeof *grown);
    if (grown == NULL)
      return sb_rank_fail(ctx, SB_ERR_OUT_OF_MEMORY,
                          "tensor_create: out of host memory");
    ctx->unzeroed = grown;
    ctx->cap_unzeroed = cap;
  }
  ctx->unzeroed[ctx->n_unzeroed++] = bufs;
  return SB_OK;
}

int sb_rank_tensor_finish(sb_context *ctx, int32_t category,
                          SbRankFloatsFn floats_of, sb_tensor *t,
                          sb_tensor **out) {
  AllocJob job = {ctx, category, floats_of, t};
  int st = sb_ranks_local_rank(ctx->ranks) < 0
               ? alloc_here(ctx, &job)
               : sb_rank_run(ctx, alloc_zeroed_on_rank, &job);
  if (st == SB_OK)
    *out = t;
  else
    sb_rank_tensor_free(ctx, t);
  return st;
}

int sb_rank_layer_finish(sb_context *ctx, SbRankFn make, void *job, sb_layer *l,
                         void (*layer_free)(sb_context *, sb_layer *),
                         sb_layer **out) {
  int st = sb_rank_run(ctx, make, job);
  if (st == SB_OK)
    *out = l;
  else
    KEEPING_ERROR(ctx, layer_free(ctx, l));
  return st;
}

int sb_rank_tensor_check_range(sb_context *ctx, const char *fn, int has_tensor,
                               int64_t numel, int64_t offset, int64_t count,
                               int32_t dtype, const void *host) {
  if (!has_tensor)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL tensor", fn);
  if (dtype != SB_DTYPE_F32 && dtype != SB_DTYPE_F64)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "%s: unknown dtype %d (0 = f32, 1 = f64)", fn,
                        (int)dtype);
  if (offset < 0 || count < 0 || offset > numel || count > numel - offset)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "%s: elements [%lld, %lld) lie outside the tensor of "
                        "%lld elements",
                        fn, (long long)offset, (long long)(offset + count),
                        (long long)numel);
  if (host == NULL && count > 0)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL host buffer",
                        fn);
  return SB_OK;
}

static int tensor_copy(sb_context *ctx, const char *fn, SbRankCopyJob *job,
                       SbRankFn copy) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  const sb_tensor *t = job->t;
  int st = sb_rank_tensor_check_range(
      ctx, fn, t != NULL, t ? sb_rank_tensor_head(t)->numel : 0, job->offset,
      job->count, job->dtype, job->dst ? job->dst : job->src);
  if (st != SB_OK || job->count == 0)
    return st;
  job->ctx = ctx;
  return sb_rank_run(ctx, copy, job);
}

int sb_rank_tensor_write(sb_context *ctx, sb_tensor *t, int64_t offset,
                         int64_t count, int32_t dtype, const void *src,
                         SbRankFn copy) {
  SbRankCopyJob job = {ctx, t, offset, count, dtype, src, NULL};
  return tensor_copy(ctx, "tensor_write", &job, copy);
}

int sb_rank_tensor_read(sb_context *ctx, const sb_tensor *t, int64_t offset,
                        int64_t count, int32_t dtype, void *dst,
                        SbRankFn copy) {
  SbRankCopyJob job = {ctx, t, offset, count, dtype, NULL, dst};
  return tensor_copy(ctx, "tensor_read", &job, copy);
}

/* Big enough to amortise the device calls, small enough for a rank thread's
 * stack. */
#define STAGE_FLOATS 2048

int sb_rank_copy_host(SbExec *x, int32_t dtype, float *dev, void *dst,
                      const void *src, int64_t h, int64_t n) {
  if (dtype == SB_DTYPE_F32)
    return dst ? x->ops->download(x->dev, (float *)dst + h, dev,
                                  (size_t)n * sizeof(float))
               : x->ops->upload(x->dev, dev, (const float *)src + h,
                                (size_t)n * sizeof(float));
  float stage[STAGE_FLOATS];
  int st = SB_OK;
  for (int64_t done = 0; done < n && st == SB_OK;) {
    int64_t k = n - done < STAGE_FLOATS ? n - done : STAGE_FLOATS;
    if (dst) {
      st = x->ops->download(x->dev, stage, dev + done,
                            (size_t)k * sizeof(float));
      for (int64_t i = 0; i < k && st == SB_OK; i++)
        ((double *)dst)[h + done + i] = stage[i];
    } else {
      for (int64_t i = 0; i < k; i++)
        stage[i] = (float)((const double *)src)[h + done + i];
      st = x->ops->upload(x->dev, dev + done, stage, (size_t)k * sizeof(float));
    }
    done += k;
  }
  return st;
}

/* Floats of a layer's weight and bias as the description declares them;
 * 0 for what is malformed, which the backend's own checks then refuse. */
static void desc_param_sizes(const sb_layer_desc_v1 *d, int64_t *nw,
                             int64_t *nb) {
  *nw = *nb = 0;
  if (d->kind == SB_LAYER_LINEAR && d->in_size > 0 && d->out_size > 0 &&
      d->out_size <= INT64_MAX / d->in_size) {
    *nw = d->out_size * d->in_size;
    *nb = d->out_size;
  } else if (d->kind == SB_LAYER_CONV2D && d->groups > 0 && d->in_c > 0 &&
             d->out_c > 0 && d->kernel_h > 0 && d->kernel_w > 0) {
    *nw = d->out_c * (d->in_c / d->groups) * d->kernel_h * d->kernel_w;
    *nb = d->out_c;
  } else if (d->kind == SB_LAYER_AFFINE && d->channels > 0) {
    *nw = *nb = d->channels;
  }
}

/* What rank r keeps of a description with nw weight and nb bias floats,
 * the whole where the backend's rule gives a range outside them. */
static SbRankKept kept_by(const sb_context *ctx, const sb_layer_desc_v1 *d,
                          SbRankKeepFn keep, int r, int64_t nw, int64_t nb) {
  const SbRankKept whole = {0, nw, 0, nb};
  SbRankKept k = whole;
  keep(ctx, d, r, &k);
  if (k.weight_start < 0 || k.weight_count < 0 ||
      k.weight_start > nw - k.weight_count || k.bias_start < 0 ||
      k.bias_count < 0 || k.bias_start > nb - k.bias_count)
    k = whole;
  return k;
}

/* The buffer a process receives its part of a layer into, mapped rather
 * than malloc'd: freeing a malloc'd block of a shard's size (below 32 MB)
 * raises glibc's mmap threshold to it, after which the bound pass's
 * buffers come from a heap that is not trimmed (measured: 17 to 33 MB
 * more peak RSS per process on the 784-4096x4-10 MLP). The size is kept
 * in front of the floats. */
#define RECV_HEAD 64

static float *recv_alloc(int64_t floats) {
  size_t bytes = RECV_HEAD + (size_t)(floats > 0 ? floats : 1) * sizeof(float);
  char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
  memcpy(p, &bytes, sizeof bytes);
  return (float *)(void *)(p + RECV_HEAD);
}

void sb_rank_layer_desc_free(float *copy) {
  if (copy == NULL)
    return;
  char *p = (char *)copy - RECV_HEAD;
  size_t bytes;
  memcpy(&bytes, p, sizeof bytes);
  munmap(p, bytes);
}

typedef struct {
  const sb_context *ctx;
  const sb_layer_desc_v1 *desc;
  SbRankKeepFn keep;
  sb_layer_desc_v1 *local;
  SbRankKept *held;
  float *copy, *weight, *bias; /* other processes: their parts in copy */
  int64_t head[2]; /* process 0's weight and bias floats, -1 when absent */
} ShareJob;

static int share_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  ShareJob *j = arg;
  SbExec *x = &rank->x;
  const sb_layer_desc_v1 *d = j->desc;
  int64_t nw, nb;
  desc_param_sizes(d, &nw, &nb);
  int64_t *head = j->head;
  head[0] = d->weight ? nw : -1;
  head[1] = d->bias ? nb : -1;
  int st = comm->ops->broadcast_host(comm, rank->index, x, head,
                                     2 * sizeof *head, 0);
  if (st != SB_OK || rank->index == 0)
    return st;
  if ((head[0] >= 0 && head[0] != nw) || (head[1] >= 0 && head[1] != nb))
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT,
                        "layer_create: this process describes the layer "
                        "with other sizes than process 0 (%lld/%lld weight "
                        "floats): every process must create the same layers",
                        (long long)nw, (long long)head[0]);
  SbRankKept k = kept_by(j->ctx, d, j->keep, rank->index, nw, nb);
  int64_t wn = head[0] >= 0 ? k.weight_count : 0;
  int64_t n = wn + (head[1] >= 0 ? k.bias_count : 0);
  /* At least one float: a rank that keeps none of a weight still has one
   * (the checks want a weight for linear and conv). */
  if ((j->copy = recv_alloc(n)) == NULL)
    return sb_exec_fail(x, SB_ERR_OUT_OF_MEMORY,
                        "layer_create: out of host memory receiving %lld "
                        "parameters from process 0",
                        (long long)n);
  *j->held = k;
  j->local->weight = j->weight = head[0] >= 0 ? j->copy : NULL;
  j->local->bias = j->bias = head[1] >= 0 ? j->copy + wn : NULL;
  return SB_OK;
}

/* Process 0's array [n] (its own `whole`), of which rank q keeps
 * [start[q], start[q] + count[q]): broadcast when every rank keeps all of
 * it, else scattered, so that each process receives only its part, into
 * `mine`. */
static int send_array(SbRank *rank, SbComm *comm, const float *whole,
                      float *mine, int64_t n, const int64_t *start,
                      const int64_t *count) {
  int size = comm->size, all = 1;
  int64_t offsets[SB_RANKS_MAX], bytes[SB_RANKS_MAX];
  for (int q = 0; q < size; q++) {
    all &= start[q] == 0 && count[q] == n;
    offsets[q] = start[q] * (int64_t)sizeof(float);
    bytes[q] = count[q] * (int64_t)sizeof(float);
  }
  if (all)
    return comm->ops->broadcast_host(comm, rank->index, &rank->x,
                                     rank->index == 0 ? (void *)whole : mine,
                                     (size_t)n * sizeof(float), 0);
  /* Process 0's part stays in place in its whole array. */
  void *recv = rank->index == 0 ? (void *)(whole + start[0]) : mine;
  return comm->ops->scatter_host(comm, rank->index, &rank->x, whole, offsets,
                                 bytes, recv, 0);
}

static int send_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  ShareJob *j = arg;
  const sb_layer_desc_v1 *d = j->desc;
  int64_t nw, nb;
  desc_param_sizes(d, &nw, &nb);
  int64_t ws[SB_RANKS_MAX], wc[SB_RANKS_MAX], bs[SB_RANKS_MAX],
      bc[SB_RANKS_MAX];
  for (int q = 0; q < comm->size; q++) {
    SbRankKept k = kept_by(j->ctx, d, j->keep, q, nw, nb);
    ws[q] = k.weight_start, wc[q] = k.weight_count;
    bs[q] = k.bias_start, bc[q] = k.bias_count;
  }
  int st = SB_OK;
  if (j->head[0] >= 0)
    st = send_array(rank, comm, d->weight, j->weight, nw, ws, wc);
  if (st == SB_OK && j->head[1] >= 0)
    st = send_array(rank, comm, d->bias, j->bias, nb, bs, bc);
  return st;
}

int sb_rank_layer_desc_share(sb_context *ctx, const sb_layer_desc_v1 *desc,
                             SbRankKeepFn keep, sb_layer_desc_v1 *local,
                             SbRankKept *held, float **copy) {
  *local = *desc;
  *copy = NULL;
  desc_param_sizes(desc, &held->weight_count, &held->bias_count);
  held->weight_start = held->bias_start = 0;
  if (sb_ranks_local_rank(ctx->ranks) < 0)
    return SB_OK;
  ShareJob share = {ctx, desc, keep, local, held, NULL, NULL, NULL, {-1, -1}};
  int st = sb_rank_run(ctx, share_on_rank, &share);
  *copy = share.copy;
  if (st != SB_OK)
    return st;
  return sb_rank_run(ctx, send_on_rank, &share);
}

int sb_rank_layer_create(sb_context *ctx, const sb_layer_desc_v1 *desc,
                         sb_layer **out, SbRankKeepFn keep,
                         SbRankLayerCreateFn create) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (out == NULL || desc == NULL)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "layer_create: NULL description or output pointer");
  *out = NULL;
  if (desc->struct_size < sizeof(sb_layer_desc_v1))
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "layer_create: description struct_size %u is smaller "
                        "than sb_layer_desc_v1 (%zu bytes)",
                        (unsigned)desc->struct_size, sizeof(sb_layer_desc_v1));
  sb_layer_desc_v1 local;
  SbRankKept held;
  float *copy = NULL;
  int st = sb_rank_layer_desc_share(ctx, desc, keep, &local, &held, &copy);
  const SbOpFamily *fam = sb_op_family(local.kind);
  if (st == SB_OK && fam == NULL)
    st = sb_rank_fail(ctx, SB_ERR_UNSUPPORTED,
                      "layer_create: unknown layer kind %d", (int)local.kind);
  if (st == SB_OK && (local.in_size <= 0 || local.out_size <= 0))
    st = sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                      "layer_create: %s layer sizes must be positive (in_size "
                      "%lld, out_size %lld)",
                      fam->name, (long long)local.in_size,
                      (long long)local.out_size);
  if (st == SB_OK &&
      (local.kind == SB_LAYER_LINEAR || local.kind == SB_LAYER_CONV2D) &&
      local.weight == NULL)
    st = sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                      "layer_create: %s layer needs a weight", fam->name);
  if (st == SB_OK)
    st = create(ctx, &local, &held, fam, out);
  sb_rank_layer_desc_free(copy);
  return st;
}

int sb_rank_layer_forward(sb_context *ctx, const sb_layer *layer,
                          const sb_tensor *const *inputs, sb_tensor *out,
                          SbRankFn on_rank) {
  static const char fn[] = "layer_forward";
  int st = sb_rank_begin_layer(ctx, fn, layer);
  if (st != SB_OK)
    return st;
  const SbRankLayerHead *h = sb_rank_layer_head(layer);
  SbRankBoundsJob job = {ctx, layer, 0, inputs, NULL, out, NULL};
  st = sb_rank_check_forward_args(ctx, fn, h->fam->n_inputs, h->in_size,
                                  h->out_size, inputs, out, &job.B);
  return st == SB_OK ? sb_rank_run(ctx, on_rank, &job) : st;
}

int sb_rank_layer_ibp(sb_context *ctx, const sb_layer *layer,
                      const sb_tensor *const *in_lower,
                      const sb_tensor *const *in_upper, sb_tensor *out_lower,
                      sb_tensor *out_upper, SbRankFn on_rank) {
  static const char fn[] = "layer_ibp";
  int st = sb_rank_begin_layer(ctx, fn, layer);
  if (st != SB_OK)
    return st;
  const SbRankLayerHead *h = sb_rank_layer_head(layer);
  SbRankBoundsJob job = {ctx,      layer,     0,        in_lower,
                         in_upper, out_lower, out_upper};
  st =
      sb_rank_check_ibp_args(ctx, fn, h->fam->n_inputs, h->in_size, h->out_size,
                             in_lower, in_upper, out_lower, out_upper, &job.B);
  return st == SB_OK ? sb_rank_run(ctx, on_rank, &job) : st;
}

void sb_rank_bounds_inputs(const SbRankBoundsJob *j, int r, const float **lo,
                           const float **up) {
  for (int i = 0; i < sb_rank_layer_head(j->layer)->fam->n_inputs; i++) {
    lo[i] = sb_rank_tensor_head(j->in_lo[i])->buf[r].ptr;
    up[i] = j->in_up ? sb_rank_tensor_head(j->in_up[i])->buf[r].ptr : NULL;
  }
}
