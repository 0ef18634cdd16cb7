/* SPDX-License-Identifier: MIT */
/* TP concretization: each rank bounds its neuron columns of A over its slice
 * of the box, and the partial sums are all-reduced. */
#include "backends/tp/tp.h"

#include "backends/common/rank_checks.h"

#include <string.h>

typedef struct {
  sb_context *ctx;
  const sb_tensor *A, *bias, *x_lower, *x_upper;
  sb_tensor *out;
  int32_t side;
  int64_t S, B, N;
} ConcretizeJob;

static int concretize_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  ConcretizeJob *j = arg;
  SbExec *x = &rank->x;
  const int r = rank->index;
  const int64_t R = j->S * j->B;
  int64_t start, count;
  tp_cols(j->ctx, j->N, r, &start, &count);
  TpSlice lo = {0}, up = {0};
  SbBuffer partial = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, R, &partial);
  if (st == SB_OK && partial.bytes &&
      (st = x->ops->zero(x->dev, partial.ptr, partial.bytes)))
    st = sb_exec_device_fail(x, st, "concretize");
  if (st == SB_OK)
    st = tp_slice_view(x, j->B, j->N, start, count, j->x_lower->head.buf[r].ptr,
                       &lo);
  if (st == SB_OK)
    st = tp_slice_view(x, j->B, j->N, start, count, j->x_upper->head.buf[r].ptr,
                       &up);
  /* The constant term is added once, after the sum, not once per rank. */
  if (st == SB_OK && count > 0 && R > 0)
    st = sb_concretize(x, j->side, j->S, j->B, count, j->A->head.buf[r].ptr,
                       NULL, lo.ptr, up.ptr, partial.ptr);
  tp_slice_end(x, &lo);
  tp_slice_end(x, &up);
  if (st == SB_OK)
    st = comm->ops->all_reduce(comm, r, x, partial.ptr, partial.ptr, R);
  if (st == SB_OK && R > 0) {
    float *out = j->out->head.buf[r].ptr;
    st =
        j->bias
            ? x->ops->add(x->dev, R, j->bias->head.buf[r].ptr, partial.ptr, out)
            : x->ops->copy(x->dev, out, partial.ptr, (size_t)R * sizeof(float));
    if (st != SB_OK)
      st = sb_exec_device_fail(x, st, "concretize");
  }
  sb_exec_free(x, &partial);
  return st;
}

int tp_concretize(sb_context *ctx, const sb_tensor *A, const sb_tensor *bias,
                  const sb_tensor *x_lower, const sb_tensor *x_upper,
                  int32_t side, sb_tensor *out) {
  static const char fn[] = "concretize";
  int st = sb_rank_begin(ctx);
  if (st == SB_OK)
    st = sb_check_side(SB_CTX_ERROR(ctx), fn, side);
  if (st != SB_OK)
    return st;
  if (A == NULL || !A->head.split)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "concretize: A must be a tensor of shape [S,B,N]");
  ConcretizeJob job = {ctx,  A,    bias, x_lower, x_upper, out, side,
                       A->head.shape[0], A->head.shape[1], A->cols};
  const int64_t R = job.S * job.B;
  if (bias)
    st = sb_rank_expect_whole(ctx, fn, "bias", bias, R, "[S,B]");
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "x_lower", x_lower, job.B * job.N,
                              "[B,N]");
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "x_upper", x_upper, job.B * job.N,
                              "[B,N]");
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "out", out, R, "[S,B]");
  if (st == SB_OK)
    st = sb_check_concretize_aliasing(SB_CTX_ERROR(ctx), "concretize", A, bias,
                                      x_lower, x_upper, out);
  if (st != SB_OK)
    return st;
  return sb_rank_run(ctx, concretize_on_rank, &job);
}
