/* SPDX-License-Identifier: MIT */
/* The CUDA device: every primitive is queued on the device's one stream
 * (cuBLAS for products, kernels.cu for the rest); CUDA and cuBLAS failures
 * become sb_status codes with the library's own explanation. */
#include "backends/cuda/device_cuda.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backends/cuda/kernels.h"

struct SbDevice {
  int ordinal;
  cudaStream_t stream;
  cublasHandle_t blas;
  char error[512];
};

static int dev_fail(SbDevice *dev, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int dev_fail(SbDevice *dev, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dev->error, sizeof dev->error, fmt, ap);
  va_end(ap);
  return status;
}

static int cuda_status(SbDevice *dev, cudaError_t e, const char *what) {
  if (e == cudaSuccess)
    return SB_OK;
  /* Clear the error so that the next launch check does not report it
   * again; sticky errors (a crashed kernel) come back on their own. */
  (void)cudaGetLastError();
  return dev_fail(
      dev,
      e == cudaErrorMemoryAllocation ? SB_ERR_OUT_OF_MEMORY : SB_ERR_DEVICE,
      "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static int blas_status(SbDevice *dev, cublasStatus_t s, const char *what) {
  if (s == CUBLAS_STATUS_SUCCESS)
    return SB_OK;
  return dev_fail(dev,
                  s == CUBLAS_STATUS_ALLOC_FAILED ? SB_ERR_OUT_OF_MEMORY
                                                  : SB_ERR_DEVICE,
                  "%s: %s", what, cublasGetStatusString(s));
}

/* The calling thread may have switched to another GPU (another context)
 * since the last call; stream and handle belong to this one. */
static int enter(SbDevice *dev) {
  return cuda_status(dev, cudaSetDevice(dev->ordinal), "cudaSetDevice");
}

#define ENTER(dev)                                                             \
  do {                                                                         \
    int enter_st_ = enter(dev);                                                \
    if (enter_st_ != SB_OK)                                                    \
      return enter_st_;                                                        \
  } while (0)

static void cuda_close(SbDevice *dev) {
  if (dev == NULL)
    return;
  if (cudaSetDevice(dev->ordinal) == cudaSuccess) {
    if (dev->stream)
      cudaStreamSynchronize(dev->stream);
    if (dev->blas)
      cublasDestroy(dev->blas);
    if (dev->stream)
      cudaStreamDestroy(dev->stream);
  }
  (void)cudaGetLastError();
  free(dev);
}

static int cuda_open(int ordinal, SbDevice **out, char *error,
                     size_t error_size) {
  *out = NULL;
  int count = 0;
  int st = sb_device_cuda_count(&count, error, error_size);
  if (st != SB_OK)
    return st;
  if (ordinal < 0 || ordinal >= count) {
    snprintf(error, error_size,
             "cuda device %d does not exist: %d device(s) visible (device=0.."
             "%d)",
             ordinal, count, count - 1);
    return SB_ERR_INVALID_ARGUMENT;
  }
  SbDevice *dev = calloc(1, sizeof *dev);
  if (dev == NULL) {
    snprintf(error, error_size, "out of host memory opening cuda device %d",
             ordinal);
    return SB_ERR_OUT_OF_MEMORY;
  }
  dev->ordinal = ordinal;
  st = enter(dev);
  if (st == SB_OK)
    st = cuda_status(
        dev, cudaStreamCreateWithFlags(&dev->stream, cudaStreamNonBlocking),
        "cudaStreamCreate");
  if (st == SB_OK)
    st = blas_status(dev, cublasCreate(&dev->blas), "cublasCreate");
  if (st == SB_OK)
    st = blas_status(dev, cublasSetStream(dev->blas, dev->stream),
                     "cublasSetStream");
  /* Verification needs float32 products: the default math mode never uses
   * TF32 tensor cores for SGEMM (which the TF32 mode would). */
  if (st == SB_OK)
    st = blas_status(dev, cublasSetMathMode(dev->blas, CUBLAS_DEFAULT_MATH),
                     "cublasSetMathMode");
  /* Identical inputs must give identical bounds (FSDP compares bitwise). */
  if (st == SB_OK)
    st = blas_status(
        dev, cublasSetAtomicsMode(dev->blas, CUBLAS_ATOMICS_NOT_ALLOWED),
        "cublasSetAtomicsMode");
  if (st != SB_OK) {
    snprintf(error, error_size, "cuda device %d: %s", ordinal, dev->error);
    cuda_close(dev);
    return st;
  }
  *out = dev;
  return SB_OK;
}

static const char *cuda_last_error(const SbDevice *dev) { return dev->error; }

static int64_t cuda_used_bytes(SbDevice *dev) {
  size_t free_b = 0, total_b = 0;
  if (enter(dev) != SB_OK ||
      cuda_status(dev, cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo"))
    return -1;
  return (int64_t)(total_b - free_b);
}

/* ---- memory ---- */

static int cuda_alloc(SbDevice *dev, size_t bytes, void **out) {
  *out = NULL;
  if (bytes == 0)
    return SB_OK;
  ENTER(dev);
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    (void)cudaGetLastError();
    (void)cudaMemGetInfo(&free_b, &total_b);
    (void)cudaGetLastError();
    return dev_fail(
        dev,
        e == cudaErrorMemoryAllocation ? SB_ERR_OUT_OF_MEMORY : SB_ERR_DEVICE,
        "cudaMalloc of %zu bytes on cuda device %d failed: %s "
        "(%zu of %zu bytes free)",
        bytes, dev->ordinal, cudaGetErrorString(e), free_b, total_b);
  }
  *out = p;
  return SB_OK;
}

static void cuda_free(SbDevice *dev, void *ptr) {
  if (ptr == NULL)
    return;
  /* Kernels queued on our non-blocking stream may still use the buffer;
   * waiting here does not rely on cudaFree's implicit synchronisation. */
  if (enter(dev) == SB_OK) {
    cuda_status(dev, cudaStreamSynchronize(dev->stream),
                "cudaStreamSynchronize before cudaFree");
    cuda_status(dev, cudaFree(ptr), "cudaFree");
  }
}

static int cuda_upload(SbDevice *dev, void *dst, const void *src,
                       size_t bytes) {
  if (bytes == 0)
    return SB_OK;
  ENTER(dev);
  /* The host buffer is only lent for the call, and it may be pinned (then
   * the copy would still read it after we return): wait for the copy. */
  int st = cuda_status(
      dev,
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, dev->stream),
      "upload (cudaMemcpyAsync)");
  if (st == SB_OK)
    st = cuda_status(dev, cudaStreamSynchronize(dev->stream),
                     "upload (cudaStreamSynchronize)");
  return st;
}

static int cuda_download(SbDevice *dev, void *dst, const void *src,
                         size_t bytes) {
  if (bytes == 0)
    return SB_OK;
  ENTER(dev);
  int st = cuda_status(
      dev,
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, dev->stream),
      "download (cudaMemcpyAsync)");
  if (st == SB_OK)
    st = cuda_status(dev, cudaStreamSynchronize(dev->stream),
                     "download (cudaStreamSynchronize)");
  return st;
}

