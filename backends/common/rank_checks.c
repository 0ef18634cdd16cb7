/* SPDX-License-Identifier: MIT */
/* Entry-point argument checks shared by the multi-rank backends (FSDP, TP):
 * the ones that depend only on element counts and on whether a tensor is
 * whole on every rank, not on how a split tensor is laid out. */
#include "config.h"

#include "backends/common/rank_checks.h"

#include <stdio.h>

#include "backends/common/abi_checks.h"

int sb_rank_begin(sb_context *ctx) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  return SB_OK;
}

int sb_rank_begin_layer(sb_context *ctx, const char *fn,
                        const sb_layer *layer) {
  int st = sb_rank_begin(ctx);
  if (st == SB_OK && layer == NULL)
    st = sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL layer", fn);
  return st;
}

int sb_rank_expect_numel(sb_context *ctx, const char *fn, const char *what,
                         const sb_tensor *t, int64_t numel,
                         const char *shape_text) {
  if (t == NULL)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                        what);
  const SbRankTensorHead *h = sb_rank_tensor_head(t);
  if (h->numel != numel)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "%s: %s has %lld elements, expected %lld (%s)", fn,
                        what, (long long)h->numel, (long long)numel,
                        shape_text);
  return SB_OK;
}

int sb_rank_expect_replicated(sb_context *ctx, const char *fn, const char *what,
                              const sb_tensor *t) {
  const SbRankTensorHead *h = sb_rank_tensor_head(t);
  if (h->split)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "%s: %s (%d dimensions) is split across ranks, and "
                        "this argument must be whole on every rank: %s",
                        fn, what, (int)h->ndim, ctx->split_rule);
  return SB_OK;
}

int sb_rank_expect_whole(sb_context *ctx, const char *fn, const char *what,
                         const sb_tensor *t, int64_t numel,
                         const char *shape_text) {
  int st = sb_rank_expect_numel(ctx, fn, what, t, numel, shape_text);
  return st == SB_OK ? sb_rank_expect_replicated(ctx, fn, what, t) : st;
}

/* The batch size of an output of n neurons per batch element. */
static int batch_of(sb_context *ctx, const char *fn, const char *what,
                    const sb_tensor *t, int64_t n, int64_t *B) {
  if (t == NULL)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                        what);
  const SbRankTensorHead *h = sb_rank_tensor_head(t);
  if (h->numel % n != 0)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "%s: %s has %lld elements, not a multiple of the layer "
                        "size %lld",
                        fn, what, (long long)h->numel, (long long)n);
  *B = h->numel / n;
  return sb_rank_expect_replicated(ctx, fn, what, t);
}

/* The array `what` of n_inputs [B,N_in] inputs, numel elements each. */
static int expect_inputs(sb_context *ctx, const char *fn, const char *what,
                         int n_inputs, const sb_tensor *const *in,
                         int64_t numel) {
  if (in == NULL)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL %s array", fn,
                        what);
  for (int i = 0; i < n_inputs; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s[%d]", what, i);
    int st = sb_rank_expect_whole(ctx, fn, name, in[i], numel, "[B,N_in]");
    if (st != SB_OK)
      return st;
  }
  return SB_OK;
}

int sb_rank_check_forward_args(sb_context *ctx, const char *fn, int n_inputs,
                               int64_t in_size, int64_t out_size,
                               const sb_tensor *const *inputs,
                               const sb_tensor *out, int64_t *B) {
  int st = batch_of(ctx, fn, "out", out, out_size, B);
  if (st == SB_OK)
    st = expect_inputs(ctx, fn, "inputs", n_inputs, inputs, *B * in_size);
  if (st == SB_OK)
    st =
        sb_check_forward_aliasing(SB_CTX_ERROR(ctx), fn, n_inputs, inputs, out);
  return st;
}

int sb_rank_check_ibp_args(sb_context *ctx, const char *fn, int n_inputs,
                           int64_t in_size, int64_t out_size,
                           const sb_tensor *const *in_lower,
                           const sb_tensor *const *in_upper,
                           const sb_tensor *out_lower,
                           const sb_tensor *out_upper, int64_t *B) {
  int st = batch_of(ctx, fn, "out_lower", out_lower, out_size, B);
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "out_upper", out_upper, *B * out_size,
                              "[B,N_out]");
  if (st == SB_OK)
    st = expect_inputs(ctx, fn, "in_lower", n_inputs, in_lower, *B * in_size);
  if (st == SB_OK)
    st = expect_inputs(ctx, fn, "in_upper", n_inputs, in_upper, *B * in_size);
  if (st == SB_OK)
    st = sb_check_ibp_aliasing(SB_CTX_ERROR(ctx), fn, n_inputs, in_lower,
                               in_upper, out_lower, out_upper);
  return st;
}

int sb_rank_check_unit_index(sb_context *ctx, const int64_t *index, int64_t S,
                             int64_t N) {
  if (index == NULL && S > 0)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "tensor_set_unit_rows: NULL index");
  for (int64_t s = 0; s < S; s++)
    if (index[s] < 0 || index[s] >= N)
      return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                          "tensor_set_unit_rows: index[%lld] = %lld is "
                          "outside [0, %lld)",
                          (long long)s, (long long)index[s], (long long)N);
  return SB_OK;
}
