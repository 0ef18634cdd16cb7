/* SPDX-License-Identifier: MIT */
/* TP layers: weights sharded by output neuron; IBP computes each rank's
 * output slice from the replicated input and all-gathers it; CROWN backward
 * is a local product of the rank's A columns with its weight rows followed
 * by a reduce-scatter onto the input slices, and elementwise operators work
 * on the local slice alone. */
#include "backends/tp/tp.h"

#include "backends/common/rank_checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static TpLayer *tp_layer(const sb_layer *l) { return (TpLayer *)(void *)l; }

/* The full-width partial of one backward step is the transient that TP adds
 * over the single-device backend: it is built this many floats at a time. */
#define TP_PARTIAL_FLOATS ((int64_t)1 << 20)

/* ---- creation ---- */

typedef struct {
  sb_context *ctx;
  const sb_layer_desc_v1 *desc;
  const SbRankKept *held;
  TpLayer *tl;
} CreateJob;

/* Rank r keeps the weight rows and biases of its output neurons (for conv,
 * of the output channels they touch); affine layers, whose per-channel
 * parameters are tiny, and every other kind whole. */
static void keep_part(const sb_context *ctx, const sb_layer_desc_v1 *d, int r,
                      SbRankKept *kept) {
  int64_t start, count;
  tp_cols(ctx, d->out_size, r, &start, &count);
  if (d->kind == SB_LAYER_LINEAR) {
    *kept = (SbRankKept){start * d->in_size, count * d->in_size, start, count};
  } else if (d->kind == SB_LAYER_CONV2D && d->out_h > 0 && d->out_w > 0 &&
             d->groups > 0) {
    int64_t c0, nc, K = d->in_c / d->groups * d->kernel_h * d->kernel_w;
    tp_conv_channels(d->out_h * d->out_w, start, count, &c0, &nc);
    *kept = (SbRankKept){c0 * K, nc * K, c0, nc};
  }
}

static void shape_local(struct sb_layer *l, int32_t kind, int64_t in,
                        int64_t out, int n_inputs) {
  l->kind = kind;
  l->in_size = in;
  l->out_size = out;
  l->n_inputs = n_inputs;
}

static int create_linear(SbExec *x, const sb_layer_desc_v1 *d,
                         const SbRankKept *held, TpShard *sh) {
  sb_layer_desc_v1 ld = *d;
  ld.out_size = sh->count;
  ld.weight = sb_rank_weight_at(held, d, sh->start * d->in_size);
  ld.bias = sb_rank_bias_at(held, d, sh->start);
  shape_local(&sh->local, d->kind, d->in_size, sh->count, 1);
  return sb_op_linear.create(x, &ld, &sh->local);
}

/* The per-channel parameters expanded to one value per owned neuron, so that
 * a slice that starts or ends inside a channel needs no special case. */
static int create_affine(SbExec *x, const sb_layer_desc_v1 *d, TpShard *sh) {
  shape_local(&sh->full, d->kind, d->in_size, d->out_size, 1);
  int st = sb_op_affine.create(x, d, &sh->full);
  shape_local(&sh->local, d->kind, sh->count, sh->count, 1);
  if (st != SB_OK || sh->count == 0)
    return st;
  float *e = malloc(2 * (size_t)sh->count * sizeof(float));
  if (e == NULL)
    return sb_exec_fail(x, SB_ERR_OUT_OF_MEMORY,
                        "affine layer: out of host memory");
  for (int64_t i = 0; i < sh->count; i++) {
    int64_t c = (sh->start + i) / d->spatial;
    e[i] = d->weight ? d->weight[c] : 1.0f;
    e[sh->count + i] = d->bias ? d->bias[c] : 0.0f;
  }
  sb_layer_desc_v1 ld = *d;
  ld.in_size = ld.out_size = ld.channels = sh->count;
  ld.spatial = 1;
  ld.weight = e;
  ld.bias = e + sh->count;
  st = sb_op_affine.create(x, &ld, &sh->local);
  free(e);
  return st;
}

static int create_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  CreateJob *j = arg;
  const sb_layer_desc_v1 *d = j->desc;
  TpShard *sh = &j->tl->shard[rank->index];
  SbExec *x = &rank->x;
  tp_cols(j->ctx, d->out_size, rank->index, &sh->start, &sh->count);
  switch (d->kind) {
  case SB_LAYER_LINEAR:
    return create_linear(x, d, j->held, sh);
  case SB_LAYER_CONV2D:
    return tp_conv_create(x, d, j->held, sh);
  case SB_LAYER_AFFINE:
    return create_affine(x, d, sh);
  default:
    shape_local(&sh->full, d->kind, d->in_size, d->out_size,
                j->tl->head.fam->n_inputs);
    shape_local(&sh->local, d->kind, sh->count, sh->count,
                j->tl->head.fam->n_inputs);
    return j->tl->head.fam->create(x, d, &sh->full);
  }
}

