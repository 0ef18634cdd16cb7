/* SPDX-License-Identifier: MIT */
/* Engine tests: IBP and CROWN reproduce auto_LiRPA's goldens on real
 * VNN-COMP networks, and bounds contain every sampled output. */
#include "config.h"

#include <check.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdlib.h>

#include "hosts/engine/bounds.h"
#include "hosts/engine/onnx_import.h"
#include "hosts/engine/session_setup.h"
#include "hosts/engine/vnnlib.h"

static const char *const goldens[] = {
  "mnist-256x2_prop_0_0.03", "mnist-256x2_prop_0_0.05", "mnist-256x2_prop_1_0.03",
  "mnist-256x2_prop_1_0.05", "mnist-256x2_prop_2_0.03", "mnist-256x2_prop_2_0.05",
  "mnist-256x2_prop_3_0.03", "mnist-256x2_prop_3_0.05", "mnist-256x2_prop_4_0.03",
  "mnist-256x2_prop_4_0.05", "mnist-256x4_prop_0_0.03", "mnist-256x4_prop_1_0.03",
  "oval21_base_cifar_base_kw-img2578-eps0.021176470588235297", "resnet_2b_prop_0",
  "bn_resnet",
};
#define N_GOLDENS ((int) G_N_ELEMENTS (goldens))

static char *
data_path (const char *sub, const char *file)
{
  const char *dir = g_getenv ("SHARDBOUND_TEST_DATA");
  return g_build_filename (dir ? dir : "tests/data", sub, file, NULL);
}

/* Everything one golden case needs. */
typedef struct {
  JsonParser *parser;
  JsonObject *root;
  SbGraph *graph;
  SbProperty *prop;
  SbSessionSetup *setup;
  SbNetwork *net;
} Case;

static SbSessionSetup *
open_cpu (void)
{
  g_autoptr (GError) error = NULL;
  SbSessionRequest req = { .backend = "cpu" };
  SbSessionSetup *setup = sb_session_setup (&req, &error);
  ck_assert_msg (setup != NULL, "cpu backend: %s", error ? error->message : "?");
  return setup;
}

static void
case_load (Case *c, const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *file = g_strconcat (name, ".json", NULL);
  g_autofree char *path = data_path ("goldens", file);
  c->parser = json_parser_new ();
  ck_assert_msg (json_parser_load_from_file (c->parser, path, &error), "%s: %s", path,
                 error ? error->message : "");
  c->root = json_node_get_object (json_parser_get_root (c->parser));
  g_autofree char *onnx = data_path ("onnx", json_object_get_string_member (c->root, "onnx"));
  g_autofree char *vnnlib = data_path ("vnnlib", json_object_get_string_member (c->root, "vnnlib"));
  c->graph = sb_onnx_load (onnx, &error);
  ck_assert_msg (c->graph != NULL, "%s: %s", onnx, error ? error->message : "");
  c->prop = sb_vnnlib_load (vnnlib, &error);
  ck_assert_msg (c->prop != NULL, "%s: %s", vnnlib, error ? error->message : "");
  c->setup = open_cpu ();
  c->net = sb_network_new (c->setup->session, c->graph, &error);
  ck_assert_msg (c->net != NULL, "%s", error ? error->message : "");
}

static void
case_free (Case *c)
{
  sb_network_free (c->net);
  sb_session_setup_free (c->setup);
  sb_property_free (c->prop);
  sb_graph_free (c->graph);
  g_object_unref (c->parser);
}

static void
assert_close_array (JsonObject *method, const char *key, const double *got, int n,
                    const char *golden)
{
  JsonArray *want = json_object_get_array_member (method, key);
  ck_assert_int_eq ((int) json_array_get_length (want), n);
  for (int i = 0; i < n; i++)
    {
      double w = json_array_get_double_element (want, i);
      double tol = MAX (1e-4, 1e-4 * fabs (w));
      ck_assert_msg (fabs (got[i] - w) <= tol, "%s %s[%d]: got %.9g, auto_LiRPA %.9g", golden,
                     key, i, got[i], w);
    }
}

