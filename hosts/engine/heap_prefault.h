/* SPDX-License-Identifier: MIT */
/* Mapping the heap's free top, and the file's own mapping, in one call
 * before a file is parsed, rather than one page fault at a time while the
 * parser reads the one and fills the other. */
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

/* Maps the pages of a file mapping (a GMappedFile's contents, page-aligned)
 * in one call: read a page at a time, each fault maps 64 KiB of the file,
 * 35 faults for a 2 MiB model. Without MADV_POPULATE_READ (Linux before
 * 5.14) it does nothing. */
void sb_mapping_prefault(const void *contents, gsize length);

G_END_DECLS

#endif
