/* SPDX-License-Identifier: MIT */
/* The FSDP backend: options, the context over a rank pool, per-rank memory
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
#include "backends/fsdp/fsdp.h"

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out);

/* ABI 1.1 entry points, defined in fsdp_layer.c (declared here rather than
 * in fsdp.h, which belongs to the FSDP work). */
int fsdp_layer_backward_vjp(sb_context *ctx, const sb_layer *layer,
                            const sb_vjp_args_v1 *args);
int fsdp_concretize_vjp(sb_context *ctx, const sb_tensor *A,
                        const sb_tensor *x_lower, const sb_tensor *x_upper,
                        int32_t side, const sb_tensor *grad_out,
                        sb_tensor *grad_A);
int fsdp_relu_init_alpha(sb_context *ctx, const sb_tensor *pre_lower,
                         const sb_tensor *pre_upper, sb_tensor *alpha);
int fsdp_adam_step(sb_context *ctx, sb_tensor *param, const sb_tensor *grad,
                   sb_tensor *m, sb_tensor *v, const sb_adam_args_v1 *args);
int fsdp_beta_apply(sb_context *ctx, sb_tensor *A, const sb_tensor *beta,
                    const sb_tensor *sign, int32_t side);
int fsdp_beta_vjp(sb_context *ctx, const sb_tensor *grad_A,
                  const sb_tensor *sign, int32_t side, sb_tensor *grad_beta,
                  int32_t accumulate);

int fsdp_fail(sb_context *ctx, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
  va_end(ap);
  return status;
}

