/* SPDX-License-Identifier: MIT */
/* Synthetic ONNX models (MLPs, ResNets) with random weights and a matching
 * VNNLIB robustness property, plus the small ONNX writer they are built on. */
#ifndef SB_MKMODEL_H
#define SB_MKMODEL_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* ---- ONNX writer --------------------------------------------------------
 * Builds a ModelProto (opset 13) node by node and serialises it with
 * protobuf-c. Tensors are named by the caller; nothing is validated, so
 * tests use it to write malformed models too. All arrays are copied. */
typedef struct SbOnnxBuilder SbOnnxBuilder;

/* ONNX TensorProto.DataType values used with add_tensor_raw. */
#define SB_ONNX_FLOAT 1
#define SB_ONNX_INT64 7
#define SB_ONNX_DOUBLE 11

SbOnnxBuilder *sb_onnx_builder_new (void);
void sb_onnx_builder_free (SbOnnxBuilder *builder);
/* A float32 graph input / output with the given dims. */
void sb_onnx_builder_add_input (SbOnnxBuilder *builder, const char *name,
                                int n_dims, const int64_t *dims);
void sb_onnx_builder_add_output (SbOnnxBuilder *builder, const char *name,
                                 int n_dims, const int64_t *dims);
/* A float32 initializer stored as raw_data. */
void sb_onnx_builder_add_initializer (SbOnnxBuilder *builder, const char *name,
                                      int n_dims, const int64_t *dims,
                                      const float *data);
/* An int64 initializer (shapes) stored as int64_data. */
void sb_onnx_builder_add_int64_initializer (SbOnnxBuilder *builder,
                                            const char *name, int n_dims,
                                            const int64_t *dims,
                                            const int64_t *data);
/* Any initializer: data_type is an ONNX DataType, raw is copied verbatim
 * (raw_len bytes, no consistency check with dims). */
void sb_onnx_builder_add_tensor_raw (SbOnnxBuilder *builder, const char *name,
                                     int data_type, int n_dims,
                                     const int64_t *dims, const void *raw,
                                     gsize raw_len);
/* Adds a node; inputs and outputs are NULL-terminated name lists ("" for
 * an absent optional input). Returns the node's index for attributes. */
int sb_onnx_builder_add_node (SbOnnxBuilder *builder, const char *op_type,
                              const char *name, const char *const *inputs,
                              const char *const *outputs);
void sb_onnx_builder_set_int (SbOnnxBuilder *builder, int node,
                              const char *attr, int64_t value);
void sb_onnx_builder_set_float (SbOnnxBuilder *builder, int node,
                                const char *attr, float value);
void sb_onnx_builder_set_ints (SbOnnxBuilder *builder, int node,
                               const char *attr, int n, const int64_t *values);
/* The serialised ModelProto. */
GBytes *sb_onnx_builder_serialize (SbOnnxBuilder *builder);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbOnnxBuilder, sb_onnx_builder_free)

/* ---- synthetic models ---------------------------------------------------- */

#define SB_MKMODEL_ERROR (sb_mkmodel_error_quark ())
GQuark sb_mkmodel_error_quark (void);
typedef enum {
  SB_MKMODEL_ERROR_INVALID, /* bad layer sizes, channels, ... */
  SB_MKMODEL_ERROR_IO,
  SB_MKMODEL_ERROR_IMPORT   /* our own importer refused the model (a bug) */
} SbMkmodelError;

typedef struct SbMkModel SbMkModel;

typedef struct {
  int64_t in_c, in_h, in_w; /* input image, e.g. 3x32x32 */
  int64_t channels;         /* channels of the stem; each further block
                               doubles them at stride 2 */
  int blocks;               /* residual blocks; the first keeps an identity
                               shortcut, the others a 1x1-conv shortcut */
  int64_t classes;          /* outputs */
} SbResnetSpec;

/* An MLP widths[0] -> ... -> widths[n-1]: Gemm (transB=1) + Relu between
 * layers, input [1, widths[0]]. Weights uniform in +-sqrt(6/fan_in) (He),
 * biases in +-1/sqrt(fan_in), from `seed`. */
SbMkModel *sb_mkmodel_new_mlp (const int64_t *widths, int n_widths,
                               guint64 seed, GError **error);
/* A ResNet: Conv3x3+BN+Relu stem, `blocks` residual blocks (Conv, BN, Relu,
 * Conv, BN, Add, Relu), Flatten, Gemm. */
SbMkModel *sb_mkmodel_new_resnet (const SbResnetSpec *spec, guint64 seed,
                                  GError **error);
void sb_mkmodel_free (SbMkModel *model);
int64_t sb_mkmodel_input_size (const SbMkModel *model);
int64_t sb_mkmodel_output_size (const SbMkModel *model);
/* The ONNX file contents. */
GBytes *sb_mkmodel_serialize (const SbMkModel *model);
/* The generator's own float64 forward pass (unfolded BatchNorm), which
 * checks the importer independently. */
void sb_mkmodel_forward (const SbMkModel *model, const float *x, double *out);

/* VNNLIB text: the box [max(0,c-eps), min(1,c+eps)] around `center` and the
 * unsafe region OR_{j != label} (Y_j >= Y_label). */
char *sb_mkmodel_property_text (const float *center, int64_t n_inputs,
                                double eps, int64_t n_outputs, int64_t label);

/* Writes the model to onnx_path and a property around a random centre in
 * [0,1] (drawn from `seed`) to vnnlib_path. The label is the argmax of the
 * re-imported model's output at the centre (sb_graph_eval); *label_out
 * receives it when non-NULL. */
gboolean sb_mkmodel_write (const SbMkModel *model, guint64 seed, double eps,
                           const char *onnx_path, const char *vnnlib_path,
                           int64_t *label_out, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbMkModel, sb_mkmodel_free)

G_END_DECLS

#endif
