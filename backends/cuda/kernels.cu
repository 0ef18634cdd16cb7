/* SPDX-License-Identifier: MIT */
/* The CUDA kernels of the cuda device (kernels and their launchers only: the
 * operator math lives in backends/common/op_*.c). */
#include "backends/cuda/kernels.h"
#include "backends/common/box.h"
#include "backends/common/relu_relax.h"

#include <cuda_runtime.h>

namespace {

/* Elementwise kernels use grid-stride loops over 64-bit indices, so a grid
 * of bounded size covers any count. */
const int kThreads = 256;
const int64_t kMaxBlocks = 8192;
/* Rows of the per-row reductions: gridDim.y is limited, so rows stride over
 * a bounded grid too. */
const int64_t kMaxRowBlocks = 65535;

unsigned blocks_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

/* Threads per block of a row reduction: a power of two in [32, 256], close
 * to the row length so that short rows do not leave most threads idle. */
unsigned reduce_threads(int64_t n) {
  unsigned t = 32;
  while ((int64_t)t < n && t < 256)
    t *= 2;
  return t;
}

unsigned row_blocks(int64_t rows) {
  return (unsigned)(rows < kMaxRowBlocks ? rows : kMaxRowBlocks);
}

__device__ inline int64_t grid_start() {
  return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ inline int64_t grid_step() {
  return (int64_t)gridDim.x * blockDim.x;
}

/* Sum of v over the block (blockDim.x a power of two); the result is valid in
 * thread 0. buf holds blockDim.x floats. */
__device__ float block_sum(float v, float *buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half)
      buf[threadIdx.x] += buf[threadIdx.x + half];
    __syncthreads();
  }
  float r = buf[0];
  /* The buffer is reused by the next row of the same block. */
  __syncthreads();
  return r;
}

__global__ void abs_kernel(int64_t n, const float *x, float *y) {
  for (int64_t i = grid_start(); i < n; i += grid_step())
    y[i] = fabsf(x[i]);
}

__global__ void add_kernel(int64_t n, const float *a, const float *b,
                           float *out) {
  for (int64_t i = grid_start(); i < n; i += grid_step())
    out[i] = a[i] + b[i];
}

__global__ void box_to_centre_radius_kernel(int64_t n, const float *lower,
                                            const float *upper, float *centre,
                                            float *radius) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    centre[i] = sb_box_centre(lower[i], upper[i]);
    radius[i] = sb_box_radius(lower[i], upper[i]);
  }
}

__global__ void centre_radius_to_box_kernel(int64_t n, const float *mid,
                                            const float *rad, float *lower,
                                            float *upper) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    float m = mid[i], r = rad[i];
    lower[i] = m - r;
    upper[i] = m + r;
  }
}

__global__ void add_bias_rows_kernel(int64_t n, int64_t cols, const float *bias,
                                     float *y) {
  for (int64_t i = grid_start(); i < n; i += grid_step())
    y[i] += bias[i % cols];
}

__global__ void affine_forward_kernel(int64_t n, int64_t channels,
                                      int64_t spatial, const float *scale,
                                      const float *shift, int abs_scale,
                                      const float *x, float *y) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    int64_t c = (i / spatial) % channels;
    float a = scale ? scale[c] : 1.0f;
    if (abs_scale)
      a = fabsf(a);
    float t = shift ? shift[c] : 0.0f;
    y[i] = a * x[i] + t;
  }
}

__global__ void affine_backward_kernel(int64_t n, int64_t channels,
                                       int64_t spatial, const float *scale,
                                       const float *A, int accumulate,
                                       float *A_in) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    int64_t c = (i / spatial) % channels;
    float v = (scale ? scale[c] : 1.0f) * A[i];
    A_in[i] = accumulate ? A_in[i] + v : v;
  }
}

__global__ void channel_bias_backward_kernel(int64_t rows, int64_t channels,
                                             int64_t spatial,
                                             const float *shift, const float *A,
                                             float *bias) {
  extern __shared__ float buf[];
  const int64_t len = channels * spatial;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *a = A + r * len;
    float acc = 0.0f;
    for (int64_t k = threadIdx.x; k < len; k += blockDim.x)
      acc += a[k] * shift[k / spatial];
    float total = block_sum(acc, buf);
    if (threadIdx.x == 0)
      bias[r] += total;
  }
}

