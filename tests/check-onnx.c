/* SPDX-License-Identifier: MIT */
/* Tests of ONNX import, the host forward pass and the synthetic model writer.
 */
#include "config.h"

#include <check.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hosts/engine/graph.h"
#include "tools/mkmodel/mkmodel.h"
#include "tools/mkmodel/onnx_writer.h"
#include "hosts/engine/onnx_import.h"

/* ---- helpers ---------------------------------------------------------- */

static char *data_path(const char *rel) {
  const char *dir = g_getenv("SHARDBOUND_TEST_DATA");

  if (dir == NULL || *dir == '\0')
    return g_build_filename(SB_TOP_SRCDIR, "tests", "data", rel, NULL);
  return g_build_filename(dir, rel, NULL);
}

static int count_kind(const SbGraph *g, SbNodeKind kind) {
  int n = 0;

  for (int i = 0; i < sb_graph_n_nodes(g); i++)
    n += sb_graph_node(g, i)->kind == kind;
  return n;
}

/* Parses data that must be refused with `code`; returns the message. */
static char *expect_error(GBytes *bytes, int code) {
  GError *error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data(bytes, &len);
  SbGraph *g = sb_onnx_parse(data, len, &error);
  char *msg;

  ck_assert_msg(g == NULL, "a bad model was accepted");
  ck_assert(error != NULL);
  ck_assert_msg(error->domain == SB_ONNX_ERROR, "wrong error domain: %s",
                error->message);
  ck_assert_msg(error->code == code, "code %d, expected %d: %s", error->code,
                code, error->message);
  ck_assert(strlen(error->message) > 10);
  msg = g_strdup(error->message);
  g_error_free(error);
  g_bytes_unref(bytes);
  return msg;
}

static SbGraph *parse_ok(GBytes *bytes) {
  GError *error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data(bytes, &len);
  SbGraph *g = sb_onnx_parse(data, len, &error);

  ck_assert_msg(g != NULL, "import failed: %s", error ? error->message : "?");
  g_bytes_unref(bytes);
  return g;
}

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* x[1,4] -> Gemm(W [3,4], transB) -> Relu -> y[1,3] */
static SbOnnxBuilder *tiny_mlp(void) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 4}, out[2] = {1, 3}, wd[2] = {3, 4}, bd[1] = {3};
  float w[12], bias[3] = {0.5f, -0.25f, 0.0f};
  int n;

  for (int i = 0; i < 12; i++)
    w[i] = (float)(i % 5) - 2.0f;
  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_initializer(b, "W", 2, wd, w);
  sb_onnx_builder_add_initializer(b, "B", 1, bd, bias);
  n = sb_onnx_builder_add_node(b, "Gemm", "fc", NAMES("x", "W", "B"),
                               NAMES("h"));
  sb_onnx_builder_set_int(b, n, "transB", 1);
  sb_onnx_builder_add_node(b, "Relu", "act", NAMES("h"), NAMES("y"));
  return b;
}

static GBytes *build(SbOnnxBuilder *b) {
  GBytes *bytes = sb_onnx_builder_serialize(b);

  sb_onnx_builder_free(b);
  return bytes;
}

/* ---- real models -------------------------------------------------------- */

typedef struct {
  const char *onnx, *golden;
  int64_t in, out;
  int linear, conv, relu, add, affine;
} ModelCase;

static const ModelCase models[] = {
    {"mnist-net_256x2.onnx", "mnist-256x2_prop_0_0.03.json", 784, 10, 3, 0, 2,
     0, 0},
    {"mnist-net_256x4.onnx", "mnist-256x4_prop_0_0.03.json", 784, 10, 5, 0, 4,
     0, 0},
    {"cifar_base_kw.onnx",
     "oval21_base_cifar_base_kw-img2578-eps0.021176470588235297.json", 3072, 10,
     2, 2, 3, 0, 0},
    {"resnet_2b.onnx", "resnet_2b_prop_0.json", 3072, 10, 2, 6, 6, 2, 0},
    {"bn_resnet.onnx", "bn_resnet.json", 3072, 10, 2, 4, 4, 2, 3},
};

static SbGraph *load_model(const char *name) {
  g_autofree char *rel = g_build_filename("onnx", name, NULL);
  g_autofree char *path = data_path(rel);
  GError *error = NULL;
  SbGraph *g = sb_onnx_load(path, &error);

  ck_assert_msg(g != NULL, "%s: %s", name, error ? error->message : "?");
  return g;
}

START_TEST(test_onnx_imports_real_models_with_expected_structure) {
  const ModelCase *mc = &models[_i];
  g_autoptr(SbGraph) g = load_model(mc->onnx);

  ck_assert_int_eq(g->input_size, mc->in);
  ck_assert_int_eq(g->output_size, mc->out);
  ck_assert_int_eq(sb_graph_node(g, 0)->kind, SB_NODE_INPUT);
  ck_assert_int_eq(count_kind(g, SB_NODE_INPUT), 1);
  ck_assert_int_eq(count_kind(g, SB_NODE_LINEAR), mc->linear);
  ck_assert_int_eq(count_kind(g, SB_NODE_CONV2D), mc->conv);
  ck_assert_int_eq(count_kind(g, SB_NODE_RELU), mc->relu);
  ck_assert_int_eq(count_kind(g, SB_NODE_ADD), mc->add);
  ck_assert_int_eq(count_kind(g, SB_NODE_AFFINE), mc->affine);
  ck_assert_int_eq(g->output, sb_graph_n_nodes(g) - 1);
  for (int i = 1; i < sb_graph_n_nodes(g); i++) {
    const SbNode *n = sb_graph_node(g, i);

    ck_assert_int_ge(n->n_inputs, 1);
    for (int k = 0; k < n->n_inputs; k++)
      ck_assert_int_lt(n->inputs[k], i);
    ck_assert_int_eq(n->desc.out_size, n->size);
    ck_assert_int_eq(n->desc.in_size, sb_graph_node(g, n->inputs[0])->size);
    ck_assert_ptr_eq(n->desc.weight, n->weight);
  }
}
END_TEST

