/* SPDX-License-Identifier: MIT */
/* Mapping the heap's free top in one call before a file is parsed, rather
 * than one page fault at a time while the parser fills it. */
#ifndef SB_HEAP_PREFAULT_H
#define SB_HEAP_PREFAULT_H

#include <glib.h>

G_BEGIN_DECLS

/* Makes sure that the first `bytes` of the main heap's free top are mapped
 * (growing the heap to that size first), so that the allocations of the
 * parse that follows land on mapped pages. Where that cannot be done (not
 * glibc, a kernel without MADV_POPULATE_WRITE) it does nothing and the
 * pages fault in as they are touched. */
void sb_heap_prefault(gsize bytes);

G_END_DECLS

#endif
