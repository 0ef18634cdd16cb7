/* SPDX-License-Identifier: MIT */
/* Private types of the FSDP backend: a context over a rank pool, tensors
 * whose spec rows are split across ranks, and layers whose weight rows are
 * sharded and all-gathered around each operator. */
#ifndef SB_BACKENDS_FSDP_H
#define SB_BACKENDS_FSDP_H

#include "abi/shardbound.h"
#include "backends/common/layer.h"
#include "backends/common/rank_backend.h"
#include "backends/common/ranks.h"

/* Coefficient and alpha tensors ([S,...]) are split by their first
 * dimension in whole blocks of SB_ROW_BLOCK rows, so that every GEMM runs
 * on the same row blocks as on one device: rank r holds rows
 * sb_split_spec_rows(shape[0], P, r), possibly none. Every other
 * tensor (bounds [B,N], inputs) is replicated: each rank holds all of it,
 * identical everywhere. */
struct sb_tensor {
  int32_t ndim;
  int64_t shape[4];
  int64_t numel;
  int split;
  int64_t row_elems; /* elements per row of dimension 0 */
  SbBuffer *buf;     /* one per rank */
};

/* A layer: the operator's own struct sb_layer per rank, whose weight holds
 * only that rank's rows (sharded) or everything (small parameters). The
 * handle given to the host is this struct, cast to sb_layer. */
typedef struct FsdpLayer {
  const SbOpFamily *fam;
  int sharded;       /* weight rows split across ranks */
  int64_t rows;      /* weight rows: out_size (linear), out_c (conv) */
  int64_t row_elems; /* floats per weight row */
  struct sb_layer *local; /* one per rank */
} FsdpLayer;

/* The multi-rank context's own (rank_backend.h), under the names the FSDP
 * sources use. */
#define fsdp_fail sb_rank_fail
#define fsdp_run sb_rank_run

/* Rows [start, start+count) of dimension 0 that rank r computes for a
 * tensor with `rows` rows. */
static inline void fsdp_rows(const sb_context *ctx, int64_t rows, int r,
                             int64_t *start, int64_t *count) {
  sb_split_range(rows, ctx->size, r, start, count);
}

/* Rank r's view of rows [start, start+count) of t: its own buffer when t is
 * split, the matching rows of its replica otherwise. */
float *fsdp_row_view(const sb_tensor *t, int r, int64_t start);

/* After each rank wrote its rows of a replicated tensor, give every rank
 * all rows (a no-op for split tensors). Collective: every rank calls it. */
int fsdp_share_rows(const sb_context *ctx, SbRank *rank, SbComm *comm,
                    sb_tensor *t);

/* g := rank's layer with its whole weight: the shard itself when nothing
 * needs gathering (one rank, unsharded layer), else all ranks' rows
 * all-gathered into *gathered (SB_MEM_GATHERED_WEIGHTS, left empty when
 * not needed), which the caller frees with sb_exec_free as soon as the
 * operator returns. Collective. */
int fsdp_gather_layer(const sb_context *ctx, const FsdpLayer *fl,
                      SbRank *rank, SbComm *comm, struct sb_layer *g,
                      SbBuffer *gathered);

/* Tensor and layer entry points (sb_backend_v1 members). */
int fsdp_tensor_create(sb_context *ctx, int32_t category, int32_t ndim,
                       const int64_t *shape, sb_tensor **out);
void fsdp_tensor_free(sb_context *ctx, sb_tensor *tensor);
int fsdp_tensor_write(sb_context *ctx, sb_tensor *tensor, int64_t offset,
                      int64_t count, int32_t dtype, const void *src);
int fsdp_tensor_read(sb_context *ctx, const sb_tensor *tensor, int64_t offset,
                     int64_t count, int32_t dtype, void *dst);
int fsdp_tensor_set_unit_rows(sb_context *ctx, sb_tensor *A,
                              const int64_t *index);
int fsdp_layer_create(sb_context *ctx, const sb_layer_desc_v1 *desc,
                      sb_layer **out);
void fsdp_layer_free(sb_context *ctx, sb_layer *layer);
int fsdp_layer_forward(sb_context *ctx, const sb_layer *layer,
                       const sb_tensor *const *inputs, sb_tensor *out);
int fsdp_layer_ibp(sb_context *ctx, const sb_layer *layer,
                   const sb_tensor *const *in_lower,
                   const sb_tensor *const *in_upper, sb_tensor *out_lower,
                   sb_tensor *out_upper);
int fsdp_layer_backward(sb_context *ctx, const sb_layer *layer,
                        const sb_backward_args_v1 *args);
int fsdp_concretize(sb_context *ctx, const sb_tensor *A, const sb_tensor *bias,
                    const sb_tensor *x_lower, const sb_tensor *x_upper,
                    int32_t side, sb_tensor *out);

/* ABI 1.1 entry points: VJPs, alpha initialisation, Adam and beta. */
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

#endif /* SB_BACKENDS_FSDP_H */
