/* SPDX-License-Identifier: MIT */
/* TP tensors: neuron columns of coefficients split across ranks, bounds
 * replicated, the host's row-major view scattered and gathered, and the
 * column-slice helpers the operators share. */
#include "backends/tp/tp.h"

#include <stdlib.h>
#include <string.h>

/* ---- column slices of replicated buffers ---- */

int tp_slice_view(SbExec *x, int64_t B, int64_t N, int64_t start,
                  int64_t count, const float *full, TpSlice *out) {
  memset(out, 0, sizeof *out);
  if (B == 1 || count == 0) {
    out->ptr = (float *)full + start;
    return SB_OK;
  }
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, B * count, &out->tmp);
  out->ptr = out->tmp.ptr;
  for (int64_t b = 0; b < B && st == SB_OK; b++)
    st = x->ops->copy(x->dev, out->ptr + b * count, full + b * N + start,
                      (size_t)count * sizeof(float));
  if (st != SB_OK && out->tmp.bytes)
    st = sb_exec_device_fail(x, st, "packing a column slice");
  return st;
}

int tp_slice_begin(SbExec *x, int64_t B, int64_t N, int64_t start,
                   int64_t count, float *full, TpSlice *out) {
  memset(out, 0, sizeof *out);
  if (B == 1) {
    out->ptr = full + start;
    return SB_OK;
  }
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, B * count, &out->tmp);
  out->ptr = out->tmp.ptr;
  return st;
}

void tp_slice_end(SbExec *x, TpSlice *s) { sb_exec_free(x, &s->tmp); }

int tp_slice_gather(const sb_context *ctx, SbRank *rank, SbComm *comm,
                    int64_t B, int64_t N, float *full, TpSlice *s) {
  SbExec *x = &rank->x;
  int64_t counts[SB_RANKS_MAX], starts[SB_RANKS_MAX];
  for (int q = 0; q < ctx->size; q++) {
    tp_cols(ctx, N, q, &starts[q], &counts[q]);
    counts[q] *= B;
  }
  int st;
  if (B == 1) {
    /* The slices of a single row are already the blocks of the gather. */
    st = comm->ops->all_gather(comm, rank->index, x, s->ptr, counts, full);
    tp_slice_end(x, s);
    return st;
  }
  SbBuffer all = {0};
  st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, B * N, &all);
  int st2 = comm->ops->all_gather(comm, rank->index, x, s->ptr, counts,
                                  st == SB_OK ? all.ptr : NULL);
  st = st != SB_OK ? st : st2;
  const float *blk = all.ptr;
  for (int q = 0; q < ctx->size && st == SB_OK; blk += counts[q], q++) {
    int64_t n = counts[q] / B;
    for (int64_t b = 0; b < B && st == SB_OK && n > 0; b++)
      st = x->ops->copy(x->dev, full + b * N + starts[q], blk + b * n,
                        (size_t)n * sizeof(float));
    if (st != SB_OK)
      st = sb_exec_device_fail(x, st, "unpacking gathered columns");
  }
  sb_exec_free(x, &all);
  tp_slice_end(x, s);
  return st;
}

int tp_bias_commit(SbRank *rank, SbComm *comm, int64_t n, float *partial,
                   float *bias) {
  SbExec *x = &rank->x;
  int st = comm->ops->all_reduce(comm, rank->index, x, partial, partial, n);
  if (st == SB_OK && n > 0 &&
      (st = x->ops->add(x->dev, n, bias, partial, bias)) != SB_OK)
    st = sb_exec_device_fail(x, st, "adding the constant term");
  return st;
}

/* ---- creation ---- */

typedef struct {
  sb_context *ctx;
  sb_tensor *t;
  int32_t category;
} CreateJob;

/* Floats rank r stores of t. */
static int64_t stored_floats(const sb_context *ctx, const sb_tensor *t,
                             int r) {
  if (!t->sliced)
    return t->numel;
  int64_t start, count;
  tp_cols(ctx, t->cols, r, &start, &count);
  return t->rows * count;
}

static int create_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  CreateJob *j = arg;
  SbBuffer *b = &j->t->buf[rank->index];
  int st = sb_exec_alloc(&rank->x, j->category,
                         stored_floats(j->ctx, j->t, rank->index), b);
  if (st == SB_OK && b->bytes) {
    st = rank->x.ops->zero(rank->x.dev, b->ptr, b->bytes);
    if (st != SB_OK)
      st = sb_exec_device_fail(&rank->x, st, "zero-filling a new tensor");
  }
  return st;
}

