/* SPDX-License-Identifier: MIT */
/* The device interface: the few primitives (memory, SGEMM, elementwise and
 * structural kernels) that every operator is written against, so that a CPU,
 * CUDA or multi-rank backend supplies only these and never an operator. */
#ifndef SB_BACKENDS_DEVICE_H
#define SB_BACKENDS_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "abi/shardbound.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Conventions for every primitive below:
 * - All data is float32, row-major, contiguous, and lives in device memory
 *   obtained from the same device's alloc, unless a parameter says "host".
 * - Sizes and strides are element counts (int64_t), never bytes, except for
 *   the memory functions, which take bytes (size_t).
 * - Every primitive returns 0 (SB_OK) or a negative sb_status; on failure
 *   the device keeps an explanation for last_error(). A count of zero is a
 *   valid no-op.
 * - Primitives may run asynchronously with respect to the host; download()
 *   and sync() wait for all previously issued work of the device. Work on one
 *   device is executed in issue order.
 * - "rows" is the number of independent vectors a kernel processes, e.g.
 *   batch B for bounds [B,N] or S*B for coefficients [S,B,N].
 * - Output buffers MUST NOT alias inputs unless the primitive says so.
 * - A device instance is used by one thread at a time (a rank owns its own).
 */

/* Opaque per-instance state (a CUDA device adds its stream and handles). */
typedef struct SbDevice SbDevice;

/* Full ONNX Conv geometry of one convolution (NCHW, cross-correlation). */
typedef struct SbConvGeom {
  int64_t in_c, in_h, in_w;
  int64_t out_c, out_h, out_w;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left, pad_bottom, pad_right;
  int64_t dilation_h, dilation_w;
  int64_t groups;
} SbConvGeom;

