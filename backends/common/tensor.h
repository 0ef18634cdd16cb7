/* SPDX-License-Identifier: MIT */
/* A tensor as a single-device backend stores it: a logical shape and one
 * tracked float buffer on the device. */
#ifndef SB_BACKENDS_TENSOR_H
#define SB_BACKENDS_TENSOR_H

#include <stdint.h>

#include "backends/common/tracked_alloc.h"

struct sb_tensor {
  int32_t ndim;
  int64_t shape[4];
  int64_t numel;
  SbBuffer buf; /* numel floats, category as created */
  /* A host copy of tensor_set_unit_rows' index (shape[0] entries) while the
   * tensor still holds exactly those unit rows, NULL once anything else
   * writes it: a linear backward then gathers rows of W instead of
   * multiplying by them. */
  int64_t *unit_index;
};

#endif /* SB_BACKENDS_TENSOR_H */
