/* SPDX-License-Identifier: MIT */
/* Networks: an ONNX model imported and loaded onto a session's backend. */
#include "config.h"

#include <math.h>

#include "host-private.h"
#include "hosts/engine/graph_share.h"
#include "hosts/engine/onnx_import.h"

static ShardboundNetwork *network_new(ShardboundSession *session,
                                      SbGraph *graph, GError *e,
                                      GError **error) {
  if (graph == NULL) {
    sb_host_propagate_error(error, e);
    return NULL;
  }
  SbNetwork *net = sb_network_new(session->setup->session, graph, &e);
  if (net == NULL) {
    sb_graph_free(graph);
    sb_host_propagate_error(error, e);
    return NULL;
  }
  /* With ranks that are processes the backend now holds every rank's
   * part: no process keeps the whole model besides. Only a graph read
   * from a file: the engine reads it again for the float64 check of a
   * counterexample (lockstep.h). */
  if (graph->source != NULL &&
      sb_session_process_count(session->setup->session) > 1)
    sb_graph_drop_weights(graph);
  ShardboundNetwork *network = g_new0(ShardboundNetwork, 1);
  network->session = session;
  network->graph = graph;
  network->net = net;
  return network;
}

ShardboundNetwork *shardbound_network_load(ShardboundSession *session,
                                           const char *onnx_path,
                                           GError **error) {
  g_return_val_if_fail(session != NULL && onnx_path != NULL, NULL);
  GError *e = NULL;
  /* Process 0 reads the file; the others receive its structure. */
  SbGraph *graph = sb_graph_load_shared(session->setup->session, onnx_path, &e);
  return network_new(session, graph, e, error);
}

ShardboundNetwork *shardbound_network_load_bytes(ShardboundSession *session,
                                                 const void *data,
                                                 size_t length,
                                                 GError **error) {
  g_return_val_if_fail(session != NULL && (data != NULL || length == 0), NULL);
  GError *e = NULL;
  SbGraph *graph = sb_onnx_parse(data, length, &e);
  return network_new(session, graph, e, error);
}

void shardbound_network_free(ShardboundNetwork *network) {
  if (network == NULL)
    return;
  sb_network_free(network->net);
  sb_graph_free(network->graph);
  g_free(network);
}

int64_t shardbound_network_input_size(const ShardboundNetwork *network) {
  return network->graph->input_size;
}

int64_t shardbound_network_output_size(const ShardboundNetwork *network) {
  return network->graph->output_size;
}

int shardbound_network_input_shape(const ShardboundNetwork *network,
                                   int64_t dims[3]) {
  const SbNode *input = sb_graph_node(network->graph, 0);
  int ndim = CLAMP(input->ndim, 0, 3);
  for (int i = 0; i < ndim; i++)
    dims[i] = input->shape[i];
  if (ndim == 0) /* a flat input */
  {
    dims[0] = network->graph->input_size;
    ndim = 1;
  }
  return ndim;
}

void shardbound_network_evaluate(const ShardboundNetwork *network,
                                 const float *x, double *y) {
  if (!network->graph->weights_dropped) {
    sb_graph_eval(network->graph, x, y);
    return;
  }
  g_autoptr(SbGraph) full = sb_onnx_load(network->graph->source, NULL);
  if (full != NULL && full->output_size == network->graph->output_size)
    sb_graph_eval(full, x, y);
  else
    for (int64_t i = 0; i < network->graph->output_size; i++)
      y[i] = NAN;
}

double shardbound_network_product_flops(const ShardboundNetwork *network) {
  return sb_network_product_flops(network->net);
}
