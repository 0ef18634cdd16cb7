/* SPDX-License-Identifier: MIT */
/* Convolutions on the CPU computed directly, both ways: the forward
 * product (forward passes, IBP, and the gradient of a backward step) and
 * the transposed one (the CROWN backward step).
 *
 * Done with im2col columns and a GEMM, the product's inner dimension on the
 * VNN-COMP ResNets is 8 or 16 channels (times the kernel's taps for the
 * forward one), OpenBLAS spends as long zeroing and writing the columns as
 * multiplying, and col2im (or the im2col before) moves every column again.
 * Here the columns are never written. Either way, 8 consecutive columns of
 * a destination row, for a block of 8 destination channels, are summed in
 * registers over every source channel and kernel tap that reaches them
 * (ct_taps), and stored once. Each tap reads a source row at a whole-column
 * shift from a zero-padded copy of the row being worked on, so that every
 * read is a full vector and positions outside the image read zeros:
 * - forward: the copy of the input is split by column phase (column
 *   j*stride_w + phase at [phase][j]), so that at any stride a tap reads
 *   consecutive columns;
 * - transposed: the destination (the input image) is walked by column
 *   phase (iw = q*stride_w + phase), and only the taps of that phase reach
 *   it.
 *
 * The transposed one computes only the window of the image that a row's
 * non-zeros reach (ct_window): in a backward pass, a neuron's receptive
 * field.
 *
 * Each row of the batch is computed on its own, in a fixed order, so a
 * result does not depend on how the rows were split into calls (the
 * multi-rank backends' bitwise guarantee, layer.h) or among threads. */
#include "backends/common/conv_cpu.h"
#include "backends/common/cpu_clones.h"
#include "backends/common/cpu_parts.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Destination columns summed at once: one AVX register of floats. */
#define CT_LANES 8
typedef float ct_vec __attribute__((vector_size(CT_LANES * sizeof(float))));

/* Accumulators per step: 8, plus the loaded row and a broadcast weight,
 * fit the 16 vector registers. A block of 8 destination channels takes one
 * run of 8 columns; 4 or fewer channels (an RGB image) take two runs. */
#define CT_ACCUMULATORS 8

typedef struct {
  const SbConvGeom *g;
  int transpose;
  int64_t nsum;       /* source channels summed over */
  int64_t ndst;       /* destination channels */
  int64_t dstp;       /* ndst padded to whole blocks */
  const float *wpack; /* [kh][kw][nsum][dstp], zeros for the padding */
  /* The padded copy of one source row: column c at c - lo of `width`
   * floats, src_rows of them per channel (forward: in_h * stride_w, one
   * per image row and phase; transposed: out_h). */
  int64_t lo, width, src_rows;
  const float *src; /* [n][nsum][...] */
  float *dst;       /* [n][ndst][...] */
  float beta;       /* forward: dst = conv + beta * dst (0 ignores dst) */
  int accumulate;   /* transposed: added to dst, else overwritten */
} CtPlan;

/* acc[r*block + i] += sum over source channels c < nsum of
 * wp[c*dstp + i] * src[c*stride + r*CT_LANES, 8 lanes]. block and runs
 * are constants after inlining, so that acc stays in registers. */
static inline __attribute__((always_inline)) void
ct_taps(ct_vec *acc, const float *src, int64_t stride, const float *wp,
        int64_t dstp, int64_t nsum, const int block, const int runs) {
  for (int64_t c = 0; c < nsum; c++) {
#pragma GCC unroll 2
    for (int r = 0; r < runs; r++) {
      ct_vec v;
      memcpy(&v, src + c * stride + r * CT_LANES, sizeof v);
#pragma GCC unroll 8
      for (int i = 0; i < block; i++)
        acc[r * block + i] += wp[c * dstp + i] * v;
    }
  }
}

static inline __attribute__((always_inline)) void ct_zero(ct_vec *acc,
                                                          const int count) {
#pragma GCC unroll 8
  for (int k = 0; k < count; k++)
    acc[k] = (ct_vec){0};
}