/* Reads `"key": [numbers]` or `"key": "string"` from a golden JSON file. */
static GArray *json_numbers(const char *text, const char *key) {
  g_autofree char *pat = g_strdup_printf("\"%s\"", key);
  const char *p = strstr(text, pat);
  GArray *a = g_array_new(FALSE, FALSE, sizeof(double));

  ck_assert_msg(p != NULL, "no %s in the golden file", key);
  p = strchr(p + strlen(pat), '[');
  ck_assert(p != NULL);
  p++;
  while (*p != ']' && *p != '\0') {
    char *end;
    double v = g_ascii_strtod(p, &end);

    if (end == p) {
      p++;
      continue;
    }
    g_array_append_val(a, v);
    p = end;
  }
  return a;
}

static char *json_string(const char *text, const char *key) {
  g_autofree char *pat = g_strdup_printf("\"%s\": \"", key);
  const char *p = strstr(text, pat);
  const char *e;

  ck_assert_msg(p != NULL, "no %s in the golden file", key);
  p += strlen(pat);
  e = strchr(p, '"');
  return g_strndup(p, e - p);
}

/* Centre of the X box of a VNNLIB file, from its (<= X_i v) / (>= X_i v)
 * assertions. */
static float *vnnlib_center(const char *path, int64_t n) {
  g_autofree char *text = NULL;
  double *lo = g_new0(double, n), *hi = g_new0(double, n);
  float *c = g_new(float, n);
  const char *p;

  ck_assert(g_file_get_contents(path, &text, NULL, NULL));
  for (p = text; (p = strstr(p, " X_")) != NULL; p++) {
    gboolean le = p >= text + 2 && strncmp(p - 2, "<=", 2) == 0;
    gboolean ge = p >= text + 2 && strncmp(p - 2, ">=", 2) == 0;
    char *end;
    gint64 i = g_ascii_strtoll(p + 3, &end, 10);

    if ((!le && !ge) || i < 0 || i >= n)
      continue;
    (le ? hi : lo)[i] = g_ascii_strtod(end, NULL);
  }
  for (int64_t i = 0; i < n; i++)
    c[i] = (float)((lo[i] + hi[i]) / 2.0);
  g_free(lo);
  g_free(hi);
  return c;
}

START_TEST(test_onnx_eval_matches_golden_center_output) {
  const ModelCase *mc = &models[_i];
  g_autoptr(SbGraph) g = load_model(mc->onnx);
  g_autofree char *grel = g_build_filename("goldens", mc->golden, NULL);
  g_autofree char *gpath = data_path(grel);
  g_autofree char *text = NULL;
  g_autofree char *vname = NULL, *vrel = NULL, *vpath = NULL;
  g_autofree float *x = NULL;
  g_autofree double *y = g_new(double, g->output_size);
  GArray *expect;

  ck_assert(g_file_get_contents(gpath, &text, NULL, NULL));
  expect = json_numbers(text, "center_output");
  ck_assert_int_eq(expect->len, g->output_size);
  vname = json_string(text, "vnnlib");
  vrel = g_build_filename("vnnlib", vname, NULL);
  vpath = data_path(vrel);
  x = vnnlib_center(vpath, g->input_size);
  sb_graph_eval(g, x, y);
  for (guint j = 0; j < expect->len; j++) {
    double e = g_array_index(expect, double, j);

    ck_assert_msg(fabs(y[j] - e) <= 1e-4 * MAX(1.0, fabs(e)),
                  "%s output %u: %.7f, golden %.7f", mc->onnx, j, y[j], e);
  }
  g_array_unref(expect);
}
END_TEST

START_TEST(test_onnx_conv_geometry_comes_from_attributes) {
  g_autoptr(SbGraph) g = load_model("cifar_base_kw.onnx");
  const SbNode *c0 = sb_graph_node(g, 1), *c1 = sb_graph_node(g, 3);

  ck_assert_int_eq(c0->kind, SB_NODE_CONV2D);
  ck_assert_int_eq(c0->desc.in_c, 3);
  ck_assert_int_eq(c0->desc.in_h, 32);
  ck_assert_int_eq(c0->desc.kernel_h, 4);
  ck_assert_int_eq(c0->desc.stride_w, 2);
  ck_assert_int_eq(c0->desc.pad_bottom, 1);
  ck_assert_int_eq(c0->desc.out_c, 8);
  ck_assert_int_eq(c0->desc.out_h, 16);
  ck_assert_int_eq(c0->desc.out_w, 16);
  ck_assert_int_eq(c0->desc.groups, 1);
  ck_assert_int_eq(c1->desc.out_h, 8);
  ck_assert_int_eq(c1->size, 16 * 8 * 8);
  ck_assert_int_eq(c1->ndim, 3);
}
END_TEST

/* ---- operators ------------------------------------------------------------
 */

