/* SPDX-License-Identifier: MIT */
/* The context, options, memory statistics and tensor argument checks that
 * every multi-rank backend exposes the same way. */
#include "backends/common/rank_backend.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/device_cpu.h"
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

static const char known_options[] = "ranks, device, comm, fail_rank, fail_at";

/* Fills cfg from the options; on failure writes the reason into error. */
static int parse_options(const char *be, const sb_option *options,
                         size_t n_options, SbRanksConfig *cfg, char *error,
                         size_t error_size) {
  long ranks = 2, fail_rank = -1, fail_at = -1;
  for (size_t i = 0; i < n_options; i++) {
    const char *key = options[i].key, *value = options[i].value;
    const char *v = value ? value : "(null)";
    if (key == NULL) {
      snprintf(error, error_size, "%s: option %zu has no key", be, i);
      return SB_ERR_INVALID_ARGUMENT;
    }
    if (strcmp(key, "ranks") == 0) {
      if (!sb_option_parse_long(value, 1, SB_RANKS_MAX, &ranks)) {
        snprintf(error, error_size,
                 "%s: option ranks='%s' is not a rank count (expected an "
                 "integer 1..%d)",
                 be, v, SB_RANKS_MAX);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else if (strcmp(key, "device") == 0) {
      if (value == NULL || strcmp(value, "cpu") != 0) {
        snprintf(error, error_size,
                 "%s: option device='%s' is not supported (this build runs "
                 "ranks on: cpu)",
                 be, v);
        return SB_ERR_UNSUPPORTED;
      }
    } else if (strcmp(key, "comm") == 0) {
      if (value == NULL || strcmp(value, "loopback") != 0) {
        snprintf(error, error_size,
                 "%s: option comm='%s' is not supported (available: "
                 "loopback)",
                 be, v);
        return SB_ERR_UNSUPPORTED;
      }
    } else if (strcmp(key, "fail_rank") == 0) {
      if (!sb_option_parse_long(value, 0, SB_RANKS_MAX - 1, &fail_rank)) {
        snprintf(error, error_size,
                 "%s: option fail_rank='%s' is not a rank index", be, v);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else if (strcmp(key, "fail_at") == 0) {
      if (!sb_option_parse_long(value, 0, LONG_MAX, &fail_at)) {
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
  if ((fail_rank >= 0) != (fail_at >= 0)) {
    snprintf(error, error_size,
             "%s: fault injection needs both fail_rank and fail_at", be);
    return SB_ERR_INVALID_ARGUMENT;
  }
  if (fail_rank >= ranks) {
    snprintf(error, error_size, "%s: fail_rank=%ld names no rank (ranks=%ld)",
             be, fail_rank, ranks);
    return SB_ERR_INVALID_ARGUMENT;
  }
  cfg->size = (int)ranks;
  cfg->fail_rank = (int)fail_rank;
  cfg->fail_at = fail_at;
  return SB_OK;
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
  SbRanksConfig cfg = {2, &sb_device_cpu_ops, -1, -1};
  int st = parse_options(be, options, n_options, &cfg, error, error_size);
  if (st != SB_OK)
    return st;
  sb_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    snprintf(error, error_size, "%s: out of host memory creating a context",
             be);
    return SB_ERR_OUT_OF_MEMORY;
  }
  char msg[512];
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
