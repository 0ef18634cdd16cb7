/* SPDX-License-Identifier: MIT */
/* Helpers shared by the engine-level test suites: golden cases, sessions,
 * sampling-based soundness checks and random graphs built in the IR. */
#include "config.h"

#include <check.h>
#include <math.h>

#include "engine-testlib.h"

const char *const sb_test_goldens[] = {
    "mnist-256x2_prop_0_0.03",
    "mnist-256x2_prop_0_0.05",
    "mnist-256x2_prop_1_0.03",
    "mnist-256x2_prop_1_0.05",
    "mnist-256x2_prop_2_0.03",
    "mnist-256x2_prop_2_0.05",
    "mnist-256x2_prop_3_0.03",
    "mnist-256x2_prop_3_0.05",
    "mnist-256x2_prop_4_0.03",
    "mnist-256x2_prop_4_0.05",
    "mnist-256x4_prop_0_0.03",
    "mnist-256x4_prop_1_0.03",
    "oval21_base_cifar_base_kw-img2578-eps0.021176470588235297",
    "resnet_2b_prop_0",
    "mkmodel-mlp-100-64x8-10",
    "mkmodel-mlp-64-96x10-10",
    "bn_resnet",
};
const int sb_test_n_goldens = G_N_ELEMENTS(sb_test_goldens);

char *sb_test_data_path(const char *sub, const char *file) {
  const char *dir = g_getenv("SHARDBOUND_TEST_DATA");
  return g_build_filename(dir ? dir : "tests/data", sub, file, NULL);
}

SbSessionSetup *sb_test_open(const char *backend, int ranks) {
  g_autoptr(GError) error = NULL;
  SbSessionRequest req = {.backend = backend, .ranks = ranks};
  SbSessionSetup *setup = sb_session_setup(&req, &error);
  ck_assert_msg(setup != NULL, "%s backend: %s", backend,
                error ? error->message : "?");
  return setup;
}

void sb_test_case_load(SbTestCase *c, const char *name, const char *backend,
                       int ranks) {
  g_autoptr(GError) error = NULL;
  g_autofree char *file = g_strconcat(name, ".json", NULL);
  g_autofree char *path = sb_test_data_path("goldens", file);
  c->parser = json_parser_new();
  ck_assert_msg(json_parser_load_from_file(c->parser, path, &error), "%s: %s",
                path, error ? error->message : "");
  c->root = json_node_get_object(json_parser_get_root(c->parser));
  g_autofree char *onnx =
      sb_test_data_path("onnx", json_object_get_string_member(c->root, "onnx"));
  g_autofree char *vnnlib = sb_test_data_path(
      "vnnlib", json_object_get_string_member(c->root, "vnnlib"));
  c->graph = sb_onnx_load(onnx, &error);
  ck_assert_msg(c->graph != NULL, "%s: %s", onnx, error ? error->message : "");
  c->prop = sb_vnnlib_load(vnnlib, &error);
  ck_assert_msg(c->prop != NULL, "%s: %s", vnnlib, error ? error->message : "");
  c->setup = sb_test_open(backend, ranks);
  c->net = sb_network_new(c->setup->session, c->graph, &error);
  ck_assert_msg(c->net != NULL, "%s", error ? error->message : "");
}

void sb_test_case_free(SbTestCase *c) {
  sb_network_free(c->net);
  sb_session_setup_free(c->setup);
  sb_property_free(c->prop);
  sb_graph_free(c->graph);
  g_object_unref(c->parser);
}

/* Samples: random points and random vertices of the box, evaluated in
 * float64 on the host; every output must lie inside the bounds (up to the
 * float32 rounding of the backend). */
void sb_test_assert_contains_samples(const SbGraph *g, const double *xl,
                                     const double *xu, const SbBoundsResult *r,
                                     int n_samples, guint32 seed,
                                     const char *what) {
  GRand *rng = g_rand_new_with_seed(seed);
  g_autofree float *x = g_new(float, g->input_size);
  g_autofree double *y = g_new(double, g->output_size);
  for (int s = 0; s < n_samples; s++) {
    gboolean vertex = s % 2 == 1;
    for (int64_t k = 0; k < g->input_size; k++)
      x[k] = vertex ? (g_rand_boolean(rng) ? xu[k] : xl[k])
                    : (float)g_rand_double_range(rng, xl[k], xu[k]);
    for (int64_t k = 0; k < g->input_size;
         k++) /* float rounding may leave the box */
      x[k] = (float)CLAMP((double)x[k], xl[k], xu[k]);
    sb_graph_eval(g, x, y);
    for (int64_t j = 0; j < g->output_size; j++) {
      double tol = 1e-4 * MAX(1.0, fabs(y[j]));
      ck_assert_msg(y[j] >= r->output_lower[j] - tol &&
                        y[j] <= r->output_upper[j] + tol,
                    "%s: sample %d output %" G_GINT64_FORMAT
                    " = %.9g outside [%.9g, %.9g]",
                    what, s, j, y[j], r->output_lower[j], r->output_upper[j]);
    }
  }
  g_rand_free(rng);
}

/* ---- random DAGs built directly in the IR ------------------------------ */

float *sb_test_random_array(GRand *rng, int64_t n, double scale) {
  float *a = g_new(float, n);
  for (int64_t i = 0; i < n; i++)
    a[i] = (float)g_rand_double_range(rng, -scale, scale);
  return a;
}