static void
check_golden (int i, SbMethod method, const char *key)
{
  Case c = { 0 };
  g_autoptr (GError) error = NULL;
  case_load (&c, goldens[i]);
  g_autofree double *rows = sb_property_spec_rows (c.prop);
  SbSpec spec = { c.prop->n_atoms, rows };
  SbBoundsResult r;
  ck_assert_msg (sb_network_compute_bounds (c.net, method, c.prop->regions[0].x_lower,
                                            c.prop->regions[0].x_upper, &spec, &r, &error),
                 "%s: %s", goldens[i], error ? error->message : "");
  JsonObject *m = json_object_get_object_member (json_object_get_object_member (c.root, "methods"), key);
  assert_close_array (m, "output_lower", r.output_lower, r.n_outputs, goldens[i]);
  assert_close_array (m, "output_upper", r.output_upper, r.n_outputs, goldens[i]);
  assert_close_array (m, "spec_lower", r.spec_lower, r.n_specs, goldens[i]);
  assert_close_array (m, "spec_upper", r.spec_upper, r.n_specs, goldens[i]);
  sb_bounds_result_clear (&r);
  case_free (&c);
}

START_TEST (test_ibp_matches_auto_lirpa_golden)
{
  check_golden (_i, SB_METHOD_IBP, "IBP");
}
END_TEST

START_TEST (test_crown_matches_auto_lirpa_golden)
{
  check_golden (_i, SB_METHOD_CROWN, "CROWN");
}
END_TEST

static void assert_contains_samples (const SbGraph *g, const double *xl, const double *xu,
                                     const SbBoundsResult *r, int n_samples, guint32 seed,
                                     const char *what);

/* alpha-CROWN: lower bounds at least as tight as auto_LiRPA's (DESIGN.md
 * section 7), and never looser than our own CROWN. */
START_TEST (test_alpha_crown_at_least_as_tight_as_auto_lirpa)
{
  Case c = { 0 };
  g_autoptr (GError) error = NULL;
  case_load (&c, goldens[_i]);
  g_autofree double *rows = sb_property_spec_rows (c.prop);
  SbSpec spec = { c.prop->n_atoms, rows };
  const double *xl = c.prop->regions[0].x_lower, *xu = c.prop->regions[0].x_upper;
  SbBoundsResult crown, alpha;
  ck_assert (sb_network_compute_bounds (c.net, SB_METHOD_CROWN, xl, xu, &spec, &crown, &error));
  ck_assert_msg (sb_network_compute_bounds (c.net, SB_METHOD_ALPHA_CROWN, xl, xu, &spec, &alpha, &error),
                 "%s", error ? error->message : "");
  JsonObject *m = json_object_get_object_member (json_object_get_object_member (c.root, "methods"), "alpha-CROWN");
  const char *keys[2] = { "output_lower", "spec_lower" };
  const double *got[2] = { alpha.output_lower, alpha.spec_lower };
  const double *ours[2] = { crown.output_lower, crown.spec_lower };
  for (int a = 0; a < 2; a++)
    {
      JsonArray *want = json_object_get_array_member (m, keys[a]);
      for (guint k = 0; k < json_array_get_length (want); k++)
        {
          double w = json_array_get_double_element (want, k);
          ck_assert_msg (got[a][k] >= w - 1e-4, "%s %s[%u]: alpha-CROWN %.9g looser than auto_LiRPA %.9g",
                         goldens[_i], keys[a], k, got[a][k], w);
          ck_assert_msg (got[a][k] >= ours[a][k] - 1e-5, "%s %s[%u]: alpha-CROWN %.9g looser than CROWN %.9g",
                         goldens[_i], keys[a], k, got[a][k], ours[a][k]);
        }
    }
  assert_contains_samples (c.graph, xl, xu, &alpha, 200, 77 + _i, goldens[_i]);
  sb_bounds_result_clear (&crown);
  sb_bounds_result_clear (&alpha);
  case_free (&c);
}
END_TEST

/* Samples: random points and random vertices of the box, evaluated in
 * float64 on the host; every output must lie inside the bounds (up to the
 * float32 rounding of the backend). */