__global__ void relu_forward_kernel(int64_t n, const float *x, float *y) {
  for (int64_t i = grid_start(); i < n; i += grid_step())
    y[i] = sb_relu(x[i]);
}

__global__ void relu_ibp_kernel(int64_t n, const float *lower,
                                const float *upper, float *out_lower,
                                float *out_upper) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    out_lower[i] = sb_relu(lower[i]);
    out_upper[i] = sb_relu(upper[i]);
  }
}

/* One block per (s,b) row: the coefficients are elementwise, the bias term
 * is the row's reduction. */
__global__ void relu_backward_kernel(int lower_side, int64_t rows, int64_t B,
                                     int64_t N, const float *A,
                                     const float *lower, const float *upper,
                                     const float *alpha, int accumulate,
                                     float *A_in, float *bias) {
  extern __shared__ float buf[];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row % B;
    const float *a = A + row * N;
    const float *al = alpha ? alpha + row * N : NULL;
    const float *l = lower + b * N, *u = upper + b * N;
    float *d = A_in + row * N;
    float extra = 0.0f;
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
      const SbReluBackTerm t = sb_relu_relax_backward(lower_side, a[n], l[n],
                                                      u[n], al ? al + n : NULL);
      extra += t.bias;
      d[n] = accumulate ? d[n] + t.coef : t.coef;
    }
    float total = block_sum(extra, buf);
    if (threadIdx.x == 0)
      bias[row] += total;
  }
}

__global__ void concretize_kernel(float sign, int64_t rows, int64_t B,
                                  int64_t N, const float *A, const float *bias,
                                  const float *lower, const float *upper,
                                  float *out) {
  extern __shared__ float buf[];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const int64_t b = row % B;
    const float *a = A + row * N;
    const float *l = lower + b * N, *u = upper + b * N;
    float dot = 0.0f, spread = 0.0f;
    for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
      dot += a[n] * sb_box_centre(l[n], u[n]);
      spread += fabsf(a[n]) * sb_box_radius(l[n], u[n]);
    }
    dot = block_sum(dot, buf);
    spread = block_sum(spread, buf);
    if (threadIdx.x == 0)
      out[row] = (bias ? bias[row] : 0.0f) + dot + sign * spread;
  }
}

/* Indices travel as a kernel argument (4 KiB parameter space), so no device
 * buffer, which the tracked allocator could not see, is needed for them. */
const int kUnitChunk = 480;
struct UnitIndex {
  int64_t index[kUnitChunk];
};

__global__ void set_unit_ones_kernel(int64_t s0, int64_t count, int64_t B,
                                     int64_t N, UnitIndex idx, float *A) {
  const int64_t n = count * B;
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    int64_t s = i / B, b = i % B;
    A[((s0 + s) * B + b) * N + idx.index[s]] = 1.0f;
  }
}

/* One thread per element of cols [ck, n, P]. */
__global__ void im2col_kernel(SbConvGeom g, int64_t n, int64_t total,
                              const float *x, float *cols) {
  const int64_t P = g.out_h * g.out_w;
  const int64_t khw = g.kernel_h * g.kernel_w;
  const int64_t img = g.in_c * g.in_h * g.in_w;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t row = i / (n * P);
    const int64_t im = (i / P) % n, p = i % P;
    const int64_t c = row / khw, ki = (row % khw) / g.kernel_w,
                  kj = row % g.kernel_w;
    const int64_t oh = p / g.out_w, ow = p % g.out_w;
    const int64_t ih = oh * g.stride_h - g.pad_top + ki * g.dilation_h;
    const int64_t iw = ow * g.stride_w - g.pad_left + kj * g.dilation_w;
    cols[i] = (ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w)
                  ? x[im * img + (c * g.in_h + ih) * g.in_w + iw]
                  : 0.0f;
  }
}

/* One thread per element of dst [b, a, c]. */
__global__ void swap_outer_axes_kernel(int64_t a, int64_t b, int64_t c,
                                       const float *src, float beta,
                                       float *dst) {
  const int64_t total = a * b * c;
  for (int64_t t = grid_start(); t < total; t += grid_step()) {
    const int64_t k = t % c, i = (t / c) % a, j = t / (c * a);
    const float v = src[(i * b + j) * c + k];
    dst[t] = beta == 0.0f ? v : v + beta * dst[t];
  }
}

/* Gather form of col2im: each image element sums the column entries that
 * im2col copied from it, so overlapping windows need no atomics and the
 * result does not depend on scheduling. */
