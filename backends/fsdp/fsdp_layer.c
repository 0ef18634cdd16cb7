/* SPDX-License-Identifier: MIT */
/* FSDP layers: weight rows sharded across ranks, all-gathered into a
 * transient buffer around each operator call and freed right after; the
 * operators themselves are the shared op_*.c code, run per rank on local
 * spec rows. */
#include "backends/common/abi_checks.h"
#include "backends/common/rank_checks.h"
#include "backends/fsdp/fsdp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FsdpLayer *fsdp_layer(const sb_layer *l) {
  return (FsdpLayer *)(void *)l;
}

/* ---- creation ---- */

typedef struct {
  sb_context *ctx;
  const sb_layer_desc_v1 *desc;
  const SbRankKept *held;
  FsdpLayer *fl;
} CreateJob;

/* The rows (weight rows of linear, output channels of conv) and floats per
 * row that linear and conv layers shard; 0 rows for other kinds. */
static void sharded_rows(const sb_layer_desc_v1 *d, int64_t *rows,
                         int64_t *row_elems) {
  *rows = *row_elems = 0;
  if (d->kind == SB_LAYER_LINEAR) {
    *rows = d->out_size;
    *row_elems = d->in_size;
  } else if (d->kind == SB_LAYER_CONV2D && d->in_c > 0 && d->groups > 0) {
    *rows = d->out_c;
    *row_elems = d->in_c / d->groups * d->kernel_h * d->kernel_w;
  }
}

/* Rank r keeps its block of weight rows; biases, one float per row, are
 * replicated (cheaper than a collective per use), and other kinds whole. */
static void keep_part(const sb_context *ctx, const sb_layer_desc_v1 *d, int r,
                      SbRankKept *kept) {
  int64_t rows, row_elems, start, count;
  sharded_rows(d, &rows, &row_elems);
  if (rows <= 0)
    return;
  fsdp_rows(ctx, rows, r, &start, &count);
  kept->weight_start = start * row_elems;
  kept->weight_count = count * row_elems;
}

static int create_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  CreateJob *j = arg;
  const sb_layer_desc_v1 *d = j->desc;
  FsdpLayer *fl = j->fl;
  SbExec *x = &rank->x;
  struct sb_layer *l = &fl->local[rank->index];
  if (!fl->sharded)
    return fl->head.fam->create(x, d, l);
  /* Conv validation and geometry come from the conv family itself. */
  int st = d->kind == SB_LAYER_CONV2D ? sb_conv_geometry(x, d, l) : SB_OK;
  int64_t start, count;
  fsdp_rows(j->ctx, fl->rows, rank->index, &start, &count);
  if (st == SB_OK)
    st = sb_exec_upload_weights(
        x, sb_rank_weight_at(j->held, d, start * fl->row_elems),
        count * fl->row_elems, &l->weight);
  /* Biases are one float per row: replicating them costs less than a
   * collective per use. */
  if (st == SB_OK && d->bias != NULL)
    st = sb_exec_upload_weights(x, d->bias, fl->rows, &l->bias);
  return st;
}

static int release_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  FsdpLayer *fl = arg;
  sb_layer_release(&rank->x, &fl->local[rank->index]);
  return SB_OK;
}

static void layer_destroy(sb_context *ctx, FsdpLayer *fl) {
  if (fl->local)
    fsdp_run(ctx, release_on_rank, fl);
  free(fl->local);
  free(fl);
}

/* The checks on out_c that the sharding relies on. */
static int check_sharded_desc(sb_context *ctx, const sb_layer_desc_v1 *d) {
  if (d->kind != SB_LAYER_CONV2D)
    return SB_OK;
  if (d->groups <= 0 || d->out_c <= 0 || d->out_c % d->groups)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "layer_create: conv layer: groups=%lld must be positive "
                     "and divide out_c=%lld",
                     (long long)d->groups, (long long)d->out_c);
  if (d->out_h <= 0 || d->out_w <= 0 ||
      d->out_size != d->out_c * d->out_h * d->out_w)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "layer_create: conv layer: out_size %lld must equal "
                     "out_c*out_h*out_w = %lld with a positive output image",
                     (long long)d->out_size,
                     (long long)(d->out_c * d->out_h * d->out_w));
  return SB_OK;
}