/* Only constant indices touch acc, so that it stays in registers; the
 * sums leave through a plain array. */
static inline __attribute__((always_inline)) void
ct_spill(float sums[][CT_LANES], const ct_vec *acc, const int count) {
#pragma GCC unroll 8
  for (int k = 0; k < count; k++)
    memcpy(sums[k], &acc[k], sizeof acc[k]);
}

static inline int64_t ct_mod(int64_t a, int64_t m) { return (a % m + m) % m; }

/* The shift of tap kw in image column phase ph of a transposed
 * convolution: it reads output column q - shift for image column
 * q*sw + ph, or no column when the tap misses the phase. */
static inline int ct_shift(const SbConvGeom *g, int64_t kw, int64_t ph,
                           int64_t *shift) {
  const int64_t rel = kw * g->dilation_w - g->pad_left - ph;
  if (ct_mod(rel, g->stride_w))
    return 0;
  *shift = rel / g->stride_w;
  return 1;
}

/* The part of the image that a transposed convolution's source row
 * reaches: rows [ih0, ih1) and columns [iw0, iw1), from its non-zeros in
 * source rows [oh0, oh1] of each channel. */
typedef struct {
  int64_t ih0, ih1, iw0, iw1;
  int64_t oh0, oh1;
} CtWindow;

typedef int32_t ct_ivec
    __attribute__((vector_size(CT_LANES * sizeof(int32_t))));

/* The window of the image reached from the non-zero entries of one source
 * row ([nsum][out_h][out_w]); FALSE when they are all zero. A backward
 * pass starts from unit rows, so for most of a CROWN pass a row's
 * non-zeros fill only a neuron's receptive field, a small part of the
 * image (what auto_LiRPA's patches mode exploits); outside the window
 * every sum is of zeros, and the kernel skips it. The channels' planes are
 * first ORed into one map of non-zero positions (map: out_h * out_w, the
 * caller's), a vector at a time and without branches, and only the map is
 * scanned: on a sparse row, finding the window had cost more than the
 * sums. */
static inline __attribute__((always_inline)) int
ct_window(const CtPlan *p, const float *src, int32_t *map, CtWindow *win) {
  const SbConvGeom *g = p->g;
  const int64_t OH = g->out_h, OW = g->out_w, plane = OH * OW;
  int64_t i = 0;
  for (; i + CT_LANES <= plane; i += CT_LANES) {
    ct_ivec any = {0};
    for (int64_t c = 0; c < p->nsum; c++) {
      ct_vec v;
      memcpy(&v, src + c * plane + i, sizeof v);
      any |= v != (ct_vec){0};
    }
    memcpy(map + i, &any, sizeof any);
  }
  for (; i < plane; i++) {
    int32_t any = 0;
    for (int64_t c = 0; c < p->nsum; c++)
      any |= src[c * plane + i] != 0.0f;
    map[i] = any;
  }
  int64_t oh0 = OH, oh1 = -1, ow0 = OW, ow1 = -1;
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow = 0; ow < OW; ow++)
      if (map[oh * OW + ow]) {
        oh0 = oh < oh0 ? oh : oh0;
        oh1 = oh;
        ow0 = ow < ow0 ? ow : ow0;
        ow1 = ow > ow1 ? ow : ow1;
      }
  if (oh1 < 0)
    return 0;
  /* Output (oh, ow) reads image (oh*sh - pad_top + kh*dh, ...). */
  const int64_t ih0 = oh0 * g->stride_h - g->pad_top;
  const int64_t ih1 =
      oh1 * g->stride_h - g->pad_top + (g->kernel_h - 1) * g->dilation_h + 1;
  const int64_t iw0 = ow0 * g->stride_w - g->pad_left;
  const int64_t iw1 =
      ow1 * g->stride_w - g->pad_left + (g->kernel_w - 1) * g->dilation_w + 1;
  win->oh0 = oh0;
  win->oh1 = oh1;
  win->ih0 = ih0 > 0 ? ih0 : 0;
  win->ih1 = ih1 < g->in_h ? ih1 : g->in_h;
  win->iw0 = iw0 > 0 ? iw0 : 0;
  win->iw1 = iw1 < g->in_w ? iw1 : g->in_w;
  return 1;
}

