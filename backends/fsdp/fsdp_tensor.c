/* SPDX-License-Identifier: MIT */
/* FSDP tensors: coefficient rows split across ranks, everything else
 * replicated, and the host's row-major view scattered and gathered. */
#include "backends/fsdp/fsdp.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

float *fsdp_row_view(const sb_tensor *t, int r, int64_t start) {
  float *p = t->buf[r].ptr;
  return t->split ? p : p + start * t->row_elems;
}

int fsdp_share_rows(const sb_context *ctx, SbRank *rank, SbComm *comm,
                    sb_tensor *t) {
  if (t->split || ctx->size == 1)
    return SB_OK;
  int64_t counts[SB_RANKS_MAX], start, mine;
  for (int q = 0; q < ctx->size; q++) {
    fsdp_rows(ctx, t->shape[0], q, &start, &counts[q]);
    counts[q] *= t->row_elems;
  }
  fsdp_rows(ctx, t->shape[0], rank->index, &start, &mine);
  float *all = t->buf[rank->index].ptr;
  return comm->ops->all_gather(comm, rank->index, &rank->x,
                               all + start * t->row_elems, counts, all);
}

/* First and one-past-last flat elements rank r stores, in logical order. */
static void stored_range(const sb_context *ctx, const sb_tensor *t, int r,
                         int64_t *lo, int64_t *hi) {
  if (!t->split) {
    *lo = 0;
    *hi = t->numel;
    return;
  }
  int64_t start, count;
  fsdp_rows(ctx, t->shape[0], r, &start, &count);
  *lo = start * t->row_elems;
  *hi = (start + count) * t->row_elems;
}

typedef struct {
  sb_context *ctx;
  sb_tensor *t;
  int32_t category;
} CreateJob;

static int create_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  CreateJob *j = arg;
  int64_t lo, hi;
  stored_range(j->ctx, j->t, rank->index, &lo, &hi);
  SbBuffer *b = &j->t->buf[rank->index];
  int st = sb_exec_alloc(&rank->x, j->category, hi - lo, b);
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

int fsdp_tensor_create(sb_context *ctx, int32_t category, int32_t ndim,
                       const int64_t *shape, sb_tensor **out) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (out == NULL)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "tensor_create: NULL output pointer");
  *out = NULL;
  if (category < 0 || category >= SB_MEM_CATEGORY_COUNT)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "tensor_create: invalid memory category %d (valid 0..%d)",
                     (int)category, SB_MEM_CATEGORY_COUNT - 1);
  if (ndim < 1 || ndim > 4 || shape == NULL)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "tensor_create: ndim %d must be 1..4 with a shape",
                     (int)ndim);
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                       "tensor_create: dimension %d is negative (%lld)", i,
                       (long long)shape[i]);
    if (shape[i] > 0 && numel > INT64_MAX / (int64_t)sizeof(float) / shape[i])
      return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                       "tensor_create: shape overflows the addressable size");
    numel *= shape[i];
  }
  sb_tensor *t = calloc(1, sizeof *t);
  SbBuffer *bufs = calloc((size_t)ctx->size, sizeof *bufs);
  if (t == NULL || bufs == NULL) {
    free(t);
    free(bufs);
    return fsdp_fail(ctx, SB_ERR_OUT_OF_MEMORY,
                     "tensor_create: out of host memory");
  }
  t->ndim = ndim;
  memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->numel = numel;
  t->buf = bufs;
  /* Coefficients and alpha are the tensors that grow with the number of
   * specifications: those are the ones whose rows are worth splitting. */
  t->split = ctx->size > 1 && (category == SB_MEM_COEFFICIENTS ||
                               category == SB_MEM_ALPHA);
  t->row_elems = shape[0] > 0 ? numel / shape[0] : 0;
  CreateJob job = {ctx, t, category};
  int st = fsdp_run(ctx, create_on_rank, &job);
  if (st != SB_OK) {
    char keep[sizeof ctx->error];
    memcpy(keep, ctx->error, sizeof keep);
    fsdp_tensor_free(ctx, t);
    memcpy(ctx->error, keep, sizeof keep);
    return st;
  }
  *out = t;
  return SB_OK;
}

void fsdp_tensor_free(sb_context *ctx, sb_tensor *t) {
  if (ctx == NULL || t == NULL)
    return;
  fsdp_run(ctx, free_on_rank, t);
  free(t->buf);
  free(t);
}

static int check_range(sb_context *ctx, const char *fn, const sb_tensor *t,
                       int64_t offset, int64_t count, int32_t dtype,
                       const void *host) {
  if (t == NULL)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL tensor", fn);
  if (dtype != SB_DTYPE_F32 && dtype != SB_DTYPE_F64)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: unknown dtype %d (0 = f32, 1 = f64)", fn, (int)dtype);
  if (offset < 0 || count < 0 || offset > t->numel ||
      count > t->numel - offset)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: elements [%lld, %lld) lie outside the tensor of "
                     "%lld elements",
                     fn, (long long)offset, (long long)(offset + count),
                     (long long)t->numel);
  if (host == NULL && count > 0)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL host buffer", fn);
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