static int cuda_copy(SbDevice *dev, void *dst, const void *src, size_t bytes) {
  if (bytes == 0)
    return SB_OK;
  ENTER(dev);
  /* cudaMemcpyDefault: with unified addressing the runtime finds the GPU
   * of each pointer, so a loopback rank can copy from a rank on another
   * GPU (a peer copy) with the same call. */
  return cuda_status(
      dev, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, dev->stream),
      "device copy (cudaMemcpyAsync)");
}

static int cuda_readable_from(SbDevice *dev, SbDevice *peer) {
  if (peer == NULL || peer->ordinal == dev->ordinal)
    return 1;
  int can = 0;
  if (enter(dev) != SB_OK ||
      cudaDeviceCanAccessPeer(&can, dev->ordinal, peer->ordinal) !=
          cudaSuccess ||
      !can) {
    (void)cudaGetLastError();
    return 0;
  }
  cudaError_t e = cudaDeviceEnablePeerAccess(peer->ordinal, 0);
  (void)cudaGetLastError();
  return e == cudaSuccess || e == cudaErrorPeerAccessAlreadyEnabled;
}

int sb_device_cuda_ordinal(const SbDevice *dev) { return dev->ordinal; }

cudaStream_t sb_device_cuda_stream(const SbDevice *dev) { return dev->stream; }