/* Transposed: image channels [ic0, ic0 + block) of one row, within its
 * window. Column runs keep their places on the grid of a whole row (a run
 * that starts in the window is computed whole), so that every sum reads
 * the padded row where the whole row's would, in the same order. */
static inline __attribute__((always_inline)) void
ct_block_transposed(const CtPlan *p, const float *padded, float *x,
                    const CtWindow *win, int64_t ic0, const int block,
                    const int runs) {
  const SbConvGeom *g = p->g;
  const int64_t OH = g->out_h, IH = g->in_h, IW = g->in_w;
  const int64_t sw = g->stride_w, KW = g->kernel_w;
  const int64_t icn = g->in_c - ic0 < block ? g->in_c - ic0 : block;
  const int64_t run = CT_LANES * runs;
  for (int64_t ih = win->ih0; ih < win->ih1; ih++)
    for (int64_t ph = 0; ph < sw && ph < IW; ph++) {
      const int64_t Q = (IW - ph + sw - 1) / sw;
      /* Image columns q*sw + ph in [iw0, iw1). */
      const int64_t q_first = win->iw0 > ph ? (win->iw0 - ph + sw - 1) / sw : 0;
      const int64_t q_end = win->iw1 > ph ? (win->iw1 - 1 - ph) / sw + 1 : 0;
      for (int64_t q0 = q_first / run * run; q0 < q_end; q0 += run) {
        ct_vec acc[CT_ACCUMULATORS];
        ct_zero(acc, block * runs);
        int touched = 0;
        for (int64_t kh = 0; kh < g->kernel_h; kh++) {
          const int64_t t = ih + g->pad_top - kh * g->dilation_h;
          if (t < 0 || t % g->stride_h || t / g->stride_h >= OH)
            continue;
          for (int64_t kw = 0; kw < KW; kw++) {
            int64_t shift;
            if (!ct_shift(g, kw, ph, &shift))
              continue;
            touched = 1;
            ct_taps(acc,
                    padded + (t / g->stride_h) * p->width +
                        (q0 - shift - p->lo),
                    OH * p->width,
                    p->wpack + (kh * KW + kw) * p->nsum * p->dstp + ic0,
                    p->dstp, p->nsum, block, runs);
          }
        }
        if (!touched) /* no tap reaches these image columns */
          continue;
        float sums[CT_ACCUMULATORS][CT_LANES];
        ct_spill(sums, acc, block * runs);
        for (int r = 0; r < runs; r++) {
          const int64_t q = q0 + r * CT_LANES;
          const int64_t lanes = Q - q < CT_LANES ? Q - q : CT_LANES;
          if (lanes <= 0) /* the second run lies past the row */
            break;
          for (int64_t i = 0; i < icn; i++) {
            float *d = x + (ic0 + i) * IH * IW + ih * IW + q * sw + ph;
            const float *s = sums[r * block + i];
            if (sw == 1) {
#pragma omp simd
              for (int64_t l = 0; l < lanes; l++)
                d[l] += s[l];
            } else
              for (int64_t l = 0; l < lanes; l++)
                d[l * sw] += s[l];
          }
        }
      }
    }
}

