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

/* A kernel tap and where it reads (see CtPlan); k < 0 ends a list. */
typedef struct {
  int32_t k, at;
} CtTap;

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
  /* Transposed, when shift is not NULL: bias[r] += sum over source
   * channels c of shift[c] times the sum of row r's channel c (the layer
   * bias's term, SbDeviceOps.channel_bias_backward), from the sums
   * ct_window makes while it reads the row. */
  const float *shift;
  float *bias;
  /* The taps that reach a row or column, worked out once per call rather
   * than tested (modulo the strides) for every block. Transposed:
   * row_taps[ih] lists the
   * kh that reach image row ih and the source row each reads (at),
   * col_taps[ph] the kw that reach column phase ph and their shift.
   * Forward: col_taps[0][kw] is tap kw's column phase (k) and offset in
   * whole columns (at). Lists of kernel_h + 1 and kernel_w + 1 entries. */
  const CtTap *row_taps, *col_taps;
  /* Blocks of 16 channels by ct_block_wide(_forward), or CT_WIDE_AVX2:
   * by ct_block_wide(_forward)_avx2. */
  int wide;
  int row_pairs; /* ct_block_row_pairs; forward: ct_block_forward16 */
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

/* Channels [c0, c0 + group) of one source row ([nsum][plane]): their
 * non-zero positions ORed into map (set, not ORed, when first) and each
 * channel's sum in lanes into sums[c]. The group's sums stay in registers
 * across the plane and map is written once per group: kept in memory per
 * channel, the sums' loads and stores had cost as much as reading the
 * row. Each channel's lanes add in the same order as one at a time would.
 * With copy (out_w a whole number of vectors), each vector read is also
 * stored to the padded buffer, row by row (CtPlan): copying the rows
 * while they are in registers cost less than copying the window's rows
 * after the window is known, although rows outside it are copied too. */
static inline __attribute__((always_inline)) void
ct_read_channels(const CtPlan *p, const float *src, int64_t c0, const int group,
                 const int first, const int copy, float *padded, int32_t *map,
                 ct_vec *sums) {
  const int64_t OH = p->g->out_h, OW = p->g->out_w, plane = OH * OW;
  ct_vec s[CT_ACCUMULATORS] = {{0}};
  int64_t i = 0, ow = 0, at = 0; /* at: (oh, ow) in a padded plane */
  for (; i + CT_LANES <= plane; i += CT_LANES) {
    ct_ivec any = {0};
    if (!first)
      memcpy(&any, map + i, sizeof any);
#pragma GCC unroll 8
    for (int k = 0; k < group; k++) {
      ct_vec v;
      memcpy(&v, src + (c0 + k) * plane + i, sizeof v);
      any |= v != (ct_vec){0};
      s[k] += v;
      if (copy)
        memcpy(padded + (c0 + k) * OH * p->width - p->lo + at, &v, sizeof v);
    }
    memcpy(map + i, &any, sizeof any);
    if (copy) {
      at += CT_LANES;
      ow += CT_LANES;
      if (ow == OW) {
        ow = 0;
        at += p->width - OW;
      }
    }
  }
  for (; i < plane; i++) {
    int32_t any = first ? 0 : map[i];
    for (int k = 0; k < group; k++) {
      any |= src[(c0 + k) * plane + i] != 0.0f;
      s[k][0] += src[(c0 + k) * plane + i];
    }
    map[i] = any;
  }
  for (int k = 0; k < group; k++)
    sums[c0 + k] = s[k];
}

/* Whether any of n map entries is set, a vector at a time. */
static inline __attribute__((always_inline)) int ct_any(const int32_t *m,
                                                        int64_t n) {
  ct_ivec any = {0};
  int64_t i = 0;
  for (; i + CT_LANES <= n; i += CT_LANES) {
    ct_ivec v;
    memcpy(&v, m + i, sizeof v);
    any |= v;
  }
  int32_t tail = 0;
  for (; i < n; i++)
    tail |= m[i];
  for (int l = 0; l < CT_LANES; l++)
    tail |= any[l];
  return tail != 0;
}

/* The window of the image reached from the non-zero entries of one source
 * row ([nsum][out_h][out_w]); FALSE when they are all zero. A backward
 * pass starts from unit rows, so for most of a CROWN pass a row's
 * non-zeros fill only a neuron's receptive field, a small part of the
 * image (what auto_LiRPA's patches mode exploits); outside the window
 * every sum is of zeros, and the kernel skips it. The channels' planes are
 * first ORed into one map of non-zero positions (map: out_h * out_w, the
 * caller's), without branches, and only the map is scanned, a map row
 * at a time, a row's columns only outside the window found so far: on a
 * sparse row, finding the window had cost more than the sums. sums[c]
 * (nsum vectors, the caller's) gets channel c's sum in lanes, for
 * ct_bias_term, while the row is read here anyway (reading it again for
 * the bias was 6% of a CROWN pass). */