static int release_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  TpLayer *tl = arg;
  sb_layer_release(&rank->x, &tl->shard[rank->index].local);
  sb_layer_release(&rank->x, &tl->shard[rank->index].full);
  return SB_OK;
}

static void layer_destroy(sb_context *ctx, TpLayer *tl) {
  if (tl->shard)
    sb_rank_run(ctx, release_on_rank, tl);
  free(tl->shard);
  free(tl);
}

/* On the description every process holds, checked by sb_rank_layer_create. */
static int create_layer(sb_context *ctx, const sb_layer_desc_v1 *desc,
                        const SbRankKept *held, const SbOpFamily *fam,
                        sb_layer **out) {
  void *obj, *shards;
  int st = sb_rank_calloc_parts(ctx, "layer_create", sizeof(TpLayer),
                                sizeof(TpShard), &obj, &shards);
  if (st != SB_OK)
    return st;
  TpLayer *tl = obj;
  tl->shard = shards;
  tl->head = (SbRankLayerHead){fam, desc->kind, desc->in_size, desc->out_size};
  tl->has_bias = desc->bias != NULL;
  CreateJob job = {ctx, desc, held, tl};
  st = sb_rank_layer_finish(ctx, create_on_rank, &job, (sb_layer *)(void *)tl,
                            tp_layer_free, out);
  if (st == SB_OK)
    tl->conv = tl->shard[0].local.conv;
  return st;
}

int tp_layer_create(sb_context *ctx, const sb_layer_desc_v1 *desc,
                    sb_layer **out) {
  return sb_rank_layer_create(ctx, desc, out, keep_part, create_layer);
}

void tp_layer_free(sb_context *ctx, sb_layer *layer) {
  if (ctx == NULL || layer == NULL)
    return;
  layer_destroy(ctx, tp_layer(layer));
}

/* ---- forward and IBP ---- */

/* Linear and conv: this rank's output neurons from the whole input, then
 * every rank gets every slice. */
static int sharded_forward(const SbRankBoundsJob *j, SbRank *rank, SbComm *comm,
                           const float *lo, const float *up) {
  SbExec *x = &rank->x;
  const TpLayer *tl = tp_layer(j->layer);
  const TpShard *sh = &tl->shard[rank->index];
  const int64_t B = j->B, N = tl->head.out_size;
  float *olo = j->out_lo->head.buf[rank->index].ptr;
  float *oup = j->out_up ? j->out_up->head.buf[rank->index].ptr : NULL;
  TpSlice sl = {0}, su = {0};
  int st = tp_slice_begin(x, B, N, sh->start, sh->count, olo, &sl);
  if (st == SB_OK && oup)
    st = tp_slice_begin(x, B, N, sh->start, sh->count, oup, &su);
  if (st == SB_OK && sh->count > 0) {
    if (tl->head.kind == SB_LAYER_LINEAR)
      st = oup ? tl->head.fam->ibp(x, &sh->local, B, &lo, &up, sl.ptr, su.ptr)
               : tl->head.fam->forward(x, &sh->local, B, &lo, sl.ptr);
    else
      st = oup ? tp_conv_ibp(x, tl, sh, B, lo, up, sl.ptr, su.ptr)
               : tp_conv_forward(x, tl, sh, B, lo, sl.ptr);
  }
  if (st != SB_OK) {
    tp_slice_end(x, &sl);
    tp_slice_end(x, &su);
    return st;
  }
  st = tp_slice_gather(j->ctx, rank, comm, B, N, olo, &sl);
  if (oup) {
    int st2 = st == SB_OK ? tp_slice_gather(j->ctx, rank, comm, B, N, oup, &su)
                          : SB_OK;
    tp_slice_end(x, &su);
    st = st != SB_OK ? st : st2;
  }
  return st;
}

