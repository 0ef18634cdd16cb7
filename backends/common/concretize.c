/* SPDX-License-Identifier: MIT */
/* Concretization: the bound of each row of A over an input box. */
#include "backends/common/layer.h"

int sb_concretize(SbExec *x, int32_t side, int64_t S, int64_t B, int64_t N,
                  const float *A, const float *bias, const float *x_lower,
                  const float *x_upper, float *out) {
  const SbDeviceOps *o = x->ops;
  SbBuffer cr = {0};
  int st = sb_exec_alloc(x, SB_MEM_WORKSPACE, 2 * B * N, &cr);
  if (st != SB_OK)
    return st;
  float *c = cr.ptr, *r = c + B * N;
  if ((st = o->box_to_centre_radius(x->dev, B * N, x_lower, x_upper, c, r)) ||
      (st = o->concretize(x->dev, side, S, B, N, A, bias, c, r, out)))
    st = sb_exec_device_fail(x, st, "concretize");
  sb_exec_free(x, &cr);
  return st;
}