/* On the description every process holds, checked by sb_rank_layer_create. */
static int create_layer(sb_context *ctx, const sb_layer_desc_v1 *desc,
                        const SbRankKept *held, const SbOpFamily *fam,
                        sb_layer **out) {
  int sharded = desc->kind == SB_LAYER_LINEAR || desc->kind == SB_LAYER_CONV2D;
  int st = sharded ? check_sharded_desc(ctx, desc) : SB_OK;
  if (st != SB_OK)
    return st;
  void *obj, *local;
  if ((st = sb_rank_calloc_parts(ctx, "layer_create", sizeof(FsdpLayer),
                                 sizeof(struct sb_layer), &obj, &local)))
    return st;
  FsdpLayer *fl = obj;
  fl->local = local;
  fl->head = (SbRankLayerHead){fam, desc->kind, desc->in_size, desc->out_size};
  fl->sharded = sharded;
  sharded_rows(desc, &fl->rows, &fl->row_elems);
  for (int r = 0; r < ctx->size; r++) {
    struct sb_layer *l = &fl->local[r];
    l->kind = desc->kind;
    l->in_size = desc->in_size;
    l->out_size = desc->out_size;
    l->n_inputs = fam->n_inputs;
  }
  CreateJob job = {ctx, desc, held, fl};
  return sb_rank_layer_finish(ctx, create_on_rank, &job, (sb_layer *)(void *)fl,
                              fsdp_layer_free, out);
}

int fsdp_layer_create(sb_context *ctx, const sb_layer_desc_v1 *desc,
                      sb_layer **out) {
  return sb_rank_layer_create(ctx, desc, out, keep_part, create_layer);
}

void fsdp_layer_free(sb_context *ctx, sb_layer *layer) {
  if (ctx == NULL || layer == NULL)
    return;
  layer_destroy(ctx, fsdp_layer(layer));
}

/* The all-gather around an operator is fsdp_gather_layer (fsdp_gather.c). */

/* ---- forward and IBP: bounds are replicated, every rank computes all of
 * them with the same gathered weights, so they are identical everywhere
 * and equal to the single-device result. ---- */

static int forward_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  SbRankBoundsJob *j = arg;
  const FsdpLayer *fl = fsdp_layer(j->layer);
  int r = rank->index;
  const float *lo[SB_MAX_LAYER_INPUTS] = {0}, *up[SB_MAX_LAYER_INPUTS] = {0};
  sb_rank_bounds_inputs(j, r, lo, up);
  struct sb_layer g;
  SbBuffer gathered = {0};
  int st = fsdp_gather_layer(j->ctx, fl, rank, comm, &g, &gathered);
  if (st == SB_OK)
    st = j->out_up ? fl->head.fam->ibp(&rank->x, &g, j->B, lo, up,
                                       j->out_lo->head.buf[r].ptr,
                                       j->out_up->head.buf[r].ptr)
                   : fl->head.fam->forward(&rank->x, &g, j->B, lo,
                                           j->out_lo->head.buf[r].ptr);
  sb_exec_free(&rank->x, &gathered);
  return st;
}

int fsdp_layer_forward(sb_context *ctx, const sb_layer *layer,
                       const sb_tensor *const *inputs, sb_tensor *out) {
  return sb_rank_layer_forward(ctx, layer, inputs, out, forward_on_rank);
}

int fsdp_layer_ibp(sb_context *ctx, const sb_layer *layer,
                   const sb_tensor *const *in_lower,
                   const sb_tensor *const *in_upper, sb_tensor *out_lower,
                   sb_tensor *out_upper) {
  return sb_rank_layer_ibp(ctx, layer, in_lower, in_upper, out_lower, out_upper,
                           forward_on_rank);
}

/* ---- backward and concretize: on local spec rows only ---- */

/* A [S,...] argument of a backward or concretize call: dimension 0 must be
 * the S rows that are split across ranks. */
