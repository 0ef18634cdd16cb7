/* SPDX-License-Identifier: MIT */
/* A layer as every backend stores it, and the operator verbs (create,
 * forward, ibp, backward) each operator family implements once, in terms of
 * SbDeviceOps only. */
#ifndef SB_BACKENDS_LAYER_H
#define SB_BACKENDS_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "abi/shardbound.h"
#include "backends/common/device.h"
#include "backends/common/tracked_alloc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where an operator runs: one device of one rank, its allocator, and the
 * buffer that receives an error message. FSDP/TP ranks each pass their own. */
typedef struct SbExec {
  const SbDeviceOps *ops;
  SbDevice *dev;
  SbMemTracker *mem;
  char *error;
  size_t error_size;
} SbExec;

struct sb_layer {
  int32_t kind; /* sb_layer_kind */
  int64_t in_size, out_size;
  int32_t n_inputs;
  /* Device copies. LINEAR: weight [out,in], bias [out]. CONV2D: weight
   * [out_c, in_c/groups, kh, kw], bias [out_c]. AFFINE: scale and shift
   * [channels], always materialised. Empty buffers mean absent. */
  SbBuffer weight;
  SbBuffer bias;
  SbConvGeom conv;
  int64_t channels, spatial;
};

/* Row-batched GEMMs over coefficients run in blocks of this many spec rows
 * (SB_ROW_BLOCK*B GEMM rows), blocks starting at global multiples of it.
 * BLAS picks its kernel, and so its summation order, by the matrix shape:
 * with fixed global blocks every block is the same GEMM call wherever it
 * runs, so a multi-rank backend that splits spec rows only at multiples of
 * the block (sb_split_spec_rows) is bitwise identical to one device. */
#define SB_ROW_BLOCK 128

/* Spec rows [start, start+count) of S that part `index` of `parts` owns:
 * whole blocks of SB_ROW_BLOCK, as evenly as blocks allow, so a part may
 * get none (count 0, start at S) when S is small. */
static inline void sb_split_spec_rows(int64_t S, int parts, int index,
                                      int64_t *start, int64_t *count) {
  int64_t blocks = (S + SB_ROW_BLOCK - 1) / SB_ROW_BLOCK;
  int64_t q = blocks / parts, rem = blocks % parts;
  int64_t b0 = index * q + (index < rem ? index : rem);
  int64_t nb = q + (index < rem ? 1 : 0);
  int64_t lo = b0 * SB_ROW_BLOCK, hi = (b0 + nb) * SB_ROW_BLOCK;
  lo = lo < S ? lo : S;
  hi = hi < S ? hi : S;
  *start = lo;
  *count = hi - lo;
}

/* When every spec row fits in one block (S < SB_ROW_BLOCK, as in
 * branch-and-bound, where S is a handful of atoms) and the batch holds
 * more than SB_BATCH_BLOCK elements (domains), the GEMMs over coefficient
 * rows run instead per spec row and per block of SB_BATCH_BLOCK batch
 * elements, blocks starting at global multiples of it. A multi-rank
 * backend that gives each rank whole batch blocks (sb_split_batch) then
 * issues the very same calls as one device: its per-domain results are
 * bitwise identical. The rule depends on S and B only, never on the
 * number of ranks. */
#define SB_BATCH_BLOCK 32

static inline int sb_blocks_by_batch(int64_t S, int64_t B) {
  return S < SB_ROW_BLOCK && B > SB_BATCH_BLOCK;
}

/* Batch elements [start, start+count) that part `index` of `parts` owns:
 * whole blocks of SB_BATCH_BLOCK, as evenly as blocks allow. */
