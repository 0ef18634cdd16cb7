/* SPDX-License-Identifier: MIT */
/* A model loaded by process 0 only, when a session's ranks are processes:
 * the other processes receive its structure without its weights, which
 * reach each rank through layer_create, and process 0 drops its host copy
 * once the backend holds the layers. */
#include "config.h"

#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "graph_share.h"
#include "onnx_import.h"

/* One node on the wire; name and kept parameters follow it. */
typedef struct {
  int32_t kind, n_inputs, inputs[SB_MAX_LAYER_INPUTS], ndim;
  int32_t has_weight, has_bias, keeps_parameters;
  int64_t size, shape[3], n_weight, n_bias, name_bytes;
  sb_layer_desc_v1 desc; /* weight and bias pointers zeroed */
} NodeWire;

typedef struct {
  int64_t n_nodes, output, input_size, output_size;
} GraphWire;

/* What process 0 announces first: a failed load (with its message and
 * error code) or the size of the graph that follows. */
typedef struct {
  int64_t failed, code, message_bytes, payload_bytes;
} Announce;

void sb_node_parameter_sizes(const SbNode *node, int64_t *n_weight,
                             int64_t *n_bias) {
  const sb_layer_desc_v1 *d = &node->desc;
  *n_weight = *n_bias = 0;
  switch (node->kind) {
  case SB_NODE_LINEAR:
    *n_weight = d->out_size * d->in_size;
    *n_bias = d->out_size;
    break;
  case SB_NODE_CONV2D:
    *n_weight = d->groups > 0 ? d->out_c * (d->in_c / d->groups) * d->kernel_h *
                                    d->kernel_w
                              : 0;
    *n_bias = d->out_c;
    break;
  case SB_NODE_AFFINE:
    *n_weight = *n_bias = d->channels;
    break;
  default:
    break;
  }
}

/* The output node's parameters stay on every host: folding the
 * specification into the last linear layer reads them (bounds.c). They
 * are one row per output, a sliver of the model. */
static gboolean keeps_parameters(const SbGraph *g, int i) {
  return i == g->output;
}

static GByteArray *serialize(const SbGraph *g) {
  GByteArray *out = g_byte_array_new();
  GraphWire gw = {sb_graph_n_nodes(g), g->output, g->input_size,
                  g->output_size};
  g_byte_array_append(out, (const guint8 *)&gw, sizeof gw);
  for (int i = 0; i < sb_graph_n_nodes(g); i++) {
    const SbNode *n = sb_graph_node(g, i);
    NodeWire w;
    memset(&w, 0, sizeof w);
    w.kind = n->kind;
    w.n_inputs = n->n_inputs;
    memcpy(w.inputs, n->inputs, sizeof w.inputs);
    w.ndim = n->ndim;
    w.size = n->size;
    memcpy(w.shape, n->shape, sizeof w.shape);
    w.has_weight = n->weight != NULL;
    w.has_bias = n->bias != NULL;
    w.keeps_parameters = keeps_parameters(g, i);
    sb_node_parameter_sizes(n, &w.n_weight, &w.n_bias);
    w.name_bytes = n->name ? (int64_t)strlen(n->name) : 0;
    w.desc = n->desc;
    w.desc.weight = NULL;
    w.desc.bias = NULL;
    g_byte_array_append(out, (const guint8 *)&w, sizeof w);
    if (w.name_bytes > 0)
      g_byte_array_append(out, (const guint8 *)n->name, (guint)w.name_bytes);
    if (w.keeps_parameters && w.has_weight)
      g_byte_array_append(out, (const guint8 *)n->weight,
                          (guint)(w.n_weight * sizeof(float)));
    if (w.keeps_parameters && w.has_bias)
      g_byte_array_append(out, (const guint8 *)n->bias,
                          (guint)(w.n_bias * sizeof(float)));
  }
  return out;
}

static gboolean take(const guint8 **p, const guint8 *end, void *dst,
                     gsize bytes) {
  if ((gsize)(end - *p) < bytes)
    return FALSE;
  memcpy(dst, *p, bytes);
  *p += bytes;
  return TRUE;
}

