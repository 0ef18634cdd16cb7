/* SPDX-License-Identifier: MIT */
/* The engine's graph IR: a DAG of bound operators in topological order. */
#ifndef SB_GRAPH_H
#define SB_GRAPH_H

#include <glib.h>
#include "abi/shardbound.h"

G_BEGIN_DECLS

/* Node kinds: the ABI layer kinds plus the graph input. Shape-only ONNX
 * operators (Flatten, Reshape, Identity) never become nodes: tensors are
 * flat row-major, so they alias their input. */
typedef enum {
  SB_NODE_INPUT = -1,
  SB_NODE_LINEAR = SB_LAYER_LINEAR,
  SB_NODE_CONV2D = SB_LAYER_CONV2D,
  SB_NODE_AFFINE = SB_LAYER_AFFINE,
  SB_NODE_ADD = SB_LAYER_ADD,
  SB_NODE_RELU = SB_LAYER_RELU
} SbNodeKind;

typedef struct {
  SbNodeKind kind;
  char *name;                      /* ONNX output name, for messages */
  int n_inputs;                    /* 0 for the input, 2 for Add, else 1 */
  int inputs[SB_MAX_LAYER_INPUTS]; /* indices of earlier nodes */
  int64_t size;                    /* flat output size per batch element */
  /* Logical output shape without batch (C,H,W or N): used by Conv import. */
  int ndim;
  int64_t shape[3];
  /* Layer parameters; desc.weight / desc.bias point into weight / bias,
   * which the node owns (g_free). Unused for INPUT. */
  sb_layer_desc_v1 desc;
  float *weight;
  float *bias;
} SbNode;

typedef struct {
  GArray *nodes; /* of SbNode; node 0 is the single INPUT */
  int output;    /* index of the node producing the network output */
  int64_t input_size;
  int64_t output_size;
  /* The ONNX file it came from (NULL when built in memory), and whether
   * the host copy of the parameters was dropped (sb_graph_drop_weights):
   * sb_graph_eval then needs the file again. */
  char *source;
  gboolean weights_dropped;
} SbGraph;

SbGraph *sb_graph_new(void);
void sb_graph_free(SbGraph *graph);
static inline SbNode *sb_graph_node(const SbGraph *graph, int i) {
  return &g_array_index(graph->nodes, SbNode, i);
}
static inline int sb_graph_n_nodes(const SbGraph *graph) {
  return (int)graph->nodes->len;
}
/* Appends a node (taking ownership of its name/weight/bias) and returns its
 * index. Fixes desc.weight/desc.bias to point at the node's arrays. */
int sb_graph_append(SbGraph *graph, const SbNode *node);

/* Plain float64 evaluation on the host (for sampling-based soundness checks
 * and counterexample checking): out[output_size] from x[input_size]. */
void sb_graph_eval(const SbGraph *graph, const float *x, double *out);
/* The same evaluation, every node's value kept: values[i] holds node i's
 * output (its size entries). Free with sb_graph_values_free. */
double **sb_graph_eval_nodes(const SbGraph *graph, const float *x);
void sb_graph_values_free(const SbGraph *graph, double **values);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SbGraph, sb_graph_free)

G_END_DECLS

#endif
