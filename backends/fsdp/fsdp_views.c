/* SPDX-License-Identifier: MIT */
/* One rank's contiguous [ns, nb, inner] arrays of the [S,B,...] arguments
 * of an operation, whatever their layout across ranks, and the sharing of
 * replicated outputs afterwards. */
#include "backends/fsdp/fsdp.h"

#include <string.h>

void fsdp_views_init(FsdpViews *vs, const FsdpPart *part) {
  memset(vs, 0, sizeof *vs);
  vs->part = *part;
}

/* With the batch split, a rank's part of a replicated tensor is a slice
 * of every spec row: not contiguous there. Decided by the operation's
 * split alone, so that every rank agrees on the collectives. */
static int needs_packing(const sb_context *ctx, const sb_tensor *t,
                         const FsdpPart *p) {
  return ctx->size > 1 && t->head.split == FSDP_REPLICATED &&
         fsdp_split_of(p->S, p->B) == FSDP_SPLIT_BATCH;
}

/* Copies the part's [ns, nb, inner] between a replicated [S,B,inner]
 * tensor and its packed array, in the direction `pack`. */
static int copy_part(SbExec *x, const sb_tensor *t, int r, const FsdpPart *p,
                     float *packed, int pack) {
  const int64_t inner = t->inner, len = p->nb * inner;
  float *full = t->head.buf[r].ptr;
  int st = SB_OK;
  for (int64_t s = 0; s < p->ns && st == SB_OK && len > 0; s++) {
    float *rows = full + ((p->s0 + s) * p->B + p->b0) * inner;
    float *mine = packed + s * len;
    st = pack ? x->ops->copy(x->dev, mine, rows, (size_t)len * sizeof(float))
              : x->ops->copy(x->dev, rows, mine, (size_t)len * sizeof(float));
  }
  return st == SB_OK ? st : sb_exec_device_fail(x, st, "fsdp batch slice");
}

float *fsdp_views_get(const sb_context *ctx, FsdpViews *vs, SbRank *rank,
                      const sb_tensor *t, int out, int *st) {
  *st = SB_OK;
  if (t == NULL)
    return NULL;
  const FsdpPart *p = &vs->part;
  int r = rank->index;
  for (int i = 0; i < vs->n; i++)
    if (vs->v[i].t == t) {
      vs->v[i].out |= out;
      return vs->v[i].ptr;
    }
  /* A tensor of the operation's S and B is split exactly as the part, so
   * a split tensor's own buffer is the part. */
  if (t->head.shape[0] != p->S || t->batch != p->B) {
    *st = sb_exec_fail(&rank->x, SB_ERR_INVALID_ARGUMENT,
                       "fsdp: an [S,B,...] argument has shape [%lld,%lld,...]"
                       " where the operation has S=%lld spec rows and B=%lld "
                       "batch elements",
                       (long long)t->head.shape[0], (long long)t->batch,
                       (long long)p->S, (long long)p->B);
    return NULL;
  }
  if (vs->n == FSDP_MAX_VIEWS) {
    *st = sb_exec_fail(&rank->x, SB_ERR_INTERNAL,
                       "fsdp: more than %d arguments", FSDP_MAX_VIEWS);
    return NULL;
  }
  FsdpView *v = &vs->v[vs->n++];
  v->t = t;
  v->out = out;
  if (t->head.split != FSDP_REPLICATED) {
    v->ptr = t->head.buf[r].ptr;
  } else if (!needs_packing(ctx, t, p)) {
    v->ptr = (float *)t->head.buf[r].ptr + p->s0 * t->row_elems;
  } else {
    *st = sb_exec_alloc(&rank->x, SB_MEM_WORKSPACE,
                        p->ns * p->nb * t->inner, &v->packed);
    if (*st == SB_OK)
      *st = copy_part(&rank->x, t, r, p, v->packed.ptr, 1);
    if (*st != SB_OK)
      return NULL;
    v->ptr = v->packed.ptr;
    v->is_packed = 1;
  }
  return v->ptr;
}

/* Every rank's packed part of a replicated output, gathered and laid back
 * into the whole tensor on every rank. */
static int share_batch_slices(const sb_context *ctx, SbRank *rank,
                              SbComm *comm, const FsdpView *v,
                              const FsdpPart *mine) {
  const sb_tensor *t = v->t;
  int64_t counts[SB_RANKS_MAX], total = 0;
  FsdpPart parts[SB_RANKS_MAX];
  for (int q = 0; q < ctx->size; q++) {
    fsdp_part(ctx, mine->S, mine->B, q, &parts[q]);
    counts[q] = parts[q].ns * parts[q].nb * t->inner;
    total += counts[q];
  }
  SbBuffer all = {0};
  int st = sb_exec_alloc(&rank->x, SB_MEM_COMMUNICATION, total, &all);
  if (st != SB_OK)
    return st;
  st = comm->ops->all_gather(comm, rank->index, &rank->x, v->ptr, counts,
                             all.ptr);
  float *at = all.ptr;
  for (int q = 0; q < ctx->size && st == SB_OK; q++) {
    if (q != rank->index)
      st = copy_part(&rank->x, t, rank->index, &parts[q], at, 0);
    at += counts[q];
  }
  sb_exec_free(&rank->x, &all);
  return st;
}

static void views_release(SbRank *rank, FsdpViews *vs) {
  for (int i = 0; i < vs->n; i++)
    sb_exec_free(&rank->x, &vs->v[i].packed);
}

int fsdp_views_finish(const sb_context *ctx, SbRank *rank, SbComm *comm,
                      FsdpViews *vs, int st) {
  /* A rank that failed returns at once: sb_ranks_run then aborts the
   * communicator, so no peer stays blocked in the sharing. */
  for (int i = 0; i < vs->n && st == SB_OK; i++) {
    FsdpView *v = &vs->v[i];
    if (!v->out || v->t->head.split != FSDP_REPLICATED || ctx->size == 1)
      continue;
    if (v->is_packed) {
      /* The rank's own part first, then everyone else's. */
      st = copy_part(&rank->x, v->t, rank->index, &vs->part, v->ptr, 0);
      if (st == SB_OK)
        st = share_batch_slices(ctx, rank, comm, v, &vs->part);
    } else {
      st = fsdp_share_rows(ctx, rank, comm, (sb_tensor *)v->t);
    }
  }
  views_release(rank, vs);
  return st;
}