static inline __attribute__((always_inline)) int
ct_window(const CtPlan *p, const float *src, const int copy, float *padded,
          int32_t *map, ct_vec *sums, CtWindow *win) {
  const SbConvGeom *g = p->g;
  const int64_t OH = g->out_h, OW = g->out_w;
  int64_t c = 0;
  for (; c + CT_ACCUMULATORS <= p->nsum; c += CT_ACCUMULATORS)
    ct_read_channels(p, src, c, CT_ACCUMULATORS, c == 0, copy, padded, map,
                     sums);
  for (; c < p->nsum; c++)
    ct_read_channels(p, src, c, 1, c == 0, copy, padded, map, sums);
  int64_t oh0 = OH, oh1 = -1, ow0 = OW, ow1 = -1;
  for (int64_t oh = 0; oh < OH; oh++) {
    const int32_t *m = map + oh * OW;
    if (!ct_any(m, OW))
      continue;
    oh0 = oh < oh0 ? oh : oh0;
    oh1 = oh;
    int64_t w = 0;
    while (w < ow0 && !m[w])
      w++;
    ow0 = w < ow0 ? w : ow0;
    w = OW - 1;
    while (w > ow1 && !m[w])
      w--;
    ow1 = w > ow1 ? w : ow1;
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

/* The layer bias's term of a row, sum over channels c of shift[c] times
 * channel c's sum, from the sums ct_window left: four independent
 * accumulators of lanes, then the lanes (one chain of dependent additions
 * per channel had cost as much as reading the row). */
static inline __attribute__((always_inline)) float
ct_bias_term(const CtPlan *p, const ct_vec *sums) {
  ct_vec acc[4] = {{0}};
  int64_t c = 0;
  for (; c + 4 <= p->nsum; c += 4)
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
      acc[k] += sums[c + k] * p->shift[c + k];
  for (; c < p->nsum; c++)
    acc[0] += sums[c] * p->shift[c];
  const ct_vec total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  float sum = 0.0f;
  for (int l = 0; l < CT_LANES; l++)
    sum += total[l];
  return sum;
}

/* Transposed: the sums of image row ih, column phase ph, columns
 * q0*sw + ph onwards (runs of CT_LANES), for image channels [ic0, ic0 +
 * block); FALSE when no tap reaches them (sums are then zeros). */
static inline __attribute__((always_inline)) int
ct_phase_sums(const CtPlan *p, const float *padded, int64_t ih, int64_t ph,
              int64_t q0, int64_t ic0, const int block, const int runs,
              float sums[][CT_LANES]) {
  const SbConvGeom *g = p->g;
  const int64_t OH = g->out_h, KW = g->kernel_w;
  const CtTap *rows = p->row_taps + ih * (g->kernel_h + 1);
  const CtTap *cols = p->col_taps + ph * (KW + 1);
  ct_vec acc[CT_ACCUMULATORS];
  ct_zero(acc, block * runs);
  for (const CtTap *r = rows; r->k >= 0; r++)
    for (const CtTap *c = cols; c->k >= 0; c++)
      ct_taps(acc, padded + r->at * p->width + (q0 - c->at - p->lo),
              OH * p->width,
              p->wpack + (r->k * KW + c->k) * p->nsum * p->dstp + ic0, p->dstp,
              p->nsum, block, runs);
  ct_spill(sums, acc, block * runs);
  return rows->k >= 0 && cols->k >= 0;
}

/* The first and last-plus-one column q of phase ph whose image column
 * q*sw + ph lies in the window. */
static inline void ct_phase_columns(const CtWindow *win, int64_t sw, int64_t ph,
                                    int64_t *q_first, int64_t *q_end) {
  *q_first = win->iw0 > ph ? (win->iw0 - ph + sw - 1) / sw : 0;
  *q_end = win->iw1 > ph ? (win->iw1 - 1 - ph) / sw + 1 : 0;
}

/* Adds the sums of two column phases to consecutive image columns: s0[l]
 * to d[2l], s1[l] to d[2l + 1], l < lanes; a whole run with two vector
 * shuffles. */
static inline __attribute__((always_inline)) void
ct_add_interleaved(float *d, const float *s0, const float *s1, int64_t lanes) {
  if (lanes < CT_LANES) {
    for (int64_t l = 0; l < lanes; l++) {
      d[2 * l] += s0[l];
      d[2 * l + 1] += s1[l];
    }
    return;
  }
  ct_vec a, b, lo, hi;
  memcpy(&a, s0, sizeof a);
  memcpy(&b, s1, sizeof b);
  memcpy(&lo, d, sizeof lo);
  memcpy(&hi, d + CT_LANES, sizeof hi);
  lo += __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11);
  hi += __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15);
  memcpy(d, &lo, sizeof lo);
  memcpy(d + CT_LANES, &hi, sizeof hi);
}

/* Transposed, stride 2 across an even image width: both column phases of
 * a run are summed, then interleaved into consecutive image columns with
 * two vector shuffles, instead of each phase adding to every other column
 * one float at a time (resnet_2b's CROWN pass took an eighth less). Each
 * image column still receives its one sum, the same as the phase-by-phase
 * walk; a phase that no tap reaches adds zeros. */