static int forward_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  SbRankBoundsJob *j = arg;
  const TpLayer *tl = tp_layer(j->layer);
  int r = rank->index;
  const float *lo[SB_MAX_LAYER_INPUTS] = {0}, *up[SB_MAX_LAYER_INPUTS] = {0};
  sb_rank_bounds_inputs(j, r, lo, up);
  if (tl->head.kind == SB_LAYER_LINEAR || tl->head.kind == SB_LAYER_CONV2D)
    return sharded_forward(j, rank, comm, lo[0], up[0]);
  /* Elementwise operators on replicated bounds: every rank computes all of
   * it, which costs B*N flops and no communication. */
  const struct sb_layer *full = &tl->shard[r].full;
  return j->out_up ? tl->head.fam->ibp(&rank->x, full, j->B, lo, up,
                                       j->out_lo->head.buf[r].ptr,
                                       j->out_up->head.buf[r].ptr)
                   : tl->head.fam->forward(&rank->x, full, j->B, lo,
                                           j->out_lo->head.buf[r].ptr);
}

int tp_layer_forward(sb_context *ctx, const sb_layer *layer,
                     const sb_tensor *const *inputs, sb_tensor *out) {
  return sb_rank_layer_forward(ctx, layer, inputs, out, forward_on_rank);
}

int tp_layer_ibp(sb_context *ctx, const sb_layer *layer,
                 const sb_tensor *const *in_lower,
                 const sb_tensor *const *in_upper, sb_tensor *out_lower,
                 sb_tensor *out_upper) {
  return sb_rank_layer_ibp(ctx, layer, in_lower, in_upper, out_lower, out_upper,
                           forward_on_rank);
}

/* ---- backward ---- */

typedef struct {
  sb_context *ctx;
  const TpLayer *tl;
  const sb_backward_args_v1 *args;
  int64_t S, B;
} BackwardJob;

/* Rows [r0, r0+m) of the full-width partial A_out[:, mine] . W[mine, :],
 * written in reduce-scatter order: the columns of rank q as one [m, n_q]
 * block at m*start_q. */
static int partial_blocks(const BackwardJob *j, SbRank *rank, int64_t r0,
                          int64_t m, float *send, float *rowmajor,
                          float *bias_partial) {
  SbExec *x = &rank->x;
  const SbDeviceOps *o = x->ops;
  const TpLayer *tl = j->tl;
  const TpShard *sh = &tl->shard[rank->index];
  const int64_t Nin = tl->head.in_size, k = sh->count;
  const float *A =
      (const float *)j->args->A_out->head.buf[rank->index].ptr + r0 * k;
  int st = SB_OK;
  if (k == 0) {
    /* No output neurons here: this rank contributes zeros. */
    st = o->zero(x->dev, send, (size_t)(m * Nin) * sizeof(float));
    return st == SB_OK ? st : sb_exec_device_fail(x, st, "backward partial");
  }
  if (tl->head.kind == SB_LAYER_CONV2D) {
    st = tp_conv_backward_partial(x, tl, sh, m, A, rowmajor,
                                  bias_partial ? bias_partial + r0 : NULL);
    if (st != SB_OK)
      return st;
  }
  for (int q = 0; q < j->ctx->size && st == SB_OK; q++) {
    int64_t a, n;
    tp_cols(j->ctx, Nin, q, &a, &n);
    if (n == 0)
      continue;
    if (tl->head.kind == SB_LAYER_LINEAR)
      st = o->sgemm(x->dev, 0, 0, m, n, k, 1.0f, A, k,
                    (const float *)sh->local.weight.ptr + a, Nin, 0.0f,
                    send + m * a, n);
    else
      for (int64_t i = 0; i < m && st == SB_OK; i++)
        st = o->copy(x->dev, send + m * a + i * n, rowmajor + i * Nin + a,
                     (size_t)n * sizeof(float));
  }
  if (st == SB_OK && tl->head.kind == SB_LAYER_LINEAR && bias_partial &&
      sh->local.bias.ptr)
    st = o->channel_bias_backward(x->dev, m, k, 1, sh->local.bias.ptr, A,
                                  bias_partial + r0);
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "backward partial");
}

/* Rows of A per step of a sharded backward (or its VJP): small enough that
 * the transient full-width buffers stay a fraction of this rank's share of
 * A, whatever the sizes. Every rank gets the same value, since the steps
 * are collectives. */
