/* SPDX-License-Identifier: MIT */
/* A graph's layers created in a backend context, and tensor helpers. */
#include "config.h"

#include <string.h>

#include "network.h"

typedef int (*SbCreateFn)(sb_context *ctx, int32_t category, int32_t ndim,
                          const int64_t *shape, sb_tensor **out);

/* A [d0, d1] (d2 == 0) or [d0, d1, d2] tensor from `create`, named `what`
 * in an error. */
static sb_tensor *tensor_from(SbNetwork *net, SbCreateFn create,
                              const char *what, sb_mem_category category,
                              int64_t d0, int64_t d1, int64_t d2,
                              GError **error) {
  int64_t shape[3] = {d0, d1, d2};
  sb_tensor *t = NULL;
  int status = create(SB_NET_CTX(net), category, d2 > 0 ? 3 : 2, shape, &t);
  return sb_net_check(net, status, what, -1, error) ? t : NULL;
}

sb_tensor *sb_net_tensor_new(SbNetwork *net, sb_mem_category category,
                             int64_t d0, int64_t d1, int64_t d2,
                             GError **error) {
  return tensor_from(net, SB_NET_BE(net)->tensor_create, "tensor_create",
                     category, d0, d1, d2, error);
}

sb_tensor *sb_net_tensor_new_empty(SbNetwork *net, int64_t d0, int64_t d1,
                                   int64_t d2, GError **error) {
  const sb_backend_v1 *be = SB_NET_BE(net);
  if (!SB_HAS_MEMBER(be, sb_backend_v1, tensor_create_empty))
    return sb_net_tensor_new(net, SB_MEM_COEFFICIENTS, d0, d1, d2, error);
  return tensor_from(net, be->tensor_create_empty, "tensor_create_empty",
                     SB_MEM_COEFFICIENTS, d0, d1, d2, error);
}

void sb_net_tensor_free(SbNetwork *net, sb_tensor *t) {
  if (t != NULL)
    SB_NET_BE(net)->tensor_free(SB_NET_CTX(net), t);
}

gboolean sb_net_tensor_write(SbNetwork *net, sb_tensor *t, int64_t count,
                             const double *src, GError **error) {
  int status = SB_NET_BE(net)->tensor_write(SB_NET_CTX(net), t, 0, count,
                                            SB_DTYPE_F64, src);
  return sb_net_check(net, status, "tensor_write", -1, error);
}

gboolean sb_net_tensor_read(SbNetwork *net, const sb_tensor *t, int64_t count,
                            double *dst, GError **error) {
  int status = SB_NET_BE(net)->tensor_read(SB_NET_CTX(net), t, 0, count,
                                           SB_DTYPE_F64, dst);
  return sb_net_check(net, status, "tensor_read", -1, error);
}

gboolean sb_net_tensor_read_floats(SbNetwork *net, const sb_tensor *t,
                                   int64_t count, float *dst, GError **error) {
  int status = SB_NET_BE(net)->tensor_read(SB_NET_CTX(net), t, 0, count,
                                           SB_DTYPE_F32, dst);
  return sb_net_check(net, status, "tensor_read", -1, error);
}

gboolean sb_net_tensor_write_floats(SbNetwork *net, sb_tensor *t, int64_t count,
                                    const float *src, GError **error) {
  int status = SB_NET_BE(net)->tensor_write(SB_NET_CTX(net), t, 0, count,
                                            SB_DTYPE_F32, src);
  return sb_net_check(net, status, "tensor_write", -1, error);
}

sb_tensor *sb_net_tensor_clone(SbNetwork *net, const sb_tensor *src, int64_t d0,
                               int64_t d1, int64_t d2, GError **error) {
  int64_t count = d0 * d1 * (d2 > 0 ? d2 : 1);
  g_autofree float *buf = g_new(float, count);
  if (!sb_net_tensor_read_floats(net, src, count, buf, error))
    return NULL;
  sb_tensor *t = sb_net_tensor_new_empty(net, d0, d1, d2, error);
  if (t != NULL && !sb_net_tensor_write_floats(net, t, count, buf, error)) {
    sb_net_tensor_free(net, t);
    return NULL;
  }
  return t;
}