static inline __attribute__((always_inline)) void
ct_block_transposed_paired(const CtPlan *p, const float *padded, float *x,
                           const CtWindow *win, int64_t ic0, const int block,
                           const int runs) {
  const SbConvGeom *g = p->g;
  const int64_t IH = g->in_h, IW = g->in_w, Q = IW / 2;
  const int64_t icn = g->in_c - ic0 < block ? g->in_c - ic0 : block;
  const int64_t run = CT_LANES * runs;
  int64_t f0, e0, f1, e1;
  ct_phase_columns(win, 2, 0, &f0, &e0);
  ct_phase_columns(win, 2, 1, &f1, &e1);
  const int64_t q_first = f0 < f1 ? f0 : f1, q_end = e0 > e1 ? e0 : e1;
  for (int64_t ih = win->ih0; ih < win->ih1; ih++)
    for (int64_t q0 = q_first / run * run; q0 < q_end; q0 += run) {
      float sums[2][CT_ACCUMULATORS][CT_LANES];
      if (!(ct_phase_sums(p, padded, ih, 0, q0, ic0, block, runs, sums[0]) |
            ct_phase_sums(p, padded, ih, 1, q0, ic0, block, runs, sums[1])))
        continue;
      for (int r = 0; r < runs; r++) {
        const int64_t q = q0 + r * CT_LANES;
        const int64_t lanes = Q - q < CT_LANES ? Q - q : CT_LANES;
        if (lanes <= 0) /* the second run lies past the row */
          break;
        for (int64_t i = 0; i < icn; i++)
          ct_add_interleaved(x + (ic0 + i) * IH * IW + ih * IW + 2 * q,
                             sums[0][r * block + i], sums[1][r * block + i],
                             lanes);
      }
    }
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
  const int64_t IH = g->in_h, IW = g->in_w, sw = g->stride_w;
  if (sw == 2 && IW % 2 == 0) {
    ct_block_transposed_paired(p, padded, x, win, ic0, block, runs);
    return;
  }
  const int64_t icn = g->in_c - ic0 < block ? g->in_c - ic0 : block;
  const int64_t run = CT_LANES * runs;
  for (int64_t ih = win->ih0; ih < win->ih1; ih++)
    for (int64_t ph = 0; ph < sw && ph < IW; ph++) {
      const int64_t Q = (IW - ph + sw - 1) / sw;
      int64_t q_first, q_end;
      ct_phase_columns(win, sw, ph, &q_first, &q_end);
      for (int64_t q0 = q_first / run * run; q0 < q_end; q0 += run) {
        float sums[CT_ACCUMULATORS][CT_LANES];
        if (!ct_phase_sums(p, padded, ih, ph, q0, ic0, block, runs, sums))
          continue; /* no tap reaches these image columns */
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

#ifdef SB_CPU_V4
/* Channels of a wide block: one AVX-512 register of floats. */
#define CT_WIDE_CHANNELS 16
#define CT_WIDE_AVX2     2 /* CtPlan.wide */
typedef float ct_wvec
    __attribute__((vector_size(CT_WIDE_CHANNELS * sizeof(float))));

/* acc[j] += sum over source channels k < nsum of the 16 weights at
 * w + k*dstp times src[k*stride + j], for 8 consecutive columns j: one
 * tap of a wide block (ct_taps with channels and columns swapped). */
__attribute__((target("arch=x86-64-v4"))) static inline
    __attribute__((always_inline)) void
    ct_wide_taps(ct_wvec *acc, const float *src, int64_t stride, const float *w,
                 int64_t dstp, int64_t nsum) {
  for (int64_t k = 0; k < nsum; k++) {
    ct_wvec wv;
    memcpy(&wv, w + k * dstp, sizeof wv);
#pragma GCC unroll 8
    for (int j = 0; j < CT_LANES; j++)
      acc[j] += wv * src[k * stride + j];
  }
}

/* d[i*plane + j] += acc[j][i] for the 16 channels i and columns j < lanes
 * of a wide block: the 8 x 16 block transposed in registers (the 8 x 8
 * transpose's unpacks and shuffles, on both halves at once), then a vector
 * add per channel. Added one float at a time, the 128 sums had cost a
 * seventh of ct_block_wide. */
__attribute__((target("arch=x86-64-v4"))) static inline
    __attribute__((always_inline)) void
    ct_wide_add_transposed(float *d, int64_t plane, const ct_wvec *acc,
                           int64_t lanes) {
  ct_wvec t[CT_LANES], u[CT_LANES];
#pragma GCC unroll 4
  for (int j = 0; j < CT_LANES; j += 2) {
    t[j] = __builtin_shufflevector(acc[j], acc[j + 1], 0, 16, 1, 17, 4, 20, 5,
                                   21, 8, 24, 9, 25, 12, 28, 13, 29);
    t[j + 1] = __builtin_shufflevector(acc[j], acc[j + 1], 2, 18, 3, 19, 6, 22,
                                       7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
  }
#pragma GCC unroll 2
  for (int h = 0; h < CT_LANES; h += 4)
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++) {
      u[h + 2 * k] =
          __builtin_shufflevector(t[h + k], t[h + k + 2], 0, 1, 16, 17, 4, 5,
                                  20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
      u[h + 2 * k + 1] =
          __builtin_shufflevector(t[h + k], t[h + k + 2], 2, 3, 18, 19, 6, 7,
                                  22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
    /* Channel q + 4h (v[0]) and q + 8 + 4h (v[1]) are half h of these. */
#pragma GCC unroll 4
  for (int q = 0; q < 4; q++) {
    const ct_wvec v[2] = {
        __builtin_shufflevector(u[q], u[q + 4], 0, 1, 2, 3, 16, 17, 18, 19, 4,
                                5, 6, 7, 20, 21, 22, 23),
        __builtin_shufflevector(u[q], u[q + 4], 8, 9, 10, 11, 24, 25, 26, 27,
                                12, 13, 14, 15, 28, 29, 30, 31)};
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++)
#pragma GCC unroll 2
      for (int h = 0; h < 2; h++) {
        float *row = d + (q + 8 * k + 4 * h) * plane;
        ct_vec part;
        memcpy(&part, (const float *)&v[k] + CT_LANES * h, sizeof part);
        if (lanes == CT_LANES) {
          ct_vec old;
          memcpy(&old, row, sizeof old);
          old += part;
          memcpy(row, &old, sizeof old);
        } else {
          for (int64_t l = 0; l < lanes; l++)
            row[l] += part[l];
        }
      }
  }
}

/* Transposed, stride 1, on a CPU with AVX-512: image channels [ic0, ic0 +
 * 16) of one row, with the roles of lanes and accumulators swapped: a
 * register holds 16 channels of one image column, and 8 of them (8
 * consecutive columns) are summed at once, each multiply-add taking its
 * source value as a broadcast. Against ct_block_transposed this does
 * twice the multiply-adds per instruction where the 512-bit units are
 * native, on the 16-channel layers of the VNN-COMP ResNets that are most
 * of their CROWN pass. Every image column sums the same terms in the same
 * order (taps, then source channels) on the same grid of column runs, so
 * the results are ct_block_transposed's, bit for bit. */
__attribute__((target("arch=x86-64-v4"), noinline)) static void
ct_block_wide(const CtPlan *p, const float *padded, float *x,
              const CtWindow *win, int64_t ic0) {
  const SbConvGeom *g = p->g;
  const int64_t IH = g->in_h, IW = g->in_w, KW = g->kernel_w;
  const int64_t stride = g->out_h * p->width;
  for (int64_t ih = win->ih0; ih < win->ih1; ih++) {
    const CtTap *rows = p->row_taps + ih * (g->kernel_h + 1);
    if (rows->k < 0) /* no tap reaches this image row */
      continue;
    for (int64_t j0 = win->iw0 / CT_LANES * CT_LANES; j0 < win->iw1;
         j0 += CT_LANES) {
      ct_wvec acc[CT_LANES];
#pragma GCC unroll 8
      for (int j = 0; j < CT_LANES; j++)
        acc[j] = (ct_wvec){0};
      for (const CtTap *r = rows; r->k >= 0; r++)
        for (const CtTap *c = p->col_taps; c->k >= 0; c++)
          ct_wide_taps(acc, padded + r->at * p->width + (j0 - c->at - p->lo),
                       stride,
                       p->wpack + (r->k * KW + c->k) * p->nsum * p->dstp + ic0,
                       p->dstp, p->nsum);
      float *d = x + ic0 * IH * IW + ih * IW + j0;
      const int64_t lanes = IW - j0 < CT_LANES ? IW - j0 : CT_LANES;
      ct_wide_add_transposed(d, IH * IW, acc, lanes);
    }
  }
}

/* The AVX2 wide kernels (ct_block_wide_avx2, ct_block_wide_forward_avx2):
 * 16 channels in two 8-lane registers by 4 columns, 8 accumulators. The
 * portable kernels broadcast 8 weights for every source vector they
 * load, 9 loads per 8 multiply-adds, more than AVX2 machines load per
 * cycle; these take two weight vectors and 4 broadcast source values per
 * source channel, 6 loads. Written apart from the AVX-512 ones because
 * GCC keeps 16-lane vectors in memory on AVX2. */
typedef float ct_qvec __attribute__((vector_size(4 * sizeof(float))));

/* acc[h][j] += sum over source channels k < nsum of the 8 weights at w +
 * k*dstp + 8h times src[k*stride + j], j < 4: ct_wide_taps on AVX2. */
static inline __attribute__((always_inline)) void
ct_wide_taps_avx2(ct_vec acc[2][4], const float *src, int64_t stride,
                  const float *w, int64_t dstp, int64_t nsum) {
  for (int64_t k = 0; k < nsum; k++) {
    ct_vec w0, w1;
    memcpy(&w0, w + k * dstp, sizeof w0);
    memcpy(&w1, w + k * dstp + CT_LANES, sizeof w1);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
      const float v = src[k * stride + j];
      acc[0][j] += w0 * v;
      acc[1][j] += w1 * v;
    }
  }
}

/* The 4 x 8 block a[column][channel] transposed (unpacks, then
 * shuffles): u[c] holds channel c's 4 columns in lanes 0-3 and channel c
 * + 4's in lanes 4-7. */
static inline __attribute__((always_inline)) void
ct_transpose4x8(const ct_vec a[4], ct_vec u[4]) {
  const ct_vec t[4] = {
      __builtin_shufflevector(a[0], a[1], 0, 8, 1, 9, 4, 12, 5, 13),
      __builtin_shufflevector(a[0], a[1], 2, 10, 3, 11, 6, 14, 7, 15),
      __builtin_shufflevector(a[2], a[3], 0, 8, 1, 9, 4, 12, 5, 13),
      __builtin_shufflevector(a[2], a[3], 2, 10, 3, 11, 6, 14, 7, 15)};
  u[0] = __builtin_shufflevector(t[0], t[2], 0, 1, 8, 9, 4, 5, 12, 13);
  u[1] = __builtin_shufflevector(t[0], t[2], 2, 3, 10, 11, 6, 7, 14, 15);
  u[2] = __builtin_shufflevector(t[1], t[3], 0, 1, 8, 9, 4, 5, 12, 13);
  u[3] = __builtin_shufflevector(t[1], t[3], 2, 3, 10, 11, 6, 7, 14, 15);
}

/* rows[i] = channel i's 4 columns of acc (ct_wide_taps_avx2's), i < 16,
 * through the stack: 16 stores against the hundreds of multiply-adds
 * that made them. */
static inline __attribute__((always_inline)) void
ct_wide_rows_avx2(ct_vec acc[2][4], ct_qvec rows[CT_WIDE_CHANNELS]) {
#pragma GCC unroll 2
  for (int h = 0; h < 2; h++) {
    ct_vec u[4];
    ct_transpose4x8(acc[h], u);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
      memcpy(&rows[CT_LANES * h + c], &u[c], sizeof rows[0]);
      memcpy(&rows[CT_LANES * h + c + 4], (const float *)&u[c] + 4,
             sizeof rows[0]);
    }
  }
}

/* Transposed, stride 1, on a CPU with AVX2 (no AVX-512): ct_block_wide
 * with ct_wide_taps_avx2's blocks. Bit for bit ct_block_transposed's
 * sums, as ct_block_wide's are. */
__attribute__((target("arch=x86-64-v3"), noinline)) static void
ct_block_wide_avx2(const CtPlan *p, const float *padded, float *x,
                   const CtWindow *win, int64_t ic0) {
  const SbConvGeom *g = p->g;
  const int64_t IH = g->in_h, IW = g->in_w, KW = g->kernel_w;
  const int64_t stride = g->out_h * p->width, plane = IH * IW;
  for (int64_t ih = win->ih0; ih < win->ih1; ih++) {
    const CtTap *rows = p->row_taps + ih * (g->kernel_h + 1);
    if (rows->k < 0) /* no tap reaches this image row */
      continue;
    for (int64_t j0 = win->iw0 / 4 * 4; j0 < win->iw1; j0 += 4) {
      ct_vec acc[2][4] = {{{0}}}; /* [channel half][column] */
      for (const CtTap *r = rows; r->k >= 0; r++)
        for (const CtTap *c = p->col_taps; c->k >= 0; c++)
          ct_wide_taps_avx2(
              acc, padded + r->at * p->width + (j0 - c->at - p->lo), stride,
              p->wpack + (r->k * KW + c->k) * p->nsum * p->dstp + ic0, p->dstp,
              p->nsum);
      float *d = x + ic0 * plane + ih * IW + j0;
      const int64_t lanes = IW - j0 < 4 ? IW - j0 : 4;
      ct_qvec sums[CT_WIDE_CHANNELS];
      ct_wide_rows_avx2(acc, sums);
      for (int i = 0; i < CT_WIDE_CHANNELS; i++) {
        float *row = d + i * plane;
        if (lanes == 4) {
          ct_qvec old;
          memcpy(&old, row, sizeof old);
          old += sums[i];
          memcpy(row, &old, sizeof old);
        } else {
          for (int64_t l = 0; l < lanes; l++)
            row[l] += sums[i][l];
        }
      }
    }
  }
}

/* Forward, on a CPU with AVX2 (no AVX-512): ct_block_wide_forward with
 * ct_wide_taps_avx2's blocks, bit for bit ct_block_forward's sums. */
__attribute__((target("arch=x86-64-v3"), noinline)) static void
ct_block_wide_forward_avx2(const CtPlan *p, const float *padded, float *out,
                           int64_t oc0) {
  const SbConvGeom *g = p->g;
  const int64_t OH = g->out_h, OW = g->out_w, IH = g->in_h;
  const int64_t sw = g->stride_w, KW = g->kernel_w, plane = OH * OW;
  const int64_t stride = p->src_rows * p->width;
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 4) {
      ct_vec acc[2][4] = {{{0}}}; /* [channel half][column] */
      for (int64_t kh = 0; kh < g->kernel_h; kh++) {
        const int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dilation_h;
        if (ih < 0 || ih >= IH)
          continue;
        for (int64_t kw = 0; kw < KW; kw++) {
          const CtTap *c = p->col_taps + kw;
          ct_wide_taps_avx2(
              acc, padded + (ih * sw + c->k) * p->width + (ow0 + c->at - p->lo),
              stride, p->wpack + (kh * KW + kw) * p->nsum * p->dstp + oc0,
              p->dstp, p->nsum);
        }
      }
      float *d = out + oc0 * plane + oh * OW + ow0;
      const int64_t lanes = OW - ow0 < 4 ? OW - ow0 : 4;
      ct_qvec sums[CT_WIDE_CHANNELS];
      ct_wide_rows_avx2(acc, sums);
      for (int i = 0; i < CT_WIDE_CHANNELS; i++) {
        float *row = d + i * plane;
        for (int64_t l = 0; l < lanes; l++)
          row[l] = p->beta != 0.0f ? sums[i][l] + p->beta * row[l] : sums[i][l];
      }
    }
}

/* Forward, on a CPU with AVX-512: output channels [oc0, oc0 + 16) of one
 * row, a register holding 16 channels of one output column as in
 * ct_block_wide. Each output column sums what ct_block_forward's does, in
 * the same order (taps, then input channels), bit for bit. */
__attribute__((target("arch=x86-64-v4"), noinline)) static void
ct_block_wide_forward(const CtPlan *p, const float *padded, float *out,
                      int64_t oc0) {
  const SbConvGeom *g = p->g;
  const int64_t OH = g->out_h, OW = g->out_w, IH = g->in_h;
  const int64_t sw = g->stride_w, KW = g->kernel_w;
  const int64_t stride = p->src_rows * p->width;
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow0 = 0; ow0 < OW; ow0 += CT_LANES) {
      ct_wvec acc[CT_LANES];
#pragma GCC unroll 8
      for (int j = 0; j < CT_LANES; j++)
        acc[j] = (ct_wvec){0};
      for (int64_t kh = 0; kh < g->kernel_h; kh++) {
        const int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dilation_h;
        if (ih < 0 || ih >= IH)
          continue;
        for (int64_t kw = 0; kw < KW; kw++) {
          const CtTap *c = p->col_taps + kw;
          ct_wide_taps(
              acc, padded + (ih * sw + c->k) * p->width + (ow0 + c->at - p->lo),
              stride, p->wpack + (kh * KW + kw) * p->nsum * p->dstp + oc0,
              p->dstp, p->nsum);
        }
      }
      float sums[CT_LANES][CT_WIDE_CHANNELS];
#pragma GCC unroll 8
      for (int j = 0; j < CT_LANES; j++)
        memcpy(sums[j], &acc[j], sizeof acc[j]);
      const int64_t lanes = OW - ow0 < CT_LANES ? OW - ow0 : CT_LANES;
      float *d = out + oc0 * OH * OW + oh * OW + ow0;
      for (int64_t i = 0; i < CT_WIDE_CHANNELS; i++)
        for (int64_t l = 0; l < lanes; l++)
          d[i * OH * OW + l] = p->beta != 0.0f
                                   ? sums[l][i] + p->beta * d[i * OH * OW + l]
                                   : sums[l][i];
    }
}

/* Forward, on a CPU with AVX-512, output rows at least 16 columns wide:
 * ct_block_forward with a register holding 16 columns (an 8-channel
 * layer such as the CIFAR stems has too few channels for
 * ct_block_wide_forward), bit for bit the same sums. */
__attribute__((target("arch=x86-64-v4"), noinline)) static void
ct_block_forward16(const CtPlan *p, const float *padded, float *out,
                   int64_t oc0) {
  const SbConvGeom *g = p->g;
  const int64_t OH = g->out_h, OW = g->out_w, IH = g->in_h;
  const int64_t sw = g->stride_w, KW = g->kernel_w;
  const int64_t stride = p->src_rows * p->width;
  const int64_t ocn =
      p->ndst - oc0 < CT_ACCUMULATORS ? p->ndst - oc0 : CT_ACCUMULATORS;
  for (int64_t oh = 0; oh < OH; oh++)
    for (int64_t ow0 = 0; ow0 < OW; ow0 += 2 * CT_LANES) {
      ct_wvec acc[CT_ACCUMULATORS];
#pragma GCC unroll 8
      for (int i = 0; i < CT_ACCUMULATORS; i++)
        acc[i] = (ct_wvec){0};
      for (int64_t kh = 0; kh < g->kernel_h; kh++) {
        const int64_t ih = oh * g->stride_h - g->pad_top + kh * g->dilation_h;
        if (ih < 0 || ih >= IH)
          continue;
        for (int64_t kw = 0; kw < KW; kw++) {
          const CtTap *c = p->col_taps + kw;
          const float *src =
              padded + (ih * sw + c->k) * p->width + (ow0 + c->at - p->lo);
          const float *w = p->wpack + (kh * KW + kw) * p->nsum * p->dstp + oc0;
          for (int64_t k = 0; k < p->nsum; k++) {
            ct_wvec v;
            memcpy(&v, src + k * stride, sizeof v);
#pragma GCC unroll 8
            for (int i = 0; i < CT_ACCUMULATORS; i++)
              acc[i] += w[k * p->dstp + i] * v;
          }
        }
      }
      float sums[CT_ACCUMULATORS][2 * CT_LANES];
#pragma GCC unroll 8
      for (int i = 0; i < CT_ACCUMULATORS; i++)
        memcpy(sums[i], &acc[i], sizeof acc[i]);
      const int64_t lanes = OW - ow0 < 2 * CT_LANES ? OW - ow0 : 2 * CT_LANES;
      for (int64_t i = 0; i < ocn; i++) {
        float *d = out + (oc0 + i) * OH * OW + oh * OW + ow0;
        for (int64_t l = 0; l < lanes; l++)
          d[l] = p->beta != 0.0f ? sums[i][l] + p->beta * d[l] : sums[i][l];
      }
    }
}

/* Like ct_phase_sums for image rows ih (lanes 0-7 of each sum) and ih + sh
 * (lanes 8-15) at once, whose taps are the same kh (rows: ih's), the
 * second row reading the next source row. */
__attribute__((target("arch=x86-64-v4"))) static inline
    __attribute__((always_inline)) int
    ct_pair_phase_sums(const CtPlan *p, const float *padded, const CtTap *rows,
                       int64_t ph, int64_t q0, int64_t ic0, const int block,
                       const int runs, ct_wvec *sums) {
  const SbConvGeom *g = p->g;
  const int64_t KW = g->kernel_w, stride = g->out_h * p->width;
  const CtTap *cols = p->col_taps + ph * (KW + 1);
  ct_wvec acc[CT_ACCUMULATORS];
#pragma GCC unroll 8
  for (int k = 0; k < block * runs; k++)
    acc[k] = (ct_wvec){0};
  for (const CtTap *r = rows; r->k >= 0; r++)
    for (const CtTap *c = cols; c->k >= 0; c++) {
      const float *src = padded + r->at * p->width + (q0 - c->at - p->lo);
      const float *w = p->wpack + (r->k * KW + c->k) * p->nsum * p->dstp + ic0;
      for (int64_t k = 0; k < p->nsum; k++)
#pragma GCC unroll 2
        for (int run = 0; run < runs; run++) {
          ct_vec top, bottom;
          memcpy(&top, src + k * stride + run * CT_LANES, sizeof top);
          memcpy(&bottom, src + k * stride + p->width + run * CT_LANES,
                 sizeof bottom);
          const ct_wvec v =
              __builtin_shufflevector(top, bottom, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                      10, 11, 12, 13, 14, 15);
#pragma GCC unroll 8
          for (int i = 0; i < block; i++)
            acc[run * block + i] += w[k * p->dstp + i] * v;
        }
    }
#pragma GCC unroll 8
  for (int k = 0; k < block * runs; k++)
    sums[k] = acc[k];
  return rows->k >= 0 && cols->k >= 0;
}

/* ct_add_interleaved for rows ih (lanes 0-7 of a and b) and ih + sh
 * (lanes 8-15) at once, from registers: top[2l] += a[l], top[2l + 1] +=
 * b[l], bottom likewise from lanes 8 + l, l < lanes. */
__attribute__((target("arch=x86-64-v4"))) static inline
    __attribute__((always_inline)) void
    ct_pair_add_interleaved(float *top, float *bottom, ct_wvec a, ct_wvec b,
                            int64_t lanes) {
  if (lanes < CT_LANES) {
    for (int64_t l = 0; l < lanes; l++) {
      top[2 * l] += a[l];
      top[2 * l + 1] += b[l];
      bottom[2 * l] += a[CT_LANES + l];
      bottom[2 * l + 1] += b[CT_LANES + l];
    }
    return;
  }
  ct_wvec t, u;
  memcpy(&t, top, sizeof t);
  memcpy(&u, bottom, sizeof u);
  t += __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21,
                               6, 22, 7, 23);
  u += __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13,
                               29, 14, 30, 15, 31);
  memcpy(top, &t, sizeof t);
  memcpy(bottom, &u, sizeof u);
}

