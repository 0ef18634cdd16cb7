/* SPDX-License-Identifier: MIT */
#include "backends/common/cpu_parts.h"

#include <pthread.h>

void sb_cpu_run_parts(void *parts, size_t part_size, int n,
                      void *(*run)(void *part)) {
  pthread_t thread[SB_CPU_MAX_PARTS];
  int started[SB_CPU_MAX_PARTS] = {0};
  char *part = parts;

  for (int t = 1; t < n; t++)
    started[t] =
        pthread_create(&thread[t], NULL, run, part + t * part_size) == 0;
  for (int t = 0; t < n; t++)
    if (!started[t])
      run(part + t * part_size);
  for (int t = 1; t < n; t++)
    if (started[t])
      pthread_join(thread[t], NULL);
}
