/* SPDX-License-Identifier: MIT */
/* The graph IR: node storage and a plain float64 forward pass on the host. */
#include "config.h"

#include <string.h>

#include "graph.h"

static void sb_node_clear(gpointer data) {
  SbNode *node = data;

  g_free(node->name);
  g_free(node->weight);
  g_free(node->bias);
}

SbGraph *sb_graph_new(void) {
  SbGraph *graph = g_new0(SbGraph, 1);

  graph->nodes = g_array_new(FALSE, TRUE, sizeof(SbNode));
  g_array_set_clear_func(graph->nodes, sb_node_clear);
  graph->output = -1;
  return graph;
}

void sb_graph_free(SbGraph *graph) {
  if (graph == NULL)
    return;
  g_array_unref(graph->nodes);
  g_free(graph->source);
  g_free(graph);
}

int sb_graph_append(SbGraph *graph, const SbNode *node) {
  SbNode copy = *node;

  /* The descriptor must point at the arrays the node owns, whatever the
   * caller left there, or it would dangle once the caller's copy is gone. */
  copy.desc.struct_size = sizeof(sb_layer_desc_v1);
  if (copy.kind != SB_NODE_INPUT)
    copy.desc.kind = (int32_t)copy.kind;
  copy.desc.weight = copy.weight;
  copy.desc.bias = copy.bias;
  g_array_append_val(graph->nodes, copy);
  return (int)graph->nodes->len - 1;
}

static void eval_linear(const SbNode *node, const double *x, double *y) {
  const sb_layer_desc_v1 *d = &node->desc;

  /* Four running sums, not one: a single chain of dependent additions kept
   * the branch-and-bound's serial corner checks waiting on the adder's
   * latency. In double precision the order of the sums is immaterial to a
   * check of float32 network outputs. */
  for (int64_t o = 0; o < d->out_size; o++) {
    const float *w = node->weight + o * d->in_size;
    double acc[4] = {0, 0, 0, 0};
    int64_t i = 0;

    for (; i + 4 <= d->in_size; i += 4)
      for (int k = 0; k < 4; k++)
        acc[k] += (double)w[i + k] * x[i + k];
    for (; i < d->in_size; i++)
      acc[0] += (double)w[i] * x[i];
    y[o] = (node->bias != NULL ? node->bias[o] : 0.0) +
           ((acc[0] + acc[1]) + (acc[2] + acc[3]));
  }
}

static void eval_conv2d(const SbNode *node, const double *x, double *y) {
  const sb_layer_desc_v1 *d = &node->desc;
  int64_t cin_per_group = d->in_c / d->groups;
  int64_t cout_per_group = d->out_c / d->groups;

  for (int64_t oc = 0; oc < d->out_c; oc++) {
    int64_t g = oc / cout_per_group;
    const float *w =
        node->weight + oc * cin_per_group * d->kernel_h * d->kernel_w;
    double b = node->bias != NULL ? node->bias[oc] : 0.0;

    for (int64_t oh = 0; oh < d->out_h; oh++)
      for (int64_t ow = 0; ow < d->out_w; ow++) {
        double acc = b;

        for (int64_t ic = 0; ic < cin_per_group; ic++) {
          const double *xc = x + (g * cin_per_group + ic) * d->in_h * d->in_w;
          const float *wc = w + ic * d->kernel_h * d->kernel_w;

          for (int64_t kh = 0; kh < d->kernel_h; kh++) {
            int64_t ih = oh * d->stride_h - d->pad_top + kh * d->dilation_h;

            if (ih < 0 || ih >= d->in_h)
              continue;
            for (int64_t kw = 0; kw < d->kernel_w; kw++) {
              int64_t iw = ow * d->stride_w - d->pad_left + kw * d->dilation_w;

              if (iw < 0 || iw >= d->in_w)
                continue;
              acc += (double)wc[kh * d->kernel_w + kw] * xc[ih * d->in_w + iw];
            }
          }
        }
        y[(oc * d->out_h + oh) * d->out_w + ow] = acc;
      }
  }
}

static void eval_affine(const SbNode *node, const double *x, double *y) {
  const sb_layer_desc_v1 *d = &node->desc;

  for (int64_t c = 0; c < d->channels; c++) {
    double scale = node->weight != NULL ? node->weight[c] : 1.0;
    double shift = node->bias != NULL ? node->bias[c] : 0.0;

    for (int64_t s = 0; s < d->spatial; s++)
      y[c * d->spatial + s] = scale * x[c * d->spatial + s] + shift;
  }
}

double **sb_graph_eval_nodes(const SbGraph *graph, const float *x) {
  int n = sb_graph_n_nodes(graph);
  double **values = g_new0(double *, n);

  for (int i = 0; i < n; i++) {
    const SbNode *node = sb_graph_node(graph, i);
    double *y = g_new(double, node->size);
    const double *a = node->n_inputs > 0 ? values[node->inputs[0]] : NULL;
    const double *b = node->n_inputs > 1 ? values[node->inputs[1]] : NULL;

    switch (node->kind) {
    case SB_NODE_INPUT:
      for (int64_t k = 0; k < node->size; k++)
        y[k] = x[k];
      break;
    case SB_NODE_LINEAR:
      eval_linear(node, a, y);
      break;
    case SB_NODE_CONV2D:
      eval_conv2d(node, a, y);
      break;
    case SB_NODE_AFFINE:
      eval_affine(node, a, y);
      break;
    case SB_NODE_ADD:
      for (int64_t k = 0; k < node->size; k++)
        y[k] = a[k] + b[k];
      break;
    case SB_NODE_RELU:
      for (int64_t k = 0; k < node->size; k++)
        y[k] = a[k] > 0.0 ? a[k] : 0.0;
      break;
    }
    values[i] = y;
  }
  return values;
}

void sb_graph_values_free(const SbGraph *graph, double **values) {
  for (int i = 0; i < sb_graph_n_nodes(graph); i++)
    g_free(values[i]);
  g_free(values);
}

void sb_graph_eval(const SbGraph *graph, const float *x, double *out) {
  double **values = sb_graph_eval_nodes(graph, x);
  memcpy(out, values[graph->output],
         sizeof(double) * (size_t)graph->output_size);
  sb_graph_values_free(graph, values);
}