START_TEST(test_onnx_normalisation_becomes_per_channel_affine) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[4] = {1, 3, 2, 2}, out[2] = {1, 12};
  int64_t md[4] = {1, 3, 1, 1}, sd[3] = {3, 1, 1}, one[1] = {1};
  int64_t full[3] = {3, 2, 2}, odd[3] = {1, 2, 1};
  float mean[3] = {0.1f, 0.2f, 0.3f}, sd_v[3] = {0.5f, 2.0f, 4.0f},
        k[1] = {3.0f};
  float fv[12], ov[2] = {10.0f, 20.0f}, x[12];
  double y[12];
  SbGraph *g;

  for (int i = 0; i < 12; i++)
    fv[i] = (float)i;
  sb_onnx_builder_add_input(b, "x", 4, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_initializer(b, "mean", 4, md, mean);
  sb_onnx_builder_add_initializer(b, "std", 3, sd, sd_v);
  sb_onnx_builder_add_initializer(b, "k", 1, one, k);
  sb_onnx_builder_add_initializer(b, "full", 3, full, fv);
  sb_onnx_builder_add_initializer(b, "odd", 3, odd, ov);
  sb_onnx_builder_add_node(b, "Sub", "sub", NAMES("x", "mean"), NAMES("a"));
  sb_onnx_builder_add_node(b, "Div", "div", NAMES("a", "std"), NAMES("b"));
  sb_onnx_builder_add_node(b, "Mul", "mul", NAMES("k", "b"), NAMES("c"));
  sb_onnx_builder_add_node(b, "Add", "add", NAMES("c", "full"), NAMES("d"));
  sb_onnx_builder_add_node(b, "Sub", "rsub", NAMES("odd", "d"), NAMES("e"));
  sb_onnx_builder_add_node(b, "Flatten", "flat", NAMES("e"), NAMES("y"));
  g = parse_ok(build(b));

  ck_assert_int_eq(count_kind(g, SB_NODE_AFFINE), 5);
  ck_assert_int_eq(sb_graph_node(g, 1)->desc.channels, 3);
  ck_assert_int_eq(sb_graph_node(g, 1)->desc.spatial, 4);
  ck_assert_int_eq(sb_graph_node(g, 2)->desc.channels, 3);
  ck_assert_int_eq(sb_graph_node(g, 3)->desc.channels, 1);
  ck_assert_int_eq(sb_graph_node(g, 3)->desc.spatial, 12);
  ck_assert_int_eq(sb_graph_node(g, 4)->desc.channels, 12);
  ck_assert_int_eq(sb_graph_node(g, 5)->desc.channels, 12);
  ck_assert_int_eq(sb_graph_node(g, 5)->desc.spatial, 1);
  for (int i = 0; i < 12; i++)
    x[i] = 0.25f * (float)i - 1.0f;
  sb_graph_eval(g, x, y);
  for (int i = 0; i < 12; i++) {
    int c = i / 4, h = (i / 2) % 2;
    double e = ov[h] - (3.0 * ((x[i] - mean[c]) / sd_v[c]) + fv[i]);

    ck_assert_msg(fabs(y[i] - e) < 1e-5, "element %d: %g vs %g", i, y[i], e);
  }
  sb_graph_free(g);
}
END_TEST

START_TEST(test_onnx_reshape_matmul_and_constants_track_shapes) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 12}, out[2] = {1, 2};
  int64_t s1d[1] = {4}, s1[4] = {-1, 3, 2, 2}, s2d[1] = {2}, s2[2] = {0, -1};
  int64_t wd[4] = {2, 3, 2, 2}, md[2] = {8, 2};
  float w[24], m[16];
  double dm[16];
  float x[12];
  double y[2], conv[8];
  SbGraph *g;
  int n;

  for (int i = 0; i < 24; i++)
    w[i] = (float)((i * 7) % 5) - 2.0f;
  for (int i = 0; i < 16; i++)
    dm[i] = m[i] = (float)(i % 3) - 1.0f;
  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_int64_initializer(b, "s1", 1, s1d, s1);
  sb_onnx_builder_add_int64_initializer(b, "s2", 1, s2d, s2);
  sb_onnx_builder_add_initializer(b, "w", 4, wd, w);
  /* float64 initializers are converted */
  sb_onnx_builder_add_tensor_raw(b, "m", SB_ONNX_DOUBLE, 2, md, dm, sizeof dm);
  sb_onnx_builder_add_node(b, "Reshape", "r1", NAMES("x", "s1"), NAMES("img"));
  n = sb_onnx_builder_add_node(b, "Conv", "conv", NAMES("img", "w"),
                               NAMES("c"));
  sb_onnx_builder_set_ints(b, n, "pads", 4, (int64_t[]){1, 1, 0, 0});
  sb_onnx_builder_add_node(b, "Identity", "id", NAMES("c"), NAMES("c2"));
  sb_onnx_builder_add_node(b, "Dropout", "drop", NAMES("c2"), NAMES("c3"));
  sb_onnx_builder_add_node(b, "Reshape", "r2", NAMES("c3", "s2"),
                           NAMES("flat"));
  sb_onnx_builder_add_node(b, "MatMul", "mm", NAMES("flat", "m"), NAMES("y"));
  g = parse_ok(build(b));

  ck_assert_int_eq(sb_graph_n_nodes(g), 3);
  ck_assert_int_eq(sb_graph_node(g, 1)->kind, SB_NODE_CONV2D);
  ck_assert_int_eq(sb_graph_node(g, 1)->desc.in_c, 3);
  ck_assert_int_eq(sb_graph_node(g, 1)->desc.out_h, 2);
  ck_assert_int_eq(sb_graph_node(g, 1)->desc.out_w, 2);
  ck_assert_int_eq(sb_graph_node(g, 2)->kind, SB_NODE_LINEAR);
  ck_assert_int_eq(sb_graph_node(g, 2)->desc.in_size, 8);
  ck_assert_int_eq(g->output_size, 2);
  for (int i = 0; i < 12; i++)
    x[i] = (float)i / 12.0f;
  sb_graph_eval(g, x, y);
  /* Conv by hand: out 2x2 from a 2x2 input, kernel 2x2, pad top/left 1. */
  for (int oc = 0; oc < 2; oc++)
    for (int oh = 0; oh < 2; oh++)
      for (int ow = 0; ow < 2; ow++) {
        double acc = 0;

        for (int ic = 0; ic < 3; ic++)
          for (int kh = 0; kh < 2; kh++)
            for (int kw = 0; kw < 2; kw++) {
              int ih = oh - 1 + kh, iw = ow - 1 + kw;

              if (ih >= 0 && iw >= 0)
                acc += w[((oc * 3 + ic) * 2 + kh) * 2 + kw] *
                       x[(ic * 2 + ih) * 2 + iw];
            }
        conv[(oc * 2 + oh) * 2 + ow] = acc;
      }
  for (int o = 0; o < 2; o++) {
    double e = 0;

    for (int i = 0; i < 8; i++)
      e += conv[i] * m[i * 2 + o];
    ck_assert_msg(fabs(y[o] - e) < 1e-9, "output %d: %g vs %g", o, y[o], e);
  }
  sb_graph_free(g);
}
END_TEST

