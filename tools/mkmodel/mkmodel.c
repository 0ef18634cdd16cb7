/* SPDX-License-Identifier: MIT */
/* Synthetic ONNX models with random weights and their robustness property,
 * for tests and benchmarks. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "mkmodel.h"
#include "onnx_writer.h"
#include "hosts/engine/onnx_import.h"

G_DEFINE_QUARK(sb - mkmodel - error - quark, sb_mkmodel_error)

typedef enum { MK_GEMM, MK_RELU, MK_CONV, MK_BN, MK_ADD, MK_FLATTEN } MkKind;

#define MK_BN_EPS 1e-5

/* One layer of a generated model. Tensor 0 is the input; op i produces
 * tensor i + 1. */
typedef struct {
  MkKind kind;
  int in0, in1;
  int64_t c, h, w;          /* output shape (GEMM: c features, h = w = 1) */
  int64_t in_c, in_h, in_w; /* input shape */
  int64_t k, stride, pad;   /* CONV: square kernel */
  float *weight, *bias; /* GEMM [out,in], CONV [out,in,k,k]; BN gamma, beta */
  float *mean, *var;    /* BN */
} MkOp;

struct SbMkModel {
  GArray *ops; /* of MkOp */
  int in_ndim; /* ONNX input dims, batch included */
  int64_t in_dims[4];
  int64_t in_c, in_h, in_w;
};

static void mk_op_clear(gpointer data) {
  MkOp *op = data;

  g_free(op->weight);
  g_free(op->bias);
  g_free(op->mean);
  g_free(op->var);
}

static SbMkModel *mk_new(void) {
  SbMkModel *m = g_new0(SbMkModel, 1);

  m->ops = g_array_new(FALSE, TRUE, sizeof(MkOp));
  g_array_set_clear_func(m->ops, mk_op_clear);
  return m;
}

void sb_mkmodel_free(SbMkModel *model) {
  if (model == NULL)
    return;
  g_array_unref(model->ops);
  g_free(model);
}

static void tensor_shape(const SbMkModel *m, int t, int64_t *c, int64_t *h,
                         int64_t *w) {
  if (t == 0) {
    *c = m->in_c;
    *h = m->in_h;
    *w = m->in_w;
    return;
  }
  *c = g_array_index(m->ops, MkOp, t - 1).c;
  *h = g_array_index(m->ops, MkOp, t - 1).h;
  *w = g_array_index(m->ops, MkOp, t - 1).w;
}

static int mk_push(SbMkModel *m, MkOp *op) {
  if (op->c == 0) {
    op->c = op->in_c;
    op->h = op->in_h;
    op->w = op->in_w;
  }
  g_array_append_val(m->ops, *op);
  return (int)m->ops->len;
}

static float *uniform(GRand *r, int64_t n, double lo, double hi) {
  float *v = g_new(float, n + 1);

  for (int64_t i = 0; i < n; i++)
    v[i] = (float)g_rand_double_range(r, lo, hi);
  return v;
}

static int mk_gemm(SbMkModel *m, GRand *r, int in, int64_t n_out) {
  MkOp op = {.kind = MK_GEMM, .in0 = in};
  int64_t n_in;
  double wb, bb;

  tensor_shape(m, in, &op.in_c, &op.in_h, &op.in_w);
  n_in = op.in_c * op.in_h * op.in_w;
  /* He-uniform keeps activations of similar scale through the ReLUs, so
   * bounds stay finite and meaningful for deep nets. */
  wb = sqrt(6.0 / (double)n_in);
  bb = 1.0 / sqrt((double)n_in);
  op.weight = uniform(r, n_out * n_in, -wb, wb);
  op.bias = uniform(r, n_out, -bb, bb);
  op.c = n_out;
  op.h = op.w = 1;
  return mk_push(m, &op);
}

static int mk_conv(SbMkModel *m, GRand *r, int in, int64_t out_c, int64_t k,
                   int64_t stride, int64_t pad, gboolean with_bias) {
  MkOp op = {.kind = MK_CONV, .in0 = in, .k = k, .stride = stride, .pad = pad};
  int64_t fan_in;
  double wb;

  tensor_shape(m, in, &op.in_c, &op.in_h, &op.in_w);
  fan_in = op.in_c * k * k;
  wb = sqrt(6.0 / (double)fan_in);
  op.weight = uniform(r, out_c * fan_in, -wb, wb);
  if (with_bias)
    op.bias = uniform(r, out_c, -1.0 / sqrt((double)fan_in),
                      1.0 / sqrt((double)fan_in));
  op.c = out_c;
  op.h = (op.in_h + 2 * pad - k) / stride + 1;
  op.w = (op.in_w + 2 * pad - k) / stride + 1;
  return mk_push(m, &op);
}