typedef struct SbDeviceOps {
  /* Short device name for messages ("cpu", "cuda"). */
  const char *name;

  /* Open the device with the given ordinal. On failure returns a negative
   * sb_status and writes a message into error (error_size bytes, caller's).
   * Ownership: *out is released by close. */
  int (*open)(int ordinal, SbDevice **out, char *error, size_t error_size);
  void (*close)(SbDevice *dev);
  /* Explanation of the last failure of this device; never NULL. Ownership:
   * the device's, valid until the next call on it. */
  const char *(*last_error)(const SbDevice *dev);
  /* Bytes in use according to the driver (cudaMemGetInfo), or -1 when the
   * device has no such view (CPU). */
  int64_t (*used_bytes)(SbDevice *dev);

  /* ---- memory (bytes) ---- */
  /* Raw allocation, untracked: callers go through tracked_alloc.h. Returns
   * SB_ERR_OUT_OF_MEMORY and sets *out = NULL when it cannot allocate. A
   * request of 0 bytes succeeds with a non-NULL or NULL pointer that free
   * accepts. Contents are undefined. */
  int (*alloc)(SbDevice *dev, size_t bytes, void **out);
  void (*free)(SbDevice *dev, void *ptr); /* NULL is a no-op */
  /* dst (device) <- src (host). */
  int (*upload)(SbDevice *dev, void *dst, const void *src, size_t bytes);
  /* dst (host) <- src (device); waits for the data. */
  int (*download)(SbDevice *dev, void *dst, const void *src, size_t bytes);
  /* dst <- src, both device; the ranges MUST NOT overlap. src MAY belong to
   * another device of the same kind (another rank of a loopback
   * communicator, possibly on another GPU). */
  int (*copy)(SbDevice *dev, void *dst, const void *src, size_t bytes);
  int (*zero)(SbDevice *dev, void *dst, size_t bytes);
  /* Wait until all issued work has finished. */
  int (*sync)(SbDevice *dev);

  /* ---- products ---- */
  /* Row-major C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, where
   * op(X) = X^T when trans_x is non-zero. lda/ldb/ldc are the row strides of
   * A, B, C as stored (A stored [m,k] with lda >= k when not transposed, or
   * [k,m] with lda >= m when transposed). beta == 0 ignores C's contents
   * (NaN in C does not propagate). */
  int (*sgemm)(SbDevice *dev, int trans_a, int trans_b, int64_t m, int64_t n,
               int64_t k, float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
  /* `batch` independent sgemm calls; problem i uses a + i*stride_a,
   * b + i*stride_b, c + i*stride_c (a stride of 0 reuses one matrix, e.g.
   * the weights). The C matrices of different problems MUST NOT overlap. */
  int (*sgemm_strided_batched)(SbDevice *dev, int trans_a, int trans_b,
                               int64_t m, int64_t n, int64_t k, float alpha,
                               const float *a, int64_t lda, int64_t stride_a,
                               const float *b, int64_t ldb, int64_t stride_b,
                               float beta, float *c, int64_t ldc,
                               int64_t stride_c, int64_t batch);

  /* ---- elementwise ---- */
  /* y[i] = |x[i]|, n elements; y MAY equal x. */
  int (*abs)(SbDevice *dev, int64_t n, const float *x, float *y);
  /* out[i] = a[i] + b[i]; out MAY equal a or b. */
  int (*add)(SbDevice *dev, int64_t n, const float *a, const float *b,
             float *out);
  /* centre c = (l+u)/2, radius r = (u-l)/2, n elements. */
  int (*box_to_centre_radius)(SbDevice *dev, int64_t n, const float *lower,
                              const float *upper, float *centre, float *radius);
  /* lower = mid - rad, upper = mid + rad; lower MAY equal mid and upper MAY
   * equal rad (in place). */
  int (*centre_radius_to_box)(SbDevice *dev, int64_t n, const float *mid,
                              const float *rad, float *lower, float *upper);
  /* y[r,j] += bias[j] for y [rows, cols] (in place). */
  int (*add_bias_rows)(SbDevice *dev, int64_t rows, int64_t cols,
                       const float *bias, float *y);

  /* ---- per-channel affine over x [rows, channels, spatial] ---- */
  /* y[r,c,s] = scale[c] * x[r,c,s] + shift[c]. scale NULL means 1, shift
   * NULL means 0; abs_scale non-zero uses |scale[c]| (the radius in IBP).
   * y MAY equal x. */
  int (*affine_forward)(SbDevice *dev, int64_t rows, int64_t channels,
                        int64_t spatial, const float *scale, const float *shift,
                        int abs_scale, const float *x, float *y);
  /* Coefficients through the affine map: A_in[r,c,s] = scale[c] * A[r,c,s]
   * (scale NULL means 1), overwriting A_in, or adding to it when accumulate
   * is non-zero. A_in MAY equal A only when accumulate is zero. */
  int (*affine_backward)(SbDevice *dev, int64_t rows, int64_t channels,
                         int64_t spatial, const float *scale, const float *A,
                         int accumulate, float *A_in);
  /* The constant term of a per-channel shift: bias[r] += sum_{c,s}
   * A[r,c,s] * shift[c] (conv bias, affine shift). */
  int (*channel_bias_backward)(SbDevice *dev, int64_t rows, int64_t channels,
                               int64_t spatial, const float *shift,
                               const float *A, float *bias);

  /* ---- ReLU ---- */
  /* y = max(x, 0); y MAY equal x. */
  int (*relu_forward)(SbDevice *dev, int64_t n, const float *x, float *y);
  /* [max(l,0), max(u,0)]; outputs MAY equal inputs. */
  int (*relu_ibp)(SbDevice *dev, int64_t n, const float *lower,
                  const float *upper, float *out_lower, float *out_upper);
  /* CROWN through a ReLU (DESIGN.md section 4). A, A_in, alpha are
   * [S,B,N]; lower/upper the pre-activation bounds [B,N]; bias [S,B].
   * Per element with l, u the bounds of its neuron and a = A[s,b,n]:
   * - l >= 0: coefficient a (identity); u <= 0: 0. No bias term.
   * - unstable (l < 0 < u): upper line slope s = u/(u-l), intercept
   *   t = -l*s; lower slope al = alpha[s,b,n] when alpha is given, else 1
   *   when u > -l, else 0.
   *   SB_SIDE_LOWER: a_in = al*max(a,0) + s*min(a,0); bias += min(a,0)*t.
   *   SB_SIDE_UPPER: a_in = al*min(a,0) + s*max(a,0); bias += max(a,0)*t.
   * A_in is overwritten, or added to when accumulate is non-zero; bias is
   * always added to. A_in MUST NOT alias A. */
  int (*relu_backward)(SbDevice *dev, int side, int64_t S, int64_t B, int64_t N,
                       const float *A, const float *lower, const float *upper,
                       const float *alpha, int accumulate, float *A_in,
                       float *bias);

  /* ---- bounds from coefficients ---- */
  /* out[s,b] = bias[s,b] + sum_n A[s,b,n]*centre[b,n] -/+ sum_n
   * |A[s,b,n]|*radius[b,n] (minus for SB_SIDE_LOWER), with the centre and
   * radius (box.h) of the box [lower, upper]: taking the box itself spares
   * a conversion pass per call, which branch-and-bound makes every step.
   * A [S,B,N]; lower, upper [B,N]; bias, out [S,B]; bias NULL means 0; out
   * MAY equal bias. */
  int (*concretize)(SbDevice *dev, int side, int64_t S, int64_t B, int64_t N,
                    const float *A, const float *bias, const float *lower,
                    const float *upper, float *out);
  /* A [S,B,N] becomes zero except A[s,b,index[s]] = 1 for every b. index is
   * a HOST array of S entries, each in [0,N) (checked by the caller). */
  int (*set_unit_rows)(SbDevice *dev, int64_t S, int64_t B, int64_t N,
                       const int64_t *index, float *A);

  /* ---- convolution structure ---- */
  /* For n images x [n, in_c, in_h, in_w]: cols [in_c*kernel_h*kernel_w, n,
   * out_h*out_w] with cols[(c,i,j), im, (oh,ow)] = x[im, c, oh*stride_h -
   * pad_top + i*dilation_h, ow*stride_w - pad_left + j*dilation_w] (0
   * outside the image). The images lie side by side in each row, so that one
   * GEMM by the [out_c, in_c*kh*kw] weight convolves all of them. Rows of
   * group g are the contiguous block of channels [g*in_c/groups,
   * (g+1)*in_c/groups). */
  int (*im2col)(SbDevice *dev, const SbConvGeom *geom, int64_t n,
                const float *x, float *cols);
  /* The adjoint of im2col: x[...] += cols[...] for every (c,i,j,oh,ow) that
   * im2col reads from inside the image; padding positions are dropped. x is
   * ADDED to (zero it first for an overwrite). Same layouts as im2col. */
  int (*col2im)(SbDevice *dev, const SbConvGeom *geom, int64_t n,
                const float *cols, float *x);
  /* dst [b, a, c] = src [a, b, c] with the two outer axes swapped, + beta *
   * dst (beta 0 ignores dst's contents): the layout change between a
   * row-batched product's [channels, rows, positions] and [rows, channels,
   * positions]. dst MUST NOT overlap src. */
  int (*swap_outer_axes)(SbDevice *dev, int64_t a, int64_t b, int64_t c,
                         const float *src, float beta, float *dst);
  /* ---- ABI 1.1: gradients for alpha-/beta-CROWN ---- */
  /* The vector-Jacobian product of relu_backward (same shapes and
   * relaxation). G [S,B,N] is dL/dA_in (NULL means zero), g [S,B] dL/dbias
   * (NULL means ones). Per element, stable active: dA = G; stable inactive:
   * 0; unstable with s, t, al as in relu_backward:
   *   SB_SIDE_LOWER: dA = G*(a>0 ? al : s) + g*(a<0 ? t : 0),
   *                  dalpha = G*max(a,0);
   *   SB_SIDE_UPPER: dA = G*(a<0 ? al : s) + g*(a>0 ? t : 0),
   *                  dalpha = G*min(a,0).
   * dalpha is 0 for stable neurons; with alpha NULL it is the gradient at
   * the default slope. grad_A [S,B,N] and grad_alpha [S,B,N]
   * (MAY be NULL) are overwritten, or added to when their accumulate flag
   * is non-zero. Outputs MUST NOT alias inputs. */
  int (*relu_backward_vjp)(SbDevice *dev, int side, int64_t S, int64_t B,
                           int64_t N, const float *A, const float *lower,
                           const float *upper, const float *alpha,
                           const float *G, const float *g, int accumulate_A,
                           float *grad_A, int accumulate_alpha,
                           float *grad_alpha);
  /* The gradient of concretize w.r.t. A: grad_A[s,b,n] = g[s,b] *
   * (centre[b,n] -/+ sign(A[s,b,n]) * radius[b,n]) (minus for
   * SB_SIDE_LOWER, sign(0) = 0), centre and radius those of [lower, upper];
   * g [S,B] NULL means ones. Overwrites. */
  int (*concretize_vjp)(SbDevice *dev, int side, int64_t S, int64_t B,
                        int64_t N, const float *A, const float *lower,
                        const float *upper, const float *g, float *grad_A);
  /* alpha[s,b,n] = 1 when upper[b,n] > -lower[b,n], else 0 (the default
   * lower slope of relu_backward), for every s. */
  int (*relu_init_alpha)(SbDevice *dev, int64_t S, int64_t B, int64_t N,
                         const float *lower, const float *upper, float *alpha);
  /* One Adam step on n elements, in place on param, m, v (PyTorch
   * semantics; maximize negates the gradient first):
   *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
   *   param -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps);
   *   param = min(max(param, clamp_min), clamp_max).
   * args is a HOST struct, already checked by the caller. */
  int (*adam_step)(SbDevice *dev, int64_t n, float *param, const float *grad,
                   float *m, float *v, const sb_adam_args_v1 *args);
  /* beta-CROWN split terms. A, beta [S,B,N]; sign [B,N] in {-1,0,1}.
   * beta_apply: A[s,b,n] += d * beta[s,b,n] * sign[b,n], d = +1 for
   * SB_SIDE_LOWER, -1 for SB_SIDE_UPPER (in place). beta_vjp: grad_beta
   * [S,B,N] = d * grad_A * sign, overwritten or added to when accumulate is
   * non-zero. */
  int (*beta_apply)(SbDevice *dev, int side, int64_t S, int64_t B, int64_t N,
                    const float *beta, const float *sign, float *A);
  int (*beta_vjp)(SbDevice *dev, int side, int64_t S, int64_t B, int64_t N,
                  const float *grad_A, const float *sign, int accumulate,
                  float *grad_beta);
  /* The gradient of channel_bias_backward w.r.t. A: y[r,c,s] += g[r] *
   * shift[c] for y [rows, channels, spatial]; g NULL means ones (conv and
   * linear biases, affine shifts). */
  int (*channel_bias_vjp)(SbDevice *dev, int64_t rows, int64_t channels,
                          int64_t spatial, const float *shift, const float *g,
                          float *y);

  /* ---- optional: skipping exactly-zero columns of a product ---- */
  /* Both MAY be NULL (a device without them gets dense products). */
  /* The columns of A [rows, cols] (row stride lda >= cols) that hold at
   * least one element other than +-0 (NaN counts as non-zero), ascending,
   * into the HOST array index (cols entries); *count (HOST) gets how many.
   * Waits for the data. */
  int (*nonzero_cols)(SbDevice *dev, int64_t rows, int64_t cols, const float *A,
                      int64_t lda, int64_t *index, int64_t *count);
  /* dst[r,j] = src[r*lds + index[j]] for dst [rows, k] (contiguous); index
   * is a HOST array of k entries, each a column of src (checked by the
   * caller). dst MUST NOT overlap src. */
  int (*gather_cols)(SbDevice *dev, int64_t rows, const float *src, int64_t lds,
                     int64_t k, const int64_t *index, float *dst);

  /* ---- optional: convolutions in one kernel ---- */
  /* Both MAY be NULL (the operator then uses im2col and sgemm, or sgemm
   * with W^T and col2im). groups MUST be 1.
   * conv_forward: for each of n rows, out [nc, out_h, out_w] = the
   * convolution of x [in_c, in_h, in_w] with w [nc, in_c, kh, kw] (no
   * bias) + beta * out (beta 0 ignores out's contents). out MUST NOT
   * overlap x or w. */
  int (*conv_forward)(SbDevice *dev, const SbConvGeom *geom, int64_t n,
                      int64_t nc, const float *w, const float *x, float beta,
                      float *out);
  /* conv_transpose: for each of n rows, x [in_c, in_h, in_w] gets the
   * sum over oc < nc, kh, kw of w[oc, ic, kh, kw] * a[oc, oh, ow] at
   * ih = oh*sh - pad_top + kh*dh, iw = ow*sw - pad_left + kw*dw (positions
   * in the padding are dropped): a [n, nc, out_h, out_w] holds nc output
   * channels and w [nc, in_c, kh, kw] their weights. Added to x when
   * accumulate is non-zero, else x is overwritten. x MUST NOT overlap a
   * or w. When shift is not NULL it also does what channel_bias_backward
   * (n, nc, out_h * out_w, shift, a, bias) does (the float sums in another
   * order), while it reads a anyway. */
  int (*conv_transpose)(SbDevice *dev, const SbConvGeom *geom, int64_t n,
                        int64_t nc, const float *w, const float *a,
                        int accumulate, float *x, const float *shift,
                        float *bias);

  /* ---- optional: ranks of one process reading each other's buffers ---- */
  /* Non-zero when kernels queued on dev may read buffers that peer
   * allocated directly (host memory; the same GPU; GPUs with peer access,
   * which this call may enable). The loopback communicator copies a peer's
   * buffer into dev's memory first when it says no. NULL means yes. */
  int (*readable_from)(SbDevice *dev, SbDevice *peer);
} SbDeviceOps;

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_DEVICE_H */