static void
assert_contains_samples (const SbGraph *g, const double *xl, const double *xu,
                         const SbBoundsResult *r, int n_samples, guint32 seed,
                         const char *what)
{
  GRand *rng = g_rand_new_with_seed (seed);
  g_autofree float *x = g_new (float, g->input_size);
  g_autofree double *y = g_new (double, g->output_size);
  for (int s = 0; s < n_samples; s++)
    {
      gboolean vertex = s % 2 == 1;
      for (int64_t k = 0; k < g->input_size; k++)
        x[k] = vertex ? (g_rand_boolean (rng) ? xu[k] : xl[k])
                      : (float) g_rand_double_range (rng, xl[k], xu[k]);
      for (int64_t k = 0; k < g->input_size; k++) /* float rounding may leave the box */
        x[k] = (float) CLAMP ((double) x[k], xl[k], xu[k]);
      sb_graph_eval (g, x, y);
      for (int64_t j = 0; j < g->output_size; j++)
        {
          double tol = 1e-4 * MAX (1.0, fabs (y[j]));
          ck_assert_msg (y[j] >= r->output_lower[j] - tol && y[j] <= r->output_upper[j] + tol,
                         "%s: sample %d output %" G_GINT64_FORMAT " = %.9g outside [%.9g, %.9g]",
                         what, s, j, y[j], r->output_lower[j], r->output_upper[j]);
        }
    }
  g_rand_free (rng);
}

START_TEST (test_golden_network_bounds_contain_samples)
{
  Case c = { 0 };
  g_autoptr (GError) error = NULL;
  case_load (&c, goldens[_i]);
  for (int m = SB_METHOD_IBP; m <= SB_METHOD_CROWN; m++)
    {
      SbBoundsResult r;
      ck_assert_msg (sb_network_compute_bounds (c.net, m, c.prop->regions[0].x_lower,
                                                c.prop->regions[0].x_upper, NULL, &r, &error),
                     "%s", error ? error->message : "");
      assert_contains_samples (c.graph, c.prop->regions[0].x_lower, c.prop->regions[0].x_upper,
                               &r, 200, 7 + _i, goldens[_i]);
      sb_bounds_result_clear (&r);
    }
  case_free (&c);
}
END_TEST

/* ---- random DAGs built directly in the IR ------------------------------ */

static float *
random_array (GRand *rng, int64_t n, double scale)
{
  float *a = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    a[i] = (float) g_rand_double_range (rng, -scale, scale);
  return a;
}

static int
add_node (SbGraph *g, SbNodeKind kind, int in0, int in1, int64_t size, float *w, float *b)
{
  SbNode n = { 0 };
  n.kind = kind;
  n.name = g_strdup_printf ("n%d", sb_graph_n_nodes (g));
  n.n_inputs = kind == SB_NODE_INPUT ? 0 : kind == SB_NODE_ADD ? 2 : 1;
  n.inputs[0] = in0;
  n.inputs[1] = in1;
  n.size = size;
  n.ndim = 1;
  n.shape[0] = size;
  n.weight = w;
  n.bias = b;
  n.desc.struct_size = sizeof n.desc;
  n.desc.kind = (int32_t) kind;
  n.desc.in_size = kind == SB_NODE_INPUT ? size : sb_graph_node (g, in0)->size;
  n.desc.out_size = size;
  return sb_graph_append (g, &n);
}

static int
add_linear (SbGraph *g, GRand *rng, int in, int64_t out)
{
  int64_t n_in = sb_graph_node (g, in)->size;
  return add_node (g, SB_NODE_LINEAR, in, 0, out, random_array (rng, out * n_in, 1.0 / sqrt ((double) n_in)),
                   random_array (rng, out, 0.1));
}

static int
add_conv (SbGraph *g, GRand *rng, int in, int64_t c_in, int64_t h, int64_t c_out, int stride)
{
  int64_t k = 3, pad = 1;
  int64_t ho = (h + 2 * pad - k) / stride + 1;
  int idx = add_node (g, SB_NODE_CONV2D, in, 0, c_out * ho * ho,
                      random_array (rng, c_out * c_in * k * k, 1.0 / sqrt ((double) c_in * k * k)),
                      random_array (rng, c_out, 0.1));
  SbNode *n = sb_graph_node (g, idx);
  sb_layer_desc_v1 *d = &n->desc;
  d->in_c = c_in; d->in_h = d->in_w = h;
  d->out_c = c_out; d->out_h = d->out_w = ho;
  d->kernel_h = d->kernel_w = k;
  d->stride_h = d->stride_w = stride;
  d->pad_top = d->pad_left = d->pad_bottom = d->pad_right = pad;
  d->dilation_h = d->dilation_w = 1;
  d->groups = 1;
  n->ndim = 3;
  n->shape[0] = c_out; n->shape[1] = n->shape[2] = ho;
  return idx;
}

