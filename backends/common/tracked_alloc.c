/* SPDX-License-Identifier: MIT */
/* The tracked allocator: per-category current/peak accounting of device
 * memory for one rank. */
#include "backends/common/tracked_alloc.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static const char *const category_names[SB_MEM_CATEGORY_COUNT] = {
    "weights", "gathered-weights", "coefficients", "bounds",
    "alpha",   "workspace",        "communication"};

const char *sb_mem_category_name(int32_t category) {
  if (category < 0 || category >= SB_MEM_CATEGORY_COUNT)
    return "invalid-category";
  return category_names[category];
}

int sb_mem_tracker_init(SbMemTracker *t) {
  memset(t, 0, sizeof *t);
  return pthread_mutex_init(&t->lock, NULL) == 0 ? SB_OK : SB_ERR_INTERNAL;
}

void sb_mem_tracker_destroy(SbMemTracker *t) {
  pthread_mutex_destroy(&t->lock);
}

void sb_mem_tracker_record_alloc(SbMemTracker *t, int32_t category,
                                 size_t bytes) {
  pthread_mutex_lock(&t->lock);
  t->current[category] += bytes;
  if (t->current[category] > t->peak[category])
    t->peak[category] = t->current[category];
  t->total_current += bytes;
  if (t->total_current > t->total_peak)
    t->total_peak = t->total_current;
  pthread_mutex_unlock(&t->lock);
}

void sb_mem_tracker_record_free(SbMemTracker *t, int32_t category,
                                size_t bytes) {
  pthread_mutex_lock(&t->lock);
  /* Saturate rather than wrap: a double free is a bug elsewhere, but the
   * statistics must stay meaningful for the report that reveals it. */
  t->current[category] -=
      bytes <= t->current[category] ? bytes : t->current[category];
  t->total_current -= bytes <= t->total_current ? bytes : t->total_current;
  pthread_mutex_unlock(&t->lock);
}

void sb_mem_tracker_mark_baseline(SbMemTracker *t) {
  pthread_mutex_lock(&t->lock);
  t->baseline = t->total_current;
  pthread_mutex_unlock(&t->lock);
}

void sb_mem_tracker_reset_peak(SbMemTracker *t) {
  pthread_mutex_lock(&t->lock);
  for (int c = 0; c < SB_MEM_CATEGORY_COUNT; c++)
    t->peak[c] = t->current[c];
  t->total_peak = t->total_current;
  pthread_mutex_unlock(&t->lock);
}

int64_t sb_process_peak_rss(void) {
  struct rusage u;
  /* Linux reports ru_maxrss in KiB. */
  return getrusage(RUSAGE_SELF, &u) == 0 ? (int64_t)u.ru_maxrss * 1024 : -1;
}

void sb_mem_tracker_snapshot(SbMemTracker *t, uint32_t rank,
                             sb_memory_stats_v1 *out) {
  sb_memory_stats_v1 s;
  memset(&s, 0, sizeof s);
  pthread_mutex_lock(&t->lock);
  s.rank = rank;
  for (int c = 0; c < SB_MEM_CATEGORY_COUNT; c++) {
    s.current_bytes[c] = t->current[c];
    s.peak_bytes[c] = t->peak[c];
  }
  s.total_current_bytes = t->total_current;
  s.total_peak_bytes = t->total_peak;
  s.baseline_bytes = t->baseline;
  pthread_mutex_unlock(&t->lock);
  s.device_used_bytes = -1;
  s.peak_rss_bytes = sb_process_peak_rss();
  /* Copy only what the caller's struct declares (minor-version rule);
   * struct_size itself is the caller's. */
  size_t n = out->struct_size < sizeof s ? out->struct_size : sizeof s;
  size_t skip = sizeof s.struct_size;
  if (n > skip)
    memcpy((char *)out + skip, (const char *)&s + skip, n - skip);
}

int sb_buffer_alloc(SbMemTracker *t, const SbDeviceOps *ops, SbDevice *dev,
                    int32_t category, size_t bytes, SbBuffer *out, char *error,
                    size_t error_size) {
  out->ptr = NULL;
  out->bytes = 0;
  out->category = category;
  if (category < 0 || category >= SB_MEM_CATEGORY_COUNT) {
    snprintf(error, error_size, "invalid memory category %d (valid: 0..%d)",
             (int)category, SB_MEM_CATEGORY_COUNT - 1);
    return SB_ERR_INVALID_ARGUMENT;
  }
  if (bytes == 0)
    return SB_OK;
  void *p = NULL;
  int st = ops->alloc(dev, bytes, &p);
  if (st != SB_OK || p == NULL) {
    snprintf(error, error_size,
             "%s device out of memory: could not allocate %zu bytes for %s "
             "(%s)",
             ops->name, bytes, sb_mem_category_name(category),
             ops->last_error(dev));
    return SB_ERR_OUT_OF_MEMORY;
  }
  out->ptr = p;
  out->bytes = bytes;
  sb_mem_tracker_record_alloc(t, category, bytes);
  return SB_OK;
}

void sb_buffer_free(SbMemTracker *t, const SbDeviceOps *ops, SbDevice *dev,
                    SbBuffer *buf) {
  if (buf->ptr == NULL && buf->bytes == 0)
    return;
  ops->free(dev, buf->ptr);
  sb_mem_tracker_record_free(t, buf->category, buf->bytes);
  buf->ptr = NULL;
  buf->bytes = 0;
}