static int expect_rows(sb_context *ctx, const char *fn, const char *what,
                       const sb_tensor *t, int64_t S, int64_t numel,
                       const char *shape_text) {
  int st = sb_rank_expect_numel(ctx, fn, what, t, numel, shape_text);
  if (st == SB_OK && t->head.shape[0] != S)
    st = fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                   "%s: %s must have its %lld specification rows as its "
                   "first dimension (it has %lld)",
                   fn, what, (long long)S, (long long)t->head.shape[0]);
  return st;
}

/* The layer's backward step (bw) or its VJP (vjp) on this rank's part p,
 * with the whole weight gathered around the call: linear and conv need
 * every weight row, whatever rows of A the rank holds. Collective. */
static int run_on_whole_weight(const sb_context *ctx, const FsdpLayer *fl,
                               SbRank *rank, SbComm *comm, const FsdpPart *p,
                               const SbOpBackward *bw, const SbOpVjp *vjp) {
  struct sb_layer g;
  SbBuffer gathered = {0};
  int st = fsdp_gather_layer(ctx, fl, rank, comm, &g, &gathered);
  if (st == SB_OK && p->ns > 0 && p->nb > 0)
    st = bw ? fl->head.fam->backward(&rank->x, &g, bw)
            : fl->head.fam->backward_vjp(&rank->x, &g, vjp);
  sb_exec_free(&rank->x, &gathered);
  return st;
}

typedef struct {
  sb_context *ctx;
  const FsdpLayer *fl;
  const sb_backward_args_v1 *args;
  int64_t S, B;
} BackwardJob;

/* The local arrays of a part: every argument through views, so a failure
 * on the way leaves st set and the views to release. */
#define VIEW(t, out) fsdp_views_get(j->ctx, &vs, rank, (t), (out), &st)

static int backward_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  BackwardJob *j = arg;
  const sb_backward_args_v1 *in = j->args;
  const FsdpLayer *fl = j->fl;
  int r = rank->index, n = fl->head.fam->n_inputs, st = SB_OK;
  FsdpPart p;
  fsdp_part(j->ctx, j->S, j->B, r, &p);
  FsdpViews vs;
  fsdp_views_init(&vs, &p);
  SbOpBackward a;
  memset(&a, 0, sizeof a);
  a.side = in->side;
  a.S = p.ns;
  a.B = p.nb;
  a.batch_blocks = p.batch_blocks;
  a.A_out = VIEW(in->A_out, 0);
  for (int i = 0; i < n && st == SB_OK; i++) {
    a.A_in[i] = VIEW(in->A_in[i], 1);
    a.accumulate[i] = in->accumulate[i];
  }
  if (st == SB_OK)
    a.bias = VIEW(in->bias, 1);
  if (st == SB_OK && fl->local[0].kind == SB_LAYER_RELU) {
    a.pre_lower = fsdp_batch_view(in->pre_lower, r, &p);
    a.pre_upper = fsdp_batch_view(in->pre_upper, r, &p);
    a.alpha = VIEW(in->alpha, 0);
  }
  if (st == SB_OK)
    st = run_on_whole_weight(j->ctx, fl, rank, comm, &p, &a, NULL);
  return fsdp_views_finish(j->ctx, rank, comm, &vs, st);
}

