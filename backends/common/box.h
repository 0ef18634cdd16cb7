/* SPDX-License-Identifier: MIT */
/* The centre and radius of an interval [l, u], written once for the CPU
 * device (C) and the CUDA kernels (nvcc): concretization reads a box as
 * centre +/- radius, and every device must round them alike. */
#ifndef SB_BACKENDS_BOX_H
#define SB_BACKENDS_BOX_H

#include "backends/common/relu_relax.h" /* SB_HOST_DEVICE */

static inline SB_HOST_DEVICE float sb_box_centre(float l, float u) {
  return 0.5f * (l + u);
}

static inline SB_HOST_DEVICE float sb_box_radius(float l, float u) {
  return 0.5f * (u - l);
}

#endif /* SB_BACKENDS_BOX_H */