int sb_test_add_node(SbGraph *g, SbNodeKind kind, int in0, int in1,
                     int64_t size, float *w, float *b) {
  SbNode n = {0};
  n.kind = kind;
  n.name = g_strdup_printf("n%d", sb_graph_n_nodes(g));
  n.n_inputs = kind == SB_NODE_INPUT ? 0 : kind == SB_NODE_ADD ? 2 : 1;
  n.inputs[0] = in0;
  n.inputs[1] = in1;
  n.size = size;
  n.ndim = 1;
  n.shape[0] = size;
  n.weight = w;
  n.bias = b;
  n.desc.struct_size = sizeof n.desc;
  n.desc.kind = (int32_t)kind;
  n.desc.in_size = kind == SB_NODE_INPUT ? size : sb_graph_node(g, in0)->size;
  n.desc.out_size = size;
  return sb_graph_append(g, &n);
}

int sb_test_add_linear(SbGraph *g, GRand *rng, int in, int64_t out) {
  int64_t n_in = sb_graph_node(g, in)->size;
  return sb_test_add_node(
      g, SB_NODE_LINEAR, in, 0, out,
      sb_test_random_array(rng, out * n_in, 1.0 / sqrt((double)n_in)),
      sb_test_random_array(rng, out, 0.1));
}

int sb_test_add_conv(SbGraph *g, GRand *rng, int in, int64_t c_in, int64_t h,
                     int64_t c_out, int stride) {
  int64_t k = 3, pad = 1;
  int64_t ho = (h + 2 * pad - k) / stride + 1;
  int idx =
      sb_test_add_node(g, SB_NODE_CONV2D, in, 0, c_out * ho * ho,
                       sb_test_random_array(rng, c_out * c_in * k * k,
                                            1.0 / sqrt((double)c_in * k * k)),
                       sb_test_random_array(rng, c_out, 0.1));
  SbNode *n = sb_graph_node(g, idx);
  sb_layer_desc_v1 *d = &n->desc;
  d->in_c = c_in;
  d->in_h = d->in_w = h;
  d->out_c = c_out;
  d->out_h = d->out_w = ho;
  d->kernel_h = d->kernel_w = k;
  d->stride_h = d->stride_w = stride;
  d->pad_top = d->pad_left = d->pad_bottom = d->pad_right = pad;
  d->dilation_h = d->dilation_w = 1;
  d->groups = 1;
  n->ndim = 3;
  n->shape[0] = c_out;
  n->shape[1] = n->shape[2] = ho;
  return idx;
}

int sb_test_add_affine(SbGraph *g, GRand *rng, int in, int64_t channels,
                       int64_t spatial) {
  int idx = sb_test_add_node(g, SB_NODE_AFFINE, in, 0, channels * spatial,
                             sb_test_random_array(rng, channels, 1.5),
                             sb_test_random_array(rng, channels, 0.2));
  sb_graph_node(g, idx)->desc.channels = channels;
  sb_graph_node(g, idx)->desc.spatial = spatial;
  return idx;
}

/* Residual MLP: x -> L -> R -> L -> R -+-> L -> R -> L
 *                          \__________/ */
SbGraph *sb_test_random_residual_mlp(GRand *rng) {
  SbGraph *g = sb_graph_new();
  int x = sb_test_add_node(g, SB_NODE_INPUT, 0, 0, 6, NULL, NULL);
  int a = sb_test_add_node(g, SB_NODE_RELU, sb_test_add_linear(g, rng, x, 12),
                           0, 12, NULL, NULL);
  int b = sb_test_add_node(g, SB_NODE_RELU, sb_test_add_linear(g, rng, a, 12),
                           0, 12, NULL, NULL);
  int s = sb_test_add_node(g, SB_NODE_ADD, a, b, 12, NULL, NULL);
  int c = sb_test_add_node(
      g, SB_NODE_RELU,
      sb_test_add_affine(g, rng, sb_test_add_linear(g, rng, s, 10), 10, 1), 0,
      10, NULL, NULL);
  g->output = sb_test_add_linear(g, rng, c, 4);
  g->input_size = 6;
  g->output_size = 4;
  return g;
}

/* Conv net with a residual block: conv s2 -> relu -> conv -> relu -> add ->
 * affine(per channel) -> relu -> linear. */
SbGraph *sb_test_random_conv_net(GRand *rng) {
  SbGraph *g = sb_graph_new();
  int x = sb_test_add_node(g, SB_NODE_INPUT, 0, 0, 2 * 6 * 6, NULL, NULL);
  int a = sb_test_add_conv(g, rng, x, 2, 6, 3, 2); /* 3x3x3 */
  int ar = sb_test_add_node(g, SB_NODE_RELU, a, 0, 27, NULL, NULL);
  int b = sb_test_add_conv(g, rng, ar, 3, 3, 3, 1);
  int br = sb_test_add_node(g, SB_NODE_RELU, b, 0, 27, NULL, NULL);
  int s = sb_test_add_node(g, SB_NODE_ADD, ar, br, 27, NULL, NULL);
  int n = sb_test_add_node(g, SB_NODE_RELU, sb_test_add_affine(g, rng, s, 3, 9),
                           0, 27, NULL, NULL);
  g->output = sb_test_add_linear(g, rng, n, 3);
  g->input_size = 72;
  g->output_size = 3;
  return g;
}

gboolean sb_test_compute_bounds(SbNetwork *net, SbMethod method,
                                gboolean intersect_ibp, const double *xl,
                                const double *xu, const SbSpec *spec,
                                SbBoundsResult *r, GError **error) {
  SbBoundsOptions options;
  sb_bounds_options_init(&options);
  options.method = method;
  options.intersect_ibp = intersect_ibp;
  return sb_network_compute_bounds(net, &options, xl, xu, spec, r, error);
}