int fsdp_layer_backward(sb_context *ctx, const sb_layer *layer,
                        const sb_backward_args_v1 *args) {
  static const char fn[] = "layer_backward";
  int st = sb_rank_begin_layer(ctx, fn, layer);
  if (st == SB_OK)
    st = sb_check_backward_args(SB_CTX_ERROR(ctx), fn, args);
  if (st != SB_OK)
    return st;
  const FsdpLayer *fl = fsdp_layer(layer);
  const struct sb_layer *l = &fl->local[0];
  const sb_tensor *A = args->A_out;
  if (A == NULL || A->head.ndim < 3)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: A_out must be a tensor of shape [S,B,N]", fn);
  BackwardJob job = {ctx, fl, args, A->head.shape[0], A->head.shape[1]};
  const int64_t R = job.S * job.B;
  if (R == 0 || A->head.numel / R != l->out_size)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: A_out has %lld elements, expected S*B*N_out with "
                     "N_out = %lld",
                     fn, (long long)A->head.numel, (long long)l->out_size);
  for (int i = 0; i < fl->head.fam->n_inputs && st == SB_OK; i++) {
    char name[16];
    snprintf(name, sizeof name, "A_in[%d]", i);
    st = expect_rows(ctx, fn, name, args->A_in[i], job.S, R * l->in_size,
                     "[S,B,N_in]");
  }
  if (st == SB_OK)
    st = expect_rows(ctx, fn, "bias", args->bias, job.S, R, "[S,B]");
  if (st == SB_OK && l->kind == SB_LAYER_RELU) {
    const int64_t BN = job.B * l->out_size;
    if ((st = sb_rank_expect_whole(ctx, fn, "pre_lower", args->pre_lower, BN,
                                   "[B,N]")) ||
        (st = sb_rank_expect_whole(ctx, fn, "pre_upper", args->pre_upper, BN,
                                   "[B,N]")))
      return st;
    if (args->alpha)
      st = expect_rows(ctx, fn, "alpha", args->alpha, job.S, R * l->out_size,
                       "[S,B,N]");
  }
  if (st == SB_OK)
    st = sb_check_backward_aliasing(SB_CTX_ERROR(ctx), fn,
                                    fl->head.fam->n_inputs, l->kind, args);
  if (st != SB_OK)
    return st;
  return fsdp_run(ctx, backward_on_rank, &job);
}

typedef struct {
  sb_context *ctx;
  const sb_tensor *A, *bias, *x_lower, *x_upper;
  sb_tensor *out;
  int32_t side;
  int64_t S, B, N;
} ConcretizeJob;

static int concretize_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  ConcretizeJob *j = arg;
  int r = rank->index, st = SB_OK;
  FsdpPart p;
  fsdp_part(j->ctx, j->S, j->B, r, &p);
  FsdpViews vs;
  fsdp_views_init(&vs, &p);
  const float *A = VIEW(j->A, 0);
  const float *bias = st == SB_OK ? VIEW(j->bias, 0) : NULL;
  float *out = st == SB_OK ? VIEW(j->out, 1) : NULL;
  if (st == SB_OK && p.ns > 0 && p.nb > 0)
    st = sb_concretize(&rank->x, j->side, p.ns, p.nb, j->N, A, bias,
                       fsdp_batch_view(j->x_lower, r, &p),
                       fsdp_batch_view(j->x_upper, r, &p), out);
  return fsdp_views_finish(j->ctx, rank, comm, &vs, st);
}

int fsdp_concretize(sb_context *ctx, const sb_tensor *A, const sb_tensor *bias,
                    const sb_tensor *x_lower, const sb_tensor *x_upper,
                    int32_t side, sb_tensor *out) {
  static const char fn[] = "concretize";
  int st = sb_rank_begin(ctx);
  if (st == SB_OK)
    st = sb_check_side(SB_CTX_ERROR(ctx), fn, side);
  if (st != SB_OK)
    return st;
  if (A == NULL || A->head.ndim < 3)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: A must be a tensor of shape [S,B,N]", fn);
  ConcretizeJob job = {ctx,
                       A,
                       bias,
                       x_lower,
                       x_upper,
                       out,
                       side,
                       A->head.shape[0],
                       A->head.shape[1],
                       0};
  job.N = job.S * job.B != 0 ? A->head.numel / (job.S * job.B) : 0;
  const int64_t R = job.S * job.B;
  if (bias)
    st = expect_rows(ctx, fn, "bias", bias, job.S, R, "[S,B]");
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "x_lower", x_lower, job.B * job.N,
                              "[B,N]");
  if (st == SB_OK)
    st = sb_rank_expect_whole(ctx, fn, "x_upper", x_upper, job.B * job.N,
                              "[B,N]");
  if (st == SB_OK)
    st = expect_rows(ctx, fn, "out", out, job.S, R, "[S,B]");
  if (st == SB_OK)
    st = sb_check_concretize_aliasing(SB_CTX_ERROR(ctx), fn, A, bias, x_lower,
                                      x_upper, out);
  if (st != SB_OK)
    return st;
  return fsdp_run(ctx, concretize_on_rank, &job);
}

