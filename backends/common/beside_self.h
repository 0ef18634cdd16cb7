/* SPDX-License-Identifier: MIT */
/* Files installed (and built) beside the backends: the device modules and
 * the backends' OpenBLAS module, found from the directory of the shared
 * object that looks for them. */
#ifndef SB_BACKENDS_BESIDE_SELF_H
#define SB_BACKENDS_BESIDE_SELF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes to path (size bytes) the path of `file` in the directory of the
 * shared object (or program) this function is linked into. 1, or 0 when
 * that directory cannot be told or the path does not fit. */
int sb_path_beside_self(const char *file, char *path, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* SB_BACKENDS_BESIDE_SELF_H */
