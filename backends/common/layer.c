/* SPDX-License-Identifier: MIT */
/* Operator dispatch by layer kind and the small helpers every operator file
 * shares (errors, tracked buffers). */
#include "backends/common/layer.h"

#include <stdarg.h>
#include <stdio.h>

const SbOpFamily *sb_op_family(int32_t kind) {
  switch (kind) {
  case SB_LAYER_LINEAR:
    return &sb_op_linear;
  case SB_LAYER_CONV2D:
    return &sb_op_conv;
  case SB_LAYER_AFFINE:
    return &sb_op_affine;
  case SB_LAYER_ADD:
    return &sb_op_add;
  case SB_LAYER_RELU:
    return &sb_op_relu;
  default:
    return NULL;
  }
}

void sb_layer_release(SbExec *x, struct sb_layer *layer) {
  sb_buffer_free(x->mem, x->ops, x->dev, &layer->weight);
  sb_buffer_free(x->mem, x->ops, x->dev, &layer->bias);
}

int sb_exec_fail(SbExec *x, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->error, x->error_size, fmt, ap);
  va_end(ap);
  return status;
}

int sb_exec_device_fail(SbExec *x, int status, const char *what) {
  return sb_exec_fail(x, status, "%s failed on the %s device: %s", what,
                      x->ops->name, x->ops->last_error(x->dev));
}

int sb_exec_alloc(SbExec *x, int32_t category, int64_t floats, SbBuffer *out) {
  if (floats < 0)
    return sb_exec_fail(x, SB_ERR_INVALID_ARGUMENT, "negative buffer size %lld",
                        (long long)floats);
  return sb_buffer_alloc(x->mem, x->ops, x->dev, category,
                         (size_t)floats * sizeof(float), out, x->error,
                         x->error_size);
}

void sb_exec_free(SbExec *x, SbBuffer *buf) {
  sb_buffer_free(x->mem, x->ops, x->dev, buf);
}

int sb_exec_upload_weights(SbExec *x, const float *host, int64_t floats,
                           SbBuffer *out) {
  int st = sb_exec_alloc(x, SB_MEM_WEIGHTS, floats, out);
  if (st != SB_OK)
    return st;
  st = x->ops->upload(x->dev, out->ptr, host, out->bytes);
  if (st != SB_OK) {
    sb_exec_free(x, out);
    return sb_exec_device_fail(x, st, "uploading weights");
  }
  return SB_OK;
}