/* ---- ABI 1.1: alpha-CROWN and beta-CROWN, all row-local in S ---- */

/* A [S,B,N...] tensor whose first dimension is split: S, B and N. */
static int coef_dims(sb_context *ctx, const char *fn, const char *what,
                     const sb_tensor *A, int64_t *S, int64_t *B, int64_t *N) {
  if (A == NULL || A->head.ndim < 3)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: %s must be a tensor of shape [S,B,N]", fn, what);
  *S = A->head.shape[0];
  *B = A->head.shape[1];
  *N = *S * *B != 0 ? A->head.numel / (*S * *B) : 0;
  return SB_OK;
}

typedef struct {
  sb_context *ctx;
  const FsdpLayer *fl;
  const sb_vjp_args_v1 *args;
  int64_t S, B;
} VjpJob;

static int vjp_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  VjpJob *j = arg;
  const sb_vjp_args_v1 *in = j->args;
  const FsdpLayer *fl = j->fl;
  int r = rank->index, st = SB_OK;
  FsdpPart p;
  fsdp_part(j->ctx, j->S, j->B, r, &p);
  FsdpViews vs;
  fsdp_views_init(&vs, &p);
  SbOpVjp a;
  memset(&a, 0, sizeof a);
  a.side = in->side;
  a.S = p.ns;
  a.B = p.nb;
  a.batch_blocks = p.batch_blocks;
  a.A_out = VIEW(in->A_out, 0);
  for (int i = 0; i < fl->head.fam->n_inputs && st == SB_OK; i++)
    a.grad_A_in[i] = VIEW(in->grad_A_in[i], 0);
  if (st == SB_OK)
    a.grad_bias = VIEW(in->grad_bias, 0);
  if (st == SB_OK)
    a.grad_A_out = VIEW(in->grad_A_out, 1);
  a.accumulate_A_out = in->accumulate_A_out;
  if (st == SB_OK && fl->local[0].kind == SB_LAYER_RELU) {
    a.pre_lower = fsdp_batch_view(in->pre_lower, r, &p);
    a.pre_upper = fsdp_batch_view(in->pre_upper, r, &p);
    a.alpha = VIEW(in->alpha, 0);
    if (st == SB_OK)
      a.grad_alpha = VIEW(in->grad_alpha, 1);
    a.accumulate_alpha = in->accumulate_alpha;
  }
  if (st == SB_OK)
    st = run_on_whole_weight(j->ctx, fl, rank, comm, &p, NULL, &a);
  return fsdp_views_finish(j->ctx, rank, comm, &vs, st);
}

