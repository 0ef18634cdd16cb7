/* SPDX-License-Identifier: MIT */
/* The all-gather of a sharded layer around one operator call: the only
 * place where a rank holds more than its shard of a weight. */
#include "backends/fsdp/fsdp.h"

/*
 * Why the whole layer and not a stream of row or column blocks: a blocked
 * product issues GEMMs of other shapes than the single-device operator,
 * and BLAS libraries pick kernels (small-matrix, direct, blocked; cuBLAS
 * split-K) by shape, so the per-element summation order changes. Measured
 * with OpenBLAS 0.3.21 on Cooperlake kernels: 116 of 396 shape/block pairs
 * differed in the last bit (docs/benchmarks.md). Streaming therefore needs
 * the single-device operator to issue the same blocked calls; until then
 * the bound on the transient is one layer, and none at all with one rank.
 */
int fsdp_gather_layer(const sb_context *ctx, const FsdpLayer *fl, SbRank *rank,
                      SbComm *comm, struct sb_layer *g, SbBuffer *gathered) {
  *g = fl->local[rank->index];
  *gathered = (SbBuffer){0};
  /* With one rank the shard is the layer: copying it would only double
   * the weights' footprint for the length of the call. */
  if (!fl->sharded || ctx->size == 1)
    return SB_OK;
  int64_t counts[SB_RANKS_MAX], start;
  for (int q = 0; q < ctx->size; q++) {
    fsdp_rows(ctx, fl->rows, q, &start, &counts[q]);
    counts[q] *= fl->row_elems;
  }
  int st = sb_exec_alloc(&rank->x, SB_MEM_GATHERED_WEIGHTS,
                         fl->rows * fl->row_elems, gathered);
  if (st != SB_OK)
    return st;
  st = comm->ops->all_gather(comm, rank->index, &rank->x, g->weight.ptr, counts,
                             gathered->ptr);
  if (st != SB_OK) {
    sb_exec_free(&rank->x, gathered);
    return st;
  }
  g->weight = *gathered;
  return SB_OK;
}