/* Whether image rows a and b are reached by the same kernel rows. */
static inline int ct_same_rows(const CtTap *a, const CtTap *b) {
  for (; a->k >= 0 && a->k == b->k; a++, b++)
    ;
  return a->k == b->k;
}

/* ct_block_transposed_paired with 16 lanes where AVX-512 has them: rows
 * ih and ih + sh are summed together, 8 columns of each, since a stride-2
 * image row has too few columns (8 on resnet_2b's middle layer) to fill
 * the lanes alone and its RGB stem too few channels to fill the
 * accumulators. Each image column sums what ct_phase_sums does, in the same
 * order, so the results are ct_block_transposed_paired's bit for bit; rows
 * without a partner (the window's or image's edge) are computed by it. */
__attribute__((target("arch=x86-64-v4"))) static inline
    __attribute__((always_inline)) void
    ct_block_row_pairs(const CtPlan *p, const float *padded, float *x,
                       const CtWindow *win, int64_t ic0, const int block,
                       const int runs) {
  const SbConvGeom *g = p->g;
  const int64_t IH = g->in_h, IW = g->in_w, Q = IW / 2, sh = g->stride_h;
  const int64_t icn = g->in_c - ic0 < block ? g->in_c - ic0 : block;
  const int64_t run = CT_LANES * runs;
  int64_t f0, e0, f1, e1;
  ct_phase_columns(win, 2, 0, &f0, &e0);
  ct_phase_columns(win, 2, 1, &f1, &e1);
  const int64_t q_first = f0 < f1 ? f0 : f1, q_end = e0 > e1 ? e0 : e1;
  for (int64_t base = win->ih0; base < win->ih1; base += 2 * sh)
    for (int64_t ih = base; ih < base + sh && ih < win->ih1; ih++) {
      const CtTap *rows = p->row_taps + ih * (g->kernel_h + 1);
      if (ih + sh >= win->ih1 ||
          !ct_same_rows(rows, rows + sh * (g->kernel_h + 1))) {
        for (int64_t one = ih; one < win->ih1 && one <= ih + sh; one += sh) {
          CtWindow row = *win;
          row.ih0 = one;
          row.ih1 = one + 1;
          ct_block_transposed_paired(p, padded, x, &row, ic0, block, runs);
        }
        continue;
      }
      for (int64_t q0 = q_first / run * run; q0 < q_end; q0 += run) {
        ct_wvec sums[2][CT_ACCUMULATORS];
        if (!(ct_pair_phase_sums(p, padded, rows, 0, q0, ic0, block, runs,
                                 sums[0]) |
              ct_pair_phase_sums(p, padded, rows, 1, q0, ic0, block, runs,
                                 sums[1])))
          continue;
#pragma GCC unroll 2
        for (int r = 0; r < runs; r++) {
          const int64_t q = q0 + r * CT_LANES;
          const int64_t lanes = Q - q < CT_LANES ? Q - q : CT_LANES;
          if (lanes <= 0) /* the second run lies past the row */
            break;
          float *top = x + ic0 * IH * IW + ih * IW + 2 * q;
#pragma GCC unroll 8
          for (int i = 0; i < block; i++)
            if (i < icn)
              ct_pair_add_interleaved(
                  top + i * IH * IW, top + i * IH * IW + sh * IW,
                  sums[0][r * block + i], sums[1][r * block + i], lanes);
        }
      }
    }
}