int fsdp_layer_backward_vjp(sb_context *ctx, const sb_layer *layer,
                            const sb_vjp_args_v1 *args) {
  static const char fn[] = "layer_backward_vjp";
  int st;
  if ((st = sb_rank_begin_layer(ctx, fn, layer)) ||
      (st = sb_check_vjp_args(SB_CTX_ERROR(ctx), fn, args)))
    return st;
  const FsdpLayer *fl = fsdp_layer(layer);
  const struct sb_layer *l = &fl->local[0];
  VjpJob job = {ctx, fl, args, 0, 0};
  int64_t N = 0;
  if ((st = coef_dims(ctx, fn, "A_out", args->A_out, &job.S, &job.B, &N)))
    return st;
  const int64_t R = job.S * job.B;
  if (R == 0 || N != l->out_size)
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: A_out has %lld elements, expected S*B*N_out with "
                     "N_out = %lld",
                     fn, (long long)args->A_out->head.numel,
                     (long long)l->out_size);
  if ((st = expect_rows(ctx, fn, "grad_A_out", args->grad_A_out, job.S,
                        R * l->out_size, "[S,B,N_out]")))
    return st;
  for (int i = 0; i < fl->head.fam->n_inputs; i++) {
    char name[32];
    snprintf(name, sizeof name, "grad_A_in[%d]", i);
    if (args->grad_A_in[i] == NULL)
      continue;
    if ((st = expect_rows(ctx, fn, name, args->grad_A_in[i], job.S,
                          R * l->in_size, "[S,B,N_in]")))
      return st;
  }
  if (args->grad_bias && (st = expect_rows(ctx, fn, "grad_bias",
                                           args->grad_bias, job.S, R, "[S,B]")))
    return st;
  if (l->kind == SB_LAYER_RELU) {
    const int64_t BN = job.B * l->out_size;
    if ((st = sb_rank_expect_whole(ctx, fn, "pre_lower", args->pre_lower, BN,
                                   "[B,N]")) ||
        (st = sb_rank_expect_whole(ctx, fn, "pre_upper", args->pre_upper, BN,
                                   "[B,N]")))
      return st;
    if (args->alpha && (st = expect_rows(ctx, fn, "alpha", args->alpha, job.S,
                                         R * l->out_size, "[S,B,N]")))
      return st;
    if (args->grad_alpha &&
        (st = expect_rows(ctx, fn, "grad_alpha", args->grad_alpha, job.S,
                          R * l->out_size, "[S,B,N]")))
      return st;
  } else if (args->grad_alpha) {
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: grad_alpha is only meaningful for a relu layer, "
                     "this is a %s layer",
                     fn, fl->head.fam->name);
  }
  if ((st = sb_check_vjp_aliasing(SB_CTX_ERROR(ctx), fn, fl->head.fam->n_inputs,
                                  args)))
    return st;
  return fsdp_run(ctx, vjp_on_rank, &job);
}

/* One job type for the operations that belong to no layer: each rank
 * runs the op-level function on its own spec rows. */
typedef enum {
  OP_CONCRETIZE_VJP,
  OP_INIT_ALPHA,
  OP_BETA_APPLY,
  OP_BETA_VJP
} RowOp;

typedef struct {
  sb_context *ctx;
  RowOp op;
  int32_t side, accumulate;
  int64_t S, B, N;
  const sb_tensor *in0, *in1, *in2; /* op-specific, see each caller */
  sb_tensor *out, *out1, *out2;
  const sb_adam_args_v1 *adam;
} RowJob;

static int row_op_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  RowJob *j = arg;
  int r = rank->index, st = SB_OK;
  FsdpPart p;
  fsdp_part(j->ctx, j->S, j->B, r, &p);
  FsdpViews vs;
  fsdp_views_init(&vs, &p);
  SbExec *x = &rank->x;
  const int run = p.ns > 0 && p.nb > 0;
  switch (j->op) {
  case OP_CONCRETIZE_VJP: { /* in0 A, in1/in2 bounds, out grad_A; grad_out
                             * rides in out1 (const) */
    const float *A = VIEW(j->in0, 0);
    const float *g = st == SB_OK ? VIEW(j->out1, 0) : NULL;
    float *gA = st == SB_OK ? VIEW(j->out, 1) : NULL;
    if (st == SB_OK && run)
      st = sb_concretize_vjp(x, j->side, p.ns, p.nb, j->N, A,
                             fsdp_batch_view(j->in1, r, &p),
                             fsdp_batch_view(j->in2, r, &p), g, gA);
    break;
  }
  case OP_INIT_ALPHA: {
    float *alpha = VIEW(j->out, 1);
    if (st == SB_OK && run)
      st = sb_relu_init_alpha(x, p.ns, p.nb, j->N,
                              fsdp_batch_view(j->in1, r, &p),
                              fsdp_batch_view(j->in2, r, &p), alpha);
    break;
  }
  case OP_BETA_APPLY: { /* out A, in0 beta, in1 sign */
    float *A = VIEW(j->out, 1);
    const float *beta = st == SB_OK ? VIEW(j->in0, 0) : NULL;
    if (st == SB_OK && run)
      st = sb_beta_apply(x, j->side, p.ns, p.nb, j->N, A, beta,
                         fsdp_batch_view(j->in1, r, &p));
    break;
  }
  case OP_BETA_VJP: { /* in0 grad_A, in1 sign, out grad_beta */
    const float *gA = VIEW(j->in0, 0);
    float *gb = st == SB_OK ? VIEW(j->out, 1) : NULL;
    if (st == SB_OK && run)
      st = sb_beta_vjp(x, j->side, p.ns, p.nb, j->N, gA,
                       fsdp_batch_view(j->in1, r, &p), gb, j->accumulate);
    break;
  }
  }
  return fsdp_views_finish(j->ctx, rank, comm, &vs, st);
}

