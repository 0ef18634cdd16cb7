/* SPDX-License-Identifier: MIT */
/* The context, options, memory statistics and tensor argument checks that
 * every multi-rank backend exposes the same way. */
#include "config.h"

#include "backends/common/rank_backend.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/device_cpu.h"
#include "backends/common/device_module.h"
#include "backends/common/single_backend.h"

int sb_rank_fail(sb_context *ctx, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
  va_end(ap);
  return status;
}

int sb_rank_run(sb_context *ctx, SbRankFn fn, void *arg) {
  return sb_ranks_run(ctx->ranks, fn, arg, ctx->error, sizeof ctx->error);
}

static const char known_options[] =
    "ranks, device, devices, comm, fail_rank, fail_at";

/* What the options ask for, before any device is touched. */
typedef struct RankOptions {
  long ranks, fail_rank, fail_at;
  int cuda;              /* device=cuda */
  int nccl;              /* comm=nccl */
  const char *devices;   /* the devices= text, or NULL */
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

/* Reads and checks every option (syntax and combinations, no device yet);
 * on failure writes the reason into error. */
static int parse_options(const char *be, const sb_option *options,
                         size_t n_options, RankOptions *o, char *error,
                         size_t error_size) {
  *o = (RankOptions){.ranks = 2, .fail_rank = -1, .fail_at = -1};
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
        o->nccl = 0;
      } else if (value != NULL && strcmp(value, "nccl") == 0) {
        o->nccl = 1;
      } else {
        snprintf(error, error_size,
                 "%s: option comm='%s' is not a communicator (expected "
                 "loopback or nccl)",
                 be, v);
        return SB_ERR_UNSUPPORTED;
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
  if (o->fail_rank >= o->ranks) {
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
                         SbComm **out, char *error, size_t error_size) {
  const SbDeviceModule *m = module;
  return m->comm_new(NULL, size, 0, size, devs, out, error, error_size);
}
#endif

/* device=cuda: the CUDA module, each rank's GPU (devices[r mod n], else
 * r mod the GPU count) and, with comm=nccl, its communicator. Touches CUDA
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
    snprintf(error, error_size,
             "%s: option device='cuda' is not available: %s", be, why);
    return st;
  }
  int count = 0;
  if ((st = m->device_count(&count, why, sizeof why)) != SB_OK) {
    snprintf(error, error_size,
             "%s: option device='cuda' is not available: %s", be, why);
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
  for (long r = 0; r < o->ranks; r++)
    ordinals[r] = o->n_devices ? o->devices_list[r % o->n_devices]
                               : (int)(r % count);
  cfg->ops = m->ops;
  cfg->ordinals = ordinals;
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

int sb_rank_context_create(const char *be, const sb_option *options,
                           size_t n_options, sb_context **out, char *error,
                           size_t error_size) {
  char scratch[8];
  if (error == NULL || error_size == 0) {
    error = scratch;
    error_size = sizeof scratch;
  }
  error[0] = '\0';
  int check = sb_context_create_check(be, options, n_options, out, error,
                                      error_size);
  if (check != SB_OK)
    return check;
  RankOptions o;
  int st = parse_options(be, options, n_options, &o, error, error_size);
  if (st != SB_OK)
    return st;
  SbRanksConfig cfg = {(int)o.ranks, &sb_device_cpu_ops, (int)o.fail_rank,
                       o.fail_at};
  int ordinals[SB_RANKS_MAX];
  if (o.cuda &&
      (st = configure_cuda(be, &o, &cfg, ordinals, error, error_size)) !=
          SB_OK)
    return st;
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
  ctx->size = cfg.size;
  *out = ctx;
  return SB_OK;
}

void sb_rank_context_destroy(sb_context *ctx) {
  if (ctx == NULL)
    return;
  sb_ranks_destroy(ctx->ranks);
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
    sb_mem_tracker_mark_baseline(&sb_ranks_rank(ctx->ranks, r)->mem);
  return SB_OK;
}

int sb_rank_memory_reset_peak(sb_context *ctx) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  for (int r = 0; r < ctx->size; r++)
    sb_mem_tracker_reset_peak(&sb_ranks_rank(ctx->ranks, r)->mem);
  return SB_OK;
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
  SbRank *r = sb_ranks_rank(ctx->ranks, rank);
  sb_mem_tracker_snapshot(&r->mem, (uint32_t)rank, out);
  if (SB_HAS_MEMBER(out, sb_memory_stats_v1, device_used_bytes))
    out->device_used_bytes = r->x.ops->used_bytes(r->dev);
  return SB_OK;
}

int sb_rank_tensor_check_shape(sb_context *ctx, int32_t category, int32_t ndim,
                               const int64_t *shape, int64_t *numel) {
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

int sb_rank_alloc_zeroed(SbExec *x, int32_t category, int64_t floats,
                         SbBuffer *out) {
  int st = sb_exec_alloc(x, category, floats, out);
  if (st == SB_OK && out->bytes) {
    st = x->ops->zero(x->dev, out->ptr, out->bytes);
    if (st != SB_OK)
      st = sb_exec_device_fail(x, st, "zero-filling a new tensor");
  }
  return st;
}

int sb_rank_free_buffer(SbRank *rank, SbComm *comm, void *bufs) {
  (void)comm;
  sb_exec_free(&rank->x, &((SbBuffer *)bufs)[rank->index]);
  return SB_OK;
}
