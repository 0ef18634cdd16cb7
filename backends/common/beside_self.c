/* SPDX-License-Identifier: MIT */
/* Files beside the shared object that looks for them. */
#define _GNU_SOURCE /* dladdr */
#include "backends/common/beside_self.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int sb_path_beside_self(const char *file, char *path, size_t size) {
  Dl_info info;
  if (dladdr((void *)sb_path_beside_self, &info) == 0 || info.dli_fname == NULL)
    return 0;
  const char *slash = strrchr(info.dli_fname, '/');
  const int dir_length = slash ? (int)(slash - info.dli_fname) : 1;
  const int n = snprintf(path, size, "%.*s/%s", dir_length,
                         slash ? info.dli_fname : ".", file);
  return n > 0 && (size_t)n < size;
}
