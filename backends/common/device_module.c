/* SPDX-License-Identifier: MIT */
/* Loading a device module from beside the backend that needs it. */
#define _GNU_SOURCE /* dladdr */
#include "backends/common/device_module.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* The directory of the shared object this function was linked into. */
static int own_directory(char *dir, size_t size) {
  Dl_info info;
  if (dladdr((void *)own_directory, &info) == 0 || info.dli_fname == NULL)
    return 0;
  const char *slash = strrchr(info.dli_fname, '/');
  size_t n = slash ? (size_t)(slash - info.dli_fname) : 1;
  if (n + 1 > size)
    return 0;
  if (slash)
    memcpy(dir, info.dli_fname, n);
  else
    dir[0] = '.';
  dir[n] = '\0';
  return 1;
}

int sb_device_module_load(const char *name, const SbDeviceModule **out,
                          char *error, size_t error_size) {
  *out = NULL;
  char dir[4096], path[4200];
  if (!own_directory(dir, sizeof dir)) {
    snprintf(error, error_size,
             "cannot find the directory of this backend to look for "
             "shardbound-device-%s.so",
             name);
    return SB_ERR_UNSUPPORTED;
  }
  snprintf(path, sizeof path, "%s/shardbound-device-%s.so", dir, name);
  void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (so == NULL) {
    const char *why = dlerror();
    snprintf(error, error_size, "cannot load the %s device module: %s", name,
             why ? why : path);
    return SB_ERR_UNSUPPORTED;
  }
  SbDeviceModuleGetFn get;
  /* POSIX's blessed way from void * to a function pointer. */
  *(void **)&get = dlsym(so, SB_DEVICE_MODULE_SYMBOL);
  const SbDeviceModule *m = NULL;
  if (get == NULL || get(&m) != SB_OK || m == NULL ||
      m->struct_size < sizeof(SbDeviceModule) || m->ops == NULL ||
      m->device_count == NULL || m->name == NULL ||
      strcmp(m->name, name) != 0) {
    snprintf(error, error_size,
             "%s is not a shardbound %s device module of this version "
             "(rebuild it with the backends)",
             path, name);
    dlclose(so);
    return SB_ERR_UNSUPPORTED;
  }
  *out = m;
  return SB_OK;
}