/* Forward: output channels [oc0, oc0 + block) of one row. */
static inline __attribute__((always_inline)) void
ct_block_forward(const CtPlan *p, const float *padded, float *out, int64_t oc0,
                 const int block, const int runs) {
  const SbConvGeom *g = p->g;
  const int64_t OH = g->out_h, OW = g->out_w, IH = g->in_h;
  const int64_t sw = g->stride_w, KW = g->kernel_w;
  const int64_t ocn = p->ndst - oc0 < block ? p->ndst - oc0 : block;
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow0 = 0; ow0 < OW; ow0 += CT_LANES * runs) {
      ct_vec acc[CT_ACCUMULATORS];
      ct_zero(acc, block * runs);
      for (int64_t kh = 0; kh < g->kernel_h; kh++) {
        const int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dilation_h;
        if (ih < 0 || ih >= IH)
          continue;
        for (int64_t kw = 0; kw < KW; kw++) {
          /* Image column ow*sw + off = (ow + d)*sw + ph. */
          const int64_t off = kw * g->dilation_w - g->pad_left;
          const int64_t ph = ct_mod(off, sw), d = (off - ph) / sw;
          ct_taps(acc, padded + (ih * sw + ph) * p->width + (ow0 + d - p->lo),
                  p->src_rows * p->width,
                  p->wpack + (kh * KW + kw) * p->nsum * p->dstp + oc0, p->dstp,
                  p->nsum, block, runs);
        }
      }
      float sums[CT_ACCUMULATORS][CT_LANES];
      ct_spill(sums, acc, block * runs);
      for (int r = 0; r < runs; r++) {
        const int64_t ow = ow0 + r * CT_LANES;
        const int64_t lanes = OW - ow < CT_LANES ? OW - ow : CT_LANES;
        if (lanes <= 0) /* the second run lies past the row */
          break;
        for (int64_t i = 0; i < ocn; i++) {
          float *d = out + (oc0 + i) * OH * OW + oh * OW + ow;
          const float *s = sums[r * block + i];
          if (p->beta != 0.0f) {
#pragma omp simd
            for (int64_t l = 0; l < lanes; l++)
              d[l] = s[l] + p->beta * d[l];
          } else
            memcpy(d, s, (size_t)lanes * sizeof(float));
        }
      }
    }
}

/* Transposed: copies source rows [win->oh0, win->oh1] of every channel
 * into the padded buffer, whose rows [*kept0, *kept1] hold the last row's
 * and the others zeros (margins included, from its allocation); rows of
 * the last one that this one does not overwrite are zeroed. The rest of
 * the source is zero, so on a sparse row this copies only its window. */
static void ct_pad_window(const CtPlan *p, const float *src,
                          const CtWindow *win, float *padded, int64_t *kept0,
                          int64_t *kept1) {
  const int64_t OH = p->g->out_h, OW = p->g->out_w;
  for (int64_t c = 0; c < p->nsum; c++) {
    for (int64_t oh = *kept0; oh <= *kept1; oh++)
      if (oh < win->oh0 || oh > win->oh1)
        memset(padded + (c * OH + oh) * p->width - p->lo, 0,
               (size_t)OW * sizeof(float));
    for (int64_t oh = win->oh0; oh <= win->oh1; oh++)
      memcpy(padded + (c * OH + oh) * p->width - p->lo,
             src + (c * OH + oh) * OW, (size_t)OW * sizeof(float));
  }
  *kept0 = win->oh0;
  *kept1 = win->oh1;
}

/* Forward: copies row r's source into its padded buffer (whose margins
 * stay zero from its allocation). */
static void ct_pad_row(const CtPlan *p, const float *src, float *padded) {
  const SbConvGeom *g = p->g;
  const int64_t IW = g->in_w, sw = g->stride_w;
  for (int64_t row = 0; row < p->nsum * g->in_h; row++) {
    const float *s = src + row * IW;
    if (sw == 1) {
      memcpy(padded + row * p->width - p->lo, s, (size_t)IW * sizeof(float));
      continue;
    }
    for (int64_t ph = 0; ph < sw; ph++) {
      float *d = padded + (row * sw + ph) * p->width - p->lo;
      for (int64_t j = 0; j * sw + ph < IW; j++)
        d[j] = s[j * sw + ph];
    }
  }
}