static int mk_bn(SbMkModel *m, GRand *r, int in) {
  MkOp op = {.kind = MK_BN, .in0 = in};

  tensor_shape(m, in, &op.in_c, &op.in_h, &op.in_w);
  op.weight = uniform(r, op.in_c, 0.8, 1.2);
  op.bias = uniform(r, op.in_c, -0.1, 0.1);
  op.mean = uniform(r, op.in_c, -0.1, 0.1);
  op.var = uniform(r, op.in_c, 0.5, 1.5);
  return mk_push(m, &op);
}

static int mk_simple(SbMkModel *m, MkKind kind, int in0, int in1) {
  MkOp op = {.kind = kind, .in0 = in0, .in1 = in1};

  tensor_shape(m, in0, &op.in_c, &op.in_h, &op.in_w);
  if (kind == MK_FLATTEN) {
    op.c = op.in_c * op.in_h * op.in_w;
    op.h = op.w = 1;
  }
  return mk_push(m, &op);
}

static GRand *mk_rand(guint64 seed) {
  guint32 words[2] = {(guint32)seed, (guint32)(seed >> 32)};

  return g_rand_new_with_seed_array(words, 2);
}

SbMkModel *sb_mkmodel_new_mlp(const int64_t *widths, int n_widths, guint64 seed,
                              GError **error) {
  SbMkModel *m;
  GRand *r;
  int t = 0;

  if (n_widths < 2) {
    g_set_error(error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_INVALID,
                "an MLP needs at least an input and an output width");
    return NULL;
  }
  for (int i = 0; i < n_widths; i++)
    if (widths[i] < 1 || widths[i] > (G_GINT64_CONSTANT(1) << 24) ||
        (i > 0 && widths[i] * widths[i - 1] > (G_GINT64_CONSTANT(1) << 31))) {
      g_set_error(error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_INVALID,
                  "MLP width %d (%" G_GINT64_FORMAT ") is not positive or "
                  "makes a layer over 2^31 weights",
                  i, widths[i]);
      return NULL;
    }
  m = mk_new();
  m->in_ndim = 2;
  m->in_dims[0] = 1;
  m->in_dims[1] = widths[0];
  m->in_c = widths[0];
  m->in_h = m->in_w = 1;
  r = mk_rand(seed);
  for (int i = 1; i < n_widths; i++) {
    t = mk_gemm(m, r, t, widths[i]);
    if (i + 1 < n_widths)
      t = mk_simple(m, MK_RELU, t, 0);
  }
  g_rand_free(r);
  return m;
}