/* Adam is element-wise: each rank updates the elements it stores, all of
 * them for replicated tensors (identically everywhere). */
static int adam_on_rank(SbRank *rank, SbComm *comm, void *arg) {
  RowJob *j = arg;
  int r = rank->index;
  int64_t n = j->out->head.buf[r].bytes / sizeof(float);
  if (!j->out->head.split)
    n = j->out->head.numel;
  if (n == 0)
    return SB_OK;
  return sb_adam_step(&rank->x, n, j->out->head.buf[r].ptr,
                      j->in0->head.buf[r].ptr, j->out1->head.buf[r].ptr,
                      j->out2->head.buf[r].ptr, j->adam);
}

int fsdp_concretize_vjp(sb_context *ctx, const sb_tensor *A,
                        const sb_tensor *x_lower, const sb_tensor *x_upper,
                        int32_t side, const sb_tensor *grad_out,
                        sb_tensor *grad_A) {
  static const char fn[] = "concretize_vjp";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  RowJob j = {.ctx = ctx, .op = OP_CONCRETIZE_VJP, .side = side};
  if ((st = sb_check_side(SB_CTX_ERROR(ctx), fn, side)) ||
      (st = coef_dims(ctx, fn, "A", A, &j.S, &j.B, &j.N)))
    return st;
  const int64_t R = j.S * j.B;
  if (grad_out &&
      (st = expect_rows(ctx, fn, "grad_out", grad_out, j.S, R, "[S,B]")))
    return st;
  if ((st = sb_rank_expect_whole(ctx, fn, "x_lower", x_lower, j.B * j.N,
                                 "[B,N]")) ||
      (st = sb_rank_expect_whole(ctx, fn, "x_upper", x_upper, j.B * j.N,
                                 "[B,N]")) ||
      (st = expect_rows(ctx, fn, "grad_A", grad_A, j.S, R * j.N, "[S,B,N]")))
    return st;
  if ((st = sb_check_concretize_vjp_aliasing(SB_CTX_ERROR(ctx), fn, A, x_lower,
                                             x_upper, grad_out, grad_A)))
    return st;
  j.in0 = A, j.in1 = x_lower, j.in2 = x_upper, j.out = grad_A;
  j.out1 = (sb_tensor *)grad_out; /* only read */
  return fsdp_run(ctx, row_op_on_rank, &j);
}

int fsdp_relu_init_alpha(sb_context *ctx, const sb_tensor *pre_lower,
                         const sb_tensor *pre_upper, sb_tensor *alpha) {
  static const char fn[] = "relu_init_alpha";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  RowJob j = {.ctx = ctx, .op = OP_INIT_ALPHA};
  if ((st = coef_dims(ctx, fn, "alpha", alpha, &j.S, &j.B, &j.N)) ||
      (st = sb_rank_expect_whole(ctx, fn, "pre_lower", pre_lower, j.B * j.N,
                                 "[B,N]")) ||
      (st = sb_rank_expect_whole(ctx, fn, "pre_upper", pre_upper, j.B * j.N,
                                 "[B,N]")) ||
      (st = sb_check_init_alpha_aliasing(SB_CTX_ERROR(ctx), fn, pre_lower,
                                         pre_upper, alpha)))
    return st;
  j.in1 = pre_lower, j.in2 = pre_upper, j.out = alpha;
  return fsdp_run(ctx, row_op_on_rank, &j);
}