static int
add_affine (SbGraph *g, GRand *rng, int in, int64_t channels, int64_t spatial)
{
  int idx = add_node (g, SB_NODE_AFFINE, in, 0, channels * spatial, random_array (rng, channels, 1.5),
                      random_array (rng, channels, 0.2));
  sb_graph_node (g, idx)->desc.channels = channels;
  sb_graph_node (g, idx)->desc.spatial = spatial;
  return idx;
}

/* Residual MLP: x -> L -> R -> L -> R -+-> L -> R -> L
 *                          \__________/ */
static SbGraph *
random_residual_mlp (GRand *rng)
{
  SbGraph *g = sb_graph_new ();
  int x = add_node (g, SB_NODE_INPUT, 0, 0, 6, NULL, NULL);
  int a = add_node (g, SB_NODE_RELU, add_linear (g, rng, x, 12), 0, 12, NULL, NULL);
  int b = add_node (g, SB_NODE_RELU, add_linear (g, rng, a, 12), 0, 12, NULL, NULL);
  int s = add_node (g, SB_NODE_ADD, a, b, 12, NULL, NULL);
  int c = add_node (g, SB_NODE_RELU, add_affine (g, rng, add_linear (g, rng, s, 10), 10, 1), 0, 10, NULL, NULL);
  g->output = add_linear (g, rng, c, 4);
  g->input_size = 6;
  g->output_size = 4;
  return g;
}

/* Conv net with a residual block: conv s2 -> relu -> conv -> relu -> add ->
 * affine(per channel) -> relu -> linear. */
static SbGraph *
random_conv_net (GRand *rng)
{
  SbGraph *g = sb_graph_new ();
  int x = add_node (g, SB_NODE_INPUT, 0, 0, 2 * 6 * 6, NULL, NULL);
  int a = add_conv (g, rng, x, 2, 6, 3, 2); /* 3x3x3 */
  int ar = add_node (g, SB_NODE_RELU, a, 0, 27, NULL, NULL);
  int b = add_conv (g, rng, ar, 3, 3, 3, 1);
  int br = add_node (g, SB_NODE_RELU, b, 0, 27, NULL, NULL);
  int s = add_node (g, SB_NODE_ADD, ar, br, 27, NULL, NULL);
  int n = add_node (g, SB_NODE_RELU, add_affine (g, rng, s, 3, 9), 0, 27, NULL, NULL);
  g->output = add_linear (g, rng, n, 3);
  g->input_size = 72;
  g->output_size = 3;
  return g;
}

START_TEST (test_random_dag_bounds_contain_samples)
{
  GRand *rng = g_rand_new_with_seed (1000 + _i);
  g_autoptr (SbGraph) g = _i % 2 == 0 ? random_residual_mlp (rng) : random_conv_net (rng);
  g_autoptr (SbSessionSetup) setup = open_cpu ();
  g_autoptr (GError) error = NULL;
  g_autoptr (SbNetwork) net = sb_network_new (setup->session, g, &error);
  ck_assert_msg (net != NULL, "%s", error ? error->message : "");
  g_autofree double *xl = g_new (double, g->input_size);
  g_autofree double *xu = g_new (double, g->input_size);
  for (int64_t k = 0; k < g->input_size; k++)
    {
      double c = g_rand_double_range (rng, -1, 1), eps = g_rand_double_range (rng, 0.05, 0.5);
      xl[k] = c - eps;
      xu[k] = c + eps;
    }
  for (int m = 0; m < 3; m++) /* IBP, CROWN, CROWN intersected with IBP */
    {
      SbBoundsResult r;
      sb_network_set_intersect_ibp (net, m == 2);
      ck_assert_msg (sb_network_compute_bounds (net, m == 0 ? SB_METHOD_IBP : SB_METHOD_CROWN, xl,
                                                xu, NULL, &r, &error),
                     "%s", error ? error->message : "");
      assert_contains_samples (g, xl, xu, &r, 1000, 99 + _i, m == 0 ? "IBP" : "CROWN");
      for (int j = 0; j < r.n_outputs; j++)
        ck_assert (r.output_lower[j] <= r.output_upper[j]);
      sb_bounds_result_clear (&r);
    }
  g_rand_free (rng);
}
END_TEST

