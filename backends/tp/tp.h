/* SPDX-License-Identifier: MIT */
/* Private types of the TP backend: a context over a rank pool, tensors whose
 * neuron columns are split across ranks, and layers whose weights are
 * sharded by output neuron (rows of W, output channels of a convolution). */
#ifndef SB_BACKENDS_TP_H
#define SB_BACKENDS_TP_H

#include "abi/shardbound.h"
#include "backends/common/abi_checks.h"
#include "backends/common/layer.h"
#include "backends/common/rank_backend.h"
#include "backends/common/ranks.h"

/* Tensors of three or more dimensions ([S,B,N...]: coefficients, alpha) are
 * split along their neurons: with rows = shape[0]*shape[1] and cols the
 * product of the remaining dimensions, rank r holds the columns
 * tp_cols(cols, r) of every row, packed as [rows, count]. Tensors of one or
 * two dimensions (bounds [B,N], inputs, biases [S,B], concretized [S,B])
 * are replicated: each rank holds all of it, identical everywhere. Bounds
 * cost B*N floats per node, negligible next to A and W, and replicating them
 * spares a gather before every operator that reads a whole input. */
struct sb_tensor {
  SbRankTensorHead head; /* head.split: 1 when split by neuron */
  int64_t rows, cols;    /* split tensors only */
};

/* The part of a layer one rank owns: the operator's struct sb_layer for
 * the rank's output neurons [start, start+count), and for Conv the output
 * channels [c0, c0+nc) those neurons touch. */
typedef struct TpShard {
  int64_t start, count;
  int64_t c0, nc;
  /* LINEAR: weight rows [start, start+count), bias of those rows.
   * CONV2D: weight and bias of channels [c0, c0+nc); conv = whole geometry.
   * AFFINE: scale and shift expanded to one value per owned neuron.
   * RELU, ADD: no parameters, sizes count. */
  struct sb_layer local;
  /* AFFINE only: the per-channel scale and shift, replicated (they are
   * channels floats), for forward and IBP on the replicated bounds. */
  struct sb_layer full;
} TpShard;

typedef struct TpLayer {
  SbRankLayerHead head;
  int has_bias; /* LINEAR/CONV2D: a bias, hence a constant term to reduce */
  SbConvGeom conv;
  TpShard *shard; /* one per rank */
} TpLayer;

/* The neuron columns [start, start+count) of `cols` that rank r owns. */
static inline void tp_cols(const sb_context *ctx, int64_t cols, int r,
                           int64_t *start, int64_t *count) {
  sb_split_range(cols, ctx->size, r, start, count);
}

/* ---- column slices of replicated [B,N] buffers (tp_tensor.c) ---- */

/* A rank's slice [B,count] of a replicated [B,N] buffer: a pointer into it
 * when B == 1, else a packed workspace copy. */
typedef struct TpSlice {
  float *ptr;
  SbBuffer tmp;
} TpSlice;

int tp_slice_view(SbExec *x, int64_t B, int64_t N, int64_t start, int64_t count,
                  const float *full, TpSlice *out);
/* Where a rank writes its [B,count] slice of the replicated [B,N] buffer
 * full before tp_slice_gather publishes it to every rank. */
int tp_slice_begin(SbExec *x, int64_t B, int64_t N, int64_t start,
                   int64_t count, float *full, TpSlice *out);
/* Collective: every rank's slice lands in every rank's copy of full.
 * Frees the slice's workspace in every case. */
int tp_slice_gather(const sb_context *ctx, SbRank *rank, SbComm *comm,
                    int64_t B, int64_t N, float *full, TpSlice *s);
void tp_slice_end(SbExec *x, TpSlice *s);

/* Collective: bias [n] += the sum over ranks of each rank's partial [n]
 * (partial is used as scratch). Every rank's bias stays identical. */
int tp_bias_commit(SbRank *rank, SbComm *comm, int64_t n, float *partial,
                   float *bias);

/* ---- sharded layers (tp_layer.c, tp_conv.c) ---- */

/* The output channels [c0, c0+nc) that the neurons [start, start+count)
 * of a conv output with P positions per channel touch. */
void tp_conv_channels(int64_t P, int64_t start, int64_t count, int64_t *c0,
                      int64_t *nc);
/* Conv of one rank: output channels [c0,c0+nc) of every image, from a
 * description holding *held of the parameters. */