int fsdp_run(sb_context *ctx, SbRankFn fn, void *arg) {
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

static const char known_options[] =
    "ranks, device, comm, fail_rank, fail_at";

static int fsdp_context_create(const sb_host_v1 *host,
                               const sb_option *options, size_t n_options,
                               sb_context **out, char *error,
                               size_t error_size) {
  char scratch[8];
  if (error == NULL || error_size == 0) {
    error = scratch;
    error_size = sizeof scratch;
  }
  error[0] = '\0';
  if (out == NULL) {
    snprintf(error, error_size, "fsdp: context_create needs an output pointer");
    return SB_ERR_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (n_options > 0 && options == NULL) {
    snprintf(error, error_size, "fsdp: %zu options announced but none given",
             n_options);
    return SB_ERR_INVALID_ARGUMENT;
  }
  SbRanksConfig cfg = {2, &sb_device_cpu_ops, -1, -1};
  long ranks = 2, fail_rank = -1, fail_at = -1;
  for (size_t i = 0; i < n_options; i++) {
    const char *key = options[i].key, *value = options[i].value;
    const char *v = value ? value : "(null)";
    if (key == NULL) {
      snprintf(error, error_size, "fsdp: option %zu has no key", i);
      return SB_ERR_INVALID_ARGUMENT;
    }
    if (strcmp(key, "ranks") == 0) {
      if (!parse_long(value, 1, SB_RANKS_MAX, &ranks)) {
        snprintf(error, error_size,
                 "fsdp: option ranks='%s' is not a rank count (expected an "
                 "integer 1..%d)",
                 v, SB_RANKS_MAX);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else if (strcmp(key, "device") == 0) {
      if (value == NULL || strcmp(value, "cpu") != 0) {
        snprintf(error, error_size,
                 "fsdp: option device='%s' is not supported (this build runs "
                 "ranks on: cpu)",
                 v);
        return SB_ERR_UNSUPPORTED;
      }
    } else if (strcmp(key, "comm") == 0) {
      if (value == NULL || strcmp(value, "loopback") != 0) {
        snprintf(error, error_size,
                 "fsdp: option comm='%s' is not supported (available: "
                 "loopback)",
                 v);
        return SB_ERR_UNSUPPORTED;
      }
    } else if (strcmp(key, "fail_rank") == 0) {
      if (!parse_long(value, 0, SB_RANKS_MAX - 1, &fail_rank)) {
        snprintf(error, error_size,
                 "fsdp: option fail_rank='%s' is not a rank index", v);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else if (strcmp(key, "fail_at") == 0) {
      if (!parse_long(value, 0, LONG_MAX, &fail_at)) {
        snprintf(error, error_size,
                 "fsdp: option fail_at='%s' is not a call number (integer "
                 ">= 0)",
                 v);
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else {
      snprintf(error, error_size,
               "fsdp: unknown option '%s' (this backend knows: %s)", key,
               known_options);
      return SB_ERR_INVALID_ARGUMENT;
    }
  }
  if ((fail_rank >= 0) != (fail_at >= 0)) {
    snprintf(error, error_size,
             "fsdp: fault injection needs both fail_rank and fail_at");
    return SB_ERR_INVALID_ARGUMENT;
  }
  if (fail_rank >= ranks) {
    snprintf(error, error_size,
             "fsdp: fail_rank=%ld names no rank (ranks=%ld)", fail_rank,
             ranks);
    return SB_ERR_INVALID_ARGUMENT;
  }
  cfg.size = (int)ranks;
  cfg.fail_rank = (int)fail_rank;
  cfg.fail_at = fail_at;
  sb_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    snprintf(error, error_size, "fsdp: out of host memory creating a context");
    return SB_ERR_OUT_OF_MEMORY;
  }
  char msg[512];
  int st = sb_ranks_new(&cfg, &ctx->ranks, msg, sizeof msg);
  if (st != SB_OK) {
    snprintf(error, error_size, "fsdp: %s", msg);
    free(ctx);
    return st;
  }
  ctx->size = (int)ranks;
  *out = ctx;
  return SB_OK;
}

static void fsdp_context_destroy(sb_context *ctx) {
  if (ctx == NULL)
    return;
  sb_ranks_destroy(ctx->ranks);
  free(ctx);
}

static const char *fsdp_last_error(const sb_context *ctx) {
  return ctx ? ctx->error : "no context";
}

static int fsdp_rank_count(const sb_context *ctx) {
  return ctx ? ctx->size : 1;
}

static int fsdp_memory_mark_baseline(sb_context *ctx) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  for (int r = 0; r < ctx->size; r++)
    sb_mem_tracker_mark_baseline(&sb_ranks_rank(ctx->ranks, r)->mem);
  return SB_OK;
}

static int fsdp_memory_reset_peak(sb_context *ctx) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  for (int r = 0; r < ctx->size; r++)
    sb_mem_tracker_reset_peak(&sb_ranks_rank(ctx->ranks, r)->mem);
  return SB_OK;
}

static int fsdp_memory_stats(sb_context *ctx, int rank,
                             sb_memory_stats_v1 *out) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (out == NULL)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT, "memory_stats: NULL output");
  if (rank < 0 || rank >= ctx->size)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "memory_stats: rank %d does not exist (this context has "
                     "%d ranks)",
                     rank, ctx->size);
  SbRank *r = sb_ranks_rank(ctx->ranks, rank);
  sb_mem_tracker_snapshot(&r->mem, (uint32_t)rank, out);
  if (SB_HAS_MEMBER(out, sb_memory_stats_v1, device_used_bytes))
    out->device_used_bytes = r->x.ops->used_bytes(r->dev);
  return SB_OK;
}

static const sb_backend_v1 fsdp_backend = {
    .struct_size = sizeof(sb_backend_v1),
    .abi_major = SB_ABI_MAJOR,
    .abi_minor = SB_ABI_MINOR,
    .name = "fsdp",
    .version = PACKAGE_VERSION,
    .description = "Fully sharded data parallel: weights sharded across "
                   "ranks (threads, loopback communicator), gathered per "
                   "layer; spec rows split",
    .capabilities = SB_CAP_LINEAR | SB_CAP_CONV2D | SB_CAP_AFFINE |
                    SB_CAP_ADD | SB_CAP_RELU | SB_CAP_MULTI_RANK,
    .context_create = fsdp_context_create,
    .context_destroy = fsdp_context_destroy,
    .last_error = fsdp_last_error,
    .rank_count = fsdp_rank_count,
    .tensor_create = fsdp_tensor_create,
    .tensor_free = fsdp_tensor_free,
    .tensor_write = fsdp_tensor_write,
    .tensor_read = fsdp_tensor_read,
    .tensor_set_unit_rows = fsdp_tensor_set_unit_rows,
    .layer_create = fsdp_layer_create,
    .layer_free = fsdp_layer_free,
    .layer_forward = fsdp_layer_forward,
    .layer_ibp = fsdp_layer_ibp,
    .layer_backward = fsdp_layer_backward,
    .concretize = fsdp_concretize,
    .memory_mark_baseline = fsdp_memory_mark_baseline,
    .memory_reset_peak = fsdp_memory_reset_peak,
    .memory_stats = fsdp_memory_stats,
    .layer_backward_vjp = fsdp_layer_backward_vjp,
    .concretize_vjp = fsdp_concretize_vjp,
    .relu_init_alpha = fsdp_relu_init_alpha,
    .adam_step = fsdp_adam_step,
    .beta_apply = fsdp_beta_apply,
    .beta_vjp = fsdp_beta_vjp,
};

int sb_backend_get_v1(const sb_host_v1 *host, const sb_backend_v1 **out) {
  if (out == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  *out = &fsdp_backend;
  return SB_OK;
}
