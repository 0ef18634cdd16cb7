/* SPDX-License-Identifier: MIT */
/* FSDP tensors: coefficients split across ranks by spec rows or by batch
 * elements, everything else replicated, and the host's row-major view
 * scattered and gathered. */
#include "backends/fsdp/fsdp.h"

#include "backends/common/rank_checks.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

FsdpSplit fsdp_split_of(int64_t S, int64_t B) {
  return sb_blocks_by_batch(S, B) ? FSDP_SPLIT_BATCH : FSDP_SPLIT_ROWS;
}

void fsdp_part(const sb_context *ctx, int64_t S, int64_t B, int r,
               FsdpPart *p) {
  p->S = S;
  p->B = B;
  p->batch_blocks = sb_blocks_by_batch(S, B);
  p->s0 = 0, p->ns = S, p->b0 = 0, p->nb = B;
  if (fsdp_split_of(S, B) == FSDP_SPLIT_BATCH)
    sb_split_batch(B, ctx->size, r, &p->b0, &p->nb);
  else
    sb_split_spec_rows(S, ctx->size, r, &p->s0, &p->ns);
}

int fsdp_share_rows(const sb_context *ctx, SbRank *rank, SbComm *comm,
                    sb_tensor *t) {
  if (t->head.split || ctx->size == 1)
    return SB_OK;
  int64_t counts[SB_RANKS_MAX], start, mine;
  for (int q = 0; q < ctx->size; q++) {
    sb_split_spec_rows(t->head.shape[0], ctx->size, q, &start, &counts[q]);
    counts[q] *= t->row_elems;
  }
  sb_split_spec_rows(t->head.shape[0], ctx->size, rank->index, &start, &mine);
  float *all = t->head.buf[rank->index].ptr;
  return comm->ops->all_gather(comm, rank->index, &rank->x,
                               all + start * t->row_elems, counts, all);
}

/* Rank r's elements of t in the host's row-major order: n_seg segments of
 * len elements, segment k starting at first + k * stride, stored one after
 * the other. */
typedef struct {
  int64_t first, len, stride, n_seg;
} Segments;

static Segments stored_segments(const sb_context *ctx, const sb_tensor *t,
                                int r) {
  Segments g = {0, t->head.numel, 0, 1};
  int64_t start, count;
  if (t->head.split == FSDP_SPLIT_ROWS) {
    sb_split_spec_rows(t->head.shape[0], ctx->size, r, &start, &count);
    g.first = start * t->row_elems;
    g.len = count * t->row_elems;
  } else if (t->head.split == FSDP_SPLIT_BATCH) {
    sb_split_batch(t->batch, ctx->size, r, &start, &count);
    g.first = start * t->inner;
    g.len = count * t->inner;
    g.stride = t->row_elems;
    g.n_seg = t->head.shape[0];
  }
  return g;
}

static int64_t stored_floats(const sb_context *ctx, const sb_tensor *t, int r) {
  Segments g = stored_segments(ctx, t, r);
  return g.len * g.n_seg;
}

int fsdp_tensor_create(sb_context *ctx, int32_t category, int32_t ndim,
                       const int64_t *shape, sb_tensor **out) {
  sb_tensor *t;
  int st = sb_rank_tensor_new(ctx, category, ndim, shape, out, sizeof *t, &t);
  if (st != SB_OK)
    return st;
  t->batch = ndim >= 2 ? shape[1] : 1;
  t->row_elems = shape[0] > 0 ? t->head.numel / shape[0] : 0;
  t->inner = t->batch > 0 ? t->row_elems / t->batch : 0;
  /* Coefficients and alpha are the tensors that grow with the number of
   * specifications and of domains: those are the ones worth splitting. */
  if (ctx->size > 1 &&
      (category == SB_MEM_COEFFICIENTS || category == SB_MEM_ALPHA))
    t->head.split = (int)fsdp_split_of(shape[0], t->batch);
  return sb_rank_tensor_finish(ctx, category, stored_floats, t, out);
}

typedef SbRankCopyJob CopyJob;

/* Ranks as processes, tensor split by domains: each rank's elements of
 * [offset, offset + count) are strided in the host's order, so they travel
 * packed (rank by rank, segment by segment) and every process unpacks the
 * other ranks' into dst. */
static int64_t segments_overlap(const CopyJob *j, int q, int64_t k, int64_t *a,
                                int64_t *b) {
  Segments g = stored_segments(j->ctx, j->t, q);
  if (k >= g.n_seg)
    return -1;
  int64_t lo = g.first + k * g.stride, hi = lo + g.len;
  const int64_t end = j->offset + j->count;
  *a = j->offset > lo ? j->offset : lo;
  *b = end < hi ? end : hi;
  return *a < *b ? *b - *a : 0;
}