int tp_conv_create(SbExec *x, const sb_layer_desc_v1 *d, const SbRankKept *held,
                   TpShard *sh);
int tp_conv_ibp(SbExec *x, const TpLayer *tl, const TpShard *sh, int64_t B,
                const float *lo, const float *up, float *out_lo, float *out_up);
int tp_conv_forward(SbExec *x, const TpLayer *tl, const TpShard *sh, int64_t B,
                    const float *in, float *out);
/* The full-width partial of rows [0,n) of the local A [n,count] (as
 * [n,N_in] row-major, overwritten) and the bias partial (added to). */
int tp_conv_backward_partial(SbExec *x, const TpLayer *tl, const TpShard *sh,
                             int64_t n, const float *A, float *partial,
                             float *bias_partial);

int64_t tp_row_chunk(const sb_context *ctx, const TpLayer *tl, int64_t R);

/* The argument check of TP's own layout (the others are rank_checks.h):
 * t must be split by neuron with shape [S,B,N]; fails with a message
 * naming fn and what. */
int tp_expect_coefficients(sb_context *ctx, const char *fn, const char *what,
                           const sb_tensor *t, int64_t S, int64_t B, int64_t N);
/* Rows [0,n) of the VJP of a conv backward step, for this rank's output
 * neurons: dst [n,count] (+)= slice of conv(G) + g * b[c]. G is [n,N_in]
 * row-major, or NULL for zero; g [n] NULL means ones. */
int tp_conv_backward_vjp(SbExec *x, const TpLayer *tl, const TpShard *sh,
                         int64_t n, const float *G, const float *g,
                         int accumulate, float *dst);

/* Tensor and layer entry points (sb_backend_v1 members). */
int tp_tensor_create(sb_context *ctx, int32_t category, int32_t ndim,
                     const int64_t *shape, sb_tensor **out);
int tp_tensor_write(sb_context *ctx, sb_tensor *tensor, int64_t offset,
                    int64_t count, int32_t dtype, const void *src);
int tp_tensor_read(sb_context *ctx, const sb_tensor *tensor, int64_t offset,
                   int64_t count, int32_t dtype, void *dst);
int tp_tensor_set_unit_rows(sb_context *ctx, sb_tensor *A,
                            const int64_t *index);
int tp_layer_create(sb_context *ctx, const sb_layer_desc_v1 *desc,
                    sb_layer **out);
void tp_layer_free(sb_context *ctx, sb_layer *layer);
int tp_layer_forward(sb_context *ctx, const sb_layer *layer,
                     const sb_tensor *const *inputs, sb_tensor *out);
int tp_layer_ibp(sb_context *ctx, const sb_layer *layer,
                 const sb_tensor *const *in_lower,
                 const sb_tensor *const *in_upper, sb_tensor *out_lower,
                 sb_tensor *out_upper);
int tp_layer_backward(sb_context *ctx, const sb_layer *layer,
                      const sb_backward_args_v1 *args);
int tp_concretize(sb_context *ctx, const sb_tensor *A, const sb_tensor *bias,
                  const sb_tensor *x_lower, const sb_tensor *x_upper,
                  int32_t side, sb_tensor *out);

/* ABI 1.1 entry points (tp_alpha.c). */
int tp_layer_backward_vjp(sb_context *ctx, const sb_layer *layer,
                          const sb_vjp_args_v1 *args);
int tp_concretize_vjp(sb_context *ctx, const sb_tensor *A,
                      const sb_tensor *x_lower, const sb_tensor *x_upper,
                      int32_t side, const sb_tensor *grad_out,
                      sb_tensor *grad_A);
int tp_relu_init_alpha(sb_context *ctx, const sb_tensor *pre_lower,
                       const sb_tensor *pre_upper, sb_tensor *alpha);
int tp_adam_step(sb_context *ctx, sb_tensor *param, const sb_tensor *grad,
                 sb_tensor *m, sb_tensor *v, const sb_adam_args_v1 *args);
int tp_beta_apply(sb_context *ctx, sb_tensor *A, const sb_tensor *beta,
                  const sb_tensor *sign, int32_t side);
int tp_beta_vjp(sb_context *ctx, const sb_tensor *grad_A, const sb_tensor *sign,
                int32_t side, sb_tensor *grad_beta, int32_t accumulate);

#endif /* SB_BACKENDS_TP_H */