__global__ void col2im_kernel(SbConvGeom g, int64_t n, int64_t total,
                              const float *cols, float *x) {
  const int64_t P = g.out_h * g.out_w;
  const int64_t hw = g.in_h * g.in_w;
  const int64_t img = g.in_c * hw;
  for (int64_t i = grid_start(); i < total; i += grid_step()) {
    const int64_t im = i / img;
    const int64_t c = (i % img) / hw;
    const int64_t ih = (i % hw) / g.in_w, iw = i % g.in_w;
    const float *ci = cols + im * P;
    float sum = 0.0f;
    for (int64_t ki = 0; ki < g.kernel_h; ki++) {
      const int64_t th = ih + g.pad_top - ki * g.dilation_h;
      if (th < 0 || th % g.stride_h != 0)
        continue;
      const int64_t oh = th / g.stride_h;
      if (oh >= g.out_h)
        continue;
      for (int64_t kj = 0; kj < g.kernel_w; kj++) {
        const int64_t tw = iw + g.pad_left - kj * g.dilation_w;
        if (tw < 0 || tw % g.stride_w != 0)
          continue;
        const int64_t ow = tw / g.stride_w;
        if (ow >= g.out_w)
          continue;
        sum += ci[((c * g.kernel_h + ki) * g.kernel_w + kj) * n * P +
                  oh * g.out_w + ow];
      }
    }
    x[i] += sum;
  }
}

__global__ void scale_matrix_kernel(int64_t rows, int64_t cols, float beta,
                                    float *c, int64_t ld) {
  const int64_t n = rows * cols;
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    float *p = c + (i / cols) * ld + i % cols;
    /* beta == 0 overwrites, so that NaN in C does not survive. */
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

/* ---- ABI 1.1 (alpha-/beta-CROWN), all elementwise ---- */

__global__ void relu_backward_vjp_kernel(int lower_side, int64_t n, int64_t B,
                                         int64_t N, const float *A,
                                         const float *lower, const float *upper,
                                         const float *alpha, const float *G,
                                         const float *g, int accumulate_A,
                                         float *grad_A, int accumulate_alpha,
                                         float *grad_alpha) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const int64_t row = i / N, k = (row % B) * N + i % N;
    const float gn = G ? G[i] : 0.0f;
    float va, vl;
    sb_relu_relax_backward_vjp(lower_side, A[i], lower[k], upper[k],
                               alpha ? alpha + i : NULL, gn, g ? g[row] : 1.0f,
                               &va, &vl);
    grad_A[i] = accumulate_A ? grad_A[i] + va : va;
    if (grad_alpha)
      grad_alpha[i] = accumulate_alpha ? grad_alpha[i] + vl : vl;
  }
}

__global__ void concretize_vjp_kernel(float sign, int64_t n, int64_t B,
                                      int64_t N, const float *A,
                                      const float *lower, const float *upper,
                                      const float *g, float *grad_A) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const int64_t row = i / N, k = (row % B) * N + i % N;
    const float a = A[i];
    const float sa = a > 0.0f ? 1.0f : a < 0.0f ? -1.0f : 0.0f;
    grad_A[i] =
        (g ? g[row] : 1.0f) * (sb_box_centre(lower[k], upper[k]) +
                               sign * sa * sb_box_radius(lower[k], upper[k]));
  }
}

__global__ void relu_init_alpha_kernel(int64_t n, int64_t BN,
                                       const float *lower, const float *upper,
                                       float *alpha) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const int64_t k = i % BN;
    alpha[i] = sb_relu_default_alpha(lower[k], upper[k]);
  }
}

__global__ void adam_step_kernel(int64_t n, float *param, const float *grad,
                                 float *m, float *v, float lr, float b1,
                                 float b2, float eps, float c1, float c2,
                                 int maximize, float lo, float hi) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    float gi = maximize ? -grad[i] : grad[i];
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float p = param[i] - lr * (mi / c1) / (sqrtf(vi / c2) + eps);
    param[i] = fminf(fmaxf(p, lo), hi);
  }
}

__global__ void beta_apply_kernel(float d, int64_t n, int64_t BN,
                                  const float *beta, const float *sign,
                                  float *A) {
  for (int64_t i = grid_start(); i < n; i += grid_step())
    A[i] += d * beta[i] * sign[i % BN];
}