static int free_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  sb_tensor *t = arg;
  sb_exec_free(&rank->x, &t->buf[rank->index]);
  return SB_OK;
}

int tp_tensor_create(sb_context *ctx, int32_t category, int32_t ndim,
                     const int64_t *shape, sb_tensor **out) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (out == NULL)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                   "tensor_create: NULL output pointer");
  *out = NULL;
  if (category < 0 || category >= SB_MEM_CATEGORY_COUNT)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                   "tensor_create: invalid memory category %d (valid 0..%d)",
                   (int)category, SB_MEM_CATEGORY_COUNT - 1);
  if (ndim < 1 || ndim > 4 || shape == NULL)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                   "tensor_create: ndim %d must be 1..4 with a shape",
                   (int)ndim);
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "tensor_create: dimension %d is negative (%lld)", i,
                     (long long)shape[i]);
    if (shape[i] > 0 && numel > INT64_MAX / (int64_t)sizeof(float) / shape[i])
      return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "tensor_create: shape overflows the addressable size");
    numel *= shape[i];
  }
  sb_tensor *t = calloc(1, sizeof *t);
  SbBuffer *bufs = calloc((size_t)ctx->size, sizeof *bufs);
  if (t == NULL || bufs == NULL) {
    free(t);
    free(bufs);
    return tp_fail(ctx, SB_ERR_OUT_OF_MEMORY,
                   "tensor_create: out of host memory");
  }
  t->ndim = ndim;
  memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->numel = numel;
  t->buf = bufs;
  t->sliced = ndim >= 3;
  if (t->sliced) {
    t->rows = shape[0] * shape[1];
    t->cols = 1;
    for (int i = 2; i < ndim; i++)
      t->cols *= shape[i];
  }
  CreateJob job = {ctx, t, category};
  int st = tp_run(ctx, create_on_rank, &job);
  if (st != SB_OK) {
    char keep[sizeof ctx->error];
    memcpy(keep, ctx->error, sizeof keep);
    tp_tensor_free(ctx, t);
    memcpy(ctx->error, keep, sizeof keep);
    return st;
  }
  *out = t;
  return SB_OK;
}

void tp_tensor_free(sb_context *ctx, sb_tensor *t) {
  if (ctx == NULL || t == NULL)
    return;
  tp_run(ctx, free_on_rank, t);
  free(t->buf);
  free(t);
}

/* ---- host copies ---- */

static int check_range(sb_context *ctx, const char *fn, const sb_tensor *t,
                       int64_t offset, int64_t count, int32_t dtype,
                       const void *host) {
  if (t == NULL)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL tensor", fn);
  if (dtype != SB_DTYPE_F32 && dtype != SB_DTYPE_F64)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                   "%s: unknown dtype %d (0 = f32, 1 = f64)", fn, (int)dtype);
  if (offset < 0 || count < 0 || offset > t->numel ||
      count > t->numel - offset)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                   "%s: elements [%lld, %lld) lie outside the tensor of "
                   "%lld elements",
                   fn, (long long)offset, (long long)(offset + count),
                   (long long)t->numel);
  if (host == NULL && count > 0)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL host buffer", fn);
  return SB_OK;
}

typedef struct {
  sb_context *ctx;
  const sb_tensor *t;
  int64_t offset, count;
  int32_t dtype;
  const void *src; /* write */
  void *dst;       /* read */
} CopyJob;

/* Conversions stage through the stack so no untracked heap is needed. */
#define STAGE_FLOATS 2048

/* n contiguous floats at dev <-> host element h (of the job's dtype). */
static int copy_run(SbExec *x, const CopyJob *j, float *dev, int64_t h,
                    int64_t n) {
  if (j->dtype == SB_DTYPE_F32)
    return j->dst ? x->ops->download(x->dev, (float *)j->dst + h, dev,
                                     (size_t)n * sizeof(float))
                  : x->ops->upload(x->dev, dev, (const float *)j->src + h,
                                   (size_t)n * sizeof(float));
  float stage[STAGE_FLOATS];
  int st = SB_OK;
  for (int64_t done = 0; done < n && st == SB_OK;) {
    int64_t k = n - done < STAGE_FLOATS ? n - done : STAGE_FLOATS;
    if (j->dst) {
      st = x->ops->download(x->dev, stage, dev + done,
                            (size_t)k * sizeof(float));
      for (int64_t i = 0; i < k && st == SB_OK; i++)
        ((double *)j->dst)[h + done + i] = stage[i];
    } else {
      for (int64_t i = 0; i < k; i++)
        stage[i] = (float)((const double *)j->src)[h + done + i];
      st = x->ops->upload(x->dev, dev + done, stage,
                          (size_t)k * sizeof(float));
    }
    done += k;
  }
  return st;
}

