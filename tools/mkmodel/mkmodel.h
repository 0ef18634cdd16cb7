/* SPDX-License-Identifier: MIT */
/* Synthetic ONNX models (MLPs, ResNets) with random weights and a matching
 * VNNLIB robustness property: the networks of the tests and benchmarks. */
#ifndef SB_MKMODEL_H
#define SB_MKMODEL_H

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define SB_MKMODEL_ERROR (sb_mkmodel_error_quark())
GQuark sb_mkmodel_error_quark(void);
typedef enum {
  SB_MKMODEL_ERROR_INVALID, /* bad layer sizes, channels, ... */
  SB_MKMODEL_ERROR_IO,
  SB_MKMODEL_ERROR_IMPORT /* our own importer refused the model (a bug) */
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
SbMkModel *sb_mkmodel_new_mlp(const int64_t *widths, int n_widths, guint64 seed,
                              GError **error);
/* A ResNet: Conv3x3+BN+Relu stem, `blocks` residual blocks (Conv, BN, Relu,
 * Conv, BN, Add, Relu), Flatten, Gemm. */
SbMkModel *sb_mkmodel_new_resnet(const SbResnetSpec *spec, guint64 seed,
                                 GError **error);
void sb_mkmodel_free(SbMkModel *model);
int64_t sb_mkmodel_input_size(const SbMkModel *model);
int64_t sb_mkmodel_output_size(const SbMkModel *model);
/* The ONNX file contents. */
GBytes *sb_mkmodel_serialize(const SbMkModel *model);
/* The generator's own float64 forward pass (unfolded BatchNorm), which
 * checks the importer independently. */
void sb_mkmodel_forward(const SbMkModel *model, const float *x, double *out);

/* VNNLIB text: the box [max(0,c-eps), min(1,c+eps)] around `center` and the
 * unsafe region OR_{j != label} (Y_j >= Y_label). */
char *sb_mkmodel_property_text(const float *center, int64_t n_inputs,
                               double eps, int64_t n_outputs, int64_t label);

/* Writes the model to onnx_path and a property around a random centre in
 * [0,1] (drawn from `seed`) to vnnlib_path. The label is the argmax of the
 * re-imported model's output at the centre (sb_graph_eval); *label_out
 * receives it when non-NULL. */
gboolean sb_mkmodel_write(const SbMkModel *model, guint64 seed, double eps,
                          const char *onnx_path, const char *vnnlib_path,
                          int64_t *label_out, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SbMkModel, sb_mkmodel_free)

G_END_DECLS

#endif