START_TEST(test_onnx_gemm_honours_alpha_beta_and_untransposed_weight) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 2}, out[2] = {1, 3}, wd[2] = {2, 3}, cd[2] = {1, 3};
  float w[6] = {1, 2, 3, 4, 5, 6}, c[3] = {1, 1, 1}, x[2] = {1.0f, -1.0f};
  double y[3];
  SbGraph *g;
  int n;

  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_initializer(b, "W", 2, wd, w);
  sb_onnx_builder_add_initializer(b, "C", 2, cd, c);
  n = sb_onnx_builder_add_node(b, "Gemm", "g", NAMES("x", "W", "C"),
                               NAMES("y"));
  sb_onnx_builder_set_float(b, n, "alpha", 2.0f);
  sb_onnx_builder_set_float(b, n, "beta", 0.5f);
  g = parse_ok(build(b));
  sb_graph_eval(g, x, y);
  /* y = 2 * x W + 0.5 with x W = (1-4, 2-5, 3-6) */
  ck_assert(fabs(y[0] - (-6.0 + 0.5)) < 1e-12);
  ck_assert(fabs(y[1] - (-6.0 + 0.5)) < 1e-12);
  ck_assert(fabs(y[2] - (-6.0 + 0.5)) < 1e-12);
  ck_assert(sb_graph_node(g, 1)->weight[1] == 2.0f * 4.0f);
  sb_graph_free(g);
}
END_TEST

/* The importer takes an initializer's buffer over for the node that reads
 * it last and copies it for earlier readers: both layers must hold it. */
START_TEST(test_onnx_weight_shared_by_two_layers_reaches_both) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 2}, out[2] = {1, 2}, wd[2] = {2, 2};
  float w[4] = {1, 2, 3, -4}, x[2] = {1.0f, -1.0f};
  double y[2];
  SbGraph *g;

  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_initializer(b, "W", 2, wd, w);
  for (int k = 0; k < 2; k++) {
    int n = sb_onnx_builder_add_node(b, "Gemm", k ? "second" : "first",
                                     k ? NAMES("h", "W") : NAMES("x", "W"),
                                     k ? NAMES("y") : NAMES("h"));
    sb_onnx_builder_set_int(b, n, "transB", 1);
  }
  g = parse_ok(build(b));
  for (int node = 1; node <= 2; node++)
    for (int i = 0; i < 4; i++)
      ck_assert(sb_graph_node(g, node)->weight[i] == w[i]);
  sb_graph_eval(g, x, y);
  /* h = W x = (1 - 2, 3 + 4) = (-1, 7); y = W h = (-1 + 14, -3 - 28) */
  ck_assert(fabs(y[0] - 13.0) < 1e-12);
  ck_assert(fabs(y[1] - (-31.0)) < 1e-12);
  sb_graph_free(g);
}
END_TEST

START_TEST(test_onnx_sorts_nodes_given_out_of_order) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 2}, out[2] = {1, 2};
  float x[2] = {-1.0f, 3.0f};
  double y[2];
  SbGraph *g;

  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_node(b, "Add", "sum", NAMES("r", "x"), NAMES("y"));
  sb_onnx_builder_add_node(b, "Relu", "relu", NAMES("x"), NAMES("r"));
  g = parse_ok(build(b));
  ck_assert_int_eq(sb_graph_node(g, 1)->kind, SB_NODE_RELU);
  ck_assert_int_eq(sb_graph_node(g, 2)->kind, SB_NODE_ADD);
  sb_graph_eval(g, x, y);
  ck_assert(y[0] == -1.0 && y[1] == 6.0);
  sb_graph_free(g);
}
END_TEST

/* ---- the bad corpus ----------------------------------------------------- */

START_TEST(test_onnx_rejects_empty_data) {
  g_free(expect_error(g_bytes_new_static("", 0), SB_ONNX_ERROR_MALFORMED));
}
END_TEST

