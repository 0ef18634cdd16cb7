/* SPDX-License-Identifier: MIT */
/* A fresh process pays for every heap page it touches first: on the
 * virtual machines this project is measured on, a page fault costs about
 * 11 us, and populating pages with MADV_POPULATE_WRITE about 1.1 us each
 * (the first write to a populated page still costs about half a fault
 * there, so touching less memory is worth more than populating it). The
 * ONNX loader calls sb_heap_prefault with a size derived from the file's
 * before it parses it; the VNNLIB parser no longer needs to, since it
 * keeps one command's syntax tree at a time. The CPU backend maps its own
 * new buffers in the same way (device_cpu.c). */
#include "config.h"

#include "heap_prefault.h"

#include <stdint.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

#if defined(__GLIBC__) && defined(MADV_POPULATE_WRITE)
/* The main heap's top chunk: free space between the last block and the
 * program break, from which the next blocks that find no free chunk of
 * their size are cut (glibc reports its size as keepcost). */
static gsize heap_top(uintptr_t *start) {
  struct mallinfo2 info = mallinfo2();
  uintptr_t brk = (uintptr_t)sbrk(0);
  *start = brk - info.keepcost;
  return info.keepcost;
}
#endif

/* A bound on one call's populating (and on what it may add to the
 * process's resident memory if the estimate was high): 18 ms of work. */
#define SB_HEAP_PREFAULT_MAX ((gsize)64 << 20)

void sb_heap_prefault(gsize bytes) {
#if defined(__GLIBC__) && defined(MADV_POPULATE_WRITE)
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  if (bytes > SB_HEAP_PREFAULT_MAX)
    bytes = SB_HEAP_PREFAULT_MAX;
  uintptr_t start;
  if (heap_top(&start) < bytes) {
    /* Grows the heap; the block is freed at once and, unless this
     * process's malloc gives large blocks back to the kernel (its own
     * choice, see device_cpu.c), the grown top stays. Through a volatile
     * pointer, since a compiler may drop a malloc whose block is only
     * freed (GCC 12 did). */
    void *volatile grown = malloc(bytes);
    free(grown);
  }
  gsize size = heap_top(&start);
  if (size > bytes)
    size = bytes;
  uintptr_t from = (start + page - 1) & ~(page - 1);
  uintptr_t to = (start + size) & ~(page - 1);
  if (to > from)
    (void)madvise((void *)from, to - from, MADV_POPULATE_WRITE);
#else
  (void)bytes;
#endif
}

void sb_mapping_prefault(const void *contents, gsize length) {
#if defined(__GLIBC__) && defined(MADV_POPULATE_READ)
  if (contents != NULL && length > 0)
    (void)madvise((void *)contents, length, MADV_POPULATE_READ);
#else
  (void)contents;
  (void)length;
#endif
}
