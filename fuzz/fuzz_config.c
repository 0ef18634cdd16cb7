/* SPDX-License-Identifier: MIT */
/* The configuration loader (GKeyFile) on an arbitrary file: a loaded
 * configuration whose values can all be read, or an SB_PLUGIN_ERROR. */
#define _GNU_SOURCE
#include "config.h"

#include <sys/mman.h>
#include <unistd.h>

#include "fuzz/fuzz_common.h"
#include "plugin/shardbound-plugin.h"

static int file_fd = -1;
static char file_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  sb_fuzz_init();
  /* The loader reads a path; an in-memory file keeps the disk out of it. */
  file_fd = memfd_create("shardbound.conf", 0);
  if (file_fd < 0)
    abort();
  g_snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (ftruncate(file_fd, 0) != 0 ||
      pwrite(file_fd, data, size, 0) != (ssize_t)size)
    abort();
  SbConfig *config = sb_config_new();
  GError *error = NULL;
  gboolean ok = sb_config_load_file(config, file_path, &error);
  sb_fuzz_expect(ok, error, SB_PLUGIN_ERROR);
  if (ok) {
    size_t n = 0;
    const char *backend = sb_config_get_backend(config);
    const sb_option *options =
        sb_config_get_options(config, backend ? backend : "cpu", &n);
    for (size_t i = 0; i < n; i++)
      if (options[i].key == NULL || options[i].value == NULL)
        abort();
    const char *const *path = sb_config_get_backend_path(config);
    for (; path != NULL && *path != NULL; path++)
      if (**path == '\0')
        abort();
  }
  sb_config_free(config);
  return 0;
}