START_TEST(test_onnx_rejects_truncated_models) {
  g_autofree char *path = data_path("onnx/mnist-net_256x2.onnx");
  g_autofree char *data = NULL;
  gsize len;

  ck_assert(g_file_get_contents(path, &data, &len, NULL));
  /* Cuts inside the graph message: every one leaves a length prefix that
   * runs past the end. */
  gsize cuts[] = {1, 2, 7, 16, 100, 1000, 4096, len / 3, len / 2, len - 40};
  for (gsize i = 0; i < G_N_ELEMENTS(cuts); i++) {
    char *msg =
        expect_error(g_bytes_new(data, cuts[i]), SB_ONNX_ERROR_MALFORMED);

    ck_assert_msg(strstr(msg, "truncated") != NULL, "%s", msg);
    g_free(msg);
  }
}
END_TEST

START_TEST(test_onnx_rejects_random_bytes) {
  GRand *r = g_rand_new_with_seed(1234);

  for (int trial = 0; trial < 50; trial++) {
    gsize len = 1 + g_rand_int_range(r, 0, 4096);
    guint8 *buf = g_malloc(len);
    GError *error = NULL;
    SbGraph *g;

    for (gsize i = 0; i < len; i++)
      buf[i] = (guint8)g_rand_int(r);
    g = sb_onnx_parse(buf, len, &error);
    ck_assert(g == NULL);
    ck_assert(error != NULL && error->domain == SB_ONNX_ERROR);
    g_error_free(error);
    g_free(buf);
  }
  g_rand_free(r);
}
END_TEST

START_TEST(test_onnx_rejects_unsupported_operator_naming_it_and_node) {
  SbOnnxBuilder *b = tiny_mlp();
  char *msg;

  sb_onnx_builder_add_node(b, "Sigmoid", "squash", NAMES("y"), NAMES("z"));
  msg = expect_error(build(b), SB_ONNX_ERROR_UNSUPPORTED);
  ck_assert_msg(strstr(msg, "'Sigmoid'") && strstr(msg, "squash"), "%s", msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_rejects_wrong_data_type) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 2}, out[2] = {1, 2}, wd[2] = {2, 2};
  gint8 w[4] = {1, 2, 3, 4};
  char *msg;
  int n;

  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_tensor_raw(b, "W", 3 /* INT8 */, 2, wd, w, sizeof w);
  n = sb_onnx_builder_add_node(b, "Gemm", "fc", NAMES("x", "W"), NAMES("y"));
  sb_onnx_builder_set_int(b, n, "transB", 1);
  msg = expect_error(build(b), SB_ONNX_ERROR_UNSUPPORTED);
  ck_assert_msg(strstr(msg, "int8") && strstr(msg, "'W'"), "%s", msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_rejects_missing_node_input) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 2}, out[2] = {1, 2};
  char *msg;

  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_node(b, "Gemm", "fc", NAMES("x"), NAMES("y"));
  msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
  ck_assert_msg(strstr(msg, "'fc'") && strstr(msg, "missing"), "%s", msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_rejects_undefined_tensor) {
  SbOnnxBuilder *b = tiny_mlp();
  char *msg;

  sb_onnx_builder_add_node(b, "Add", "late", NAMES("y", "nowhere"), NAMES("z"));
  msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
  ck_assert_msg(strstr(msg, "'nowhere'") && strstr(msg, "'late'"), "%s", msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_rejects_cycle) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 2}, out[2] = {1, 2};
  char *msg;

  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_node(b, "Add", "a", NAMES("x", "c"), NAMES("y"));
  sb_onnx_builder_add_node(b, "Relu", "b", NAMES("y"), NAMES("c"));
  msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
  ck_assert_msg(strstr(msg, "cycle"), "%s", msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_rejects_huge_and_negative_dims) {
  int64_t in[2] = {1, 4}, out[2] = {1, 3};
  int64_t huge[2] = {100000, 100000}, neg[2] = {3, -4},
          big_in[3] = {1, 1 << 20, 1 << 12};
  float tiny[4] = {0};
  const int64_t *dims[] = {huge, neg};
  const char *expect[] = {"SHARDBOUND_MAX_BYTES", "negative"};
  char *msg;

  for (int k = 0; k < 2; k++) {
    SbOnnxBuilder *b = sb_onnx_builder_new();
    int n;

    sb_onnx_builder_add_input(b, "x", 2, in);
    sb_onnx_builder_add_output(b, "y", 2, out);
    sb_onnx_builder_add_tensor_raw(b, "W", SB_ONNX_FLOAT, 2, dims[k], tiny,
                                   sizeof tiny);
    n = sb_onnx_builder_add_node(b, "Gemm", "fc", NAMES("x", "W"), NAMES("y"));
    sb_onnx_builder_set_int(b, n, "transB", 1);
    msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
    ck_assert_msg(strstr(msg, expect[k]) && strstr(msg, "'W'"), "%s", msg);
    g_free(msg);
  }
  {
    SbOnnxBuilder *b = sb_onnx_builder_new();

    sb_onnx_builder_add_input(b, "x", 3, big_in);
    sb_onnx_builder_add_output(b, "y", 2, out);
    sb_onnx_builder_add_node(b, "Relu", "r", NAMES("x"), NAMES("y"));
    msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
    ck_assert_msg(strstr(msg, "limit of 1073741824 bytes"), "%s", msg);
    g_free(msg);
  }
}
END_TEST

/* The limit is one setting: lowering it refuses what the default takes,
 * before the weights are converted. */
