/* SPDX-License-Identifier: MIT */
/* Argument checks of the multi-rank backends' entry points that hold
 * whatever the tensors' layout across ranks: they read only the
 * SbRankTensorHead every such tensor starts with. Each fails through
 * sb_rank_fail with a message naming the entry point fn and the argument
 * what, and returns the status. */
#ifndef SB_BACKENDS_RANK_CHECKS_H
#define SB_BACKENDS_RANK_CHECKS_H

#include <stdint.h>

#include "abi/shardbound.h"
#include "backends/common/rank_backend.h"

/* The start of every entry point: a context, whose last error is cleared. */
int sb_rank_begin(sb_context *ctx);
/* The same for an entry point on a layer, which must not be NULL. */
int sb_rank_begin_layer(sb_context *ctx, const char *fn, const sb_layer *layer);

/* t is not NULL and has numel elements (shape_text names the shape). */
int sb_rank_expect_numel(sb_context *ctx, const char *fn, const char *what,
                         const sb_tensor *t, int64_t numel,
                         const char *shape_text);
/* t (not NULL) is held whole by every rank. */
int sb_rank_expect_replicated(sb_context *ctx, const char *fn, const char *what,
                              const sb_tensor *t);
/* Both: a bounds, input or bias argument that every rank reads whole. */
int sb_rank_expect_whole(sb_context *ctx, const char *fn, const char *what,
                         const sb_tensor *t, int64_t numel,
                         const char *shape_text);

/* layer_forward's checks of a layer with n_inputs inputs of in_size and
 * an output of out_size neurons: replicated bounds of one batch size, which
 * lands in *B, and no output that is also an input. */
int sb_rank_check_forward_args(sb_context *ctx, const char *fn, int n_inputs,
                               int64_t in_size, int64_t out_size,
                               const sb_tensor *const *inputs,
                               const sb_tensor *out, int64_t *B);
/* layer_ibp's, the same for lower and upper bounds. */
int sb_rank_check_ibp_args(sb_context *ctx, const char *fn, int n_inputs,
                           int64_t in_size, int64_t out_size,
                           const sb_tensor *const *in_lower,
                           const sb_tensor *const *in_upper,
                           const sb_tensor *out_lower,
                           const sb_tensor *out_upper, int64_t *B);

/* tensor_set_unit_rows's index: S entries, each in [0, N). */
int sb_rank_check_unit_index(sb_context *ctx, const int64_t *index, int64_t S,
                             int64_t N);

#endif /* SB_BACKENDS_RANK_CHECKS_H */