sb_tensor *sb_net_tensor_copy(SbNetwork *net, const sb_tensor *src, int i,
                              int64_t S, int64_t B, sb_tensor *bias,
                              GError **error) {
  const int64_t size = sb_net_node_size(net, i);
  if (net->copy_layers[i] == NULL) {
    sb_layer_desc_v1 desc = {.struct_size = sizeof desc,
                             .kind = SB_LAYER_ADD,
                             .in_size = size,
                             .out_size = size};
    int status = SB_NET_BE(net)->layer_create(SB_NET_CTX(net), &desc,
                                              &net->copy_layers[i]);
    if (!sb_net_check(net, status, "layer_create (copy)", i, error))
      return NULL;
  }
  sb_tensor *copy = sb_net_tensor_new_empty(net, S, B, size, error);
  if (copy == NULL)
    return NULL;
  sb_backward_args_v1 args = {.struct_size = sizeof args,
                              .side = SB_SIDE_LOWER,
                              .A_out = src,
                              .A_in = {copy, (sb_tensor *)src},
                              .bias = bias};
  int status = SB_NET_BE(net)->layer_backward(SB_NET_CTX(net),
                                              net->copy_layers[i], &args);
  if (!sb_net_check(net, status, "layer_backward (copy)", i, error)) {
    sb_net_tensor_free(net, copy);
    return NULL;
  }
  return copy;
}

sb_tensor *sb_spec_tensor_new(SbNetwork *net, const double *rows, int64_t S,
                              int64_t B, int64_t n_out, GError **error) {
  sb_tensor *A =
      sb_net_tensor_new(net, SB_MEM_COEFFICIENTS, S, B, n_out, error);
  if (A == NULL)
    return NULL;
  g_autofree double *full = g_new(double, S *B *n_out);
  for (int64_t s = 0; s < S; s++)
    for (int64_t b = 0; b < B; b++)
      memcpy(full + (s * B + b) * n_out, rows + s * n_out,
             sizeof(double) * n_out);
  if (!sb_net_tensor_write(net, A, S * B * n_out, full, error)) {
    sb_net_tensor_free(net, A);
    return NULL;
  }
  return A;
}

gboolean sb_net_check(SbNetwork *net, int status, const char *what, int node,
                      GError **error) {
  if (status == SB_OK)
    return TRUE;
  /* The session words the message (backend, call, status, its detail);
   * the engine's code says whose fault it is. */
  g_autoptr(GError) backend_error = NULL;
  g_autofree char *full =
      node < 0 ? g_strdup(what)
               : g_strdup_printf("%s (node '%s')", what,
                                 sb_graph_node(net->graph, node)->name);
  sb_session_check(net->session, status, full, &backend_error);
  SbEngineError code =
      status == SB_ERR_OUT_OF_MEMORY ? SB_ENGINE_ERROR_NO_MEMORY
      : status == SB_ERR_UNSUPPORTED ? SB_ENGINE_ERROR_UNSUPPORTED
                                     : SB_ENGINE_ERROR_BACKEND;
  g_set_error_literal(error, SB_ENGINE_ERROR, code, backend_error->message);
  return FALSE;
}

gboolean sb_net_require_vjp(SbNetwork *net, GError **error) {
  const sb_backend_v1 *be = SB_NET_BE(net);
  if (SB_HAS_MEMBER(be, sb_backend_v1, beta_vjp))
    return TRUE;
  g_set_error(
      error, SB_ENGINE_ERROR, SB_ENGINE_ERROR_UNSUPPORTED,
      "backend '%s' implements ABI %u.%u; alpha-CROWN and branch-and-bound "
      "need the gradient operators of ABI 1.1 (use --method crown, or a "
      "newer backend)",
      net->session->name, be->abi_major, be->abi_minor);
  return FALSE;
}

double sb_net_node_flops(const SbNetwork *net, int i, int64_t rows) {
  const SbNode *node = sb_graph_node(net->graph, i);
  const sb_layer_desc_v1 *d = &node->desc;
  switch (node->kind) {
  case SB_NODE_LINEAR:
    return 2.0 * rows * d->in_size * d->out_size;
  case SB_NODE_CONV2D:
    return 2.0 * rows * d->out_size * (d->in_c / MAX(d->groups, 1)) *
           d->kernel_h * d->kernel_w;
  default:
    return 0;
  }
}

double sb_network_product_flops(const SbNetwork *net) {
  return net->product_flops;
}