__attribute__((target("arch=x86-64-v4"), noinline)) static void
ct_block_row_pairs_any(const CtPlan *p, const float *padded, float *x,
                       const CtWindow *win, int64_t ic0) {
  if (p->dstp == 4)
    ct_block_row_pairs(p, padded, x, win, ic0, 4, 2);
  else
    ct_block_row_pairs(p, padded, x, win, ic0, CT_ACCUMULATORS, 1);
}
#endif

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
          const CtTap *c = p->col_taps + kw;
          ct_taps(acc,
                  padded + (ih * sw + c->k) * p->width + (ow0 + c->at - p->lo),
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
          } else if (lanes == CT_LANES) /* one vector move, not a call */
            memcpy(d, s, CT_LANES * sizeof(float));
          else
            memcpy(d, s, (size_t)lanes * sizeof(float));
        }
      }
    }
}

/* d[k] = s[k], k < n: a row of 8 to 32 floats in a few vector moves
 * (inlined into ct_rows's clones), where a call to memcpy per row had
 * cost as much as the copying. */
static inline __attribute__((always_inline)) void
ct_copy_row(float *d, const float *s, int64_t n) {
  int64_t k = 0;
#pragma GCC unroll 4
  for (; k + CT_LANES <= n; k += CT_LANES) {
    ct_vec v;
    memcpy(&v, s + k, sizeof v);
    memcpy(d + k, &v, sizeof v);
  }
  for (; k < n; k++)
    d[k] = s[k];
}