int sb_device_cuda_count(int *count, char *error, size_t error_size) {
  *count = 0;
  cudaError_t e = cudaGetDeviceCount(count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *count = 0;
    snprintf(error, error_size, "no CUDA device: %s", cudaGetErrorString(e));
    return SB_ERR_DEVICE;
  }
  if (*count == 0) {
    snprintf(error, error_size, "no CUDA device: the driver reports none");
    return SB_ERR_DEVICE;
  }
  return SB_OK;
}

static int cuda_zero(SbDevice *dev, void *dst, size_t bytes) {
  if (bytes == 0)
    return SB_OK;
  ENTER(dev);
  return cuda_status(dev, cudaMemsetAsync(dst, 0, bytes, dev->stream),
                     "cudaMemsetAsync");
}

static int cuda_sync(SbDevice *dev) {
  ENTER(dev);
  return cuda_status(dev, cudaStreamSynchronize(dev->stream),
                     "cudaStreamSynchronize");
}

/* ---- products ---- */

/* cuBLAS is column-major: a row-major [m,n] matrix is its transpose, so
 * row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, i.e. the
 * same call with the operands (and m, n) swapped. */
static int cuda_sgemm(SbDevice *dev, int trans_a, int trans_b, int64_t m,
                      int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float beta,
                      float *c, int64_t ldc) {
  if (m < 0 || n < 0 || k < 0)
    return dev_fail(dev, SB_ERR_INVALID_ARGUMENT,
                    "sgemm: negative size m=%lld n=%lld k=%lld", (long long)m,
                    (long long)n, (long long)k);
  if (m == 0 || n == 0)
    return SB_OK;
  ENTER(dev);
  if (k == 0)
    return cuda_status(dev,
                       sb_cuda_scale_matrix(dev->stream, m, n, beta, c, ldc),
                       "sgemm with k = 0");
  return blas_status(dev,
                     cublasSgemm_64(dev->blas,
                                    trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m,
                                    k, &alpha, b, ldb, a, lda, &beta, c, ldc),
                     "cublasSgemm");
}

static int cuda_sgemm_strided_batched(SbDevice *dev, int trans_a, int trans_b,
                                      int64_t m, int64_t n, int64_t k,
                                      float alpha, const float *a, int64_t lda,
                                      int64_t stride_a, const float *b,
                                      int64_t ldb, int64_t stride_b, float beta,
                                      float *c, int64_t ldc, int64_t stride_c,
                                      int64_t batch) {
  if (m < 0 || n < 0 || k < 0 || batch < 0)
    return dev_fail(dev, SB_ERR_INVALID_ARGUMENT,
                    "sgemm_strided_batched: negative size m=%lld n=%lld "
                    "k=%lld batch=%lld",
                    (long long)m, (long long)n, (long long)k, (long long)batch);
  if (m == 0 || n == 0 || batch == 0)
    return SB_OK;
  if (k == 0) {
    for (int64_t i = 0; i < batch; i++) {
      int st = cuda_sgemm(dev, trans_a, trans_b, m, n, 0, alpha, a, lda, b, ldb,
                          beta, c + i * stride_c, ldc);
      if (st != SB_OK)
        return st;
    }
    return SB_OK;
  }
  ENTER(dev);
  return blas_status(dev,
                     cublasSgemmStridedBatched_64(
                         dev->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                         trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha,
                         b, ldb, stride_b, a, lda, stride_a, &beta, c, ldc,
                         stride_c, batch),
                     "cublasSgemmStridedBatched");
}

/* ---- kernels ---- */

/* Every kernel primitive: make this GPU current, launch, and turn a launch
 * failure into a status naming the primitive. */
#define LAUNCH(dev, what, call)                                                \
  do {                                                                         \
    ENTER(dev);                                                                \
    return cuda_status((dev), (call), (what));                                 \
  } while (0)

static int cuda_abs(SbDevice *dev, int64_t n, const float *x, float *y) {
  LAUNCH(dev, "abs kernel", sb_cuda_abs(dev->stream, n, x, y));
}

static int cuda_add(SbDevice *dev, int64_t n, const float *a, const float *b,
                    float *out) {
  LAUNCH(dev, "add kernel", sb_cuda_add(dev->stream, n, a, b, out));
}

static int cuda_box_to_centre_radius(SbDevice *dev, int64_t n,
                                     const float *lower, const float *upper,
                                     float *centre, float *radius) {
  LAUNCH(dev, "box_to_centre_radius kernel",
         sb_cuda_box_to_centre_radius(dev->stream, n, lower, upper, centre,
                                      radius));
}

