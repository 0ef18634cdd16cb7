/* SPDX-License-Identifier: MIT */
/* ABI plumbing shared by the multi-rank backends (FSDP, TP): the context over
 * a rank pool, its options, per-rank memory statistics, and what tensors and
 * layers have in common whatever their layout across ranks (their heads):
 * creating and freeing them, host copies, and the forward/IBP entry points
 * around each backend's own per-rank computation. */
#ifndef SB_BACKENDS_RANK_BACKEND_H
#define SB_BACKENDS_RANK_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "abi/shardbound.h"
#include "backends/common/layer.h"
#include "backends/common/ranks.h"

/* Each multi-rank backend is its own shared object, so they can all use this
 * one definition of the opaque ABI context. */
struct sb_context {
  SbRanks *ranks;
  int size;
  /* Which tensors the backend splits across ranks, for the message that
   * refuses one where every rank needs the whole tensor. */
  const char *split_rule;
  /* Buffers of the tensors created since the last run, one per rank, that
   * each rank zero-fills at the start of the next run (creation allocates
   * on the calling thread: see sb_rank_tensor_finish). */
  SbBuffer **unzeroed;
  size_t n_unzeroed, cap_unzeroed;
  char error[1024];
};

/* What every multi-rank tensor holds whatever its layout across ranks. Each
 * backend's struct sb_tensor starts with it, so that the shared entry points
 * and argument checks reach it through sb_rank_tensor_head. */
typedef struct SbRankTensorHead {
  int32_t ndim;
  int64_t shape[4];
  int64_t numel;
  int split;     /* 0: replicated, every rank holds all of it, identical
                  * everywhere; else split across ranks the backend's way */
  SbBuffer *buf; /* what each rank holds: one per rank */
} SbRankTensorHead;

static inline const SbRankTensorHead *sb_rank_tensor_head(const sb_tensor *t) {
  /* A struct's first member lies at its address (C11 6.7.2.1). */
  return (const SbRankTensorHead *)(const void *)t;
}

/* What every multi-rank layer holds whatever its sharding: each backend's
 * layer struct, the sb_layer handle the host holds, starts with it. */
typedef struct SbRankLayerHead {
  const SbOpFamily *fam;
  int32_t kind;
  int64_t in_size, out_size;
} SbRankLayerHead;

static inline const SbRankLayerHead *sb_rank_layer_head(const sb_layer *l) {
  return (const SbRankLayerHead *)(const void *)l;
}