START_TEST(test_onnx_max_bytes_setting_refuses_large_tensors) {
  g_autoptr(SbGraph) g = parse_ok(build(tiny_mlp()));
  char *msg;

  /* W is 3x4: 96 bytes at 8 an element. */
  g_setenv("SHARDBOUND_MAX_BYTES", "64", TRUE);
  msg = expect_error(build(tiny_mlp()), SB_ONNX_ERROR_INVALID);
  ck_assert_msg(strstr(msg, "'W'") && strstr(msg, "limit of 64 bytes"), "%s",
                msg);
  g_free(msg);
  g_setenv("SHARDBOUND_MAX_BYTES", "1K", TRUE);
  sb_graph_free(parse_ok(build(tiny_mlp())));
  g_unsetenv("SHARDBOUND_MAX_BYTES");
}
END_TEST

/* A chain of 200000 ReLUs written in reverse order: the import sorts it
 * without recursion (no stack overflow) in linear time, about a second of
 * CPU here; sorting by repeated sweeps, one sweep per node for this order,
 * would take 2*10^10 steps and hit the test timeout. */
START_TEST(test_onnx_deep_graph_in_reverse_order_imports) {
  enum { DEPTH = 200000 };
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 2}, out[2] = {1, 2};

  sb_onnx_builder_add_input(b, "t0", 2, in);
  sb_onnx_builder_add_output(b, "t200000", 2, out);
  for (int i = DEPTH; i >= 1; i--) {
    char x[16], y[16];

    g_snprintf(x, sizeof x, "t%d", i - 1);
    g_snprintf(y, sizeof y, "t%d", i);
    sb_onnx_builder_add_node(b, "Relu", NULL, NAMES(x), NAMES(y));
  }
  g_autoptr(SbGraph) g = parse_ok(build(b));
  ck_assert_int_eq(count_kind(g, SB_NODE_RELU), DEPTH);
  for (int i = 1; i < sb_graph_n_nodes(g); i++)
    ck_assert_int_eq(sb_graph_node(g, i)->inputs[0], i - 1);
}
END_TEST

