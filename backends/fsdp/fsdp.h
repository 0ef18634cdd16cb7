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

/* How a tensor's elements are laid out across ranks. */
typedef enum {
  FSDP_REPLICATED = 0, /* every rank holds all of it, identical everywhere */
  FSDP_SPLIT_ROWS,     /* rank r holds spec rows sb_split_spec_rows(S) */
  FSDP_SPLIT_BATCH,    /* rank r holds batch elements sb_split_batch(B) of
                        * every spec row */
} FsdpSplit;

/* Coefficient and alpha tensors ([S,B,...]) are split across ranks along
 * the axis their GEMMs are blocked on (layer.h): by spec rows in whole
 * blocks of SB_ROW_BLOCK when S is large (the root's intermediate bounds,
 * many specifications), by batch elements in whole blocks of
 * SB_BATCH_BLOCK when S fits in one block and the batch is larger than one
 * (branch-and-bound: S is a few atoms, B the domains). Either way every
 * GEMM runs on the same blocks as on one device, so results are bitwise
 * identical. Every other tensor (bounds [B,N], inputs) is replicated. */
struct sb_tensor {
  SbRankTensorHead head; /* head.split is an FsdpSplit */
  int64_t batch;     /* B: shape[1], 1 for a tensor of one dimension */
  int64_t inner;     /* elements per (spec row, batch element) */
  int64_t row_elems; /* elements per row of dimension 0: batch * inner */
};

/* The part of an [S,B,...] operation one rank computes: spec rows
 * [s0, s0+ns) of batch elements [b0, b0+nb). batch_blocks is the blocking
 * of the whole operation (sb_blocks_by_batch(S, B)). */
typedef struct FsdpPart {
  int64_t S, B;
  int64_t s0, ns, b0, nb;
  int32_t batch_blocks;
} FsdpPart;

/* The axis that [S,B,...] coefficient tensors are split along, and rank
 * r's part of an operation over them. */
FsdpSplit fsdp_split_of(int64_t S, int64_t B);
void fsdp_part(const sb_context *ctx, int64_t S, int64_t B, int r,
               FsdpPart *p);

/* The [S,B,...] arguments of one rank's part of an operation, as
 * contiguous [ns, nb, inner] device arrays: a split tensor's own buffer,
 * or for a replicated one its rows, or a packed copy when the part is a
 * slice of the batch. Replicated outputs are given all rows on every rank
 * by fsdp_views_share. */
#define FSDP_MAX_VIEWS 12
typedef struct FsdpView {
  const sb_tensor *t;
  float *ptr;
  SbBuffer packed; /* a replicated tensor's slice of the batch */
  int is_packed;
  int out;
} FsdpView;

typedef struct FsdpViews {
  FsdpPart part;
  int n;
  FsdpView v[FSDP_MAX_VIEWS];
} FsdpViews;

void fsdp_views_init(FsdpViews *vs, const FsdpPart *part);
/* The local array of t (NULL for NULL t): out marks a tensor the operation
 * writes (its current contents are kept for accumulation). The same tensor
 * gets the same array. Returns NULL on failure with *st set. */
float *fsdp_views_get(const sb_context *ctx, FsdpViews *vs, SbRank *rank,
                      const sb_tensor *t, int out, int *st);
/* The end of a rank's part, whose operation returned st: when st is SB_OK,
 * collectively, every replicated output gets all ranks' parts (every rank
 * calls it with the same outputs); in every case the packed copies are
 * freed. Returns st, or the sharing's failure. */
int fsdp_views_finish(const sb_context *ctx, SbRank *rank, SbComm *comm,
                      FsdpViews *vs, int st);

/* Rank r's batch elements b0.. of a replicated [B,...] tensor (bounds). */
static inline float *fsdp_batch_view(const sb_tensor *t, int r,
                                     const FsdpPart *p) {
  return (float *)t->head.buf[r].ptr + p->b0 * (t->head.numel / p->B);
}

/* A layer: the operator's own struct sb_layer per rank, whose weight holds
 * only that rank's rows (sharded) or everything (small parameters). The
 * handle given to the host is this struct, cast to sb_layer. */
typedef struct FsdpLayer {
  SbRankLayerHead head;
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

/* After each rank wrote its spec rows of a replicated tensor, give every
 * rank all rows (a no-op for split tensors). Collective: every rank calls
 * it. */
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
