/* SPDX-License-Identifier: MIT */
/* Engine-internal view of a network loaded on a backend, and the few tensor
 * helpers every pass uses (statuses become GErrors here). */
#ifndef SB_NETWORK_H
#define SB_NETWORK_H

#include "bounds.h"

G_BEGIN_DECLS

/* What one pass of sb_node_tighten holds at most, by default: past it a
 * start node's unstable neurons are bounded a chunk of rows at a time.
 * Without it alpha-CROWN at the root of a ResNet with 64x32x32 activations
 * (one pass over 20,000-odd unstable neurons, the coefficients of every
 * node kept for the gradient) asked for 24 GB, and the kernel killed the
 * process. */
#define SB_TIGHTEN_PASS_BYTES (2.0 * 1024 * 1024 * 1024)

struct _SbNetwork {
  SbSession *session;
  const SbGraph *graph;
  sb_layer **layers;           /* per node; NULL for the input */
  gboolean *has_relu_ancestor; /* a ReLU lies between the input and it */
  gboolean *feeds_relu;        /* it is the input of some ReLU */
  double product_flops;        /* multiply-adds x2 of the products issued */
  /* Per node, created when first needed: an Add layer of the node's size,
   * whose backward copies coefficients on the device (sb_net_tensor_copy). */
  sb_layer **copy_layers;
  /* The most one pass of sb_node_tighten may hold, in bytes:
   * SB_TIGHTEN_PASS_BYTES, lowered by tests to force chunks. */
  double tighten_pass_bytes;
};

/* The floating-point operations of the matrix products (GEMM-like work)
 * that one operator call on node i with `rows` rows issues: the measure of
 * a pass's floor against the device's GEMM rate. */
double sb_net_node_flops(const SbNetwork *net, int i, int64_t rows);

#define SB_NET_BE(net)  ((net)->session->be)
#define SB_NET_CTX(net) ((net)->session->ctx)

static inline int64_t sb_net_node_size(const SbNetwork *net, int i) {
  return sb_graph_node(net->graph, i)->size;
}

/* A zero-filled tensor [d0, d1] (d2 == 0) or [d0, d1, d2]. */
sb_tensor *sb_net_tensor_new(SbNetwork *net, sb_mem_category category,
                             int64_t d0, int64_t d1, int64_t d2,
                             GError **error);
/* A coefficient tensor like sb_net_tensor_new's whose contents are
 * unspecified (ABI 1.3 tensor_create_empty; zero-filled by an older
 * backend), for a caller that has every element overwritten first. */
sb_tensor *sb_net_tensor_new_empty(SbNetwork *net, int64_t d0, int64_t d1,
                                   int64_t d2, GError **error);
void sb_net_tensor_free(SbNetwork *net, sb_tensor *tensor);
gboolean sb_net_tensor_write(SbNetwork *net, sb_tensor *tensor, int64_t count,
                             const double *src, GError **error);
gboolean sb_net_tensor_read(SbNetwork *net, const sb_tensor *tensor,
                            int64_t count, double *dst, GError **error);
/* The tensor's own floats, without the round trip through double. */
gboolean sb_net_tensor_read_floats(SbNetwork *net, const sb_tensor *tensor,
                                   int64_t count, float *dst, GError **error);
gboolean sb_net_tensor_write_floats(SbNetwork *net, sb_tensor *tensor,
                                    int64_t count, const float *src,
                                    GError **error);
/* A new tensor with the same values, by a host round trip of its floats:
 * for the small ones, such as a pass's bias [S, B]. */
sb_tensor *sb_net_tensor_clone(SbNetwork *net, const sb_tensor *src, int64_t d0,
                               int64_t d1, int64_t d2, GError **error);
/* A new coefficient tensor [S, B, size of node i] with the values of src,
 * copied on the device: the backward step of an Add of that size, whose
 * first input is the new tensor and whose second is src itself, which the
 * ABI lets a backend skip. The host round trip of sb_net_tensor_clone had
 * been 3% of a resnet_2b CROWN pass on the CPU, and a GPU's would wait for
 * a transfer each way. bias: any [S, B] tensor (the ABI requires one; an
 * Add leaves it as it is). */
sb_tensor *sb_net_tensor_copy(SbNetwork *net, const sb_tensor *src, int i,
                              int64_t S, int64_t B, sb_tensor *bias,
                              GError **error);
/* Coefficients [S, B, n_out] whose row (s, b) is rows[s] for every batch
 * element b: a specification handed to a pass from the output (or from
 * the n_out neurons of the node a pass starts at). */
sb_tensor *sb_spec_tensor_new(SbNetwork *net, const double *rows, int64_t S,
                              int64_t B, int64_t n_out, GError **error);
/* FALSE with a GError naming the backend, `what` and node (if >= 0). */
gboolean sb_net_check(SbNetwork *net, int status, const char *what, int node,
                      GError **error);

/* TRUE when the backend implements ABI 1.1 (alpha/beta-CROWN operators);
 * otherwise sets an error that says so. */
gboolean sb_net_require_vjp(SbNetwork *net, GError **error);

G_END_DECLS

#endif