SbMkModel *sb_mkmodel_new_resnet(const SbResnetSpec *spec, guint64 seed,
                                 GError **error) {
  SbMkModel *m;
  GRand *r;
  int64_t ch, c, h, w;
  int t;

  if (spec->in_c < 1 || spec->in_h < 1 || spec->in_w < 1 || spec->in_c > 64 ||
      spec->in_h > 1024 || spec->in_w > 1024 || spec->channels < 1 ||
      spec->blocks < 1 || spec->blocks > 8 || spec->classes < 2 ||
      spec->classes > 100000 || spec->channels << (spec->blocks - 1) > 4096) {
    g_set_error(
        error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_INVALID,
        "ResNet parameters out of range: input %" G_GINT64_FORMAT
        "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " (channels 1..64, size "
        "1..1024), stem channels %" G_GINT64_FORMAT ", blocks %d "
        "(1..8, at most 4096 channels in the last), classes %" G_GINT64_FORMAT
        " (2..100000)",
        spec->in_c, spec->in_h, spec->in_w, spec->channels, spec->blocks,
        spec->classes);
    return NULL;
  }
  m = mk_new();
  m->in_ndim = 4;
  m->in_dims[0] = 1;
  m->in_dims[1] = m->in_c = spec->in_c;
  m->in_dims[2] = m->in_h = spec->in_h;
  m->in_dims[3] = m->in_w = spec->in_w;
  r = mk_rand(seed);

  ch = spec->channels;
  t = mk_conv(m, r, 0, ch, 3, 1, 1, TRUE);
  t = mk_bn(m, r, t);
  t = mk_simple(m, MK_RELU, t, 0);
  for (int b = 0; b < spec->blocks; b++) {
    int64_t out_ch = b == 0 ? ch : 2 * ch;
    int64_t stride = b == 0 ? 1 : 2;
    int x = t, y, shortcut = t;

    y = mk_conv(m, r, x, out_ch, 3, stride, 1, FALSE);
    y = mk_bn(m, r, y);
    y = mk_simple(m, MK_RELU, y, 0);
    y = mk_conv(m, r, y, out_ch, 3, 1, 1, FALSE);
    y = mk_bn(m, r, y);
    if (b > 0) {
      shortcut = mk_conv(m, r, x, out_ch, 1, stride, 0, TRUE);
      shortcut = mk_bn(m, r, shortcut);
    }
    t = mk_simple(m, MK_ADD, y, shortcut);
    t = mk_simple(m, MK_RELU, t, 0);
    ch = out_ch;
  }
  t = mk_simple(m, MK_FLATTEN, t, 0);
  tensor_shape(m, t, &c, &h, &w);
  if (c * spec->classes > (G_GINT64_CONSTANT(1) << 31)) {
    g_set_error(error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_INVALID,
                "the final Gemm would exceed 2^31 weights");
    g_rand_free(r);
    sb_mkmodel_free(m);
    return NULL;
  }
  mk_gemm(m, r, t, spec->classes);
  g_rand_free(r);
  return m;
}

int64_t sb_mkmodel_input_size(const SbMkModel *model) {
  return model->in_c * model->in_h * model->in_w;
}

int64_t sb_mkmodel_output_size(const SbMkModel *model) {
  int64_t c, h, w;

  tensor_shape(model, (int)model->ops->len, &c, &h, &w);
  return c * h * w;
}

GBytes *sb_mkmodel_serialize(const SbMkModel *m) {
  g_autoptr(SbOnnxBuilder) b = sb_onnx_builder_new();
  int n = (int)m->ops->len;
  int64_t out_dims[2] = {1, sb_mkmodel_output_size(m)};
  char **names = g_new0(char *, n + 2);

  names[0] = g_strdup("input");
  for (int i = 1; i <= n; i++)
    names[i] = i == n ? g_strdup("output") : g_strdup_printf("t%d", i);
  sb_onnx_builder_add_input(b, names[0], m->in_ndim, m->in_dims);
  sb_onnx_builder_add_output(b, names[n], 2, out_dims);

  for (int i = 0; i < n; i++) {
    const MkOp *op = &g_array_index(m->ops, MkOp, i);
    g_autofree char *node = g_strdup_printf("n%d", i + 1);
    g_autofree char *wn = g_strdup_printf("n%d.weight", i + 1);
    g_autofree char *bn = g_strdup_printf("n%d.bias", i + 1);
    g_autofree char *mn = g_strdup_printf("n%d.mean", i + 1);
    g_autofree char *vn = g_strdup_printf("n%d.var", i + 1);
    const char *outs[] = {names[i + 1], NULL};
    int64_t in_size = op->in_c * op->in_h * op->in_w;
    int idx;

    switch (op->kind) {
    case MK_GEMM: {
      int64_t wd[2] = {op->c, in_size}, bd[1] = {op->c};
      const char *ins[] = {names[op->in0], wn, bn, NULL};

      sb_onnx_builder_add_initializer(b, wn, 2, wd, op->weight);
      sb_onnx_builder_add_initializer(b, bn, 1, bd, op->bias);
      idx = sb_onnx_builder_add_node(b, "Gemm", node, ins, outs);
      sb_onnx_builder_set_int(b, idx, "transB", 1);
      break;
    }
    case MK_CONV: {
      int64_t wd[4] = {op->c, op->in_c, op->k, op->k}, bd[1] = {op->c};
      int64_t ks[2] = {op->k, op->k}, st[2] = {op->stride, op->stride};
      int64_t pads[4] = {op->pad, op->pad, op->pad, op->pad}, dil[2] = {1, 1};
      const char *ins[] = {names[op->in0], wn, op->bias != NULL ? bn : NULL,
                           NULL};

      sb_onnx_builder_add_initializer(b, wn, 4, wd, op->weight);
      if (op->bias != NULL)
        sb_onnx_builder_add_initializer(b, bn, 1, bd, op->bias);
      idx = sb_onnx_builder_add_node(b, "Conv", node, ins, outs);
      sb_onnx_builder_set_ints(b, idx, "kernel_shape", 2, ks);
      sb_onnx_builder_set_ints(b, idx, "strides", 2, st);
      sb_onnx_builder_set_ints(b, idx, "pads", 4, pads);
      sb_onnx_builder_set_ints(b, idx, "dilations", 2, dil);
      sb_onnx_builder_set_int(b, idx, "group", 1);
      break;
    }
    case MK_BN: {
      int64_t d[1] = {op->c};
      const char *ins[] = {names[op->in0], wn, bn, mn, vn, NULL};

      sb_onnx_builder_add_initializer(b, wn, 1, d, op->weight);
      sb_onnx_builder_add_initializer(b, bn, 1, d, op->bias);
      sb_onnx_builder_add_initializer(b, mn, 1, d, op->mean);
      sb_onnx_builder_add_initializer(b, vn, 1, d, op->var);
      idx = sb_onnx_builder_add_node(b, "BatchNormalization", node, ins, outs);
      sb_onnx_builder_set_float(b, idx, "epsilon", (float)MK_BN_EPS);
      break;
    }
    case MK_RELU: {
      const char *ins[] = {names[op->in0], NULL};

      sb_onnx_builder_add_node(b, "Relu", node, ins, outs);
      break;
    }
    case MK_ADD: {
      const char *ins[] = {names[op->in0], names[op->in1], NULL};

      sb_onnx_builder_add_node(b, "Add", node, ins, outs);
      break;
    }
    case MK_FLATTEN: {
      const char *ins[] = {names[op->in0], NULL};

      idx = sb_onnx_builder_add_node(b, "Flatten", node, ins, outs);
      sb_onnx_builder_set_int(b, idx, "axis", 1);
      break;
    }
    }
  }
  g_strfreev(names);
  return sb_onnx_builder_serialize(b);
}

static void mk_conv_forward(const MkOp *op, const double *x, double *y) {
  for (int64_t oc = 0; oc < op->c; oc++)
    for (int64_t oh = 0; oh < op->h; oh++)
      for (int64_t ow = 0; ow < op->w; ow++) {
        double acc = op->bias != NULL ? op->bias[oc] : 0.0;

        for (int64_t ic = 0; ic < op->in_c; ic++)
          for (int64_t kh = 0; kh < op->k; kh++)
            for (int64_t kw = 0; kw < op->k; kw++) {
              int64_t ih = oh * op->stride - op->pad + kh;
              int64_t iw = ow * op->stride - op->pad + kw;

              if (ih >= 0 && ih < op->in_h && iw >= 0 && iw < op->in_w)
                acc +=
                    (double)
                        op->weight[((oc * op->in_c + ic) * op->k + kh) * op->k +
                                   kw] *
                    x[(ic * op->in_h + ih) * op->in_w + iw];
            }
        y[(oc * op->h + oh) * op->w + ow] = acc;
      }
}

void sb_mkmodel_forward(const SbMkModel *m, const float *x, double *out) {
  int n = (int)m->ops->len;
  double **t = g_new0(double *, n + 1);
  int64_t in_size = sb_mkmodel_input_size(m);

  t[0] = g_new(double, in_size);
  for (int64_t i = 0; i < in_size; i++)
    t[0][i] = x[i];
  for (int i = 0; i < n; i++) {
    const MkOp *op = &g_array_index(m->ops, MkOp, i);
    int64_t size = op->c * op->h * op->w, isz = op->in_c * op->in_h * op->in_w;
    const double *a = t[op->in0];
    double *y = g_new(double, size);

    switch (op->kind) {
    case MK_GEMM:
      for (int64_t o = 0; o < op->c; o++) {
        double acc = op->bias[o];

        for (int64_t j = 0; j < isz; j++)
          acc += (double)op->weight[o * isz + j] * a[j];
        y[o] = acc;
      }
      break;
    case MK_CONV:
      mk_conv_forward(op, a, y);
      break;
    case MK_BN:
      for (int64_t c = 0; c < op->c; c++)
        for (int64_t s = 0; s < op->h * op->w; s++) {
          int64_t k = c * op->h * op->w + s;

          y[k] = (a[k] - op->mean[c]) / sqrt((double)op->var[c] + MK_BN_EPS) *
                     op->weight[c] +
                 op->bias[c];
        }
      break;
    case MK_RELU:
      for (int64_t k = 0; k < size; k++)
        y[k] = a[k] > 0.0 ? a[k] : 0.0;
      break;
    case MK_ADD:
      for (int64_t k = 0; k < size; k++)
        y[k] = a[k] + t[op->in1][k];
      break;
    case MK_FLATTEN:
      memcpy(y, a, sizeof(double) * size);
      break;
    }
    t[i + 1] = y;
  }
  memcpy(out, t[n], sizeof(double) * sb_mkmodel_output_size(m));
  for (int i = 0; i <= n; i++)
    g_free(t[i]);
  g_free(t);
}

static void append_number(GString *s, double v) {
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  /* Fixed notation: VNNLIB readers do not all accept exponents. */
  g_string_append(s, g_ascii_formatd(buf, sizeof buf, "%.12f", v));
}

char *sb_mkmodel_property_text(const float *center, int64_t n_inputs,
                               double eps, int64_t n_outputs, int64_t label) {
  GString *s = g_string_new(NULL);

  g_string_append_printf(s,
                         "; Robustness property written by shardbound "
                         "mkmodel: label %" G_GINT64_FORMAT ", eps ",
                         label);
  append_number(s, eps);
  g_string_append(s, ".\n\n");
  for (int64_t i = 0; i < n_inputs; i++)
    g_string_append_printf(s, "(declare-const X_%" G_GINT64_FORMAT " Real)\n",
                           i);
  g_string_append_c(s, '\n');
  for (int64_t j = 0; j < n_outputs; j++)
    g_string_append_printf(s, "(declare-const Y_%" G_GINT64_FORMAT " Real)\n",
                           j);
  g_string_append(s, "\n; Input constraints:\n");
  for (int64_t i = 0; i < n_inputs; i++) {
    g_string_append_printf(s, "(assert (<= X_%" G_GINT64_FORMAT " ", i);
    append_number(s, MIN(1.0, (double)center[i] + eps));
    g_string_append_printf(s, "))\n(assert (>= X_%" G_GINT64_FORMAT " ", i);
    append_number(s, MAX(0.0, (double)center[i] - eps));
    g_string_append(s, "))\n");
  }
  g_string_append(s,
                  "\n; Output constraints (the unsafe region):\n(assert (or\n");
  for (int64_t j = 0; j < n_outputs; j++)
    if (j != label)
      g_string_append_printf(
          s, "    (and (>= Y_%" G_GINT64_FORMAT " Y_%" G_GINT64_FORMAT "))\n",
          j, label);
  g_string_append(s, "))\n");
  return g_string_free(s, FALSE);
}

gboolean sb_mkmodel_write(const SbMkModel *model, guint64 seed, double eps,
                          const char *onnx_path, const char *vnnlib_path,
                          int64_t *label_out, GError **error) {
  g_autoptr(GBytes) bytes = sb_mkmodel_serialize(model);
  g_autoptr(SbGraph) graph = NULL;
  g_autofree float *center = NULL;
  g_autofree double *out = NULL;
  g_autofree char *text = NULL;
  GError *local = NULL;
  int64_t n_in = sb_mkmodel_input_size(model);
  int64_t n_out = sb_mkmodel_output_size(model), label = 0;
  gsize len;
  const guint8 *data = g_bytes_get_data(bytes, &len);
  GRand *r;

  if (!(eps >= 0.0) || !isfinite(eps)) {
    g_set_error(error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_INVALID,
                "eps must be a finite number >= 0");
    return FALSE;
  }
  if (!g_file_set_contents(onnx_path, (const char *)data, (gssize)len,
                           &local)) {
    g_set_error(error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_IO, "%s",
                local->message);
    g_error_free(local);
    return FALSE;
  }
  /* The label comes from the model as the verifier will read it. */
  graph = sb_onnx_parse(data, len, &local);
  if (graph == NULL) {
    g_set_error(error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_IMPORT,
                "the generated model does not re-import: %s", local->message);
    g_error_free(local);
    return FALSE;
  }
  /* A stream apart from the weights', so the centre does not depend on the
   * architecture. */
  r = mk_rand(seed ^ G_GUINT64_CONSTANT(0x9e3779b97f4a7c15));
  center = g_new(float, n_in);
  for (int64_t i = 0; i < n_in; i++)
    center[i] = (float)g_rand_double(r);
  g_rand_free(r);
  out = g_new(double, n_out);
  sb_graph_eval(graph, center, out);
  for (int64_t j = 1; j < n_out; j++)
    if (out[j] > out[label])
      label = j;
  text = sb_mkmodel_property_text(center, n_in, eps, n_out, label);
  if (!g_file_set_contents(vnnlib_path, text, -1, &local)) {
    g_set_error(error, SB_MKMODEL_ERROR, SB_MKMODEL_ERROR_IO, "%s",
                local->message);
    g_error_free(local);
    return FALSE;
  }
  if (label_out != NULL)
    *label_out = label;
  return TRUE;
}
