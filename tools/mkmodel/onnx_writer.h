/* SPDX-License-Identifier: MIT */
/* A small ONNX writer (protobuf-c) for generated models and tests. */
#ifndef SB_ONNX_WRITER_H
#define SB_ONNX_WRITER_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Builds a ModelProto (opset 13) node by node and serialises it with
 * protobuf-c. Tensors are named by the caller; nothing is validated, so
 * tests use it to write malformed models too. All arrays are copied. */
typedef struct SbOnnxBuilder SbOnnxBuilder;

/* ONNX TensorProto.DataType values used with add_tensor_raw. */
#define SB_ONNX_FLOAT  1
#define SB_ONNX_INT64  7
#define SB_ONNX_DOUBLE 11

SbOnnxBuilder *sb_onnx_builder_new(void);
void sb_onnx_builder_free(SbOnnxBuilder *builder);
/* A float32 graph input / output with the given dims. */
void sb_onnx_builder_add_input(SbOnnxBuilder *builder, const char *name,
                               int n_dims, const int64_t *dims);
void sb_onnx_builder_add_output(SbOnnxBuilder *builder, const char *name,
                                int n_dims, const int64_t *dims);
/* A float32 initializer stored as raw_data. */
void sb_onnx_builder_add_initializer(SbOnnxBuilder *builder, const char *name,
                                     int n_dims, const int64_t *dims,
                                     const float *data);
/* An int64 initializer (shapes) stored as int64_data. */
void sb_onnx_builder_add_int64_initializer(SbOnnxBuilder *builder,
                                           const char *name, int n_dims,
                                           const int64_t *dims,
                                           const int64_t *data);
/* Any initializer: data_type is an ONNX DataType, raw is copied verbatim
 * (raw_len bytes, no consistency check with dims). */
void sb_onnx_builder_add_tensor_raw(SbOnnxBuilder *builder, const char *name,
                                    int data_type, int n_dims,
                                    const int64_t *dims, const void *raw,
                                    gsize raw_len);
/* Adds a node; inputs and outputs are NULL-terminated name lists ("" for
 * an absent optional input). Returns the node's index for attributes. */
int sb_onnx_builder_add_node(SbOnnxBuilder *builder, const char *op_type,
                             const char *name, const char *const *inputs,
                             const char *const *outputs);
void sb_onnx_builder_set_int(SbOnnxBuilder *builder, int node, const char *attr,
                             int64_t value);
void sb_onnx_builder_set_float(SbOnnxBuilder *builder, int node,
                               const char *attr, float value);
void sb_onnx_builder_set_ints(SbOnnxBuilder *builder, int node,
                              const char *attr, int n, const int64_t *values);
/* The serialised ModelProto. */
GBytes *sb_onnx_builder_serialize(SbOnnxBuilder *builder);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SbOnnxBuilder, sb_onnx_builder_free)

G_END_DECLS

#endif
