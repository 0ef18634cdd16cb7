/* SPDX-License-Identifier: MIT */
/* Loading a device module from beside the backend that needs it. */
#include "backends/common/device_module.h"
#include "backends/common/beside_self.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int sb_device_module_load(const char *name, const SbDeviceModule **out,
                          char *error, size_t error_size) {
  *out = NULL;
  char file[256], path[4096];
  snprintf(file, sizeof file, "shardbound-device-%s.so", name);
  if (!sb_path_beside_self(file, path, sizeof path)) {
    snprintf(error, error_size,
             "cannot find the directory of this backend to look for %s", file);
    return SB_ERR_UNSUPPORTED;
  }
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