int64_t tp_row_chunk(const sb_context *ctx, const TpLayer *tl, int64_t R) {
  int64_t per_row = 2 * tl->head.in_size;
  if (tl->head.kind == SB_LAYER_CONV2D) {
    const SbConvGeom *g = &tl->conv;
    int64_t P = g->out_h * g->out_w;
    /* im2col columns, and the local channels padded to whole channels. */
    per_row += g->in_c * g->kernel_h * g->kernel_w * P +
               (g->out_c / ctx->size + 2) * P;
  }
  int64_t chunk = TP_PARTIAL_FLOATS / per_row;
  int64_t share = (R + 8 * ctx->size - 1) / (8 * ctx->size);
  chunk = chunk > share ? share : chunk;
  return chunk < 1 ? 1 : chunk > R ? R : chunk;
}

static int sharded_backward(BackwardJob *j, SbRank *rank, SbComm *comm) {
  SbExec *x = &rank->x;
  const SbDeviceOps *o = x->ops;
  const TpLayer *tl = j->tl;
  const int r = rank->index;
  const int64_t R = j->S * j->B, Nin = tl->head.in_size;
  int64_t in_start, in_count, counts[SB_RANKS_MAX], a;
  tp_cols(j->ctx, Nin, r, &in_start, &in_count);
  const int64_t chunk = tp_row_chunk(j->ctx, tl, R);
  const int acc = j->args->accumulate[0];
  float *A_in = j->args->A_in[0]->head.buf[r].ptr;
  SbBuffer send = {0}, rowmajor = {0}, sum = {0}, bias_partial = {0};
  int st = sb_exec_alloc(x, SB_MEM_COMMUNICATION, chunk * Nin, &send);
  if (st == SB_OK && tl->head.kind == SB_LAYER_CONV2D)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, chunk * Nin, &rowmajor);
  if (st == SB_OK && acc)
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, chunk * in_count, &sum);
  if (st == SB_OK && tl->has_bias) {
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, R, &bias_partial);
    if (st == SB_OK && bias_partial.bytes &&
        (st = o->zero(x->dev, bias_partial.ptr, bias_partial.bytes)))
      st = sb_exec_device_fail(x, st, "backward");
  }
  for (int64_t r0 = 0; r0 < R && st == SB_OK; r0 += chunk) {
    int64_t m = R - r0 < chunk ? R - r0 : chunk;
    st = partial_blocks(j, rank, r0, m, send.ptr, rowmajor.ptr,
                        bias_partial.ptr);
    /* A rank that fails here returns at once: sb_ranks_run then aborts
     * the communicator, so no peer stays blocked in the reduce-scatter. */
    if (st != SB_OK)
      break;
    for (int q = 0; q < j->ctx->size; q++) {
      tp_cols(j->ctx, Nin, q, &a, &counts[q]);
      counts[q] *= m;
    }
    float *dst = acc ? sum.ptr : A_in + r0 * in_count;
    st = comm->ops->reduce_scatter(comm, r, x, send.ptr, counts, dst);
    if (st == SB_OK && acc && m * in_count > 0 &&
        (st = o->add(x->dev, m * in_count, A_in + r0 * in_count, sum.ptr,
                     A_in + r0 * in_count)))
      st = sb_exec_device_fail(x, st, "accumulating A_in");
  }
  sb_exec_free(x, &send);
  sb_exec_free(x, &rowmajor);
  sb_exec_free(x, &sum);
  if (st == SB_OK && tl->has_bias)
    st = tp_bias_commit(rank, comm, R, bias_partial.ptr,
                        j->args->bias->head.buf[r].ptr);
  sb_exec_free(x, &bias_partial);
  return st;
}

