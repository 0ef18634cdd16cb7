/* SPDX-License-Identifier: MIT */
/* Launchers of the CUDA kernels behind the cuda device: each queues one
 * kernel on `stream` and returns the launch status (never waits). */
#ifndef SB_BACKENDS_CUDA_KERNELS_H
#define SB_BACKENDS_CUDA_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "backends/common/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Semantics, aliasing rules and shapes are those of the SbDeviceOps member
 * of the same name (backends/common/device.h). A count <= 0 launches
 * nothing and succeeds. */
cudaError_t sb_cuda_abs(cudaStream_t s, int64_t n, const float *x, float *y);
cudaError_t sb_cuda_add(cudaStream_t s, int64_t n, const float *a,
                        const float *b, float *out);
cudaError_t sb_cuda_box_to_centre_radius(cudaStream_t s, int64_t n,
                                         const float *lower, const float *upper,
                                         float *centre, float *radius);
cudaError_t sb_cuda_centre_radius_to_box(cudaStream_t s, int64_t n,
                                         const float *mid, const float *rad,
                                         float *lower, float *upper);
cudaError_t sb_cuda_add_bias_rows(cudaStream_t s, int64_t rows, int64_t cols,
                                  const float *bias, float *y);
cudaError_t sb_cuda_affine_forward(cudaStream_t s, int64_t rows,
                                   int64_t channels, int64_t spatial,
                                   const float *scale, const float *shift,
                                   int abs_scale, const float *x, float *y);
cudaError_t sb_cuda_affine_backward(cudaStream_t s, int64_t rows,
                                    int64_t channels, int64_t spatial,
                                    const float *scale, const float *A,
                                    int accumulate, float *A_in);
cudaError_t sb_cuda_channel_bias_backward(cudaStream_t s, int64_t rows,
                                          int64_t channels, int64_t spatial,
                                          const float *shift, const float *A,
                                          float *bias);
cudaError_t sb_cuda_relu_forward(cudaStream_t s, int64_t n, const float *x,
                                 float *y);
cudaError_t sb_cuda_relu_ibp(cudaStream_t s, int64_t n, const float *lower,
                             const float *upper, float *out_lower,
                             float *out_upper);
cudaError_t sb_cuda_relu_backward(cudaStream_t s, int side, int64_t S,
                                  int64_t B, int64_t N, const float *A,
                                  const float *lower, const float *upper,
                                  const float *alpha, int accumulate,
                                  float *A_in, float *bias);
cudaError_t sb_cuda_concretize(cudaStream_t s, int side, int64_t S, int64_t B,
                               int64_t N, const float *A, const float *bias,
                               const float *lower, const float *upper,
                               float *out);
/* Writes only the ones: A must already be zero. index is a HOST array. */
cudaError_t sb_cuda_set_unit_ones(cudaStream_t s, int64_t S, int64_t B,
                                  int64_t N, const int64_t *index, float *A);
cudaError_t sb_cuda_im2col(cudaStream_t s, const SbConvGeom *geom, int64_t n,
                           const float *x, float *cols);
cudaError_t sb_cuda_col2im(cudaStream_t s, const SbConvGeom *geom, int64_t n,
                           const float *cols, float *x);
cudaError_t sb_cuda_swap_outer_axes(cudaStream_t s, int64_t a, int64_t b,
                                    int64_t c, const float *src, float beta,
                                    float *dst);
/* C[r, c] = beta * C[r, c] for a [rows, cols] matrix with row stride ld
 * (the k == 0 case of a GEMM, which BLAS libraries treat unevenly). */
cudaError_t sb_cuda_scale_matrix(cudaStream_t s, int64_t rows, int64_t cols,
                                 float beta, float *c, int64_t ld);
/* ABI 1.1 primitives (alpha-/beta-CROWN). */
cudaError_t sb_cuda_relu_backward_vjp(cudaStream_t s, int side, int64_t S,
                                      int64_t B, int64_t N, const float *A,
                                      const float *lower, const float *upper,
                                      const float *alpha, const float *G,
                                      const float *g, int accumulate_A,
                                      float *grad_A, int accumulate_alpha,
                                      float *grad_alpha);
cudaError_t sb_cuda_concretize_vjp(cudaStream_t s, int side, int64_t S,
                                   int64_t B, int64_t N, const float *A,
                                   const float *lower, const float *upper,
                                   const float *g, float *grad_A);
cudaError_t sb_cuda_relu_init_alpha(cudaStream_t s, int64_t S, int64_t B,
                                    int64_t N, const float *lower,
                                    const float *upper, float *alpha);
/* args is a HOST struct. */
cudaError_t sb_cuda_adam_step(cudaStream_t s, int64_t n, float *param,
                              const float *grad, float *m, float *v,
                              const sb_adam_args_v1 *args);
cudaError_t sb_cuda_beta_apply(cudaStream_t s, int side, int64_t S, int64_t B,
                               int64_t N, const float *beta, const float *sign,
                               float *A);
cudaError_t sb_cuda_beta_vjp(cudaStream_t s, int side, int64_t S, int64_t B,
                             int64_t N, const float *grad_A, const float *sign,
                             int accumulate, float *grad_beta);
cudaError_t sb_cuda_channel_bias_vjp(cudaStream_t s, int64_t rows,
                                     int64_t channels, int64_t spatial,
                                     const float *shift, const float *g,
                                     float *y);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_CUDA_KERNELS_H */