int fsdp_adam_step(sb_context *ctx, sb_tensor *param, const sb_tensor *grad,
                   sb_tensor *m, sb_tensor *v, const sb_adam_args_v1 *args) {
  static const char fn[] = "adam_step";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  if ((st = sb_check_adam_args(SB_CTX_ERROR(ctx), fn, args, param)))
    return st;
  const int64_t n = param->head.numel;
  if ((st = sb_rank_expect_numel(ctx, fn, "grad", grad, n, "param's shape")) ||
      (st = sb_rank_expect_numel(ctx, fn, "m", m, n, "param's shape")) ||
      (st = sb_rank_expect_numel(ctx, fn, "v", v, n, "param's shape")))
    return st;
  if ((st = sb_check_adam_aliasing(SB_CTX_ERROR(ctx), fn, param, grad, m, v)))
    return st;
  /* Elements must line up on every rank: all four split alike. */
  if (grad->head.split != param->head.split ||
      m->head.split != param->head.split ||
      v->head.split != param->head.split ||
      (param->head.split &&
       (grad->head.shape[0] != param->head.shape[0] ||
        m->head.shape[0] != param->head.shape[0] ||
        v->head.shape[0] != param->head.shape[0] ||
        grad->batch != param->batch || m->batch != param->batch ||
        v->batch != param->batch)))
    return fsdp_fail(ctx, SB_ERR_INVALID_ARGUMENT,
                     "%s: param, grad, m and v must share one memory "
                     "category kind and their first two dimensions (their "
                     "elements are split alike across ranks)",
                     fn);
  RowJob j = {.ctx = ctx, .adam = args};
  j.in0 = grad, j.out = param, j.out1 = m, j.out2 = v;
  return fsdp_run(ctx, adam_on_rank, &j);
}

int fsdp_beta_apply(sb_context *ctx, sb_tensor *A, const sb_tensor *beta,
                    const sb_tensor *sign, int32_t side) {
  static const char fn[] = "beta_apply";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  RowJob j = {.ctx = ctx, .op = OP_BETA_APPLY, .side = side};
  if ((st = sb_check_side(SB_CTX_ERROR(ctx), fn, side)) ||
      (st = coef_dims(ctx, fn, "A", A, &j.S, &j.B, &j.N)) ||
      (st = expect_rows(ctx, fn, "beta", beta, j.S, j.S * j.B * j.N,
                        "[S,B,N]")) ||
      (st = sb_rank_expect_whole(ctx, fn, "sign", sign, j.B * j.N, "[B,N]")))
    return st;
  if ((st = sb_check_beta_apply_aliasing(SB_CTX_ERROR(ctx), fn, A, beta, sign)))
    return st;
  j.in0 = beta, j.in1 = sign, j.out = A;
  return fsdp_run(ctx, row_op_on_rank, &j);
}

int fsdp_beta_vjp(sb_context *ctx, const sb_tensor *grad_A,
                  const sb_tensor *sign, int32_t side, sb_tensor *grad_beta,
                  int32_t accumulate) {
  static const char fn[] = "beta_vjp";
  int st = sb_rank_begin(ctx);
  if (st != SB_OK)
    return st;
  RowJob j = {
      .ctx = ctx, .op = OP_BETA_VJP, .side = side, .accumulate = accumulate};
  if ((st = sb_check_side(SB_CTX_ERROR(ctx), fn, side)) ||
      (st = coef_dims(ctx, fn, "grad_A", grad_A, &j.S, &j.B, &j.N)) ||
      (st = sb_rank_expect_whole(ctx, fn, "sign", sign, j.B * j.N, "[B,N]")) ||
      (st = expect_rows(ctx, fn, "grad_beta", grad_beta, j.S, j.S * j.B * j.N,
                        "[S,B,N]")))
    return st;
  if ((st = sb_check_beta_vjp_aliasing(SB_CTX_ERROR(ctx), fn, grad_A, sign,
                                       grad_beta)))
    return st;
  j.in0 = grad_A, j.in1 = sign, j.out = grad_beta;
  return fsdp_run(ctx, row_op_on_rank, &j);
}