int sb_network_rank_count(const SbNetwork *net) {
  return SB_NET_BE(net)->rank_count(SB_NET_CTX(net));
}

gboolean sb_network_memory_reset(SbNetwork *net, GError **error) {
  return sb_net_check(net,
                      SB_NET_BE(net)->memory_mark_baseline(SB_NET_CTX(net)),
                      "memory_mark_baseline", -1, error) &&
         sb_net_check(net, SB_NET_BE(net)->memory_reset_peak(SB_NET_CTX(net)),
                      "memory_reset_peak", -1, error);
}

gboolean sb_network_memory_stats(SbNetwork *net, int rank,
                                 sb_memory_stats_v1 *stats, GError **error) {
  memset(stats, 0, sizeof *stats);
  stats->struct_size = sizeof *stats;
  /* What a backend older than ABI 1.2 leaves as it is. */
  stats->peak_rss_bytes = -1;
  return sb_net_check(
      net, SB_NET_BE(net)->memory_stats(SB_NET_CTX(net), rank, stats),
      "memory_stats", -1, error);
}

void sb_alpha_params_init(SbAlphaParams *p) {
  p->iterations = 20;
  /* The outputs' and spec's slopes matter most and their passes are cheap:
   * 50 steps there beat auto_LiRPA's 20 joint steps on every golden. */
  p->final_iterations = 50;
  p->learning_rate = 0.5;
  p->beta_learning_rate = 0;
  p->decay = 0.98;
  p->patience = 5;
  p->optimize_intermediate = TRUE;
  p->deadline = 0;
}

void sb_bounds_options_init(SbBoundsOptions *o) {
  memset(o, 0, sizeof *o);
  o->method = SB_METHOD_CROWN;
  o->intersect_ibp = FALSE;
  sb_alpha_params_init(&o->alpha);
}

SbNetwork *sb_network_new(SbSession *session, const SbGraph *graph,
                          GError **error) {
  int n = sb_graph_n_nodes(graph);
  g_autoptr(SbNetwork) net = g_new0(SbNetwork, 1);
  net->session = session;
  net->graph = graph;
  net->layers = g_new0(sb_layer *, n);
  net->copy_layers = g_new0(sb_layer *, n);
  net->has_relu_ancestor = g_new0(gboolean, n);
  net->feeds_relu = g_new0(gboolean, n);
  net->tighten_pass_bytes = SB_TIGHTEN_PASS_BYTES;

  for (int i = 0; i < n; i++) {
    const SbNode *node = sb_graph_node(graph, i);
    if (node->kind == SB_NODE_INPUT) {
      if (i != 0) {
        g_set_error(error, SB_ENGINE_ERROR, SB_ENGINE_ERROR_INVALID_INPUT,
                    "graph has a second input node '%s'", node->name);
        return NULL;
      }
      continue;
    }
    for (int k = 0; k < node->n_inputs; k++) {
      int in = node->inputs[k];
      const SbNode *src = sb_graph_node(graph, in);
      if (src->kind == SB_NODE_RELU || net->has_relu_ancestor[in])
        net->has_relu_ancestor[i] = TRUE;
      if (node->kind == SB_NODE_RELU)
        net->feeds_relu[in] = TRUE;
    }
    sb_layer_desc_v1 desc = node->desc;
    desc.struct_size = sizeof desc;
    desc.kind = (int32_t)node->kind;
    int status =
        session->be->layer_create(session->ctx, &desc, &net->layers[i]);
    if (!sb_net_check(net, status, "layer_create", i, error))
      return NULL;
  }
  return g_steal_pointer(&net);
}

void sb_network_free(SbNetwork *net) {
  if (net == NULL)
    return;
  for (int i = 0; i < sb_graph_n_nodes(net->graph); i++) {
    if (net->layers != NULL && net->layers[i] != NULL)
      SB_NET_BE(net)->layer_free(SB_NET_CTX(net), net->layers[i]);
    if (net->copy_layers != NULL && net->copy_layers[i] != NULL)
      SB_NET_BE(net)->layer_free(SB_NET_CTX(net), net->copy_layers[i]);
  }
  g_free(net->layers);
  g_free(net->copy_layers);
  g_free(net->has_relu_ancestor);
  g_free(net->feeds_relu);
  g_free(net);
}
