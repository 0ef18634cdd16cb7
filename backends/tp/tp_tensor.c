/* SPDX-License-Identifier: MIT */
/* TP tensors: neuron columns of coefficients split across ranks, bounds
 * replicated, the host's row-major view scattered and gathered, and the
 * column-slice helpers the operators share. */
#include "backends/tp/tp.h"

#include "backends/common/rank_checks.h"

#include <stdlib.h>
#include <string.h>

/* ---- column slices of replicated buffers ---- */

int tp_slice_view(SbExec *x, int64_t B, int64_t N, int64_t start, int64_t count,
                  const float *full, TpSlice *out) {
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

/* Floats rank r stores of t. */
static int64_t stored_floats(const sb_context *ctx, const sb_tensor *t, int r) {
  if (!t->head.split)
    return t->head.numel;
  int64_t start, count;
  tp_cols(ctx, t->cols, r, &start, &count);
  return t->rows * count;
}

int tp_tensor_create(sb_context *ctx, int32_t category, int32_t ndim,
                     const int64_t *shape, sb_tensor **out) {
  sb_tensor *t;
  int st = sb_rank_tensor_new(ctx, category, ndim, shape, out, sizeof *t, &t);
  if (st != SB_OK)
    return st;
  t->head.split = ndim >= 3;
  if (t->head.split) {
    t->rows = shape[0] * shape[1];
    t->cols = 1;
    for (int i = 2; i < ndim; i++)
      t->cols *= shape[i];
  }
  return sb_rank_tensor_finish(ctx, category, stored_floats, t, out);
}

/* ---- host copies ---- */

typedef SbRankCopyJob CopyJob;

/* Calls visit for each piece [a, b) of [lo, hi) that rank q stores of a
 * sliced tensor, in logical order, with the piece's offset in q's buffer;
 * stops at the first failure. */
typedef int (*PieceFn)(void *arg, int64_t a, int64_t b, int64_t local);

static int visit_pieces(const sb_context *ctx, const sb_tensor *t, int q,
                        int64_t lo, int64_t hi, PieceFn visit, void *arg) {
  int64_t start, count, N = t->cols;
  tp_cols(ctx, N, q, &start, &count);
  int st = SB_OK;
  for (int64_t row = lo / N; count > 0 && row * N < hi && st == SB_OK; row++) {
    int64_t a = row * N + start, b = a + count;
    a = a > lo ? a : lo;
    b = b < hi ? b : hi;
    if (a < b)
      st = visit(arg, a, b, row * count + (a - row * N - start));
  }
  return st;
}

typedef struct {
  CopyJob *j;
  SbExec *x;
  float *base;
  void *packed; /* NULL: straight into j->dst */
  int64_t at;   /* next element of packed */
} LocalCopy;

static int copy_piece(void *arg, int64_t a, int64_t b, int64_t local) {
  LocalCopy *c = arg;
  CopyJob *j = c->j;
  int st;
  if (c->packed) {
    st = sb_rank_copy_host(c->x, j->dtype, c->base + local, c->packed, NULL,
                           c->at, b - a);
    c->at += b - a;
  } else {
    st = sb_rank_copy_host(c->x, j->dtype, c->base + local, j->dst, j->src,
                           a - j->offset, b - a);
  }
  return st;
}

typedef struct {
  CopyJob *j;
  const char *from;
  size_t elem;
} Unpack;

static int unpack_piece(void *arg, int64_t a, int64_t b, int64_t local) {
  Unpack *u = arg;
  memcpy((char *)u->j->dst + (size_t)(a - u->j->offset) * u->elem, u->from,
         (size_t)(b - a) * u->elem);
  u->from += (size_t)(b - a) * u->elem;
  return SB_OK;
}

static int count_piece(void *arg, int64_t a, int64_t b, int64_t local) {
  *(int64_t *)arg += b - a;
  return SB_OK;
}

/* A read of a sliced tensor across processes: each rank packs its pieces,
 * the packs are all-gathered, and every process unpacks all of them. */
static int read_sliced_across(CopyJob *j, SbRank *rank, SbComm *comm) {
  SbExec *x = &rank->x;
  const int64_t lo = j->offset, hi = j->offset + j->count;
  size_t elem = j->dtype == SB_DTYPE_F64 ? sizeof(double) : sizeof(float);
  int64_t bytes[SB_RANKS_MAX], at = 0;
  for (int q = 0; q < j->ctx->size; q++) {
    int64_t n = 0;
    visit_pieces(j->ctx, j->t, q, lo, hi, count_piece, &n);
    bytes[q] = n * (int64_t)elem;
    if (q < rank->index)
      at += n;
  }
  char *stage = malloc((size_t)j->count * elem);
  int st = stage ? SB_OK
                 : sb_exec_fail(x, SB_ERR_OUT_OF_MEMORY,
                                "tensor_read: out of host memory staging "
                                "%lld elements",
                                (long long)j->count);
  if (st == SB_OK) {
    LocalCopy c = {j, x, j->t->head.buf[rank->index].ptr, stage, at};
    st = visit_pieces(j->ctx, j->t, rank->index, lo, hi, copy_piece, &c);
    if (st != SB_OK)
      st = sb_exec_device_fail(x, st, "tensor_read");
  }
  if (st != SB_OK) {
    free(stage);
    return st;
  }
  st = comm->ops->all_gather_host(comm, rank->index, x, stage, bytes);
  Unpack u = {j, stage, elem};
  for (int q = 0; q < j->ctx->size && st == SB_OK; q++)
    visit_pieces(j->ctx, j->t, q, lo, hi, unpack_piece, &u);
  free(stage);
  return st;
}

static int copy_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  CopyJob *j = arg;
  SbExec *x = &rank->x;
  const sb_tensor *t = j->t;
  float *base = t->head.buf[rank->index].ptr;
  const int64_t lo = j->offset, hi = j->offset + j->count;
  int st = SB_OK;
  if (!t->head.split) {
    /* A replicated tensor is read from rank 0 only, and every process
     * receives rank 0's copy; it is written everywhere. */
    if (!(j->dst && rank->index != 0))
      st =
          sb_rank_copy_host(x, j->dtype, base + lo, j->dst, j->src, 0, hi - lo);
    if (st != SB_OK)
      return sb_exec_device_fail(x, st,
                                 j->dst ? "tensor_read" : "tensor_write");
    if (j->dst == NULL)
      return SB_OK;
    size_t elem = j->dtype == SB_DTYPE_F64 ? sizeof(double) : sizeof(float);
    return comm->ops->broadcast_host(comm, rank->index, x, j->dst,
                                     (size_t)j->count * elem, 0);
  }
  /* Threads write their columns straight into the one host buffer. */
  if (j->dst && comm->local_rank >= 0)
    return read_sliced_across(j, rank, comm);
  LocalCopy c = {j, x, base, NULL, 0};
  st = visit_pieces(j->ctx, t, rank->index, lo, hi, copy_piece, &c);
  return st == SB_OK ? st
                     : sb_exec_device_fail(
                           x, st, j->dst ? "tensor_read" : "tensor_write");
}

int tp_tensor_write(sb_context *ctx, sb_tensor *t, int64_t offset,
                    int64_t count, int32_t dtype, const void *src) {
  return sb_rank_tensor_write(ctx, t, offset, count, dtype, src, copy_on_rank);
}

int tp_tensor_read(sb_context *ctx, const sb_tensor *t, int64_t offset,
                   int64_t count, int32_t dtype, void *dst) {
  return sb_rank_tensor_read(ctx, t, offset, count, dtype, dst, copy_on_rank);
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
  SbBuffer *buf = &j->A->head.buf[rank->index];
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
  if (A == NULL || !A->head.split)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "tensor_set_unit_rows: A must be a tensor of shape "
                        "[S,B,N]");
  UnitJob job = {ctx, A, index, A->head.shape[0], A->head.shape[1]};
  int st = sb_rank_check_unit_index(ctx, index, job.S, A->cols);
  return st == SB_OK ? sb_rank_run(ctx, unit_on_rank, &job) : st;
}