/* Intersecting CROWN's intermediate bounds with IBP's can only tighten the
 * final bounds, and they stay sound. */
START_TEST (test_crown_with_ibp_intersection_is_never_looser)
{
  Case c = { 0 };
  g_autoptr (GError) error = NULL;
  case_load (&c, goldens[_i]);
  const double *xl = c.prop->regions[0].x_lower, *xu = c.prop->regions[0].x_upper;
  SbBoundsResult plain, tight;
  ck_assert (sb_network_compute_bounds (c.net, SB_METHOD_CROWN, xl, xu, NULL, &plain, &error));
  sb_network_set_intersect_ibp (c.net, TRUE);
  ck_assert (sb_network_compute_bounds (c.net, SB_METHOD_CROWN, xl, xu, NULL, &tight, &error));
  for (int j = 0; j < plain.n_outputs; j++)
    {
      ck_assert_msg (tight.output_lower[j] >= plain.output_lower[j] - 1e-5, "%s lower[%d]", goldens[_i], j);
      ck_assert_msg (tight.output_upper[j] <= plain.output_upper[j] + 1e-5, "%s upper[%d]", goldens[_i], j);
    }
  assert_contains_samples (c.graph, xl, xu, &tight, 200, 31 + _i, goldens[_i]);
  sb_bounds_result_clear (&plain);
  sb_bounds_result_clear (&tight);
  case_free (&c);
}
END_TEST

/* A property's spec bound can never be looser than what the output bounds
 * alone imply when the spec is a single output (c = e_j). */
START_TEST (test_crown_spec_of_unit_rows_equals_output_bounds)
{
  GRand *rng = g_rand_new_with_seed (5);
  g_autoptr (SbGraph) g = random_residual_mlp (rng);
  g_autoptr (SbSessionSetup) setup = open_cpu ();
  g_autoptr (GError) error = NULL;
  g_autoptr (SbNetwork) net = sb_network_new (setup->session, g, &error);
  double xl[6], xu[6];
  for (int k = 0; k < 6; k++)
    xl[k] = -0.3, xu[k] = 0.4;
  double rows[4 * 4] = { 0 };
  for (int j = 0; j < 4; j++)
    rows[j * 4 + j] = 1;
  SbSpec spec = { 4, rows };
  SbBoundsResult r;
  ck_assert (sb_network_compute_bounds (net, SB_METHOD_CROWN, xl, xu, &spec, &r, &error));
  for (int j = 0; j < 4; j++)
    {
      ck_assert_double_eq_tol (r.spec_lower[j], r.output_lower[j], 1e-6);
      ck_assert_double_eq_tol (r.spec_upper[j], r.output_upper[j], 1e-6);
    }
  sb_bounds_result_clear (&r);
  g_rand_free (rng);
}
END_TEST

static Suite *
engine_suite (void)
{
  Suite *s = suite_create ("engine");
  TCase *tc = tcase_create ("goldens");
  tcase_set_timeout (tc, 600);
  tcase_add_loop_test (tc, test_ibp_matches_auto_lirpa_golden, 0, N_GOLDENS);
  tcase_add_loop_test (tc, test_crown_matches_auto_lirpa_golden, 0, N_GOLDENS);
  tcase_add_loop_test (tc, test_alpha_crown_at_least_as_tight_as_auto_lirpa, 0, N_GOLDENS);
  suite_add_tcase (s, tc);
  tc = tcase_create ("soundness");
  tcase_set_timeout (tc, 600);
  tcase_add_loop_test (tc, test_golden_network_bounds_contain_samples, 0, N_GOLDENS);
  tcase_add_loop_test (tc, test_random_dag_bounds_contain_samples, 0, 8);
  tcase_add_test (tc, test_crown_spec_of_unit_rows_equals_output_bounds);
  tcase_add_loop_test (tc, test_crown_with_ibp_intersection_is_never_looser, 0, N_GOLDENS);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (engine_suite ());
  srunner_run_all (sr, CK_NORMAL);
  int failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