static inline void sb_split_batch(int64_t B, int parts, int index,
                                  int64_t *start, int64_t *count) {
  int64_t blocks = (B + SB_BATCH_BLOCK - 1) / SB_BATCH_BLOCK;
  int64_t q = blocks / parts, rem = blocks % parts;
  int64_t b0 = index * q + (index < rem ? index : rem);
  int64_t nb = q + (index < rem ? 1 : 0);
  int64_t lo = b0 * SB_BATCH_BLOCK, hi = (b0 + nb) * SB_BATCH_BLOCK;
  lo = lo < B ? lo : B;
  hi = hi < B ? hi : B;
  *start = lo;
  *count = hi - lo;
}

/* Backward pass arguments on raw device pointers; see sb_backward_args_v1.
 * A_out [S,B,out_size]; A_in[i] [S,B,in_size]; bias [S,B]. unit_index, when
 * not NULL, promises that A_out holds exactly the unit rows of
 * tensor_set_unit_rows with this HOST index (S entries), which lets a
 * linear layer gather rows of W instead of multiplying by them. */
typedef struct SbOpBackward {
  int32_t side;
  int64_t S, B;
  /* GEMMs blocked per spec row and SB_BATCH_BLOCK batch elements rather
   * than per SB_ROW_BLOCK spec rows: sb_blocks_by_batch of the whole
   * tensor's S and B, which a rank holding part of the batch cannot
   * derive from its own B. */
  int32_t batch_blocks;
  const int64_t *unit_index;
  const float *A_out;
  const float *pre_lower, *pre_upper, *alpha;
  float *A_in[SB_MAX_LAYER_INPUTS];
  int32_t accumulate[SB_MAX_LAYER_INPUTS];
  float *bias;
} SbOpBackward;

/* VJP arguments on raw device pointers; see sb_vjp_args_v1. grad_A_in[i]
 * NULL means zero; grad_bias NULL means ones; grad_alpha MAY be NULL. */
typedef struct SbOpVjp {
  int32_t side;
  int64_t S, B;
  int32_t batch_blocks; /* as in SbOpBackward */
  const float *A_out;
  const float *pre_lower, *pre_upper, *alpha;
  const float *grad_A_in[SB_MAX_LAYER_INPUTS];
  const float *grad_bias;
  float *grad_A_out;
  int32_t accumulate_A_out;
  float *grad_alpha;
  int32_t accumulate_alpha;
} SbOpVjp;

/* One operator family. create validates desc (the caller has already
 * checked kind, sizes > 0, in_size/out_size consistency is the family's job)
 * and fills layer's parameters; on failure nothing stays allocated. inputs
 * are [B, in_size] each, outputs [B, out_size]. */
typedef struct SbOpFamily {
  const char *name;
  int32_t n_inputs;
  int (*create)(SbExec *x, const sb_layer_desc_v1 *desc,
                struct sb_layer *layer);
  int (*forward)(SbExec *x, const struct sb_layer *layer, int64_t B,
                 const float *const *in, float *out);
  int (*ibp)(SbExec *x, const struct sb_layer *layer, int64_t B,
             const float *const *in_lower, const float *const *in_upper,
             float *out_lower, float *out_upper);
  int (*backward)(SbExec *x, const struct sb_layer *layer,
                  const SbOpBackward *args);
  /* The vector-Jacobian product of backward (ABI 1.1, sb_vjp_args_v1). */
  int (*backward_vjp)(SbExec *x, const struct sb_layer *layer,
                      const SbOpVjp *args);
} SbOpFamily;

extern const SbOpFamily sb_op_linear;
extern const SbOpFamily sb_op_conv;
extern const SbOpFamily sb_op_affine;
extern const SbOpFamily sb_op_add;
extern const SbOpFamily sb_op_relu;

/* The family of a sb_layer_kind, or NULL for an unknown kind. */
const SbOpFamily *sb_op_family(int32_t kind);

/* Release a layer's device parameters (the struct itself is the caller's). */
void sb_layer_release(SbExec *x, struct sb_layer *layer);

/* Bounds of A's rows over the box [x_lower, x_upper] ([B,N]) into out
 * [S,B]; bias [S,B] or NULL. Workspace goes through the tracker. */