static int cuda_centre_radius_to_box(SbDevice *dev, int64_t n, const float *mid,
                                     const float *rad, float *lower,
                                     float *upper) {
  LAUNCH(dev, "centre_radius_to_box kernel",
         sb_cuda_centre_radius_to_box(dev->stream, n, mid, rad, lower, upper));
}

static int cuda_add_bias_rows(SbDevice *dev, int64_t rows, int64_t cols,
                              const float *bias, float *y) {
  LAUNCH(dev, "add_bias_rows kernel",
         sb_cuda_add_bias_rows(dev->stream, rows, cols, bias, y));
}

static int cuda_affine_forward(SbDevice *dev, int64_t rows, int64_t channels,
                               int64_t spatial, const float *scale,
                               const float *shift, int abs_scale,
                               const float *x, float *y) {
  LAUNCH(dev, "affine_forward kernel",
         sb_cuda_affine_forward(dev->stream, rows, channels, spatial, scale,
                                shift, abs_scale, x, y));
}

static int cuda_affine_backward(SbDevice *dev, int64_t rows, int64_t channels,
                                int64_t spatial, const float *scale,
                                const float *A, int accumulate, float *A_in) {
  LAUNCH(dev, "affine_backward kernel",
         sb_cuda_affine_backward(dev->stream, rows, channels, spatial, scale, A,
                                 accumulate, A_in));
}

static int cuda_channel_bias_backward(SbDevice *dev, int64_t rows,
                                      int64_t channels, int64_t spatial,
                                      const float *shift, const float *A,
                                      float *bias) {
  LAUNCH(dev, "channel_bias_backward kernel",
         sb_cuda_channel_bias_backward(dev->stream, rows, channels, spatial,
                                       shift, A, bias));
}

static int cuda_relu_forward(SbDevice *dev, int64_t n, const float *x,
                             float *y) {
  LAUNCH(dev, "relu_forward kernel",
         sb_cuda_relu_forward(dev->stream, n, x, y));
}

static int cuda_relu_ibp(SbDevice *dev, int64_t n, const float *lower,
                         const float *upper, float *out_lower,
                         float *out_upper) {
  LAUNCH(dev, "relu_ibp kernel",
         sb_cuda_relu_ibp(dev->stream, n, lower, upper, out_lower, out_upper));
}

static int cuda_relu_backward(SbDevice *dev, int side, int64_t S, int64_t B,
                              int64_t N, const float *A, const float *lower,
                              const float *upper, const float *alpha,
                              int accumulate, float *A_in, float *bias) {
  LAUNCH(dev, "relu_backward kernel",
         sb_cuda_relu_backward(dev->stream, side, S, B, N, A, lower, upper,
                               alpha, accumulate, A_in, bias));
}

static int cuda_concretize(SbDevice *dev, int side, int64_t S, int64_t B,
                           int64_t N, const float *A, const float *bias,
                           const float *lower, const float *upper, float *out) {
  LAUNCH(dev, "concretize kernel",
         sb_cuda_concretize(dev->stream, side, S, B, N, A, bias, lower, upper,
                            out));
}

static int cuda_set_unit_rows(SbDevice *dev, int64_t S, int64_t B, int64_t N,
                              const int64_t *index, float *A) {
  int st = cuda_zero(dev, A, (size_t)(S * B * N) * sizeof(float));
  if (st != SB_OK)
    return st;
  LAUNCH(dev, "set_unit_rows kernel",
         sb_cuda_set_unit_ones(dev->stream, S, B, N, index, A));
}

static int cuda_im2col(SbDevice *dev, const SbConvGeom *geom, int64_t n,
                       const float *x, float *cols) {
  LAUNCH(dev, "im2col kernel", sb_cuda_im2col(dev->stream, geom, n, x, cols));
}

static int cuda_col2im(SbDevice *dev, const SbConvGeom *geom, int64_t n,
                       const float *cols, float *x) {
  LAUNCH(dev, "col2im kernel", sb_cuda_col2im(dev->stream, geom, n, cols, x));
}

static int cuda_swap_outer_axes(SbDevice *dev, int64_t a, int64_t b, int64_t c,
                                const float *src, float beta, float *dst) {
  LAUNCH(dev, "swap_outer_axes kernel",
         sb_cuda_swap_outer_axes(dev->stream, a, b, c, src, beta, dst));
}

