/* SPDX-License-Identifier: MIT */
/* The TP backend: options, the context over a rank pool, per-rank memory
 * statistics and the descriptor. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi/shardbound.h"
#include "backends/common/device_cpu.h"
#include "backends/tp/tp.h"

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out);

int tp_fail(sb_context *ctx, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
  va_end(ap);
  return status;
}

int tp_run(sb_context *ctx, SbRankFn fn, void *arg) {
  return sb_ranks_run(ctx->ranks, fn, arg, ctx->error, sizeof ctx->error);
}

static int parse_long(const char *s, long min, long max, long *out) {
  if (s == NULL || *s == '\0')
    return 0;
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end != '\0' || v < min || v > max)
    return 0;
  *out = v;
  return 1;
}

static const char known_options[] = "ranks, device, comm, fail_rank, fail_at";

/* Fills cfg from the options; on failure writes the reason into error. */
static int parse_options(const sb_option *options, size_t n_options,
                         SbRanksConfig *cfg, char *error, size_t error_size) {
  long ranks = 2, fail_rank = -1, fail_at = -1;
  for (size_t i = 0; i < n_options; i++) {
    const char *key = options[i].key, *value = options[i].value;
    const char *v = value ? value : "(null)";
    if (key == NULL) {
      snprintf(error, error_size, "tp: option %zu has no key", i);
      return SB_ERR_INVALID_ARGUMENT;
    }
    if (strcmp(key, "ranks") == 0) {
      if (!parse_long(value, 1, SB_RANKS_MAX, &ranks)) {
        snprintf(error, error_size,
                 "tp: option ranks='%s' is not a rank count (expected an "
                 "integer 1..%d)",
                 v, SB_RANKS_MAX);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else if (strcmp(key, "device") == 0) {
      if (value == NULL || strcmp(value, "cpu") != 0) {
        snprintf(error, error_size,
                 "tp: option device='%s' is not supported (this build runs "
                 "ranks on: cpu)",
                 v);
        return SB_ERR_UNSUPPORTED;
      }
    } else if (strcmp(key, "comm") == 0) {
      if (value == NULL || strcmp(value, "loopback") != 0) {
        snprintf(error, error_size,
                 "tp: option comm='%s' is not supported (available: "
                 "loopback)",
                 v);
        return SB_ERR_UNSUPPORTED;
      }
    } else if (strcmp(key, "fail_rank") == 0) {
      if (!parse_long(value, 0, SB_RANKS_MAX - 1, &fail_rank)) {
        snprintf(error, error_size,
                 "tp: option fail_rank='%s' is not a rank index", v);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else if (strcmp(key, "fail_at") == 0) {
      if (!parse_long(value, 0, LONG_MAX, &fail_at)) {
        snprintf(error, error_size,
                 "tp: option fail_at='%s' is not a call number (integer "
                 ">= 0)",
                 v);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else {
      snprintf(error, error_size,
               "tp: unknown option '%s' (this backend knows: %s)", key,
               known_options);
      return SB_ERR_INVALID_ARGUMENT;
    }
  }
  if ((fail_rank >= 0) != (fail_at >= 0)) {
    snprintf(error, error_size,
             "tp: fault injection needs both fail_rank and fail_at");
    return SB_ERR_INVALID_ARGUMENT;
  }
  if (fail_rank >= ranks) {
    snprintf(error, error_size, "tp: fail_rank=%ld names no rank (ranks=%ld)",
             fail_rank, ranks);
    return SB_ERR_INVALID_ARGUMENT;
  }
  cfg->size = (int)ranks;
  cfg->fail_rank = (int)fail_rank;
  cfg->fail_at = fail_at;
  return SB_OK;
}

static int tp_context_create(const sb_host_v1 *host, const sb_option *options,
                             size_t n_options, sb_context **out, char *error,
                             size_t error_size) {
  char scratch[8];
  if (error == NULL || error_size == 0) {
    error = scratch;
    error_size = sizeof scratch;
  }
  error[0] = '\0';
  if (out == NULL) {
    snprintf(error, error_size, "tp: context_create needs an output pointer");
    return SB_ERR_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (n_options > 0 && options == NULL) {
    snprintf(error, error_size, "tp: %zu options announced but none given",
             n_options);
    return SB_ERR_INVALID_ARGUMENT;
  }
  SbRanksConfig cfg = {2, &sb_device_cpu_ops, -1, -1};
  int st = parse_options(options, n_options, &cfg, error, error_size);
  if (st != SB_OK)
    return st;
  sb_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    snprintf(error, error_size, "tp: out of host memory creating a context");
    return SB_ERR_OUT_OF_MEMORY;
  }
  char msg[512];
  st = sb_ranks_new(&cfg, &ctx->ranks, msg, sizeof msg);
  if (st != SB_OK) {
    snprintf(error, error_size, "tp: %s", msg);
    free(ctx);
    return st;
  }
  ctx->size = cfg.size;
  *out = ctx;
  return SB_OK;
}

static void tp_context_destroy(sb_context *ctx) {
  if (ctx == NULL)
    return;
  sb_ranks_destroy(ctx->ranks);
  free(ctx);
}

static const char *tp_last_error(const sb_context *ctx) {
  return ctx ? ctx->error : "no context";
}

static int tp_rank_count(const sb_context *ctx) { return ctx ? ctx->size : 1; }

static int tp_memory_mark_baseline(sb_context *ctx) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  for (int r = 0; r < ctx->size; r++)
    sb_mem_tracker_mark_baseline(&sb_ranks_rank(ctx->ranks, r)->mem);
  return SB_OK;
}

static int tp_memory_reset_peak(sb_context *ctx) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  for (int r = 0; r < ctx->size; r++)
    sb_mem_tracker_reset_peak(&sb_ranks_rank(ctx->ranks, r)->mem);
  return SB_OK;
}

static int tp_memory_stats(sb_context *ctx, int rank,
                           sb_memory_stats_v1 *out) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (out == NULL)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT, "memory_stats: NULL output");
  if (rank < 0 || rank >= ctx->size)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                   "memory_stats: rank %d does not exist (this context has "
                   "%d ranks)",
                   rank, ctx->size);
  SbRank *r = sb_ranks_rank(ctx->ranks, rank);
  sb_mem_tracker_snapshot(&r->mem, (uint32_t)rank, out);
  if (SB_HAS_MEMBER(out, sb_memory_stats_v1, device_used_bytes))
    out->device_used_bytes = r->x.ops->used_bytes(r->dev);
  return SB_OK;
}

static const sb_backend_v1 tp_backend = {
    .struct_size = sizeof(sb_backend_v1),
    .abi_major = SB_ABI_MAJOR,
    .abi_minor = SB_ABI_MINOR,
    .name = "tp",
    .version = PACKAGE_VERSION,
    .description = "Tensor parallel: weights and CROWN coefficients sharded "
                   "by neuron across ranks (threads, loopback communicator); "
                   "exact CROWN bounds",
    .capabilities = SB_CAP_LINEAR | SB_CAP_CONV2D | SB_CAP_AFFINE |
                    SB_CAP_ADD | SB_CAP_RELU | SB_CAP_MULTI_RANK,
    .context_create = tp_context_create,
    .context_destroy = tp_context_destroy,
    .last_error = tp_last_error,
    .rank_count = tp_rank_count,
    .tensor_create = tp_tensor_create,
    .tensor_free = tp_tensor_free,
    .tensor_write = tp_tensor_write,
    .tensor_read = tp_tensor_read,
    .tensor_set_unit_rows = tp_tensor_set_unit_rows,
    .layer_create = tp_layer_create,
    .layer_free = tp_layer_free,
    .layer_forward = tp_layer_forward,
    .layer_ibp = tp_layer_ibp,
    .layer_backward = tp_layer_backward,
    .concretize = tp_concretize,
    .memory_mark_baseline = tp_memory_mark_baseline,
    .memory_reset_peak = tp_memory_reset_peak,
    .memory_stats = tp_memory_stats,
    .layer_backward_vjp = tp_layer_backward_vjp,
    .concretize_vjp = tp_concretize_vjp,
    .relu_init_alpha = tp_relu_init_alpha,
    .adam_step = tp_adam_step,
    .beta_apply = tp_beta_apply,
    .beta_vjp = tp_beta_vjp,
};

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out) {
  if (out == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  *out = &tp_backend;
  return SB_OK;
}