/* d[k] = 0, k < n, likewise. */
static inline __attribute__((always_inline)) void ct_zero_row(float *d,
                                                              int64_t n) {
  int64_t k = 0;
#pragma GCC unroll 4
  for (; k + CT_LANES <= n; k += CT_LANES)
    memcpy(d + k, &(ct_vec){0}, sizeof(ct_vec));
  for (; k < n; k++)
    d[k] = 0.0f;
}

/* Transposed: copies source rows [win->oh0, win->oh1] of every channel
 * into the padded buffer, whose rows [*kept0, *kept1] hold the last row's
 * and the others zeros (margins included, from its allocation); rows of
 * the last one that this one does not overwrite are zeroed. The rest of
 * the source is zero, so on a sparse row this copies only its window. */
static inline __attribute__((always_inline)) void
ct_pad_window(const CtPlan *p, const float *src, const CtWindow *win,
              float *padded, int64_t *kept0, int64_t *kept1) {
  const int64_t OH = p->g->out_h, OW = p->g->out_w;
  /* The kept rows above and below the window. */
  const int64_t above_end = *kept1 < win->oh0 ? *kept1 + 1 : win->oh0;
  const int64_t below = *kept0 > win->oh1 ? *kept0 : win->oh1 + 1;
  for (int64_t c = 0; c < p->nsum; c++) {
    float *plane = padded + c * OH * p->width - p->lo;
    for (int64_t oh = *kept0; oh < above_end; oh++)
      ct_zero_row(plane + oh * p->width, OW);
    for (int64_t oh = below; oh <= *kept1; oh++)
      ct_zero_row(plane + oh * p->width, OW);
    for (int64_t oh = win->oh0; oh <= win->oh1; oh++)
      ct_copy_row(plane + oh * p->width, src + (c * OH + oh) * OW, OW);
  }
  *kept0 = win->oh0;
  *kept1 = win->oh1;
}