SB_CPU_CLONES
static void ct_rows(const CtPlan *p, int64_t r0, int64_t r1, float *padded,
                    int32_t *map) {
  const SbConvGeom *g = p->g;
  const int64_t in_size = g->in_c * g->in_h * g->in_w;
  const int64_t out_size =
      (p->transpose ? p->nsum : p->ndst) * g->out_h * g->out_w;
  const int64_t src_size = p->transpose ? out_size : in_size;
  const int64_t dst_size = p->transpose ? in_size : out_size;
  const int half = p->dstp == 4;
  int64_t kept0 = 0, kept1 = -1; /* the padded rows holding data */
  for (int64_t r = r0; r < r1; r++) {
    float *dst = p->dst + r * dst_size;
    const float *src = p->src + r * src_size;
    CtWindow win = {0, g->in_h, 0, g->in_w, 0, 0};
    if (p->transpose && !p->accumulate)
      memset(dst, 0, (size_t)dst_size * sizeof(float));
    if (p->transpose && !ct_window(p, src, map, &win))
      continue;
    if (p->transpose)
      ct_pad_window(p, src, &win, padded, &kept0, &kept1);
    else
      ct_pad_row(p, src, padded);
    for (int64_t c0 = 0; c0 < p->ndst; c0 += CT_ACCUMULATORS) {
      if (p->transpose && half)
        ct_block_transposed(p, padded, dst, &win, c0, 4, 2);
      else if (p->transpose)
        ct_block_transposed(p, padded, dst, &win, c0, CT_ACCUMULATORS, 1);
      else if (half)
        ct_block_forward(p, padded, dst, c0, 4, 2);
      else
        ct_block_forward(p, padded, dst, c0, CT_ACCUMULATORS, 1);
    }
  }
}

/* Rows per thread below which another thread costs more than it saves:
 * starting one takes tens of microseconds, a resnet_2b row a few. */
#define CT_MIN_ROWS_PER_THREAD 32

typedef struct {
  const CtPlan *p;
  int64_t r0, r1;
  float *padded;
  int32_t *map; /* transposed: ct_window's map */
} CtPart;

static void *ct_part_run(void *arg) {
  CtPart *t = arg;
  ct_rows(t->p, t->r0, t->r1, t->padded, t->map);
  return NULL;
}

/* Packs the weights, sizes the padded rows and runs the n rows in
 * contiguous ranges, one per thread, each with its own padded row; a
 * thread that cannot be started has its range done here. The caller has
 * set the plan's direction, channels, source and destination. */
static int ct_run(CtPlan *p, const float *w, int64_t n, int threads,
                  int64_t smin, int64_t smax, int64_t columns, char *error,
                  size_t error_size) {
  const SbConvGeom *g = p->g;
  const int64_t taps = g->kernel_h * g->kernel_w;
  p->dstp = p->ndst <= 4 ? 4
                         : (p->ndst + CT_ACCUMULATORS - 1) / CT_ACCUMULATORS *
                               CT_ACCUMULATORS;
  /* Source columns read: c - shift for c below the destination's columns
   * rounded up to whole runs, every shift; and the whole source row. */
  const int64_t run = CT_LANES * (p->dstp == 4 ? 2 : 1);
  const int64_t read_end = (columns + run - 1) / run * run - 1 - smin;
  const int64_t src_cols =
      p->transpose ? g->out_w : (g->in_w + g->stride_w - 1) / g->stride_w;
  p->lo = -smax < 0 ? -smax : 0;
  p->width = (read_end > src_cols - 1 ? read_end : src_cols - 1) - p->lo + 1;
  if (threads > n / CT_MIN_ROWS_PER_THREAD)
    threads = (int)(n / CT_MIN_ROWS_PER_THREAD);
  threads = threads < 1                  ? 1
            : threads > SB_CPU_MAX_PARTS ? SB_CPU_MAX_PARTS
                                         : threads;
  const int64_t padded_size = p->nsum * p->src_rows * p->width;
  const int64_t map_size = p->transpose ? g->out_h * g->out_w : 0;
  float *wpack = calloc((size_t)(taps * p->nsum * p->dstp), sizeof(float));
  float *padded = calloc((size_t)(threads * padded_size), sizeof(float));
  int32_t *map = malloc((size_t)(threads * map_size + 1) * sizeof(int32_t));
  if (!wpack || !padded || !map) {
    free(wpack);
    free(padded);
    free(map);
    snprintf(error, error_size,
             "direct convolution: out of memory for %lld packed weights and "
             "%d padded rows of %lld",
             (long long)(taps * p->nsum * p->dstp), threads,
             (long long)padded_size);
    return SB_ERR_OUT_OF_MEMORY;
  }
  /* w is [oc][ic][kh][kw]: summed over oc when transposed, over ic in the
   * forward direction. */
  const int64_t OC = p->transpose ? p->nsum : p->ndst, IC = g->in_c;
  for (int64_t oc = 0; oc < OC; oc++)
    for (int64_t ic = 0; ic < IC; ic++)
      for (int64_t k = 0; k < taps; k++) {
        const int64_t s = p->transpose ? oc : ic, d = p->transpose ? ic : oc;
        wpack[(k * p->nsum + s) * p->dstp + d] = w[(oc * IC + ic) * taps + k];
      }
  p->wpack = wpack;
  CtPart parts[SB_CPU_MAX_PARTS];
  for (int t = 0; t < threads; t++)
    parts[t] = (CtPart){p, n * t / threads, n * (t + 1) / threads,
                        padded + t * padded_size, map + t * map_size};
  sb_cpu_run_parts(parts, sizeof parts[0], threads, ct_part_run);
  free(map);
  free(padded);
  free(wpack);
  return SB_OK;
}