int sb_concretize(SbExec *x, int32_t side, int64_t S, int64_t B, int64_t N,
                  const float *A, const float *bias, const float *x_lower,
                  const float *x_upper, float *out);

/* ABI 1.1 operations that belong to no layer (each row-local in S, so a
 * multi-rank backend runs them on its own rows). Shapes as in
 * abi/shardbound.h; grad_out NULL means ones. */
int sb_concretize_vjp(SbExec *x, int32_t side, int64_t S, int64_t B, int64_t N,
                      const float *A, const float *x_lower,
                      const float *x_upper, const float *grad_out,
                      float *grad_A);
int sb_relu_init_alpha(SbExec *x, int64_t S, int64_t B, int64_t N,
                       const float *pre_lower, const float *pre_upper,
                       float *alpha);
int sb_adam_step(SbExec *x, int64_t n, float *param, const float *grad,
                 float *m, float *v, const sb_adam_args_v1 *args);
int sb_beta_apply(SbExec *x, int32_t side, int64_t S, int64_t B, int64_t N,
                  float *A, const float *beta, const float *sign);
int sb_beta_vjp(SbExec *x, int32_t side, int64_t S, int64_t B, int64_t N,
                const float *grad_A, const float *sign, float *grad_beta,
                int32_t accumulate);

/* Sizes derived from a convolution's geometry: G groups of Cg input and
 * OCg output channels, K im2col rows per group, P output positions, ck
 * im2col rows in all (in_c*kh*kw). */
typedef struct SbConvDims {
  int64_t G, Cg, OCg, K, P, ck;
} SbConvDims;
SbConvDims sb_conv_dims(const SbConvGeom *g);
/* Checks a convolution's description (but not its weight) and sets l->conv
 * from it: for a backend that keeps only part of the weight. */
int sb_conv_geometry(SbExec *x, const sb_layer_desc_v1 *d, struct sb_layer *l);

/* Convolution over output channels [c0, c0+nc) only, for a layer whose
 * weight (and bias) hold the rows of just those channels; the whole layer
 * is c0 = 0, nc = out_c. Outputs and coefficients are [rows, nc, P]. */
/* out = conv(in) with weights w (the layer's W or |W|), no bias, + beta*out
 * (beta 0 ignores out's contents). */
int sb_conv_apply(SbExec *x, const struct sb_layer *l, int64_t c0, int64_t nc,
                  int64_t B, const float *w, const float *in, float beta,
                  float *out);
/* out += the layer's bias, per channel (nothing without one). */
int sb_conv_add_bias(SbExec *x, const struct sb_layer *l, int64_t nc, int64_t B,
                     float *out);
/* Interval bounds of conv(in) + bias over the box [lo, up]. */
int sb_conv_ibp(SbExec *x, const struct sb_layer *l, int64_t c0, int64_t nc,
                int64_t B, const float *lo, const float *up, float *out_lo,
                float *out_up);
/* dst [R, in_size] (+)= the transposed convolution of A [R, nc, P]: the
 * coefficients A put on the input (CROWN's backward step). With shift (nc
 * channels' bias) not NULL, also bias [R] += the bias's term, as
 * SbDeviceOps.channel_bias_backward. */
int sb_conv_transpose(SbExec *x, const struct sb_layer *l, int64_t c0,
                      int64_t nc, int64_t R, const float *A, int accumulate,
                      float *dst, const float *shift, float *bias);

/* Helpers for operator files. */
int sb_exec_fail(SbExec *x, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Device failure: copy the device's explanation after `what`. */
int sb_exec_device_fail(SbExec *x, int status, const char *what);
/* Allocate a tracked buffer of `floats` floats. */
int sb_exec_alloc(SbExec *x, int32_t category, int64_t floats, SbBuffer *out);
void sb_exec_free(SbExec *x, SbBuffer *buf);
/* Upload `floats` host floats into a new weights buffer. */
int sb_exec_upload_weights(SbExec *x, const float *host, int64_t floats,
                           SbBuffer *out);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_LAYER_H */
