/* SPDX-License-Identifier: MIT */
/* ONNX import: reads a model into the graph IR (protobuf-c). */
#ifndef SB_ONNX_IMPORT_H
#define SB_ONNX_IMPORT_H

#include <glib.h>
#include "graph.h"

G_BEGIN_DECLS

#define SB_ONNX_ERROR (sb_onnx_error_quark())
GQuark sb_onnx_error_quark(void);
typedef enum {
  SB_ONNX_ERROR_IO,
  SB_ONNX_ERROR_MALFORMED,   /* not a parseable ModelProto, truncated, ... */
  SB_ONNX_ERROR_UNSUPPORTED, /* operator/attribute/type we do not handle:
                                the message names operator and node */
  SB_ONNX_ERROR_INVALID      /* inconsistent shapes, missing inputs, cycles,
                                sizes over the limits */
} SbOnnxError;

SbGraph *sb_onnx_load(const char *path, GError **error);
SbGraph *sb_onnx_parse(const guint8 *data, gsize length, GError **error);

G_END_DECLS

#endif