static int copy_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  CopyJob *j = arg;
  SbExec *x = &rank->x;
  int64_t lo, hi;
  stored_range(j->ctx, j->t, rank->index, &lo, &hi);
  /* A replicated tensor is read from rank 0 only; written on every rank. */
  if (j->dst && !j->t->split && rank->index != 0)
    return SB_OK;
  int64_t a = j->offset > lo ? j->offset : lo;
  int64_t b = j->offset + j->count < hi ? j->offset + j->count : hi;
  if (a >= b)
    return SB_OK;
  float *dev = (float *)j->t->buf[rank->index].ptr + (a - lo);
  size_t esz = j->dtype == SB_DTYPE_F32 ? sizeof(float) : sizeof(double);
  int st = SB_OK;
  if (j->dtype == SB_DTYPE_F32) {
    st = j->dst ? x->ops->download(x->dev, (char *)j->dst + (a - j->offset) * esz,
                                   dev, (size_t)(b - a) * sizeof(float))
                : x->ops->upload(x->dev, dev,
                                 (const char *)j->src + (a - j->offset) * esz,
                                 (size_t)(b - a) * sizeof(float));
  } else {
    float stage[STAGE_FLOATS];
    for (int64_t done = 0; done < b - a && st == SB_OK;) {
      int64_t n = b - a - done < STAGE_FLOATS ? b - a - done : STAGE_FLOATS;
      int64_t h = a - j->offset + done;
      if (j->dst) {
        st = x->ops->download(x->dev, stage, dev + done,
                              (size_t)n * sizeof(float));
        for (int64_t i = 0; i < n && st == SB_OK; i++)
          ((double *)j->dst)[h + i] = stage[i];
      } else {
        for (int64_t i = 0; i < n; i++)
          stage[i] = (float)((const double *)j->src)[h + i];
        st = x->ops->upload(x->dev, dev + done, stage,
                            (size_t)n * sizeof(float));
      }
      done += n;
    }
  }
  return st == SB_OK ? st
                     : sb_exec_device_fail(x, st, j->dst ? "tensor_read"
                                                         : "tensor_write");
}

int fsdp_tensor_write(sb_context *ctx, sb_tensor *t, int64_t offset,
                      int64_t count, int32_t dtype, const void *src) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  int st = check_range(ctx, "tensor_write", t, offset, count, dtype, src);
  if (st != SB_OK || count == 0)
    return st;
  CopyJob job = {ctx, t, offset, count, dtype, src, NULL};
  return fsdp_run(ctx, copy_on_rank, &job);
}

int fsdp_tensor_read(sb_context *ctx, const sb_tensor *t, int64_t offset,
                     int64_t count, int32_t dtype, void *dst) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  int st = check_range(ctx, "tensor_read", t, offset, count, dtype, dst);
  if (st != SB_OK || count == 0)
    return st;
  CopyJob job = {ctx, t, offset, count, dtype, NULL, dst};
  return fsdp_run(ctx, copy_on_rank, &job);
}

typedef struct {
  sb_context *ctx;
  sb_tensor *A;
  const int64_t *index;
  int64_t S, B, N;
} UnitJob;

static int unit_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  UnitJob *j = arg;
  int64_t s0 = 0, ns = j->S;
  if (j->A->split)
    fsdp_rows(j->ctx, j->S, rank->index, &s0, &ns);
  int st = rank->x.ops->set_unit_rows(rank->x.dev, ns, j->B, j->N,
                                      j->index + s0, j->A->buf[rank->index].ptr);
  return st == SB_OK ? st
                     : sb_exec_device_fail(&rank->x, st, "tensor_set_unit_rows");
}

int fsdp_tensor_set_unit_rows(sb_context *ctx, sb_tensor *A,
                              const int64_t *index) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (A == NULL || A->ndim < 3)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "tensor_set_unit_rows: A must be a tensor of shape "
                     "[S,B,N]");
  UnitJob job = {ctx, A, index, A->shape[0], A->shape[1], 0};
  job.N = job.S * job.B != 0 ? A->numel / (job.S * job.B) : 0;
  if (index == NULL && job.S > 0)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "tensor_set_unit_rows: NULL index");
  for (int64_t s = 0; s < job.S; s++)
    if (index[s] < 0 || index[s] >= job.N)
      return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                       "tensor_set_unit_rows: index[%lld] = %lld is outside "
                       "[0, %lld)",
                       (long long)s, (long long)index[s], (long long)job.N);
  return fsdp_run(ctx, unit_on_rank, &job);
}
