/* SPDX-License-Identifier: MIT */
/* The tracked allocator: every device byte a backend holds is allocated
 * through it and counted per memory category, per rank. */
#ifndef SB_BACKENDS_TRACKED_ALLOC_H
#define SB_BACKENDS_TRACKED_ALLOC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "abi/shardbound.h"
#include "backends/common/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Accounting of one rank. Thread-safe: FSDP ranks are threads, and a
 * collective may allocate on behalf of another rank. */
typedef struct SbMemTracker {
  pthread_mutex_t lock;
  uint64_t current[SB_MEM_CATEGORY_COUNT];
  uint64_t peak[SB_MEM_CATEGORY_COUNT];
  uint64_t total_current;
  uint64_t total_peak;
  uint64_t baseline;
} SbMemTracker;

/* A device allocation that remembers its size and category, so that freeing
 * it always releases exactly what was recorded. */
typedef struct SbBuffer {
  void *ptr;
  size_t bytes;
  int32_t category;
} SbBuffer;

int sb_mem_tracker_init(SbMemTracker *t);
void sb_mem_tracker_destroy(SbMemTracker *t);
void sb_mem_tracker_record_alloc(SbMemTracker *t, int32_t category,
                                 size_t bytes);
void sb_mem_tracker_record_free(SbMemTracker *t, int32_t category,
                                size_t bytes);
/* baseline := total current. */
void sb_mem_tracker_mark_baseline(SbMemTracker *t);
/* Every peak (per category and total) := its current value. */
void sb_mem_tracker_reset_peak(SbMemTracker *t);
/* Consistent snapshot; out->struct_size is honoured (members beyond it are
 * left alone). device_used_bytes is not touched. */
/* Peak resident set size of this process over its life so far, in bytes
 * (getrusage), or -1. Never restarted: restarting the kernel's mark
 * (/proc/self/clear_refs) would also hide the peak from time(1) and from
 * the launcher. */
int64_t sb_process_peak_rss(void);

/* Fills what out's struct_size declares: the tracker's figures, this
 * process's peak RSS, and device_used_bytes = -1 for the caller to set. */
void sb_mem_tracker_snapshot(SbMemTracker *t, uint32_t rank,
                             sb_memory_stats_v1 *out);

/* Allocate `bytes` on dev and record them under category. On failure
 * returns SB_ERR_OUT_OF_MEMORY (or SB_ERR_INVALID_ARGUMENT for a bad
 * category), leaves *out empty and writes a message naming the bytes and the
 * category into error (error_size bytes). */
int sb_buffer_alloc(SbMemTracker *t, const SbDeviceOps *ops, SbDevice *dev,
                    int32_t category, size_t bytes, SbBuffer *out, char *error,
                    size_t error_size);
/* Free and un-record; an empty buffer is a no-op. *buf is emptied. */
void sb_buffer_free(SbMemTracker *t, const SbDeviceOps *ops, SbDevice *dev,
                    SbBuffer *buf);

/* Name of a category for messages ("weights", "workspace" ...). */
const char *sb_mem_category_name(int32_t category);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_TRACKED_ALLOC_H */