/* Forward: copies row r's source into its padded buffer (whose margins
 * stay zero from its allocation). At stride 2 a vector of each phase is
 * two source vectors' even or odd lanes: copied one float at a time, the
 * split had been a tenth of resnet_2b's alpha-CROWN. */
static inline __attribute__((always_inline)) void
ct_pad_row(const CtPlan *p, const float *src, float *padded) {
  const SbConvGeom *g = p->g;
  const int64_t IW = g->in_w, sw = g->stride_w;
  for (int64_t row = 0; row < p->nsum * g->in_h; row++) {
    const float *s = src + row * IW;
    if (sw == 1) {
      memcpy(padded + row * p->width - p->lo, s, (size_t)IW * sizeof(float));
      continue;
    }
    int64_t j0 = 0;
    if (sw == 2) {
      float *even = padded + row * 2 * p->width - p->lo;
      for (; 2 * (j0 + CT_LANES) <= IW; j0 += CT_LANES) {
        ct_vec a, b;
        memcpy(&a, s + 2 * j0, sizeof a);
        memcpy(&b, s + 2 * j0 + CT_LANES, sizeof b);
        const ct_vec e =
            __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14);
        const ct_vec o =
            __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
        memcpy(even + j0, &e, sizeof e);
        memcpy(even + p->width + j0, &o, sizeof o);
      }
    }
    for (int64_t ph = 0; ph < sw; ph++) {
      float *d = padded + (row * sw + ph) * p->width - p->lo;
      for (int64_t j = j0; j * sw + ph < IW; j++)
        d[j] = s[j * sw + ph];
    }
  }
}