int sb_rank_fail(sb_context *ctx, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Run fn on every rank; a failure lands in ctx->error as "rank R: ...". */
int sb_rank_run(sb_context *ctx, SbRankFn fn, void *arg);

/* context_create of a backend named `backend` (the prefix of every message)
 * that splits tensors as split_rule says: options ranks, device, devices,
 * comm, comm_timeout, fail_rank, fail_at, ranks on the CPU device joined
 * by the loopback communicator by default. */
int sb_rank_context_create(const char *backend, const char *split_rule,
                           const sb_option *options, size_t n_options,
                           sb_context **out, char *error, size_t error_size);

/* sb_backend_v1 members that depend only on the context. */
void sb_rank_context_destroy(sb_context *ctx);
const char *sb_rank_context_last_error(const sb_context *ctx);
int sb_rank_context_size(const sb_context *ctx);
int sb_rank_memory_mark_baseline(sb_context *ctx);
int sb_rank_memory_reset_peak(sb_context *ctx);
int sb_rank_memory_stats(sb_context *ctx, int rank, sb_memory_stats_v1 *out);
int sb_rank_process_info(const sb_context *ctx, int32_t *index, int32_t *count);
int sb_rank_broadcast_host(sb_context *ctx, void *buf, size_t bytes);
int32_t sb_rank_lost_rank(const sb_context *ctx);

/* The sb_backend_v1 members that every multi-rank backend's descriptor
 * takes from here, for its initializer: the ones that depend only on the
 * context and the rank pool. */
/* clang-format off */
#define SB_RANK_BACKEND_MEMBERS                                                \
  .context_destroy = sb_rank_context_destroy,                                  \
  .last_error = sb_rank_context_last_error,                                    \
  .rank_count = sb_rank_context_size,                                          \
  .tensor_free = sb_rank_tensor_free,                                          \
  .memory_mark_baseline = sb_rank_memory_mark_baseline,                        \
  .memory_reset_peak = sb_rank_memory_reset_peak,                              \
  .memory_stats = sb_rank_memory_stats,                                        \
  .process_info = sb_rank_process_info,                                        \
  .broadcast_host = sb_rank_broadcast_host,                                    \
  .lost_rank = sb_rank_lost_rank
/* clang-format on */

/* The elements of a layer's weight and bias that one rank keeps:
 * [weight_start, weight_start + weight_count) of the whole weight as the
 * description lays it out, the same for the bias. */
typedef struct SbRankKept {
  int64_t weight_start, weight_count, bias_start, bias_count;
} SbRankKept;

/* The backend's rule: what rank r of ctx keeps of desc's parameters, from
 * the description's sizes alone (its arrays MAY be NULL). kept comes in
 * holding the whole weight and bias; a kind the backend keeps whole is left
 * so. A range outside the arrays (a malformed description, which create
 * then refuses) is taken as the whole. */
typedef void (*SbRankKeepFn)(const sb_context *ctx,
                             const sb_layer_desc_v1 *desc, int r,
                             SbRankKept *kept);

/* layer_create's description on this process: with ranks that are
 * processes, process 0 sends every other process only the parameters its
 * rank keeps (keep), into *copy, which the caller releases with
 * sb_rank_layer_desc_free once the layer holds its part; *held says which
 * elements local's weight and bias begin with (the whole, starting at 0, on
 * process 0 and with threads, where *local = *desc and *copy = NULL). A
 * process's own weight and bias MAY be NULL. Collective. */
int sb_rank_layer_desc_share(sb_context *ctx, const sb_layer_desc_v1 *desc,
                             SbRankKeepFn keep, sb_layer_desc_v1 *local,
                             SbRankKept *held, float **copy);
void sb_rank_layer_desc_free(float *copy);

/* Element i of the whole weight (bias) in a description of which only
 * *held is present: NULL when the description has none. */
static inline const float *sb_rank_weight_at(const SbRankKept *held,
                                             const sb_layer_desc_v1 *d,
                                             int64_t i) {
  return d->weight ? d->weight + (i - held->weight_start) : NULL;
}
static inline const float *
sb_rank_bias_at(const SbRankKept *held, const sb_layer_desc_v1 *d, int64_t i) {
  return d->bias ? d->bias + (i - held->bias_start) : NULL;
}

/* layer_create of a multi-rank backend: the checks of desc itself (a
 * known kind, positive sizes, a weight for linear and conv), then create
 * (the backend's own) on the description shared from process 0 (holding
 * *held of the parameters, what keep says this process's rank keeps), with
 * the kind's operator family. */
typedef int (*SbRankLayerCreateFn)(sb_context *ctx,
                                   const sb_layer_desc_v1 *desc,
                                   const SbRankKept *held,
                                   const SbOpFamily *fam, sb_layer **out);
int sb_rank_layer_create(sb_context *ctx, const sb_layer_desc_v1 *desc,
                         sb_layer **out, SbRankKeepFn keep,
                         SbRankLayerCreateFn create);

/* layer_forward's and layer_ibp's job, as the backend's SbRankFn receives
 * it. */
typedef struct SbRankBoundsJob {
  sb_context *ctx;
  const sb_layer *layer;
  int64_t B;
  const sb_tensor *const *in_lo, *const *in_up; /* in_up NULL: forward */
  sb_tensor *out_lo, *out_up;                   /* out_up NULL: forward */
} SbRankBoundsJob;

/* layer_forward and layer_ibp of a multi-rank backend: the argument checks
 * against the layer's head (rank_checks.h), then on_rank on every rank. */
int sb_rank_layer_forward(sb_context *ctx, const sb_layer *layer,
                          const sb_tensor *const *inputs, sb_tensor *out,
                          SbRankFn on_rank);
int sb_rank_layer_ibp(sb_context *ctx, const sb_layer *layer,
                      const sb_tensor *const *in_lower,
                      const sb_tensor *const *in_upper, sb_tensor *out_lower,
                      sb_tensor *out_upper, SbRankFn on_rank);
/* Rank r's arrays of the job's inputs, lo[i] and up[i] (NULL for forward),
 * for every input of the layer. */
void sb_rank_bounds_inputs(const SbRankBoundsJob *j, int r, const float **lo,
                           const float **up);

/* tensor_create of a multi-rank backend, whose struct sb_tensor is `size`
 * bytes. sb_rank_tensor_new checks the arguments (a context, whose last
 * error is cleared, an output pointer, which gets NULL, category, ndim and
 * shape), then makes *t, zeroed, with its head filled in as a replicated
 * tensor and an empty buffer per rank. The backend sets its layout, and
 * sb_rank_tensor_finish gives each rank r a zero-filled buffer of
 * floats_of(ctx, t, r) floats: then *out gets t, or t is freed without
 * losing the allocation's message. */
typedef int64_t (*SbRankFloatsFn)(const sb_context *ctx, const sb_tensor *t,
                                  int rank);
int sb_rank_tensor_new(sb_context *ctx, int32_t category, int32_t ndim,
                       const int64_t *shape, sb_tensor **out, size_t size,
                       sb_tensor **t);
int sb_rank_tensor_finish(sb_context *ctx, int32_t category,
                          SbRankFloatsFn floats_of, sb_tensor *t,
                          sb_tensor **out);
/* tensor_free: every rank's buffer, then t. */
void sb_rank_tensor_free(sb_context *ctx, sb_tensor *t);

/* A zeroed struct of `size` bytes in *obj and a zeroed array of one
 * `part`-byte entry per rank in *parts, both for free(); on failure
 * neither, and "fn: out of host memory". */
int sb_rank_calloc_parts(sb_context *ctx, const char *fn, size_t size,
                         size_t part, void **obj, void **parts);

/* The end of layer_create: make (the backend's, given job) on every rank;
 * then *out gets l, or l is freed with the backend's layer_free without
 * losing make's message. */
int sb_rank_layer_finish(sb_context *ctx, SbRankFn make, void *job, sb_layer *l,
                         void (*layer_free)(sb_context *, sb_layer *),
                         sb_layer **out);

/* tensor_read/tensor_write's checks (fn names the entry point): a tensor
 * (has_tensor) of numel elements, a known dtype, [offset, offset+count)
 * inside it and a host buffer when anything is copied. */
int sb_rank_tensor_check_range(sb_context *ctx, const char *fn, int has_tensor,
                               int64_t numel, int64_t offset, int64_t count,
                               int32_t dtype, const void *host);

/* A tensor_read (dst) or tensor_write (src) of elements
 * [offset, offset+count) of t, as the backend's own copy receives it. */
typedef struct SbRankCopyJob {
  sb_context *ctx;
  const sb_tensor *t;
  int64_t offset, count;
  int32_t dtype;
  const void *src; /* write */
  void *dst;       /* read */
} SbRankCopyJob;

/* tensor_write and tensor_read: sb_rank_tensor_check_range, then copy (an
 * SbRankFn given the SbRankCopyJob) on every rank, unless count is 0. */
int sb_rank_tensor_write(sb_context *ctx, sb_tensor *t, int64_t offset,
                         int64_t count, int32_t dtype, const void *src,
                         SbRankFn copy);
int sb_rank_tensor_read(sb_context *ctx, const sb_tensor *t, int64_t offset,
                        int64_t count, int32_t dtype, void *dst, SbRankFn copy);

/* Copy n contiguous floats at dev to host element h of dst (read, dst not
 * NULL) or from host element h of src (write); dtype is the host's element
 * type. f64 is converted through a stack buffer, so no untracked heap is
 * used. Returns the device status unchanged. */
int sb_rank_copy_host(SbExec *x, int32_t dtype, float *dev, void *dst,
                      const void *src, int64_t h, int64_t n);

#endif /* SB_BACKENDS_RANK_BACKEND_H */