static int gather_segments(const CopyJob *j, SbRank *rank, SbComm *comm,
                           size_t elem) {
  SbExec *x = &rank->x;
  int64_t bytes[SB_RANKS_MAX], at[SB_RANKS_MAX], total = 0, a, b, n;
  for (int q = 0; q < j->ctx->size; q++) {
    int64_t sum = 0;
    for (int64_t k = 0; (n = segments_overlap(j, q, k, &a, &b)) >= 0; k++)
      sum += n;
    at[q] = total;
    bytes[q] = sum * (int64_t)elem;
    total += bytes[q];
  }
  char *pack = malloc(total > 0 ? (size_t)total : 1);
  if (pack == NULL)
    return sb_exec_fail(x, SB_ERR_OUT_OF_MEMORY,
                        "tensor_read: out of host memory gathering %lld bytes",
                        (long long)total);
  char *dst = j->dst, *p = pack + at[rank->index];
  for (int64_t k = 0; (n = segments_overlap(j, rank->index, k, &a, &b)) >= 0;
       k++)
    if (n > 0) {
      memcpy(p, dst + (a - j->offset) * (int64_t)elem, (size_t)n * elem);
      p += n * (int64_t)elem;
    }
  int st = comm->ops->all_gather_host(comm, rank->index, x, pack, bytes);
  for (int q = 0; q < j->ctx->size && st == SB_OK; q++) {
    if (q == rank->index)
      continue;
    p = pack + at[q];
    for (int64_t k = 0; (n = segments_overlap(j, q, k, &a, &b)) >= 0; k++)
      if (n > 0) {
        memcpy(dst + (a - j->offset) * (int64_t)elem, p, (size_t)n * elem);
        p += n * (int64_t)elem;
      }
  }
  free(pack);
  return st;
}

static int copy_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  CopyJob *j = arg;
  SbExec *x = &rank->x;
  /* A replicated tensor is read from rank 0 only; written on every rank. */
  const int64_t end = j->offset + j->count;
  int st = SB_OK;
  if (!(j->dst && !j->t->head.split && rank->index != 0)) {
    Segments g = stored_segments(j->ctx, j->t, rank->index);
    for (int64_t k = 0; k < g.n_seg && st == SB_OK; k++) {
      int64_t lo = g.first + k * g.stride, hi = lo + g.len;
      int64_t a = j->offset > lo ? j->offset : lo;
      int64_t b = end < hi ? end : hi;
      if (a >= b)
        continue;
      float *dev =
          (float *)j->t->head.buf[rank->index].ptr + k * g.len + (a - lo);
      st = sb_rank_copy_host(x, j->dtype, dev, j->dst, j->src, a - j->offset,
                             b - a);
    }
    if (st != SB_OK)
      return sb_exec_device_fail(x, st,
                                 j->dst ? "tensor_read" : "tensor_write");
  }
  if (j->dst == NULL)
    return SB_OK;
  /* Every process must hold what the host reads: rank 0's copy of a
   * replicated tensor, every rank's own rows of a split one. */
  size_t elem = j->dtype == SB_DTYPE_F64 ? sizeof(double) : sizeof(float);
  if (!j->t->head.split)
    return comm->ops->broadcast_host(comm, rank->index, x, j->dst,
                                     (size_t)j->count * elem, 0);
  if (j->t->head.split == FSDP_SPLIT_BATCH) {
    /* Threads share dst, where every rank wrote its own segments. */
    if (sb_ranks_local_rank(j->ctx->ranks) < 0)
      return SB_OK;
    return gather_segments(j, rank, comm, elem);
  }
  int64_t bytes[SB_RANKS_MAX];
  for (int q = 0; q < j->ctx->size; q++) {
    Segments gq = stored_segments(j->ctx, j->t, q);
    int64_t qa = j->offset > gq.first ? j->offset : gq.first;
    int64_t qb = end < gq.first + gq.len ? end : gq.first + gq.len;
    bytes[q] = qa < qb ? (qb - qa) * (int64_t)elem : 0;
  }
  return comm->ops->all_gather_host(comm, rank->index, x, j->dst, bytes);
}

int fsdp_tensor_write(sb_context *ctx, sb_tensor *t, int64_t offset,
                      int64_t count, int32_t dtype, const void *src) {
  return sb_rank_tensor_write(ctx, t, offset, count, dtype, src, copy_on_rank);
}

int fsdp_tensor_read(sb_context *ctx, const sb_tensor *t, int64_t offset,
                     int64_t count, int32_t dtype, void *dst) {
  return sb_rank_tensor_read(ctx, t, offset, count, dtype, dst, copy_on_rank);
}

typedef struct {
  sb_context *ctx;
  sb_tensor *A;
  const int64_t *index;
  int64_t S, B, N;
} UnitJob;

static int unit_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  UnitJob *j = arg;
  FsdpPart p = {j->S, j->B, 0, j->S, 0, j->B, 0};
  if (j->A->head.split)
    fsdp_part(j->ctx, j->S, j->B, rank->index, &p);
  if (p.ns == 0 || p.nb == 0)
    return SB_OK;
  int st =
      rank->x.ops->set_unit_rows(rank->x.dev, p.ns, p.nb, j->N, j->index + p.s0,
                                 j->A->head.buf[rank->index].ptr);
  return st == SB_OK
             ? st
             : sb_exec_device_fail(&rank->x, st, "tensor_set_unit_rows");
}

int fsdp_tensor_set_unit_rows(sb_context *ctx, sb_tensor *A,
                              const int64_t *index) {
  if (ctx == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  ctx->error[0] = '\0';
  if (A == NULL || A->head.ndim < 3)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "tensor_set_unit_rows: A must be a tensor of shape "
                     "[S,B,N]");
  UnitJob job = {ctx, A, index, A->head.shape[0], A->head.shape[1], 0};
  job.N = job.S * job.B != 0 ? A->head.numel / (job.S * job.B) : 0;
  int st = sb_rank_check_unit_index(ctx, index, job.S, job.N);
  return st == SB_OK ? fsdp_run(ctx, unit_on_rank, &job) : st;
}