SB_CPU_CLONES
static void ct_rows(const CtPlan *p, int64_t r0, int64_t r1, float *padded,
                    int32_t *map, ct_vec *sums) {
  const SbConvGeom *g = p->g;
  const int64_t in_size = g->in_c * g->in_h * g->in_w;
  const int64_t out_size =
      (p->transpose ? p->nsum : p->ndst) * g->out_h * g->out_w;
  const int64_t src_size = p->transpose ? out_size : in_size;
  const int64_t dst_size = p->transpose ? in_size : out_size;
  const int half = p->dstp == 4;
  int64_t kept0 = 0, kept1 = -1; /* the padded rows holding data */
  /* Transposed: the window's read copies the rows (ct_read_channels). */
  const int copy_read = g->out_w % CT_LANES == 0;
  for (int64_t r = r0; r < r1; r++) {
    float *dst = p->dst + r * dst_size;
    const float *src = p->src + r * src_size;
    CtWindow win = {0, g->in_h, 0, g->in_w, 0, 0};
    if (p->transpose && !p->accumulate)
      memset(dst, 0, (size_t)dst_size * sizeof(float));
    if (p->transpose &&
        !(copy_read ? ct_window(p, src, 1, padded, map, sums, &win)
                    : ct_window(p, src, 0, NULL, map, sums, &win)))
      continue;
    if (p->transpose && p->shift)
      p->bias[r] += ct_bias_term(p, sums);
    if (p->transpose && !copy_read)
      ct_pad_window(p, src, &win, padded, &kept0, &kept1);
    else if (!p->transpose)
      ct_pad_row(p, src, padded);
#ifdef SB_CPU_V4
    if (p->wide) {
      for (int64_t c0 = 0; c0 < p->ndst; c0 += CT_WIDE_CHANNELS)
        if (!p->transpose && p->wide == CT_WIDE_AVX2)
          ct_block_wide_forward_avx2(p, padded, dst, c0);
        else if (!p->transpose)
          ct_block_wide_forward(p, padded, dst, c0);
        else if (p->wide == CT_WIDE_AVX2)
          ct_block_wide_avx2(p, padded, dst, &win, c0);
        else
          ct_block_wide(p, padded, dst, &win, c0);
      continue;
    }
    if (p->row_pairs) {
      for (int64_t c0 = 0; c0 < p->ndst; c0 += CT_ACCUMULATORS)
        if (p->transpose)
          ct_block_row_pairs_any(p, padded, dst, &win, c0);
        else
          ct_block_forward16(p, padded, dst, c0);
      continue;
    }
#endif
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
  ct_vec *sums; /* transposed: ct_window's channel sums */
} CtPart;

static void *ct_part_run(void *arg) {
  CtPart *t = arg;
  ct_rows(t->p, t->r0, t->r1, t->padded, t->map, t->sums);
  return NULL;
}

/* Entries of ct_tap_tables' lists: one per image row and column phase
 * (transposed) or one (forward), each with its end marker. */
static int64_t ct_tap_table_size(const SbConvGeom *g) {
  return g->in_h * (g->kernel_h + 1) + g->stride_w * (g->kernel_w + 1);
}

/* Fills the plan's tap lists (CtPlan) in tables, each in increasing kh
 * or kw, the order of the sums, and sets *smin and *smax to the least and
 * greatest column shift a tap reads at. */
static void ct_tap_tables(CtPlan *p, CtTap *tables, int64_t *smin,
                          int64_t *smax) {
  const SbConvGeom *g = p->g;
  const int64_t KH = g->kernel_h, KW = g->kernel_w, sw = g->stride_w;
  CtTap *rows = tables, *cols = tables + g->in_h * (KH + 1);
  p->row_taps = rows;
  p->col_taps = cols;
  *smin = *smax = 0;
  int any = 0;
  if (!p->transpose) {
    /* Image column ow*sw + off = (ow + d)*sw + ph: phase ph, shift -d. */
    for (int64_t kw = 0; kw < KW; kw++) {
      const int64_t off = kw * g->dilation_w - g->pad_left;
      const int64_t ph = ct_mod(off, sw), d = (off - ph) / sw;
      cols[kw] = (CtTap){(int32_t)ph, (int32_t)d};
      *smin = !any || -d < *smin ? -d : *smin;
      *smax = !any || -d > *smax ? -d : *smax;
      any = 1;
    }
    cols[KW] = (CtTap){-1, 0};
    return;
  }
  for (int64_t ih = 0; ih < g->in_h; ih++) {
    CtTap *r = rows + ih * (KH + 1);
    for (int64_t kh = 0; kh < KH; kh++) {
      const int64_t t = ih + g->pad_top - kh * g->dilation_h;
      if (t >= 0 && t % g->stride_h == 0 && t / g->stride_h < g->out_h)
        *r++ = (CtTap){(int32_t)kh, (int32_t)(t / g->stride_h)};
    }
    *r = (CtTap){-1, 0};
  }
  for (int64_t ph = 0; ph < sw; ph++) {
    CtTap *c = cols + ph * (KW + 1);
    for (int64_t kw = 0; kw < KW; kw++) {
      int64_t shift;
      if (!ct_shift(g, kw, ph, &shift))
        continue;
      *c++ = (CtTap){(int32_t)kw, (int32_t)shift};
      *smin = !any || shift < *smin ? shift : *smin;
      *smax = !any || shift > *smax ? shift : *smax;
      any = 1;
    }
    *c = (CtTap){-1, 0};
  }
}

/* Packs the weights, sizes the padded rows and runs the n rows in
 * contiguous ranges, one per thread, each with its own padded row; a
 * thread that cannot be started has its range done here. The caller has
 * set the plan's direction, channels, source and destination. */
static int ct_run(CtPlan *p, const float *w, int64_t n, int threads,
                  int64_t columns, char *error, size_t error_size) {
  const SbConvGeom *g = p->g;
  const int64_t taps = g->kernel_h * g->kernel_w;
  const int64_t table_size = ct_tap_table_size(g);
  CtTap *tables = malloc((size_t)table_size * sizeof(CtTap));
  if (!tables) {
    snprintf(error, error_size,
             "direct convolution: out of memory for %lld kernel taps",
             (long long)table_size);
    return SB_ERR_OUT_OF_MEMORY;
  }
  int64_t smin, smax;
  ct_tap_tables(p, tables, &smin, &smax);
  p->dstp = p->ndst <= 4 ? 4
                         : (p->ndst + CT_ACCUMULATORS - 1) / CT_ACCUMULATORS *
                               CT_ACCUMULATORS;
  /* Source columns read: c - shift for c below the destination's columns
   * rounded up to whole runs (16 columns in ct_block_forward16), every
   * shift; and the whole source row. */
  const int64_t run =
      CT_LANES * (p->dstp == 4 || (!p->transpose && p->row_pairs) ? 2 : 1);
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
  const int64_t sums_size = p->transpose ? p->nsum : 0;
  ct_vec *sums = aligned_alloc(
      sizeof(ct_vec), (size_t)(threads * sums_size + 1) * sizeof(ct_vec));
  if (!wpack || !padded || !map || !sums) {
    free(tables);
    free(wpack);
    free(padded);
    free(map);
    free(sums);
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
    parts[t] = (CtPart){p,
                        n * t / threads,
                        n * (t + 1) / threads,
                        padded + t * padded_size,
                        map + t * map_size,
                        sums + t * sums_size};
  sb_cpu_run_parts(parts, sizeof parts[0], threads, ct_part_run);
  free(sums);
  free(map);
  free(padded);
  free(wpack);
  free(tables);
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
                          float *x, const float *shift, float *bias,
                          int threads, char *error, size_t error_size) {
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
              .accumulate = accumulate,
              .shift = shift,
              .bias = bias};
#ifdef SB_CPU_V4
  const int wide = g->stride_w == 1 && g->in_c % CT_WIDE_CHANNELS == 0;
  if (sb_cpu_has_v4()) {
    p.wide = wide;
    p.row_pairs = g->stride_w == 2 && g->in_w % 2 == 0;
  } else if (sb_cpu_has_v3() && wide)
    p.wide = CT_WIDE_AVX2;
#endif
  /* Phase 0 has the most image columns. */
  return ct_run(&p, w, n, threads, (g->in_w + g->stride_w - 1) / g->stride_w,
                error, error_size);
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
#ifdef SB_CPU_V4
  if (sb_cpu_has_v4()) {
    p.wide = nc % CT_WIDE_CHANNELS == 0;
    p.row_pairs = !p.wide && nc > 4 && g->out_w >= 2 * CT_LANES;
  } else if (sb_cpu_has_v3() && nc % CT_WIDE_CHANNELS == 0)
    p.wide = CT_WIDE_AVX2;
#endif
  return ct_run(&p, w, n, threads, g->out_w, error, error_size);
}
