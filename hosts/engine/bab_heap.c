/* SPDX-License-Identifier: MIT */
/* Min-heap of branch-and-bound domains by margin. */
#include "config.h"

#include "bab_heap.h"

static double margin_at(const GPtrArray *heap, guint i) {
  return ((const SbBabDomain *)heap->pdata[i])->margin;
}

static void swap(GPtrArray *heap, guint i, guint j) {
  gpointer t = heap->pdata[i];
  heap->pdata[i] = heap->pdata[j];
  heap->pdata[j] = t;
}

GPtrArray *sb_bab_heap_new(void) {
  return g_ptr_array_new_with_free_func((GDestroyNotify)sb_bab_domain_free);
}

void sb_bab_heap_push(GPtrArray *heap, SbBabDomain *d) {
  g_ptr_array_add(heap, d);
  for (guint i = heap->len - 1; i > 0;) {
    guint parent = (i - 1) / 2;
    if (margin_at(heap, parent) <= margin_at(heap, i))
      break;
    swap(heap, i, parent);
    i = parent;
  }
}

SbBabDomain *sb_bab_heap_pop(GPtrArray *heap) {
  SbBabDomain *top = heap->pdata[0];
  swap(heap, 0, heap->len - 1);
  /* Stealing, not removing: the queue's free function must not run on the
   * domain handed out. */
  g_ptr_array_steal_index(heap, heap->len - 1);
  for (guint i = 0;;) {
    guint l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap->len && margin_at(heap, l) < margin_at(heap, m))
      m = l;
    if (r < heap->len && margin_at(heap, r) < margin_at(heap, m))
      m = r;
    if (m == i)
      break;
    swap(heap, i, m);
    i = m;
  }
  return top;
}

SbBabDomain *sb_bab_heap_peek(const GPtrArray *heap) {
  return heap->len > 0 ? heap->pdata[0] : NULL;
}