/* ReLU, affine, add: the local A columns map to the same input columns. */
static int local_backward(BackwardJob *j, SbRank *rank, SbComm *comm) {
  SbExec *x = &rank->x;
  const TpLayer *tl = j->tl;
  const sb_backward_args_v1 *in = j->args;
  const int r = rank->index;
  const TpShard *sh = &tl->shard[r];
  const int64_t R = j->S * j->B, N = tl->head.out_size;
  const int with_bias = tl->head.kind != SB_LAYER_ADD;
  SbOpBackward a;
  memset(&a, 0, sizeof a);
  a.side = in->side;
  a.S = j->S;
  a.B = j->B;
  a.A_out = in->A_out->head.buf[r].ptr;
  for (int i = 0; i < tl->head.fam->n_inputs; i++) {
    a.A_in[i] = in->A_in[i]->head.buf[r].ptr;
    a.accumulate[i] = in->accumulate[i];
  }
  TpSlice lo = {0}, up = {0};
  SbBuffer partial = {0};
  int st = SB_OK;
  if (with_bias) {
    st = sb_exec_alloc(x, SB_MEM_WORKSPACE, R, &partial);
    if (st == SB_OK && partial.bytes &&
        (st = x->ops->zero(x->dev, partial.ptr, partial.bytes)))
      st = sb_exec_device_fail(x, st, "backward");
    a.bias = partial.ptr;
  }
  if (st == SB_OK && tl->head.kind == SB_LAYER_RELU) {
    st = tp_slice_view(x, j->B, N, sh->start, sh->count,
                       in->pre_lower->head.buf[r].ptr, &lo);
    if (st == SB_OK)
      st = tp_slice_view(x, j->B, N, sh->start, sh->count,
                         in->pre_upper->head.buf[r].ptr, &up);
    a.pre_lower = lo.ptr;
    a.pre_upper = up.ptr;
    a.alpha = in->alpha ? in->alpha->head.buf[r].ptr : NULL;
  }
  if (st == SB_OK && sh->count > 0 && R > 0)
    st = tl->head.fam->backward(x, &sh->local, &a);
  tp_slice_end(x, &lo);
  tp_slice_end(x, &up);
  if (with_bias) {
    if (st == SB_OK)
      st =
          tp_bias_commit(rank, comm, R, partial.ptr, in->bias->head.buf[r].ptr);
    sb_exec_free(x, &partial);
  }
  return st;
}

static int backward_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  BackwardJob *j = arg;
  if (j->tl->head.kind == SB_LAYER_LINEAR ||
      j->tl->head.kind == SB_LAYER_CONV2D)
    return sharded_backward(j, rank, comm);
  return local_backward(j, rank, comm);
}

/* A [S,B,N] argument: split by neuron, with the given S, B and N. */
int tp_expect_coefficients(sb_context *ctx, const char *fn, const char *what,
                           const sb_tensor *t, int64_t S, int64_t B,
                           int64_t N) {
  if (t == NULL)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                        what);
  if (!t->head.split || t->head.shape[0] != S || t->head.shape[1] != B ||
      t->cols != N)
    return sb_rank_fail(
        ctx, SB_ERR_INVALID_ARGUMENT,
        "%s: %s must be a tensor of shape [S,B,N] = "
        "[%lld,%lld,%lld] (it has %d dimensions, %lld elements)",
        fn, what, (long long)S, (long long)B, (long long)N, (int)t->head.ndim,
        (long long)t->head.numel);
  return SB_OK;
}

int tp_layer_backward(sb_context *ctx, const sb_layer *layer,
                      const sb_backward_args_v1 *args) {
  static const char fn[] = "layer_backward";
  int st = sb_rank_begin_layer(ctx, fn, layer);
  if (st == SB_OK)
    st = sb_check_backward_args(SB_CTX_ERROR(ctx), fn, args);
  if (st != SB_OK)
    return st;
  const TpLayer *tl = tp_layer(layer);
  const sb_tensor *A = args->A_out;
  if (A == NULL || !A->head.split)
    return sb_rank_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                        "%s: A_out must be a tensor of shape [S,B,N]", fn);
  BackwardJob job = {ctx, tl, args, A->head.shape[0], A->head.shape[1]};
  const int64_t R = job.S * job.B;
  st = tp_expect_coefficients(ctx, fn, "A_out", A, job.S, job.B,
                              tl->head.out_size);
  for (int i = 0; i < tl->head.fam->n_inputs && st == SB_OK; i++) {
    char name[16];
    snprintf(name, sizeof name, "A_in[%d]", i);
    st = tp_expect_coefficients(ctx, fn, name, args->A_in[i], job.S, job.B,
                                tl->head.in_size);
  }
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "bias", args->bias, R, "[S,B]");
  if (st == SB_OK && tl->head.kind == SB_LAYER_RELU) {
    const int64_t BN = job.B * tl->head.out_size;
    if ((st = sb_rank_expect_whole(ctx, fn, "pre_lower", args->pre_lower, BN,
                                   "[B,N]")) ||
        (st = sb_rank_expect_whole(ctx, fn, "pre_upper", args->pre_upper, BN,
                                   "[B,N]")))
      return st;
    if (args->alpha)
      st = tp_expect_coefficients(ctx, fn, "alpha", args->alpha, job.S, job.B,
                                  tl->head.out_size);
  }
  if (st == SB_OK)
    st = sb_check_backward_aliasing(
        SB_CTX_ERROR(ctx), fn, tl->head.fam->n_inputs, tl->head.kind, args);
  if (st != SB_OK)
    return st;
  return sb_rank_run(ctx, backward_on_rank, &job);
}