static int cuda_relu_backward_vjp(SbDevice *dev, int side, int64_t S, int64_t B,
                                  int64_t N, const float *A, const float *lower,
                                  const float *upper, const float *alpha,
                                  const float *G, const float *g,
                                  int accumulate_A, float *grad_A,
                                  int accumulate_alpha, float *grad_alpha) {
  LAUNCH(dev, "relu_backward_vjp kernel",
         sb_cuda_relu_backward_vjp(dev->stream, side, S, B, N, A, lower, upper,
                                   alpha, G, g, accumulate_A, grad_A,
                                   accumulate_alpha, grad_alpha));
}

static int cuda_concretize_vjp(SbDevice *dev, int side, int64_t S, int64_t B,
                               int64_t N, const float *A, const float *lower,
                               const float *upper, const float *g,
                               float *grad_A) {
  LAUNCH(dev, "concretize_vjp kernel",
         sb_cuda_concretize_vjp(dev->stream, side, S, B, N, A, lower, upper, g,
                                grad_A));
}

static int cuda_relu_init_alpha(SbDevice *dev, int64_t S, int64_t B, int64_t N,
                                const float *lower, const float *upper,
                                float *alpha) {
  LAUNCH(dev, "relu_init_alpha kernel",
         sb_cuda_relu_init_alpha(dev->stream, S, B, N, lower, upper, alpha));
}

static int cuda_adam_step(SbDevice *dev, int64_t n, float *param,
                          const float *grad, float *m, float *v,
                          const sb_adam_args_v1 *args) {
  LAUNCH(dev, "adam_step kernel",
         sb_cuda_adam_step(dev->stream, n, param, grad, m, v, args));
}

static int cuda_beta_apply(SbDevice *dev, int side, int64_t S, int64_t B,
                           int64_t N, const float *beta, const float *sign,
                           float *A) {
  LAUNCH(dev, "beta_apply kernel",
         sb_cuda_beta_apply(dev->stream, side, S, B, N, beta, sign, A));
}

static int cuda_beta_vjp(SbDevice *dev, int side, int64_t S, int64_t B,
                         int64_t N, const float *grad_A, const float *sign,
                         int accumulate, float *grad_beta) {
  LAUNCH(dev, "beta_vjp kernel",
         sb_cuda_beta_vjp(dev->stream, side, S, B, N, grad_A, sign, accumulate,
                          grad_beta));
}

static int cuda_channel_bias_vjp(SbDevice *dev, int64_t rows, int64_t channels,
                                 int64_t spatial, const float *shift,
                                 const float *g, float *y) {
  LAUNCH(dev, "channel_bias_vjp kernel",
         sb_cuda_channel_bias_vjp(dev->stream, rows, channels, spatial, shift,
                                  g, y));
}

const SbDeviceOps sb_device_cuda_ops = {
    .name = "cuda",
    .open = cuda_open,
    .close = cuda_close,
    .last_error = cuda_last_error,
    .used_bytes = cuda_used_bytes,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .zero = cuda_zero,
    .sync = cuda_sync,
    .sgemm = cuda_sgemm,
    .sgemm_strided_batched = cuda_sgemm_strided_batched,
    .abs = cuda_abs,
    .add = cuda_add,
    .box_to_centre_radius = cuda_box_to_centre_radius,
    .centre_radius_to_box = cuda_centre_radius_to_box,
    .add_bias_rows = cuda_add_bias_rows,
    .affine_forward = cuda_affine_forward,
    .affine_backward = cuda_affine_backward,
    .channel_bias_backward = cuda_channel_bias_backward,
    .relu_forward = cuda_relu_forward,
    .relu_ibp = cuda_relu_ibp,
    .relu_backward = cuda_relu_backward,
    .concretize = cuda_concretize,
    .set_unit_rows = cuda_set_unit_rows,
    .im2col = cuda_im2col,
    .col2im = cuda_col2im,
    .swap_outer_axes = cuda_swap_outer_axes,
    .relu_backward_vjp = cuda_relu_backward_vjp,
    .concretize_vjp = cuda_concretize_vjp,
    .relu_init_alpha = cuda_relu_init_alpha,
    .adam_step = cuda_adam_step,
    .beta_apply = cuda_beta_apply,
    .beta_vjp = cuda_beta_vjp,
    .channel_bias_vjp = cuda_channel_bias_vjp,
    .readable_from = cuda_readable_from,
};
