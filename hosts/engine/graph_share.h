/* SPDX-License-Identifier: MIT */
/* Loading a model once for a session whose ranks are processes
 * (docs/embedding.md): process 0 parses it, the others get its structure. */
#ifndef SB_GRAPH_SHARE_H
#define SB_GRAPH_SHARE_H

#include <glib.h>
#include "graph.h"
#include "plugin/shardbound-plugin.h"

G_BEGIN_DECLS

/* With one process: sb_onnx_load. With several: process 0 loads the ONNX
 * file and sends every other process the graph without its parameters
 * (those reach the ranks through layer_create), except the output node's;
 * a failed load fails every process with process 0's message (an
 * SB_ONNX_ERROR). Collective. */
SbGraph *sb_graph_load_shared(SbSession *session, const char *path,
                              GError **error);

/* Frees the host copy of every node's parameters except the output
 * node's: called by process 0 once the backend holds the layers, so that
 * no process keeps the whole model next to the backend's shards. */
void sb_graph_drop_weights(SbGraph *graph);

/* Floats of a node's weight and bias as its description declares them. */
void sb_node_parameter_sizes(const SbNode *node, int64_t *n_weight,
                             int64_t *n_bias);

G_END_DECLS

#endif