static int copy_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  CopyJob *j = arg;
  SbExec *x = &rank->x;
  const sb_tensor *t = j->t;
  float *base = t->buf[rank->index].ptr;
  const int64_t lo = j->offset, hi = j->offset + j->count;
  int st = SB_OK;
  if (!t->sliced) {
    /* A replicated tensor is read from rank 0 only; written everywhere. */
    if (!(j->dst && rank->index != 0))
      st = copy_run(x, j, base + lo, 0, hi - lo);
  } else {
    int64_t start, count, N = t->cols;
    tp_cols(j->ctx, N, rank->index, &start, &count);
    for (int64_t row = lo / N; count > 0 && row * N < hi && st == SB_OK;
         row++) {
      int64_t a = row * N + start, b = a + count;
      a = a > lo ? a : lo;
      b = b < hi ? b : hi;
      if (a < b)
        st = copy_run(x, j, base + row * count + (a - row * N - start),
                      a - lo, b - a);
    }
  }
  return st == SB_OK ? st
                     : sb_exec_device_fail(x, st, j->dst ? "tensor_read"
                                                         : "tensor_write");
}

int tp_tensor_write(sb_context *ctx, sb_tensor *t, int64_t offset,
                    int64_t count, int32_t dtype, const void *src) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  int st = check_range(ctx, "tensor_write", t, offset, count, dtype, src);
  if (st != SB_OK || count == 0)
    return st;
  CopyJob job = {ctx, t, offset, count, dtype, src, NULL};
  return tp_run(ctx, copy_on_rank, &job);
}

int tp_tensor_read(sb_context *ctx, const sb_tensor *t, int64_t offset,
                   int64_t count, int32_t dtype, void *dst) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  int st = check_range(ctx, "tensor_read", t, offset, count, dtype, dst);
  if (st != SB_OK || count == 0)
    return st;
  CopyJob job = {ctx, t, offset, count, dtype, NULL, dst};
  return tp_run(ctx, copy_on_rank, &job);
}

/* ---- unit rows ---- */

typedef struct {
  sb_context *ctx;
  sb_tensor *A;
  const int64_t *index;
  int64_t S, B;
} UnitJob;

/* Rows whose neuron another rank owns stay zero here; runs of consecutive
 * rows whose neuron is local (the usual sorted index gives one run) go to
 * the device in one call each. */
static int unit_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  UnitJob *j = arg;
  SbExec *x = &rank->x;
  SbBuffer *buf = &j->A->buf[rank->index];
  int64_t start, count;
  tp_cols(j->ctx, j->A->cols, rank->index, &start, &count);
  int st = buf->bytes ? x->ops->zero(x->dev, buf->ptr, buf->bytes) : SB_OK;
  if (st != SB_OK || count == 0)
    return st == SB_OK ? st
                       : sb_exec_device_fail(x, st, "tensor_set_unit_rows");
  int64_t *local = malloc((size_t)j->S * sizeof *local + 1);
  if (local == NULL)
    return sb_exec_fail(x, SB_ERR_OUT_OF_MEMORY,
                        "tensor_set_unit_rows: out of host memory");
  for (int64_t s = 0; s < j->S; s++)
    local[s] = j->index[s] - start;
  for (int64_t s = 0; s < j->S && st == SB_OK;) {
    if (local[s] < 0 || local[s] >= count) {
      s++;
      continue;
    }
    int64_t e = s;
    while (e < j->S && local[e] >= 0 && local[e] < count)
      e++;
    st = x->ops->set_unit_rows(x->dev, e - s, j->B, count, local + s,
                               (float *)buf->ptr + s * j->B * count);
    s = e;
  }
  free(local);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "tensor_set_unit_rows");
}

int tp_tensor_set_unit_rows(sb_context *ctx, sb_tensor *A,
                            const int64_t *index) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (A == NULL || !A->sliced)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                   "tensor_set_unit_rows: A must be a tensor of shape "
                   "[S,B,N]");
  UnitJob job = {ctx, A, index, A->shape[0], A->shape[1]};
  if (index == NULL && job.S > 0)
    return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                   "tensor_set_unit_rows: NULL index");
  for (int64_t s = 0; s < job.S; s++)
    if (index[s] < 0 || index[s] >= A->cols)
      return tp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "tensor_set_unit_rows: index[%lld] = %lld is outside "
                     "[0, %lld)",
                     (long long)s, (long long)index[s], (long long)A->cols);
  return tp_run(ctx, unit_on_rank, &job);
}
