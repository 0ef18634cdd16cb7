/* SPDX-License-Identifier: MIT */
/* The branch-and-bound queue: a binary min-heap of domains by margin, so
 * that the domain furthest from proven is split first. */
#ifndef SB_BAB_HEAP_H
#define SB_BAB_HEAP_H

#include "bab_domain.h"

G_BEGIN_DECLS

/* An empty queue; it owns its domains (unref frees those still queued). */
GPtrArray *sb_bab_heap_new(void);
void sb_bab_heap_push(GPtrArray *heap, SbBabDomain *domain);
/* Removes and returns the domain of least margin (the heap is not empty). */
SbBabDomain *sb_bab_heap_pop(GPtrArray *heap);
/* The domain of least margin, or NULL when empty. */
SbBabDomain *sb_bab_heap_peek(const GPtrArray *heap);

G_END_DECLS

#endif