static int ct_check_groups(const SbConvGeom *g, const char *what, char *error,
                           size_t error_size) {
  if (g->groups == 1)
    return SB_OK;
  snprintf(error, error_size,
           "%s: grouped convolutions (groups=%lld) are not supported", what,
           (long long)g->groups);
  return SB_ERR_INVALID_ARGUMENT;
}

int sb_cpu_conv_transpose(const SbConvGeom *g, int64_t n, int64_t nc,
                          const float *w, const float *a, int accumulate,
                          float *x, int threads, char *error,
                          size_t error_size) {
  int st = ct_check_groups(g, "conv_transpose", error, error_size);
  if (st != SB_OK)
    return st;
  CtPlan p = {.g = g,
              .transpose = 1,
              .nsum = nc,
              .ndst = g->in_c,
              .src_rows = g->out_h,
              .src = a,
              .dst = x,
              .accumulate = accumulate};
  int64_t smin = 0, smax = 0, shift;
  int any = 0;
  for (int64_t ph = 0; ph < g->stride_w; ph++)
    for (int64_t kw = 0; kw < g->kernel_w; kw++)
      if (ct_shift(g, kw, ph, &shift)) {
        smin = !any || shift < smin ? shift : smin;
        smax = !any || shift > smax ? shift : smax;
        any = 1;
      }
  /* Phase 0 has the most image columns. */
  return ct_run(&p, w, n, threads, smin, smax,
                (g->in_w + g->stride_w - 1) / g->stride_w, error, error_size);
}

int sb_cpu_conv_forward(const SbConvGeom *g, int64_t n, int64_t nc,
                        const float *w, const float *x, float beta, float *out,
                        int threads, char *error, size_t error_size) {
  int st = ct_check_groups(g, "conv_forward", error, error_size);
  if (st != SB_OK)
    return st;
  CtPlan p = {.g = g,
              .transpose = 0,
              .nsum = g->in_c,
              .ndst = nc,
              .src_rows = g->in_h * g->stride_w,
              .src = x,
              .dst = out,
              .beta = beta};
  /* Tap kw reads phase-split column ow + d: its shift is -d. */
  int64_t smin = 0, smax = 0;
  for (int64_t kw = 0; kw < g->kernel_w; kw++) {
    const int64_t off = kw * g->dilation_w - g->pad_left;
    const int64_t s = -((off - ct_mod(off, g->stride_w)) / g->stride_w);
    smin = kw == 0 || s < smin ? s : smin;
    smax = kw == 0 || s > smax ? s : smax;
  }
  return ct_run(&p, w, n, threads, smin, smax, g->out_w, error, error_size);
}