START_TEST(test_onnx_rejects_raw_data_length_mismatch) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 4}, out[2] = {1, 3}, wd[2] = {3, 4};
  float w[11] = {0};
  char *msg;
  int n;

  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_tensor_raw(b, "W", SB_ONNX_FLOAT, 2, wd, w, sizeof w);
  n = sb_onnx_builder_add_node(b, "Gemm", "fc", NAMES("x", "W"), NAMES("y"));
  sb_onnx_builder_set_int(b, n, "transB", 1);
  msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
  ck_assert_msg(strstr(msg, "raw_data") && strstr(msg, "44 bytes"), "%s", msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_rejects_gemm_shape_mismatch) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  int64_t in[2] = {1, 5}, out[2] = {1, 3}, wd[2] = {3, 4};
  float w[12] = {0};
  char *msg;
  int n;

  sb_onnx_builder_add_input(b, "x", 2, in);
  sb_onnx_builder_add_output(b, "y", 2, out);
  sb_onnx_builder_add_initializer(b, "W", 2, wd, w);
  n = sb_onnx_builder_add_node(b, "Gemm", "fc", NAMES("x", "W"), NAMES("y"));
  sb_onnx_builder_set_int(b, n, "transB", 1);
  msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
  ck_assert_msg(strstr(msg, "5 features") && strstr(msg, "expects 4"), "%s",
                msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_rejects_transposed_gemm_input) {
  SbOnnxBuilder *b = sb_onnx_builder_new();
  GBytes *bytes;
  char *msg;

  sb_onnx_builder_add_input(b, "x", 2, (int64_t[]){1, 4});
  sb_onnx_builder_add_output(b, "y", 2, (int64_t[]){1, 4});
  sb_onnx_builder_add_initializer(b, "W", 2, (int64_t[]){4, 4}, (float[16]){0});
  sb_onnx_builder_set_int(
      b, sb_onnx_builder_add_node(b, "Gemm", "t", NAMES("x", "W"), NAMES("y")),
      "transA", 1);
  bytes = build(b);
  msg = expect_error(bytes, SB_ONNX_ERROR_UNSUPPORTED);
  ck_assert_msg(strstr(msg, "transA"), "%s", msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_rejects_add_size_mismatch) {
  SbOnnxBuilder *b = tiny_mlp();
  char *msg;

  /* y has 3 elements, x has 4 */
  sb_onnx_builder_add_node(b, "Add", "mix", NAMES("y", "x"), NAMES("z"));
  msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
  ck_assert_msg(strstr(msg, "'mix'") && strstr(msg, "differ"), "%s", msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_rejects_several_inputs_or_outputs) {
  SbOnnxBuilder *b = tiny_mlp();
  char *msg;

  sb_onnx_builder_add_input(b, "x2", 2, (int64_t[]){1, 4});
  msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
  ck_assert_msg(strstr(msg, "'x2'") && strstr(msg, "several"), "%s", msg);
  g_free(msg);

  b = tiny_mlp();
  sb_onnx_builder_add_output(b, "h", 2, (int64_t[]){1, 3});
  msg = expect_error(build(b), SB_ONNX_ERROR_INVALID);
  ck_assert_msg(strstr(msg, "2 outputs"), "%s", msg);
  g_free(msg);
}
END_TEST

START_TEST(test_onnx_load_reports_missing_file) {
  GError *error = NULL;

  ck_assert(sb_onnx_load("/nonexistent/model.onnx", &error) == NULL);
  ck_assert(g_error_matches(error, SB_ONNX_ERROR, SB_ONNX_ERROR_IO));
  ck_assert(strstr(error->message, "/nonexistent/model.onnx") != NULL);
  g_error_free(error);
}
END_TEST

START_TEST(test_onnx_load_refuses_directory) {
  GError *error = NULL;
  g_autofree char *dir = g_dir_make_tmp("sb-onnx-XXXXXX", NULL);

  ck_assert(dir != NULL);
  ck_assert(sb_onnx_load(dir, &error) == NULL);
  ck_assert(g_error_matches(error, SB_ONNX_ERROR, SB_ONNX_ERROR_IO));
  ck_assert_msg(strstr(error->message, dir) &&
                    strstr(error->message, "is a directory"),
                "%s", error->message);
  g_error_free(error);
  g_rmdir(dir);
}
END_TEST

/* ---- mkmodel ---------------------------------------------------------- */

static void assert_matches_generator(const SbMkModel *m, const SbGraph *g,
                                     double tol) {
  int64_t n_in = sb_mkmodel_input_size(m), n_out = sb_mkmodel_output_size(m);
  g_autofree float *x = g_new(float, n_in);
  g_autofree double *ya = g_new(double, n_out);
  g_autofree double *yb = g_new(double, n_out);
  GRand *r = g_rand_new_with_seed(7);

  ck_assert_int_eq(g->input_size, n_in);
  ck_assert_int_eq(g->output_size, n_out);
  for (int trial = 0; trial < 3; trial++) {
    double scale = 0.0;

    for (int64_t i = 0; i < n_in; i++)
      x[i] = (float)g_rand_double(r);
    sb_mkmodel_forward(m, x, ya);
    sb_graph_eval(g, x, yb);
    for (int64_t j = 0; j < n_out; j++)
      scale = MAX(scale, fabs(ya[j]));
    ck_assert(scale > 1e-3); /* the outputs are not degenerate */
    for (int64_t j = 0; j < n_out; j++)
      ck_assert_msg(fabs(ya[j] - yb[j]) <= tol * MAX(1.0, scale),
                    "output %" G_GINT64_FORMAT ": %g vs %g", j, ya[j], yb[j]);
  }
  g_rand_free(r);
}

START_TEST(test_mkmodel_mlp_round_trips_through_the_importer) {
  int64_t widths[] = {20, 16, 16, 5};
  GError *error = NULL;
  g_autoptr(SbMkModel) m = sb_mkmodel_new_mlp(widths, 4, 42, &error);
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(GBytes) again = NULL;
  SbGraph *g;

  ck_assert_msg(m != NULL, "%s", error ? error->message : "?");
  bytes = sb_mkmodel_serialize(m);
  g = parse_ok(g_bytes_ref(bytes));
  ck_assert_int_eq(count_kind(g, SB_NODE_LINEAR), 3);
  ck_assert_int_eq(count_kind(g, SB_NODE_RELU), 2);
  ck_assert_int_eq(sb_graph_n_nodes(g), 6);
  assert_matches_generator(m, g, 1e-9);
  sb_graph_free(g);
  {
    /* the same seed gives the same file */
    g_autoptr(SbMkModel) m2 = sb_mkmodel_new_mlp(widths, 4, 42, NULL);

    again = sb_mkmodel_serialize(m2);
    ck_assert(g_bytes_equal(bytes, again));
  }
}
END_TEST

START_TEST(test_mkmodel_resnet_round_trips_through_the_importer) {
  SbResnetSpec spec = {.in_c = 3,
                       .in_h = 8,
                       .in_w = 8,
                       .channels = 4,
                       .blocks = 2,
                       .classes = 10};
  GError *error = NULL;
  g_autoptr(SbMkModel) m = sb_mkmodel_new_resnet(&spec, 3, &error);
  SbGraph *g;

  ck_assert_msg(m != NULL, "%s", error ? error->message : "?");
  g = parse_ok(sb_mkmodel_serialize(m));
  ck_assert_int_eq(count_kind(g, SB_NODE_CONV2D), 6);
  ck_assert_int_eq(count_kind(g, SB_NODE_AFFINE), 6);
  ck_assert_int_eq(count_kind(g, SB_NODE_RELU), 5);
  ck_assert_int_eq(count_kind(g, SB_NODE_ADD), 2);
  ck_assert_int_eq(count_kind(g, SB_NODE_LINEAR), 1);
  ck_assert_int_eq(g->input_size, 3 * 8 * 8);
  ck_assert_int_eq(
      sb_graph_node(g, sb_graph_node(g, g->output)->inputs[0])->size,
      8 * 4 * 4);
  /* BatchNorm is folded in float32 by the importer, unfolded by the
   * generator: agreement to float rounding. */
  assert_matches_generator(m, g, 1e-4);
  sb_graph_free(g);
}
END_TEST

START_TEST(test_mkmodel_rejects_bad_sizes) {
  GError *error = NULL;
  int64_t zero[] = {4, 0, 2};
  SbResnetSpec spec = {3, 8, 8, 4, 0, 10};

  ck_assert(sb_mkmodel_new_mlp(zero, 3, 1, &error) == NULL);
  ck_assert(g_error_matches(error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_INVALID));
  g_clear_error(&error);
  ck_assert(sb_mkmodel_new_mlp(zero, 1, 1, &error) == NULL);
  g_clear_error(&error);
  ck_assert(sb_mkmodel_new_resnet(&spec, 1, &error) == NULL);
  ck_assert(g_error_matches(error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_INVALID));
  g_clear_error(&error);
}
END_TEST

START_TEST(test_mkmodel_property_clips_box_and_lists_other_labels) {
  float c[2] = {0.01f, 0.5f};
  g_autofree char *text = sb_mkmodel_property_text(c, 2, 0.1, 3, 1);

  ck_assert_ptr_nonnull(strstr(text, "(declare-const X_1 Real)"));
  ck_assert_ptr_nonnull(strstr(text, "(declare-const Y_2 Real)"));
  ck_assert_ptr_nonnull(strstr(text, "(assert (>= X_0 0.000000000000))"));
  ck_assert_ptr_nonnull(strstr(text, "(assert (<= X_1 0.600000000000))"));
  ck_assert_ptr_nonnull(strstr(text, "(and (>= Y_0 Y_1))"));
  ck_assert_ptr_nonnull(strstr(text, "(and (>= Y_2 Y_1))"));
  ck_assert_ptr_null(strstr(text, "Y_1 Y_1"));
}
END_TEST

START_TEST(test_mkmodel_write_labels_the_argmax_at_the_centre) {
  int64_t widths[] = {6, 8, 4};
  g_autoptr(SbMkModel) m = sb_mkmodel_new_mlp(widths, 3, 5, NULL);
  g_autofree char *dir = g_dir_make_tmp("check-onnx-XXXXXX", NULL);
  g_autofree char *onnx = g_build_filename(dir, "m.onnx", NULL);
  g_autofree char *prop = g_build_filename(dir, "m.vnnlib", NULL);
  g_autofree char *text = NULL;
  g_autofree float *x = NULL;
  GError *error = NULL;
  int64_t label = -1;
  double y[4];
  SbGraph *g;

  ck_assert(dir != NULL);
  ck_assert_msg(sb_mkmodel_write(m, 5, 0.0, onnx, prop, &label, &error), "%s",
                error ? error->message : "?");
  ck_assert_int_ge(label, 0);
  ck_assert_int_lt(label, 4);
  g = sb_onnx_load(onnx, &error);
  ck_assert_msg(g != NULL, "%s", error ? error->message : "?");
  /* eps 0: the box is the centre itself */
  x = vnnlib_center(prop, 6);
  sb_graph_eval(g, x, y);
  for (int j = 0; j < 4; j++)
    ck_assert(y[j] <= y[label]);
  ck_assert(g_file_get_contents(prop, &text, NULL, NULL));
  for (int j = 0; j < 4; j++) {
    g_autofree char *atom =
        g_strdup_printf("(and (>= Y_%d Y_%" G_GINT64_FORMAT "))", j, label);

    ck_assert((strstr(text, atom) != NULL) == (j != label));
  }
  sb_graph_free(g);
  g_unlink(onnx);
  g_unlink(prop);
  g_rmdir(dir);
}
END_TEST

static Suite *onnx_suite(void) {
  Suite *s = suite_create("onnx");
  TCase *real = tcase_create("real-models");
  TCase *ops = tcase_create("operators");
  TCase *bad = tcase_create("bad-corpus");
  TCase *mk = tcase_create("mkmodel");
  int n_models = (int)G_N_ELEMENTS(models);

  tcase_add_loop_test(
      real, test_onnx_imports_real_models_with_expected_structure, 0, n_models);
  tcase_add_loop_test(real, test_onnx_eval_matches_golden_center_output, 0,
                      n_models);
  tcase_add_test(real, test_onnx_conv_geometry_comes_from_attributes);
  suite_add_tcase(s, real);

  tcase_add_test(ops, test_onnx_normalisation_becomes_per_channel_affine);
  tcase_add_test(ops, test_onnx_reshape_matmul_and_constants_track_shapes);
  tcase_add_test(ops,
                 test_onnx_gemm_honours_alpha_beta_and_untransposed_weight);
  tcase_add_test(ops, test_onnx_weight_shared_by_two_layers_reaches_both);
  tcase_add_test(ops, test_onnx_sorts_nodes_given_out_of_order);
  suite_add_tcase(s, ops);

  tcase_add_test(bad, test_onnx_rejects_empty_data);
  tcase_add_test(bad, test_onnx_rejects_truncated_models);
  tcase_add_test(bad, test_onnx_rejects_random_bytes);
  tcase_add_test(bad,
                 test_onnx_rejects_unsupported_operator_naming_it_and_node);
  tcase_add_test(bad, test_onnx_rejects_wrong_data_type);
  tcase_add_test(bad, test_onnx_rejects_missing_node_input);
  tcase_add_test(bad, test_onnx_rejects_undefined_tensor);
  tcase_add_test(bad, test_onnx_rejects_cycle);
  tcase_add_test(bad, test_onnx_rejects_huge_and_negative_dims);
  tcase_add_test(bad, test_onnx_rejects_raw_data_length_mismatch);
  tcase_add_test(bad, test_onnx_rejects_gemm_shape_mismatch);
  tcase_add_test(bad, test_onnx_rejects_transposed_gemm_input);
  tcase_add_test(bad, test_onnx_rejects_add_size_mismatch);
  tcase_add_test(bad, test_onnx_rejects_several_inputs_or_outputs);
  tcase_add_test(bad, test_onnx_load_reports_missing_file);
  tcase_add_test(bad, test_onnx_load_refuses_directory);
  tcase_add_test(bad, test_onnx_max_bytes_setting_refuses_large_tensors);
  tcase_add_test(bad, test_onnx_deep_graph_in_reverse_order_imports);
  suite_add_tcase(s, bad);

  tcase_add_test(mk, test_mkmodel_mlp_round_trips_through_the_importer);
  tcase_add_test(mk, test_mkmodel_resnet_round_trips_through_the_importer);
  tcase_add_test(mk, test_mkmodel_rejects_bad_sizes);
  tcase_add_test(mk, test_mkmodel_property_clips_box_and_lists_other_labels);
  tcase_add_test(mk, test_mkmodel_write_labels_the_argmax_at_the_centre);
  suite_add_tcase(s, mk);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(onnx_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
