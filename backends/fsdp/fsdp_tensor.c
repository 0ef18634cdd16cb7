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
    sb_split_spec_rows(t->shape[0], ctx->size, q, &start, &counts[q]);
    counts[q] *= t->row_elems;
  }
  sb_split_spec_rows(t->shape[0], ctx->size, rank->index, &start, &mine);
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
  sb_split_spec_rows(t->shape[0], ctx->size, r, &start, &count);
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
  return sb_rank_alloc_zeroed(&rank->x, j->category, hi - lo,
                              &j->t->buf[rank->index]);
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
  int64_t numel;
  int st = sb_rank_tensor_check_shape(ctx, category, ndim, shape, &numel);
  if (st != SB_OK)
    return st;
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
  st = fsdp_run(ctx, create_on_rank, &job);
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
  fsdp_run(ctx, sb_rank_free_buffer, t->buf);
  free(t->buf);
  free(t);
}

typedef struct {
  sb_context *ctx;
  const sb_tensor *t;
  int64_t offset, count;
  int32_t dtype;
  const void *src; /* write */
  void *dst;       /* read */
} CopyJob;

static int copy_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  CopyJob *j = arg;
  SbExec *x = &rank->x;
  int64_t lo, hi;
  stored_range(j->ctx, j->t, rank->index, &lo, &hi);
  /* A replicated tensor is read from rank 0 only; written on every rank. */
  int64_t a = j->offset > lo ? j->offset : lo;
  int64_t b = j->offset + j->count < hi ? j->offset + j->count : hi;
  int st = SB_OK;
  if (a < b && !(j->dst && !j->t->split && rank->index != 0)) {
    float *dev = (float *)j->t->buf[rank->index].ptr + (a - lo);
    st = sb_rank_copy_host(x, j->dtype, dev, j->dst, j->src, a - j->offset,
                           b - a);
    if (st != SB_OK)
      return sb_exec_device_fail(x, st, j->dst ? "tensor_read"
                                               : "tensor_write");
  }
  if (j->dst == NULL)
    return SB_OK;
  /* Every process must hold what the host reads: rank 0's copy of a
   * replicated tensor, every rank's own rows of a split one. */
  size_t elem = j->dtype == SB_DTYPE_F64 ? sizeof(double) : sizeof(float);
  if (!j->t->split)
    return comm->ops->broadcast_host(comm, rank->index, x, j->dst,
                                     (size_t)j->count * elem, 0);
  int64_t bytes[SB_RANKS_MAX];
  for (int q = 0; q < j->ctx->size; q++) {
    stored_range(j->ctx, j->t, q, &lo, &hi);
    int64_t qa = j->offset > lo ? j->offset : lo;
    int64_t qb = j->offset + j->count < hi ? j->offset + j->count : hi;
    bytes[q] = qa < qb ? (qb - qa) * (int64_t)elem : 0;
  }
  return comm->ops->all_gather_host(comm, rank->index, x, j->dst, bytes);
}

int fsdp_tensor_write(sb_context *ctx, sb_tensor *t, int64_t offset,
                      int64_t count, int32_t dtype, const void *src) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  int st = sb_rank_tensor_check_range(ctx, "tensor_write", t != NULL,
                                      t ? t->numel : 0, offset, count, dtype,
                                      src);
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
  int st = sb_rank_tensor_check_range(ctx, "tensor_read", t != NULL,
                                      t ? t->numel : 0, offset, count, dtype,
                                      dst);
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
    sb_split_spec_rows(j->S, j->ctx->size, rank->index, &s0, &ns);
  if (ns == 0)
    return SB_OK;
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
