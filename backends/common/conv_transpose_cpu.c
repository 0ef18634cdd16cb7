/* SPDX-License-Identifier: MIT */
/* The transposed convolution of a CROWN backward pass, computed directly.
 *
 * Done as a GEMM with W^T and a col2im, the product's inner dimension is
 * the number of output channels (8 or 16 in the VNN-COMP ResNets), so
 * OpenBLAS spends as long zeroing and writing the im2col columns as
 * multiplying, and col2im then reads them all back. Here the columns are
 * never written: for a block of input channels, 8 image columns of one
 * phase (iw = q*stride_w + phase, q = 8 consecutive values) are summed in
 * registers over every output channel and kernel tap that reaches them,
 * and added to the image once. Each tap of that phase reads the output row
 * shifted by a whole number of columns; the row is first copied into a
 * zero-padded buffer so that every read is a full vector and columns
 * outside the output read zeros.
 *
 * Each row of the batch is computed on its own, in a fixed order, so a
 * result does not depend on how the rows were split into calls (the
 * multi-rank backends' bitwise guarantee, layer.h) or among threads. */
#include "backends/common/conv_transpose_cpu.h"
#include "backends/common/cpu_clones.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Image columns summed at once: one AVX register of floats. */
#define CT_LANES 8
typedef float ct_vec __attribute__((vector_size(CT_LANES * sizeof(float))));

/* Accumulators per step: 8, plus the loaded row and a broadcast weight,
 * fit the 16 vector registers. A block of 8 input channels takes one run
 * of 8 columns; an RGB image's 3 channels (padded to 4) take two runs. */
#define CT_ACCUMULATORS 8

typedef struct {
  const SbConvGeom *g;
  int64_t nc;         /* output channels in a */
  int64_t icp;        /* input channels padded to whole blocks */
  const float *wpack; /* [kh][kw][oc][icp], zeros for the padding */
  /* A row of a copied into [nc][out_h][width], output column ow at
   * ow - lo, zeros around it. */
  int64_t lo, width;
} CtPlan;

/* The shift of tap kw in phase ph: it reads output column q - shift for
 * image column q*sw + ph, or no column when the tap misses the phase. */
static inline int ct_shift(const SbConvGeom *g, int64_t kw, int64_t ph,
                           int64_t *shift) {
  const int64_t rel = kw * g->dilation_w - g->pad_left - ph;
  if (((rel % g->stride_w) + g->stride_w) % g->stride_w)
    return 0;
  *shift = rel / g->stride_w;
  return 1;
}

/* One row's input channels [ic0, ic0 + block), columns in runs of
 * CT_LANES x runs (block and runs constants after inlining, so that the
 * accumulators stay in registers). */
static inline __attribute__((always_inline)) void
ct_block(const CtPlan *p, const float *padded, float *x, int64_t ic0,
         const int block, const int runs) {
  const SbConvGeom *g = p->g;
  const int64_t OH = g->out_h, IH = g->in_h, IW = g->in_w;
  const int64_t sw = g->stride_w, nc = p->nc, icp = p->icp;
  const int64_t icn = g->in_c - ic0 < block ? g->in_c - ic0 : block;
  for (int64_t ih = 0; ih < IH; ih++)
    for (int64_t ph = 0; ph < sw && ph < IW; ph++) {
      const int64_t Q = (IW - ph + sw - 1) / sw;
      for (int64_t q0 = 0; q0 < Q; q0 += CT_LANES * runs) {
        ct_vec acc[CT_ACCUMULATORS];
#pragma GCC unroll 8
        for (int k = 0; k < block * runs; k++)
          acc[k] = (ct_vec){0};
        int touched = 0;
        for (int64_t kh = 0; kh < g->kernel_h; kh++) {
          const int64_t t = ih + g->pad_top - kh * g->dilation_h;
          if (t < 0 || t % g->stride_h || t / g->stride_h >= OH)
            continue;
          for (int64_t kw = 0; kw < g->kernel_w; kw++) {
            int64_t shift;
            if (!ct_shift(g, kw, ph, &shift))
              continue;
            touched = 1;
            const float *ap =
                padded + (t / g->stride_h) * p->width + (q0 - shift - p->lo);
            const float *wp =
                p->wpack + (kh * g->kernel_w + kw) * nc * icp + ic0;
            for (int64_t oc = 0; oc < nc; oc++) {
#pragma GCC unroll 2
              for (int r = 0; r < runs; r++) {
                ct_vec v;
                memcpy(&v, ap + oc * OH * p->width + r * CT_LANES, sizeof v);
#pragma GCC unroll 8
                for (int i = 0; i < block; i++)
                  acc[r * block + i] += wp[oc * icp + i] * v;
              }
            }
          }
        }
        if (!touched) /* no tap reaches these image columns */
          continue;
        /* Only constant indices touch acc, so that it stays in registers;
         * the sums leave through a plain array. */
        float sums[CT_ACCUMULATORS][CT_LANES];
#pragma GCC unroll 8
        for (int k = 0; k < block * runs; k++)
          memcpy(sums[k], &acc[k], sizeof acc[k]);
        for (int r = 0; r < runs; r++) {
          const int64_t q = q0 + r * CT_LANES;
          const int64_t lanes = Q - q < CT_LANES ? Q - q : CT_LANES;
          for (int64_t i = 0; i < icn; i++) {
            float *dst = x + (ic0 + i) * IH * IW + ih * IW + q * sw + ph;
            const float *s = sums[r * block + i];
            if (sw == 1) {
#pragma omp simd
              for (int64_t l = 0; l < lanes; l++)
                dst[l] += s[l];
            } else
              for (int64_t l = 0; l < lanes; l++)
                dst[l * sw] += s[l];
          }
        }
      }
    }
}