__global__ void beta_vjp_kernel(float d, int64_t n, int64_t BN,
                                const float *grad_A, const float *sign,
                                int accumulate, float *grad_beta) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    float v = d * grad_A[i] * sign[i % BN];
    grad_beta[i] = accumulate ? grad_beta[i] + v : v;
  }
}

__global__ void channel_bias_vjp_kernel(int64_t n, int64_t channels,
                                        int64_t spatial, const float *shift,
                                        const float *g, float *y) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const int64_t cs = channels * spatial;
    const int64_t r = i / cs, c = (i % cs) / spatial;
    y[i] += (g ? g[r] : 1.0f) * shift[c];
  }
}

} // namespace

extern "C" {

cudaError_t sb_cuda_abs(cudaStream_t s, int64_t n, const float *x, float *y) {
  if (n <= 0)
    return cudaSuccess;
  abs_kernel<<<blocks_for(n), kThreads, 0, s>>>(n, x, y);
  return cudaGetLastError();
}

cudaError_t sb_cuda_add(cudaStream_t s, int64_t n, const float *a,
                        const float *b, float *out) {
  if (n <= 0)
    return cudaSuccess;
  add_kernel<<<blocks_for(n), kThreads, 0, s>>>(n, a, b, out);
  return cudaGetLastError();
}

cudaError_t sb_cuda_box_to_centre_radius(cudaStream_t s, int64_t n,
                                         const float *lower, const float *upper,
                                         float *centre, float *radius) {
  if (n <= 0)
    return cudaSuccess;
  box_to_centre_radius_kernel<<<blocks_for(n), kThreads, 0, s>>>(
      n, lower, upper, centre, radius);
  return cudaGetLastError();
}

cudaError_t sb_cuda_centre_radius_to_box(cudaStream_t s, int64_t n,
                                         const float *mid, const float *rad,
                                         float *lower, float *upper) {
  if (n <= 0)
    return cudaSuccess;
  centre_radius_to_box_kernel<<<blocks_for(n), kThreads, 0, s>>>(n, mid, rad,
                                                                 lower, upper);
  return cudaGetLastError();
}

cudaError_t sb_cuda_add_bias_rows(cudaStream_t s, int64_t rows, int64_t cols,
                                  const float *bias, float *y) {
  const int64_t n = rows * cols;
  if (rows <= 0 || cols <= 0)
    return cudaSuccess;
  add_bias_rows_kernel<<<blocks_for(n), kThreads, 0, s>>>(n, cols, bias, y);
  return cudaGetLastError();
}

cudaError_t sb_cuda_affine_forward(cudaStream_t s, int64_t rows,
                                   int64_t channels, int64_t spatial,
                                   const float *scale, const float *shift,
                                   int abs_scale, const float *x, float *y) {
  if (rows <= 0 || channels <= 0 || spatial <= 0)
    return cudaSuccess;
  const int64_t n = rows * channels * spatial;
  affine_forward_kernel<<<blocks_for(n), kThreads, 0, s>>>(
      n, channels, spatial, scale, shift, abs_scale, x, y);
  return cudaGetLastError();
}

cudaError_t sb_cuda_affine_backward(cudaStream_t s, int64_t rows,
                                    int64_t channels, int64_t spatial,
                                    const float *scale, const float *A,
                                    int accumulate, float *A_in) {
  if (rows <= 0 || channels <= 0 || spatial <= 0)
    return cudaSuccess;
  const int64_t n = rows * channels * spatial;
  affine_backward_kernel<<<blocks_for(n), kThreads, 0, s>>>(
      n, channels, spatial, scale, A, accumulate, A_in);
  return cudaGetLastError();
}

cudaError_t sb_cuda_channel_bias_backward(cudaStream_t s, int64_t rows,
                                          int64_t channels, int64_t spatial,
                                          const float *shift, const float *A,
                                          float *bias) {
  if (rows <= 0 || channels <= 0 || spatial <= 0)
    return cudaSuccess;
  unsigned t = reduce_threads(channels * spatial);
  channel_bias_backward_kernel<<<row_blocks(rows), t, t * sizeof(float), s>>>(
      rows, channels, spatial, shift, A, bias);
  return cudaGetLastError();
}

cudaError_t sb_cuda_relu_forward(cudaStream_t s, int64_t n, const float *x,
                                 float *y) {
  if (n <= 0)
    return cudaSuccess;
  relu_forward_kernel<<<blocks_for(n), kThreads, 0, s>>>(n, x, y);
  return cudaGetLastError();
}

cudaError_t sb_cuda_relu_ibp(cudaStream_t s, int64_t n, const float *lower,
                             const float *upper, float *out_lower,
                             float *out_upper) {
  if (n <= 0)
    return cudaSuccess;
  relu_ibp_kernel<<<blocks_for(n), kThreads, 0, s>>>(n, lower, upper, out_lower,
                                                     out_upper);
  return cudaGetLastError();
}

cudaError_t sb_cuda_relu_backward(cudaStream_t s, int side, int64_t S,
                                  int64_t B, int64_t N, const float *A,
                                  const float *lower, const float *upper,
                                  const float *alpha, int accumulate,
                                  float *A_in, float *bias) {
  const int64_t rows = S * B;
  if (S <= 0 || B <= 0 || N <= 0)
    return cudaSuccess;
  unsigned t = reduce_threads(N);
  relu_backward_kernel<<<row_blocks(rows), t, t * sizeof(float), s>>>(
      side == SB_SIDE_LOWER, rows, B, N, A, lower, upper, alpha, accumulate,
      A_in, bias);
  return cudaGetLastError();
}

cudaError_t sb_cuda_concretize(cudaStream_t s, int side, int64_t S, int64_t B,
                               int64_t N, const float *A, const float *bias,
                               const float *lower, const float *upper,
                               float *out) {
  const int64_t rows = S * B;
  if (S <= 0 || B <= 0)
    return cudaSuccess;
  /* N == 0 still writes out = bias (an empty sum), like the CPU device. */
  unsigned t = reduce_threads(N);
  concretize_kernel<<<row_blocks(rows), t, t * sizeof(float), s>>>(
      side == SB_SIDE_LOWER ? -1.0f : 1.0f, rows, B, N, A, bias, lower, upper,
      out);
  return cudaGetLastError();
}

cudaError_t sb_cuda_set_unit_ones(cudaStream_t s, int64_t S, int64_t B,
                                  int64_t N, const int64_t *index, float *A) {
  if (S <= 0 || B <= 0 || N <= 0)
    return cudaSuccess;
  for (int64_t s0 = 0; s0 < S; s0 += kUnitChunk) {
    int64_t count = S - s0 < kUnitChunk ? S - s0 : kUnitChunk;
    UnitIndex idx;
    for (int64_t i = 0; i < count; i++)
      idx.index[i] = index[s0 + i];
    set_unit_ones_kernel<<<blocks_for(count * B), kThreads, 0, s>>>(
        s0, count, B, N, idx, A);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
      return e;
  }
  return cudaSuccess;
}

cudaError_t sb_cuda_im2col(cudaStream_t s, const SbConvGeom *geom, int64_t n,
                           const float *x, float *cols) {
  const int64_t total = n * geom->in_c * geom->kernel_h * geom->kernel_w *
                        geom->out_h * geom->out_w;
  if (total <= 0)
    return cudaSuccess;
  im2col_kernel<<<blocks_for(total), kThreads, 0, s>>>(*geom, n, total, x,
                                                       cols);
  return cudaGetLastError();
}

cudaError_t sb_cuda_col2im(cudaStream_t s, const SbConvGeom *geom, int64_t n,
                           const float *cols, float *x) {
  const int64_t total = n * geom->in_c * geom->in_h * geom->in_w;
  if (total <= 0 || geom->out_h <= 0 || geom->out_w <= 0)
    return cudaSuccess;
  col2im_kernel<<<blocks_for(total), kThreads, 0, s>>>(*geom, n, total, cols,
                                                       x);
  return cudaGetLastError();
}

cudaError_t sb_cuda_swap_outer_axes(cudaStream_t s, int64_t a, int64_t b,
                                    int64_t c, const float *src, float beta,
                                    float *dst) {
  const int64_t total = a * b * c;
  if (total <= 0)
    return cudaSuccess;
  swap_outer_axes_kernel<<<blocks_for(total), kThreads, 0, s>>>(a, b, c, src,
                                                                beta, dst);
  return cudaGetLastError();
}

cudaError_t sb_cuda_scale_matrix(cudaStream_t s, int64_t rows, int64_t cols,
                                 float beta, float *c, int64_t ld) {
  if (rows <= 0 || cols <= 0 || beta == 1.0f)
    return cudaSuccess;
  scale_matrix_kernel<<<blocks_for(rows * cols), kThreads, 0, s>>>(rows, cols,
                                                                   beta, c, ld);
  return cudaGetLastError();
}

cudaError_t sb_cuda_relu_backward_vjp(cudaStream_t s, int side, int64_t S,
                                      int64_t B, int64_t N, const float *A,
                                      const float *lower, const float *upper,
                                      const float *alpha, const float *G,
                                      const float *g, int accumulate_A,
                                      float *grad_A, int accumulate_alpha,
                                      float *grad_alpha) {
  const int64_t n = S * B * N;
  if (S <= 0 || B <= 0 || N <= 0)
    return cudaSuccess;
  relu_backward_vjp_kernel<<<blocks_for(n), kThreads, 0, s>>>(
      side == SB_SIDE_LOWER, n, B, N, A, lower, upper, alpha, G, g,
      accumulate_A, grad_A, accumulate_alpha, grad_alpha);
  return cudaGetLastError();
}

cudaError_t sb_cuda_concretize_vjp(cudaStream_t s, int side, int64_t S,
                                   int64_t B, int64_t N, const float *A,
                                   const float *lower, const float *upper,
                                   const float *g, float *grad_A) {
  const int64_t n = S * B * N;
  if (S <= 0 || B <= 0 || N <= 0)
    return cudaSuccess;
  concretize_vjp_kernel<<<blocks_for(n), kThreads, 0, s>>>(
      side == SB_SIDE_LOWER ? -1.0f : 1.0f, n, B, N, A, lower, upper, g,
      grad_A);
  return cudaGetLastError();
}

cudaError_t sb_cuda_relu_init_alpha(cudaStream_t s, int64_t S, int64_t B,
                                    int64_t N, const float *lower,
                                    const float *upper, float *alpha) {
  const int64_t n = S * B * N;
  if (S <= 0 || B <= 0 || N <= 0)
    return cudaSuccess;
  relu_init_alpha_kernel<<<blocks_for(n), kThreads, 0, s>>>(n, B * N, lower,
                                                            upper, alpha);
  return cudaGetLastError();
}

cudaError_t sb_cuda_adam_step(cudaStream_t s, int64_t n, float *param,
                              const float *grad, float *m, float *v,
                              const sb_adam_args_v1 *a) {
  if (n <= 0)
    return cudaSuccess;
  /* The bias corrections are computed once, on the host, as on the CPU. */
  const float c1 = 1.0f - powf(a->beta1, (float)a->step);
  const float c2 = 1.0f - powf(a->beta2, (float)a->step);
  adam_step_kernel<<<blocks_for(n), kThreads, 0, s>>>(
      n, param, grad, m, v, a->learning_rate, a->beta1, a->beta2, a->epsilon,
      c1, c2, a->maximize, a->clamp_min, a->clamp_max);
  return cudaGetLastError();
}

cudaError_t sb_cuda_beta_apply(cudaStream_t s, int side, int64_t S, int64_t B,
                               int64_t N, const float *beta, const float *sign,
                               float *A) {
  const int64_t n = S * B * N;
  if (n <= 0)
    return cudaSuccess;
  beta_apply_kernel<<<blocks_for(n), kThreads, 0, s>>>(
      side == SB_SIDE_LOWER ? 1.0f : -1.0f, n, B * N, beta, sign, A);
  return cudaGetLastError();
}

cudaError_t sb_cuda_beta_vjp(cudaStream_t s, int side, int64_t S, int64_t B,
                             int64_t N, const float *grad_A, const float *sign,
                             int accumulate, float *grad_beta) {
  const int64_t n = S * B * N;
  if (n <= 0)
    return cudaSuccess;
  beta_vjp_kernel<<<blocks_for(n), kThreads, 0, s>>>(
      side == SB_SIDE_LOWER ? 1.0f : -1.0f, n, B * N, grad_A, sign, accumulate,
      grad_beta);
  return cudaGetLastError();
}

cudaError_t sb_cuda_channel_bias_vjp(cudaStream_t s, int64_t rows,
                                     int64_t channels, int64_t spatial,
                                     const float *shift, const float *g,
                                     float *y) {
  const int64_t n = rows * channels * spatial;
  if (n <= 0)
    return cudaSuccess;
  channel_bias_vjp_kernel<<<blocks_for(n), kThreads, 0, s>>>(
      n, channels, spatial, shift, g, y);
  return cudaGetLastError();
}

} // extern "C"
