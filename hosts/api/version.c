/* SPDX-License-Identifier: MIT */
/* Which library a program loaded: package and API versions. */
#include "config.h"

#include "shardbound-host.h"

const char *shardbound_host_version(void) { return PACKAGE_VERSION; }

void shardbound_host_api_version(int *major, int *minor) {
  if (major != NULL)
    *major = SHARDBOUND_HOST_API_MAJOR;
  if (minor != NULL)
    *minor = SHARDBOUND_HOST_API_MINOR;
}