SB_CPU_CLONES
static void ct_rows(const CtPlan *p, int64_t n, const float *a, int accumulate,
                    float *x, float *padded) {
  const SbConvGeom *g = p->g;
  const int64_t in_size = g->in_c * g->in_h * g->in_w;
  const int64_t OH = g->out_h, OW = g->out_w;
  for (int64_t r = 0; r < n; r++) {
    float *xr = x + r * in_size;
    const float *ar = a + r * p->nc * OH * OW;
    /* The margins of padded stay zero from its allocation. */
    for (int64_t row = 0; row < p->nc * OH; row++)
      memcpy(padded + row * p->width - p->lo, ar + row * OW,
             (size_t)OW * sizeof(float));
    if (!accumulate)
      memset(xr, 0, (size_t)in_size * sizeof(float));
    if (p->icp == 4)
      ct_block(p, padded, xr, 0, 4, 2);
    else
      for (int64_t ic0 = 0; ic0 < g->in_c; ic0 += CT_ACCUMULATORS)
        ct_block(p, padded, xr, ic0, CT_ACCUMULATORS, 1);
  }
}

/* Rows per thread below which another thread costs more than it saves:
 * starting one takes tens of microseconds, a resnet_2b row a few. */
#define CT_MIN_ROWS_PER_THREAD 32
#define CT_MAX_THREADS         64

typedef struct {
  const CtPlan *p;
  int64_t n;
  const float *a;
  int accumulate;
  float *x, *padded;
  pthread_t thread;
  int started;
} CtPart;

static void *ct_part_run(void *arg) {
  CtPart *t = arg;
  ct_rows(t->p, t->n, t->a, t->accumulate, t->x, t->padded);
  return NULL;
}

int sb_cpu_conv_transpose(const SbConvGeom *g, int64_t n, int64_t nc,
                          const float *w, const float *a, int accumulate,
                          float *x, int threads, char *error,
                          size_t error_size) {
  if (g->groups != 1) {
    snprintf(error, error_size,
             "conv_transpose: grouped convolutions (groups=%lld) are not "
             "supported",
             (long long)g->groups);
    return SB_ERR_INVALID_ARGUMENT;
  }
  const int64_t IC = g->in_c, taps = g->kernel_h * g->kernel_w;
  const int64_t icp =
      IC <= 4 ? 4
              : (IC + CT_ACCUMULATORS - 1) / CT_ACCUMULATORS * CT_ACCUMULATORS;
  const int64_t run = CT_LANES * (icp == 4 ? 2 : 1);
  /* The output columns any read touches: q - shift for q in [0, Q rounded
   * up to whole runs) (phase 0 has the most columns), every shift. */
  int64_t smin = 0, smax = 0, shift;
  int any = 0;
  for (int64_t ph = 0; ph < g->stride_w; ph++)
    for (int64_t kw = 0; kw < g->kernel_w; kw++)
      if (ct_shift(g, kw, ph, &shift)) {
        smin = !any || shift < smin ? shift : smin;
        smax = !any || shift > smax ? shift : smax;
        any = 1;
      }
  const int64_t q_end =
      ((g->in_w + g->stride_w - 1) / g->stride_w + run - 1) / run * run;
  int64_t lo = -smax < 0 ? -smax : 0;
  int64_t hi =
      q_end - 1 - smin > g->out_w - 1 ? q_end - 1 - smin : g->out_w - 1;
  CtPlan p = {g, nc, icp, NULL, lo, hi - lo + 1};
  if (threads > n / CT_MIN_ROWS_PER_THREAD)
    threads = (int)(n / CT_MIN_ROWS_PER_THREAD);
  threads = threads < 1                ? 1
            : threads > CT_MAX_THREADS ? CT_MAX_THREADS
                                       : threads;
  const int64_t padded_size = nc * g->out_h * p.width;
  float *wpack = calloc((size_t)(taps * nc * icp), sizeof(float));
  float *padded = calloc((size_t)(threads * padded_size), sizeof(float));
  if (!wpack || !padded) {
    free(wpack);
    free(padded);
    snprintf(error, error_size,
             "conv_transpose: out of memory for %lld packed weights and a "
             "padded row of %lld",
             (long long)(taps * nc * icp),
             (long long)(nc * g->out_h * p.width));
    return SB_ERR_OUT_OF_MEMORY;
  }
  for (int64_t oc = 0; oc < nc; oc++)
    for (int64_t ic = 0; ic < IC; ic++)
      for (int64_t k = 0; k < taps; k++)
        wpack[(k * nc + oc) * icp + ic] = w[(oc * IC + ic) * taps + k];
  p.wpack = wpack;
  /* Contiguous ranges of rows, one per thread, each with its own padded
   * row; a thread that cannot be started has its range done here. */
  CtPart parts[CT_MAX_THREADS];
  const int64_t in_size = g->in_c * g->in_h * g->in_w;
  const int64_t out_size = nc * g->out_h * g->out_w;
  for (int t = 0; t < threads; t++) {
    const int64_t r0 = n * t / threads, r1 = n * (t + 1) / threads;
    parts[t] = (CtPart){&p,         r1 - r0,          a + r0 * out_size,
                        accumulate, x + r0 * in_size, padded + t * padded_size};
    parts[t].started = t > 0 && pthread_create(&parts[t].thread, NULL,
                                               ct_part_run, &parts[t]) == 0;
  }
  for (int t = 0; t < threads; t++)
    if (!parts[t].started)
      ct_part_run(&parts[t]);
  for (int t = 1; t < threads; t++)
    if (parts[t].started)
      pthread_join(parts[t].thread, NULL);
  free(padded);
  free(wpack);
  return SB_OK;
}