static SbGraph *deserialize(const guint8 *data, gsize length, GError **error) {
  const guint8 *p = data, *end = data + length;
  g_autoptr(SbGraph) g = sb_graph_new();
  GraphWire gw;
  gboolean ok = take(&p, end, &gw, sizeof gw);
  for (int64_t i = 0; ok && i < gw.n_nodes; i++) {
    NodeWire w;
    if (!(ok = take(&p, end, &w, sizeof w)))
      break;
    SbNode n;
    memset(&n, 0, sizeof n);
    n.kind = (SbNodeKind)w.kind;
    n.n_inputs = w.n_inputs;
    memcpy(n.inputs, w.inputs, sizeof n.inputs);
    n.ndim = w.ndim;
    n.size = w.size;
    memcpy(n.shape, w.shape, sizeof n.shape);
    n.desc = w.desc;
    n.name = g_malloc0((gsize)w.name_bytes + 1);
    ok = take(&p, end, n.name, (gsize)w.name_bytes);
    if (ok && w.keeps_parameters && w.has_weight) {
      n.weight = g_new(float, w.n_weight);
      ok = take(&p, end, n.weight, (gsize)w.n_weight * sizeof(float));
    }
    if (ok && w.keeps_parameters && w.has_bias) {
      n.bias = g_new(float, w.n_bias);
      ok = take(&p, end, n.bias, (gsize)w.n_bias * sizeof(float));
    }
    sb_graph_append(g, &n);
  }
  if (!ok || p != end) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_MALFORMED,
                "the graph process 0 sent is truncated or malformed");
    return NULL;
  }
  g->output = (int)gw.output;
  g->input_size = gw.input_size;
  g->output_size = gw.output_size;
  g->weights_dropped = TRUE;
  return g_steal_pointer(&g);
}

SbGraph *sb_graph_load_shared(SbSession *session, const char *path,
                              GError **error) {
  if (sb_session_process_count(session) <= 1)
    return sb_onnx_load(path, error);
  gboolean root = sb_session_process_index(session) == 0;
  g_autoptr(SbGraph) graph = NULL;
  g_autoptr(GError) local = NULL;
  g_autoptr(GByteArray) payload = NULL;
  Announce a = {0};
  if (root) {
    graph = sb_onnx_load(path, &local);
    if (graph == NULL) {
      a.failed = 1;
      a.code = local->code;
      a.message_bytes = (int64_t)strlen(local->message) + 1;
    } else {
      payload = serialize(graph);
      a.payload_bytes = payload->len;
    }
  }
  if (!sb_session_broadcast(session, &a, sizeof a, error))
    return NULL;
  if (a.failed) {
    /* Every process fails with process 0's message. */
    g_autofree char *message =
        root ? g_strdup(local->message) : g_malloc0((gsize)a.message_bytes);
    if (!sb_session_broadcast(session, message, (gsize)a.message_bytes, error))
      return NULL;
    g_set_error_literal(error, SB_ONNX_ERROR, (int)a.code, message);
    return NULL;
  }
  if (!root) {
    payload = g_byte_array_sized_new((guint)a.payload_bytes);
    g_byte_array_set_size(payload, (guint)a.payload_bytes);
  }
  if (!sb_session_broadcast(session, payload->data, payload->len, error))
    return NULL;
  if (root) {
    graph->source = g_strdup(path);
    return g_steal_pointer(&graph);
  }
  SbGraph *g = deserialize(payload->data, payload->len, error);
  if (g != NULL)
    g->source = g_strdup(path);
  return g;
}

void sb_graph_drop_weights(SbGraph *graph) {
  for (int i = 0; i < sb_graph_n_nodes(graph); i++) {
    if (keeps_parameters(graph, i))
      continue;
    SbNode *n = sb_graph_node(graph, i);
    g_clear_pointer(&n->weight, g_free);
    g_clear_pointer(&n->bias, g_free);
    n->desc.weight = NULL;
    n->desc.bias = NULL;
  }
  graph->weights_dropped = TRUE;
#ifdef __GLIBC__
  /* The cpu device tells glibc to keep freed memory mapped (device_cpu.c),
   * which would keep the dropped copy in this process's resident set: give
   * it back to the system now, as dropping it promises. */
  malloc_trim(0);
#endif
}
