/* SPDX-License-Identifier: MIT */
/* The ONNX importer on arbitrary bytes: a graph or an SB_ONNX_ERROR. */
#include "config.h"

#include "fuzz/fuzz_common.h"
#include "hosts/engine/onnx_import.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  sb_fuzz_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  GError *error = NULL;
  SbGraph *graph = sb_onnx_parse(data, size, &error);
  sb_fuzz_expect(graph != NULL, error, SB_ONNX_ERROR);
  if (graph != NULL) {
    /* What the passes rely on: inputs of each node come before it. */
    for (int i = 1; i < sb_graph_n_nodes(graph); i++)
      for (int k = 0; k < sb_graph_node(graph, i)->n_inputs; k++)
        if (sb_graph_node(graph, i)->inputs[k] < 0 ||
            sb_graph_node(graph, i)->inputs[k] >= i)
          abort();
    sb_graph_free(graph);
  }
  return 0;
}
