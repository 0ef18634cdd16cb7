/* SPDX-License-Identifier: MIT */
/* ONNX import: turns a ModelProto into the graph IR, rejecting what it cannot
 * represent with an error that names the operator, node or tensor. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "heap_prefault.h"
#include "limits.h"
#include "onnx_import.h"
#include "hosts/engine/onnx.pb-c.h"

G_DEFINE_QUARK(sb - onnx - error - quark, sb_onnx_error)

#define MAX_DIMS 8

enum { ONNX_FLOAT = 1, ONNX_INT64 = 7, ONNX_DOUBLE = 11 };

/* A named tensor during import: either a constant (initializer, Constant
 * output or folded value) or a graph tensor produced by an SbNode. */
typedef struct {
  gboolean is_const;
  int node; /* graph tensor: index of the producing SbNode */
  int ndim; /* graph tensor: logical shape without the batch dim */
  int64_t shape[MAX_DIMS];
  int64_t numel;
  float *data;   /* constant of a float type (double is converted) */
  int64_t *ints; /* constant of type int64 (shapes) */
  /* Initializers are converted on first use, so weights exist only once as
   * floats even for large models. */
  const Onnx__TensorProto *proto;
} Value;

typedef struct {
  SbGraph *graph;
  GHashTable *values;    /* tensor name -> Value* */
  GHashTable *consumers; /* tensor name -> remaining readers (GINT) */
  const Onnx__NodeProto *node;
  char *label; /* describes `node` in messages */
} Importer;

/* g_memdup2 needs GLib 2.68; configure accepts 2.66. */
static gpointer memdup(gconstpointer src, size_t size) {
  gpointer p = g_malloc(MAX(size, 1));

  memcpy(p, src, size);
  return p;
}

static void value_free(gpointer data) {
  Value *v = data;

  g_free(v->data);
  g_free(v->ints);
  g_free(v);
}

static const char *str_or_empty(const char *s) { return s != NULL ? s : ""; }

static char *shape_to_string(int ndim, const int64_t *shape) {
  GString *s = g_string_new("[");

  for (int i = 0; i < ndim; i++)
    g_string_append_printf(s, "%s%" G_GINT64_FORMAT, i > 0 ? "," : "",
                           shape[i]);
  g_string_append_c(s, ']');
  return g_string_free(s, FALSE);
}

static const char *data_type_name(int32_t t) {
  static const char *const names[] = {
      "undefined", "float32", "uint8",     "int8",       "uint16",  "int16",
      "int32",     "int64",   "string",    "bool",       "float16", "float64",
      "uint32",    "uint64",  "complex64", "complex128", "bfloat16"};

  if (t >= 0 && t < (int32_t)G_N_ELEMENTS(names))
    return names[t];
  return "unknown";
}

/* Product of dims, refusing negative dims and tensors over the memory
 * limit (limits.h) before anything is allocated for them; `what` names the
 * tensor for the message. */
static gboolean checked_numel(int ndim, const int64_t *dims, const char *what,
                              int64_t *numel, GError **error) {
  for (int i = 0; i < ndim; i++)
    if (dims[i] < 0) {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "%s has a negative dimension (%" G_GINT64_FORMAT ")", what,
                  dims[i]);
      return FALSE;
    }
  if (!sb_limit_elements(ndim, dims, numel)) {
    g_autofree char *s = shape_to_string(ndim, dims);

    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s of shape %s needs more than the limit of %" G_GINT64_FORMAT
                " bytes (8 bytes an element; " SB_MAX_BYTES_ENV
                " sets the limit)",
                what, s, sb_max_bytes());
    return FALSE;
  }
  return TRUE;
}

/* Fills v->data or v->ints from the TensorProto, checking that the amount
 * of data present agrees with the declared dims before copying any of it. */
static gboolean tensor_convert(const Onnx__TensorProto *t, Value *v,
                               GError **error) {
  g_autofree char *what = g_strdup_printf("tensor '%s'", str_or_empty(t->name));
  int32_t type = t->has_data_type ? t->data_type : 0;
  size_t elem = type == ONNX_FLOAT ? 4 : 8;
  size_t have;

  if (t->has_data_location && t->data_location != 0) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s keeps its data in an external file, which is not supported",
                what);
    return FALSE;
  }
  if (type != ONNX_FLOAT && type != ONNX_DOUBLE && type != ONNX_INT64) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s has data type %s (%d); only float32, float64 and int64 "
                "are supported",
                what, data_type_name(type), type);
    return FALSE;
  }
  if (t->n_dims > MAX_DIMS) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s has %zu dimensions; at most %d are supported", what,
                t->n_dims, MAX_DIMS);
    return FALSE;
  }
  v->is_const = TRUE;
  v->ndim = (int)t->n_dims;
  if (t->n_dims > 0)
    memcpy(v->shape, t->dims, sizeof(int64_t) * t->n_dims);
  if (!checked_numel(v->ndim, v->shape, what, &v->numel, error))
    return FALSE;

  if (t->has_raw_data)
    have = t->raw_data.len / elem;
  else if (type == ONNX_FLOAT)
    have = t->n_float_data;
  else if (type == ONNX_DOUBLE)
    have = t->n_double_data;
  else
    have = t->n_int64_data;
  if ((t->has_raw_data && t->raw_data.len % elem != 0) ||
      have != (size_t)v->numel) {
    char *s = shape_to_string(v->ndim, v->shape);

    if (t->has_raw_data)
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "%s: raw_data holds %zu bytes but shape %s of %s needs "
                  "%" G_GINT64_FORMAT,
                  what, t->raw_data.len, s, data_type_name(type),
                  v->numel * (int64_t)elem);
    else
      g_set_error(
          error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
          "%s holds %zu values but its shape %s needs %" G_GINT64_FORMAT, what,
          have, s, v->numel);
    g_free(s);
    return FALSE;
  }

  if (type == ONNX_INT64) {
    v->ints = g_new(int64_t, v->numel + 1);
    for (int64_t i = 0; i < v->numel; i++) {
      if (t->has_raw_data) {
        guint64 u;

        memcpy(&u, t->raw_data.data + 8 * i, 8);
        v->ints[i] = (int64_t)GUINT64_FROM_LE(u);
      } else
        v->ints[i] = t->int64_data[i];
    }
    return TRUE;
  }

  /* Little-endian float32 bytes, the usual case, are the floats already:
   * the unpacked message's buffer (malloc'd by protobuf-c, so aligned for
   * floats and freed by g_free) is taken over rather than copied. A copy
   * costs more than its bytes: each page of it is memory the process
   * touches for the first time (heap_prefault.c). */
  if (type == ONNX_FLOAT && t->has_raw_data &&
      G_BYTE_ORDER == G_LITTLE_ENDIAN && v->numel > 0) {
    Onnx__TensorProto *owner = (Onnx__TensorProto *)t;

    v->data = (float *)owner->raw_data.data;
    owner->raw_data.data = NULL;
    owner->raw_data.len = 0;
    return TRUE;
  }
  v->data = g_new(float, v->numel + 1);
  for (int64_t i = 0; i < v->numel; i++) {
    if (type == ONNX_FLOAT && t->has_raw_data) {
      guint32 u;

      memcpy(&u, t->raw_data.data + 4 * i, 4);
      u = GUINT32_FROM_LE(u);
      memcpy(&v->data[i], &u, 4);
    } else if (type == ONNX_FLOAT)
      v->data[i] = t->float_data[i];
    else if (t->has_raw_data) {
      guint64 u;
      double d;

      memcpy(&u, t->raw_data.data + 8 * i, 8);
      u = GUINT64_FROM_LE(u);
      memcpy(&d, &u, 8);
      v->data[i] = (float)d;
    } else
      v->data[i] = (float)t->double_data[i];
  }
  return TRUE;
}

/* ---- attributes ------------------------------------------------------- */

static const Onnx__AttributeProto *find_attr(const Onnx__NodeProto *nd,
                                             const char *name) {
  for (size_t i = 0; i < nd->n_attribute; i++)
    if (g_strcmp0(nd->attribute[i]->name, name) == 0)
      return nd->attribute[i];
  return NULL;
}

static gboolean attr_has_type(Importer *imp, const Onnx__AttributeProto *a,
                              int type, GError **error) {
  static const char *const names[] = {"undefined", "float",  "int",
                                      "string",    "tensor", "graph",
                                      "floats",    "ints",   "strings"};

  /* IR version 1 files may omit the type; trust the field in use then. */
  if (!a->has_type || a->type == type)
    return TRUE;
  g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
              "attribute '%s' of %s should be of type %s, not %s", a->name,
              imp->label, names[type],
              a->type >= 0 && a->type < (int)G_N_ELEMENTS(names)
                  ? names[a->type]
                  : "unknown");
  return FALSE;
}

static gboolean attr_int(Importer *imp, const char *name, int64_t def,
                         int64_t *out, GError **error) {
  const Onnx__AttributeProto *a = find_attr(imp->node, name);

  *out = def;
  if (a == NULL)
    return TRUE;
  if (!attr_has_type(imp, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, error))
    return FALSE;
  *out = a->i;
  return TRUE;
}

static gboolean attr_float(Importer *imp, const char *name, double def,
                           double *out, GError **error) {
  const Onnx__AttributeProto *a = find_attr(imp->node, name);

  *out = def;
  if (a == NULL)
    return TRUE;
  if (!attr_has_type(imp, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT,
                     error))
    return FALSE;
  *out = a->f;
  return TRUE;
}

/* Reads an ints attribute of exactly n entries into out (left untouched
 * when the attribute is absent). */
static gboolean attr_ints(Importer *imp, const char *name, size_t n,
                          int64_t *out, GError **error) {
  const Onnx__AttributeProto *a = find_attr(imp->node, name);

  if (a == NULL)
    return TRUE;
  if (!attr_has_type(imp, a, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS,
                     error))
    return FALSE;
  if (a->n_ints != n) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "attribute '%s' of %s has %zu values, expected %zu", name,
                imp->label, a->n_ints, n);
    return FALSE;
  }
  memcpy(out, a->ints, n * sizeof(int64_t));
  return TRUE;
}

/* ---- values ----------------------------------------------------------- */

static Value *lookup(Importer *imp, const char *name, GError **error) {
  Value *v = g_hash_table_lookup(imp->values, name);

  if (v == NULL) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s reads tensor '%s', which has no value (only the first "
                "output of Dropout/BatchNormalization is supported)",
                imp->label, name);
    return NULL;
  }
  if (v->proto != NULL) {
    const Onnx__TensorProto *t = v->proto;

    v->proto = NULL;
    if (!tensor_convert(t, v, error)) {
      g_prefix_error(error, "%s: ", imp->label);
      g_hash_table_remove(imp->values, name);
      return NULL;
    }
  }
  return v;
}

/* Input i of the current node; a missing or empty name is an error since
 * every input we ask for this way is required. */
static Value *input(Importer *imp, size_t i, GError **error) {
  const Onnx__NodeProto *nd = imp->node;

  if (i >= nd->n_input || nd->input[i][0] == '\0') {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s (%s) is missing its input %zu", imp->label, nd->op_type,
                i + 1);
    return NULL;
  }
  return lookup(imp, nd->input[i], error);
}

/* *out is NULL when the input is absent; FALSE only on a real error. */
static gboolean optional_input(Importer *imp, size_t i, Value **out,
                               GError **error) {
  *out = NULL;
  if (i >= imp->node->n_input || imp->node->input[i][0] == '\0')
    return TRUE;
  *out = lookup(imp, imp->node->input[i], error);
  return *out != NULL;
}

static Value *const_input(Importer *imp, size_t i, const char *role,
                          GError **error) {
  Value *v = input(imp, i, error);

  if (v == NULL)
    return NULL;
  if (!v->is_const || v->data == NULL) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (%s): the %s '%s' must be a float constant (initializer "
                "or Constant)",
                imp->label, imp->node->op_type, role, imp->node->input[i]);
    return NULL;
  }
  return v;
}

static Value *graph_input(Importer *imp, size_t i, GError **error) {
  Value *v = input(imp, i, error);

  if (v == NULL)
    return NULL;
  if (v->is_const) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (%s): input '%s' is a constant; only computed tensors "
                "are supported there",
                imp->label, imp->node->op_type, imp->node->input[i]);
    return NULL;
  }
  return v;
}

/* Binds output 0 of the current node to v (taking ownership). */
static gboolean set_output(Importer *imp, Value *v, GError **error) {
  const Onnx__NodeProto *nd = imp->node;

  /* Output 0 exists: sort_nodes refused nodes without it. */
  g_hash_table_replace(imp->values, g_strdup(nd->output[0]), v);
  return TRUE;
}

static Value *value_graph(int node, int ndim, const int64_t *shape) {
  Value *v = g_new0(Value, 1);

  v->node = node;
  v->ndim = ndim;
  memcpy(v->shape, shape, sizeof(int64_t) * ndim);
  v->numel = 1;
  for (int i = 0; i < ndim; i++)
    v->numel *= shape[i];
  return v;
}

static Value *value_copy(const Value *src) {
  Value *v = memdup(src, sizeof(Value));

  if (src->data != NULL)
    v->data = memdup(src->data, sizeof(float) * src->numel);
  if (src->ints != NULL)
    v->ints = memdup(src->ints, sizeof(int64_t) * (src->numel + 1));
  return v;
}

/* Appends a node for the current ONNX node; its shape and size come from
 * (ndim, shape). Takes ownership of weight and bias. */
static Value *append_node(Importer *imp, SbNodeKind kind, const Value *x0,
                          const Value *x1, int ndim, const int64_t *shape,
                          sb_layer_desc_v1 *desc, float *weight, float *bias) {
  SbNode node = {0};
  Value *out = value_graph(-1, ndim, shape);

  node.kind = kind;
  node.name = g_strdup(imp->node->output[0]);
  node.n_inputs = x1 != NULL ? 2 : 1;
  node.inputs[0] = x0->node;
  node.inputs[1] = x1 != NULL ? x1->node : 0;
  node.size = out->numel;
  node.ndim = ndim <= 3 ? ndim : 0;
  memcpy(node.shape, shape, sizeof(int64_t) * node.ndim);
  if (desc != NULL)
    node.desc = *desc;
  node.desc.in_size = x0->numel;
  node.desc.out_size = out->numel;
  node.weight = weight;
  node.bias = bias;
  out->node = sb_graph_append(imp->graph, &node);
  return out;
}

/* ---- operators -------------------------------------------------------- */

/* The float data of constant input `i` of the current node, already
 * looked up as `v`, for a graph node to own: taken from `v` when this node
 * is its last reader, so that a model's weights are written to memory once
 * (see tensor_convert), and copied otherwise. */
static float *take_const_data(Importer *imp, size_t i, Value *v) {
  const char *name = imp->node->input[i];
  float *data = v->data;

  if (GPOINTER_TO_INT(g_hash_table_lookup(imp->consumers, name)) != 1)
    return memdup(data, sizeof(float) * v->numel);
  v->data = NULL;
  return data;
}

/* A constant [k, n] weight as the LINEAR layer's [n, k] (its transpose),
 * reading the source's rows in order. */
static float *transposed_weight(const float *b, int64_t k, int64_t n) {
  float *w = g_new(float, n *k + 1);
  for (int64_t i = 0; i < k; i++)
    for (int64_t o = 0; o < n; o++)
      w[o * k + i] = b[i * n + o];
  return w;
}

static gboolean import_gemm(Importer *imp, GError **error) {
  Value *a, *b, *c;
  int64_t trans_a, trans_b, k, n, kb;
  double alpha, beta;
  float *w, *bias = NULL;

  if ((a = graph_input(imp, 0, error)) == NULL ||
      (b = const_input(imp, 1, "weight B", error)) == NULL ||
      !attr_int(imp, "transA", 0, &trans_a, error) ||
      !attr_int(imp, "transB", 0, &trans_b, error) ||
      !attr_float(imp, "alpha", 1.0, &alpha, error) ||
      !attr_float(imp, "beta", 1.0, &beta, error) ||
      !optional_input(imp, 2, &c, error))
    return FALSE;
  if (trans_a != 0) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (Gemm): transA=%" G_GINT64_FORMAT " is not supported",
                imp->label, trans_a);
    return FALSE;
  }
  if (b->ndim != 2) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s (Gemm): weight B must be 2-D, has %d dimensions",
                imp->label, b->ndim);
    return FALSE;
  }
  k = a->numel;
  kb = trans_b ? b->shape[1] : b->shape[0];
  n = trans_b ? b->shape[0] : b->shape[1];
  if (kb != k) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s (Gemm): the input has %" G_GINT64_FORMAT " features but "
                "weight B [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT
                "] (transB=%" G_GINT64_FORMAT ") expects %" G_GINT64_FORMAT,
                imp->label, k, b->shape[0], b->shape[1], trans_b, kb);
    return FALSE;
  }
  if (c != NULL) {
    if (!c->is_const || c->data == NULL || (c->numel != n && c->numel != 1)) {
      g_set_error(
          error, SB_ONNX_ERROR,
          c->is_const ? SB_ONNX_ERROR_INVALID : SB_ONNX_ERROR_UNSUPPORTED,
          "%s (Gemm): bias C must be a float constant of %" G_GINT64_FORMAT
          " or 1 values",
          imp->label, n);
      return FALSE;
    }
    bias = g_new(float, n);
    for (int64_t o = 0; o < n; o++)
      bias[o] = (float)(beta * c->data[c->numel == 1 ? 0 : o]);
  }
  /* w [n, k] is B^T, or B itself when transB; alpha scales only where it
   * is not 1. */
  if (trans_b)
    w = take_const_data(imp, 1, b);
  else
    w = transposed_weight(b->data, k, n);
  if (alpha != 1.0)
    for (int64_t j = 0; j < n * k; j++)
      w[j] = (float)(alpha * w[j]);
  return set_output(
      imp, append_node(imp, SB_NODE_LINEAR, a, NULL, 1, &n, NULL, w, bias),
      error);
}

static gboolean import_matmul(Importer *imp, GError **error) {
  Value *a, *b;
  int64_t k, n, shape[MAX_DIMS];
  float *w;

  if ((a = graph_input(imp, 0, error)) == NULL ||
      (b = const_input(imp, 1, "right operand", error)) == NULL)
    return FALSE;
  if (b->ndim != 2) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (MatMul): the constant right operand must be 2-D, has "
                "%d dimensions",
                imp->label, b->ndim);
    return FALSE;
  }
  k = b->shape[0];
  n = b->shape[1];
  if (a->ndim < 1 || a->shape[a->ndim - 1] != k) {
    g_autofree char *s = shape_to_string(a->ndim, a->shape);

    g_set_error(
        error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
        "%s (MatMul): input of shape %s does not end in %" G_GINT64_FORMAT
        " as the weight [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT "] needs",
        imp->label, s, k, k, n);
    return FALSE;
  }
  if (a->numel != k) {
    g_autofree char *s = shape_to_string(a->ndim, a->shape);

    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (MatMul): input of shape %s holds several rows; only a "
                "single row per batch element is supported",
                imp->label, s);
    return FALSE;
  }
  /* x W with W [in,out] is the LINEAR layer with W transposed. */
  w = transposed_weight(b->data, k, n);
  memcpy(shape, a->shape, sizeof(int64_t) * a->ndim);
  shape[a->ndim - 1] = n;
  return set_output(
      imp,
      append_node(imp, SB_NODE_LINEAR, a, NULL, a->ndim, shape, NULL, w, NULL),
      error);
}

/* Maps a constant broadcast onto graph tensor x to per-channel values:
 * vals[channels] with x viewed as [channels, spatial]. Prefers the coarsest
 * split (scalar, then per channel) and falls back to one value per element. */
static gboolean broadcast_const(Importer *imp, const Value *x, const Value *c,
                                int64_t *channels, int64_t *spatial,
                                float **vals, GError **error) {
  int64_t d[MAX_DIMS];
  int n = x->ndim, m = c->ndim, p;
  gboolean prefix_ok = TRUE;

  /* Right-align the constant; its extra leading dims may only be the batch. */
  for (int i = 0; i < m - n; i++)
    if (c->shape[i] != 1)
      goto bad;
  for (int i = 0; i < n; i++) {
    int j = i - (n - m);

    d[i] = j >= 0 ? c->shape[j] : 1;
    if (d[i] != 1 && d[i] != x->shape[i])
      goto bad;
  }
  for (p = n; p > 0 && d[p - 1] == 1; p--)
    ;
  for (int i = 0; i < p; i++)
    if (d[i] != x->shape[i])
      prefix_ok = FALSE;
  if (prefix_ok) {
    *channels = 1;
    for (int i = 0; i < p; i++)
      *channels *= x->shape[i];
    *spatial = x->numel / MAX(*channels, 1);
    *vals = memdup(c->data, sizeof(float) * (*channels));
    return TRUE;
  }
  /* e.g. [1,H,1]: materialise one value per element. */
  *channels = x->numel;
  *spatial = 1;
  *vals = g_new(float, x->numel + 1);
  for (int64_t e = 0; e < x->numel; e++) {
    int64_t rem = e, src = 0, stride = 1;

    for (int i = n - 1; i >= 0; i--) {
      int64_t idx = rem % x->shape[i];

      rem /= x->shape[i];
      if (d[i] != 1)
        src += idx * stride;
      stride *= d[i];
    }
    (*vals)[e] = c->data[src];
  }
  return TRUE;

bad : {
  g_autofree char *cs = shape_to_string(c->ndim, c->shape);
  g_autofree char *xs = shape_to_string(x->ndim, x->shape);

  g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
              "%s (%s): constant of shape %s cannot be broadcast onto the "
              "tensor of shape %s (batch dimension excluded)",
              imp->label, imp->node->op_type, cs, xs);
  return FALSE;
}
}

static gboolean import_elementwise(Importer *imp, GError **error) {
  const char *op = imp->node->op_type;
  Value *a, *b, *x, *c;
  int64_t channels, spatial;
  float *vals, *scale, *shift;
  gboolean const_first;
  sb_layer_desc_v1 desc = {0};

  if ((a = input(imp, 0, error)) == NULL || (b = input(imp, 1, error)) == NULL)
    return FALSE;
  if (a->is_const && b->is_const) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (%s): both operands are constants; constant folding is "
                "not supported",
                imp->label, op);
    return FALSE;
  }
  if (!a->is_const && !b->is_const) {
    if (strcmp(op, "Add") != 0) {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                  "%s (%s) of two computed tensors is not supported (only "
                  "Add is)",
                  imp->label, op);
      return FALSE;
    }
    if (a->numel != b->numel) {
      g_autofree char *as = shape_to_string(a->ndim, a->shape);
      g_autofree char *bs = shape_to_string(b->ndim, b->shape);

      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "%s (Add): operands differ in size: %s (%" G_GINT64_FORMAT
                  ") and %s (%" G_GINT64_FORMAT ")",
                  imp->label, as, a->numel, bs, b->numel);
      return FALSE;
    }
    return set_output(imp,
                      append_node(imp, SB_NODE_ADD, a, b, a->ndim, a->shape,
                                  NULL, NULL, NULL),
                      error);
  }

  const_first = a->is_const;
  x = const_first ? b : a;
  c = const_first ? a : b;
  if (c->data == NULL) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s (%s): constant operand '%s' is int64, not float",
                imp->label, op, imp->node->input[const_first ? 0 : 1]);
    return FALSE;
  }
  if (const_first && strcmp(op, "Div") == 0) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (Div): dividing a constant by a computed tensor is not "
                "supported",
                imp->label);
    return FALSE;
  }
  if (!broadcast_const(imp, x, c, &channels, &spatial, &vals, error))
    return FALSE;
  scale = g_new(float, channels + 1);
  shift = g_new(float, channels + 1);
  for (int64_t i = 0; i < channels; i++) {
    float v = vals[i];

    scale[i] = 1.0f;
    shift[i] = 0.0f;
    if (strcmp(op, "Add") == 0)
      shift[i] = v;
    else if (strcmp(op, "Sub") == 0 && !const_first)
      shift[i] = -v;
    else if (strcmp(op, "Sub") == 0) {
      scale[i] = -1.0f;
      shift[i] = v;
    } else if (strcmp(op, "Mul") == 0)
      scale[i] = v;
    else if (v == 0.0f) {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "%s (Div): division by a constant that contains zero",
                  imp->label);
      g_free(vals);
      g_free(scale);
      g_free(shift);
      return FALSE;
    } else
      scale[i] = (float)(1.0 / v);
  }
  g_free(vals);
  desc.channels = channels;
  desc.spatial = spatial;
  return set_output(imp,
                    append_node(imp, SB_NODE_AFFINE, x, NULL, x->ndim, x->shape,
                                &desc, scale, shift),
                    error);
}

static gboolean import_batchnorm(Importer *imp, GError **error) {
  Value *x, *p[4];
  static const char *const roles[] = {"scale", "bias B", "mean", "variance"};
  int64_t training, channels;
  double eps;
  float *scale, *shift;
  sb_layer_desc_v1 desc = {0};

  if ((x = graph_input(imp, 0, error)) == NULL)
    return FALSE;
  for (int i = 0; i < 4; i++)
    if ((p[i] = const_input(imp, i + 1, roles[i], error)) == NULL)
      return FALSE;
  if (!attr_float(imp, "epsilon", 1e-5, &eps, error) ||
      !attr_int(imp, "training_mode", 0, &training, error))
    return FALSE;
  for (size_t i = 1; i < imp->node->n_output; i++)
    if (imp->node->output[i][0] != '\0')
      training = 1;
  if (training != 0) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (BatchNormalization): training mode is not supported",
                imp->label);
    return FALSE;
  }
  channels = x->ndim >= 1 ? x->shape[0] : 1;
  for (int i = 0; i < 4; i++)
    if (p[i]->numel != channels) {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "%s (BatchNormalization): %s has %" G_GINT64_FORMAT
                  " values but the input has %" G_GINT64_FORMAT " channels",
                  imp->label, roles[i], p[i]->numel, channels);
      return FALSE;
    }
  scale = g_new(float, channels + 1);
  shift = g_new(float, channels + 1);
  for (int64_t ch = 0; ch < channels; ch++) {
    double var = (double)p[3]->data[ch] + eps;
    double s;

    if (!(var > 0.0)) {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "%s (BatchNormalization): variance + epsilon of channel "
                  "%" G_GINT64_FORMAT " is not positive",
                  imp->label, ch);
      g_free(scale);
      g_free(shift);
      return FALSE;
    }
    s = p[0]->data[ch] / sqrt(var);
    scale[ch] = (float)s;
    shift[ch] = (float)(p[1]->data[ch] - p[2]->data[ch] * s);
  }
  desc.channels = channels;
  desc.spatial = x->numel / MAX(channels, 1);
  return set_output(imp,
                    append_node(imp, SB_NODE_AFFINE, x, NULL, x->ndim, x->shape,
                                &desc, scale, shift),
                    error);
}

static gboolean import_conv(Importer *imp, GError **error) {
  Value *x, *w, *b;
  int64_t group, strides[2] = {1, 1}, dil[2] = {1, 1}, pads[4] = {0};
  int64_t kshape[2], out_shape[3], numer_h, numer_w;
  const Onnx__AttributeProto *auto_pad;
  sb_layer_desc_v1 d = {0};
  float *bias = NULL;

  if ((x = graph_input(imp, 0, error)) == NULL ||
      (w = const_input(imp, 1, "weight", error)) == NULL ||
      !optional_input(imp, 2, &b, error))
    return FALSE;
  if (x->ndim != 3) {
    g_autofree char *s = shape_to_string(x->ndim, x->shape);

    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (Conv): input of shape %s is not C,H,W (only 2-D "
                "convolution is supported)",
                imp->label, s);
    return FALSE;
  }
  if (w->ndim != 4) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (Conv): weight has %d dimensions; only 2-D convolution "
                "(4-D weight) is supported",
                imp->label, w->ndim);
    return FALSE;
  }
  kshape[0] = w->shape[2];
  kshape[1] = w->shape[3];
  if (!attr_int(imp, "group", 1, &group, error) ||
      !attr_ints(imp, "strides", 2, strides, error) ||
      !attr_ints(imp, "dilations", 2, dil, error) ||
      !attr_ints(imp, "pads", 4, pads, error) ||
      !attr_ints(imp, "kernel_shape", 2, kshape, error))
    return FALSE;
  auto_pad = find_attr(imp->node, "auto_pad");
  if (auto_pad != NULL && auto_pad->s.len > 0 &&
      !(auto_pad->s.len == 6 && memcmp(auto_pad->s.data, "NOTSET", 6) == 0)) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (Conv): auto_pad '%.*s' is not supported (only NOTSET)",
                imp->label, (int)MIN(auto_pad->s.len, 32),
                (const char *)auto_pad->s.data);
    return FALSE;
  }
  /* Geometry beyond 2^24 is nonsense and could overflow the arithmetic. */
  for (int i = 0; i < 4; i++)
    if ((i < 2 && (strides[i] > (1 << 24) || dil[i] > (1 << 24) ||
                   kshape[i] > (1 << 24))) ||
        pads[i] > (1 << 24)) {
      g_set_error(
          error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
          "%s (Conv): strides, dilations, pads or kernel_shape over 2^24",
          imp->label);
      return FALSE;
    }
  if (group < 1 || strides[0] < 1 || strides[1] < 1 || dil[0] < 1 ||
      dil[1] < 1 || pads[0] < 0 || pads[1] < 0 || pads[2] < 0 || pads[3] < 0 ||
      kshape[0] != w->shape[2] || kshape[1] != w->shape[3] || w->shape[2] < 1 ||
      w->shape[3] < 1) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s (Conv): invalid group, strides, dilations, pads or "
                "kernel_shape",
                imp->label);
    return FALSE;
  }
  if (w->shape[1] * group != x->shape[0] || w->shape[0] % group != 0) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s (Conv): input has %" G_GINT64_FORMAT " channels but the "
                "weight [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",...] with "
                "group %" G_GINT64_FORMAT " expects %" G_GINT64_FORMAT,
                imp->label, x->shape[0], w->shape[0], w->shape[1], group,
                w->shape[1] * group);
    return FALSE;
  }
  numer_h = x->shape[1] + pads[0] + pads[2] - dil[0] * (kshape[0] - 1) - 1;
  numer_w = x->shape[2] + pads[1] + pads[3] - dil[1] * (kshape[1] - 1) - 1;
  if (numer_h < 0 || numer_w < 0) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s (Conv): the kernel is larger than the padded input",
                imp->label);
    return FALSE;
  }
  out_shape[0] = w->shape[0];
  out_shape[1] = numer_h / strides[0] + 1;
  out_shape[2] = numer_w / strides[1] + 1;
  {
    int64_t n;

    if (!checked_numel(3, out_shape, "Conv output", &n, error))
      return FALSE;
  }
  if (b != NULL) {
    if (!b->is_const || b->data == NULL || b->numel != w->shape[0]) {
      g_set_error(
          error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
          "%s (Conv): bias must be a float constant of %" G_GINT64_FORMAT
          " values",
          imp->label, w->shape[0]);
      return FALSE;
    }
    bias = memdup(b->data, sizeof(float) * w->shape[0]);
  }
  d.in_c = x->shape[0];
  d.in_h = x->shape[1];
  d.in_w = x->shape[2];
  d.out_c = out_shape[0];
  d.out_h = out_shape[1];
  d.out_w = out_shape[2];
  d.kernel_h = kshape[0];
  d.kernel_w = kshape[1];
  d.stride_h = strides[0];
  d.stride_w = strides[1];
  d.pad_top = pads[0];
  d.pad_left = pads[1];
  d.pad_bottom = pads[2];
  d.pad_right = pads[3];
  d.dilation_h = dil[0];
  d.dilation_w = dil[1];
  d.groups = group;
  return set_output(imp,
                    append_node(imp, SB_NODE_CONV2D, x, NULL, 3, out_shape, &d,
                                take_const_data(imp, 1, w), bias),
                    error);
}

static gboolean import_relu(Importer *imp, GError **error) {
  Value *x = graph_input(imp, 0, error);

  if (x == NULL)
    return FALSE;
  return set_output(imp,
                    append_node(imp, SB_NODE_RELU, x, NULL, x->ndim, x->shape,
                                NULL, NULL, NULL),
                    error);
}

/* Identity, Dropout (inference) and the shape-only operators below never
 * create a node: tensors are flat row-major, so they alias their input. */
static gboolean import_identity(Importer *imp, GError **error) {
  Value *x = input(imp, 0, error);

  return x != NULL && set_output(imp, value_copy(x), error);
}

static Value *reshaped(const Value *x, int ndim, const int64_t *shape) {
  Value *v = value_copy(x);

  v->ndim = ndim;
  memcpy(v->shape, shape, sizeof(int64_t) * ndim);
  return v;
}

static gboolean import_flatten(Importer *imp, GError **error) {
  Value *x = input(imp, 0, error);
  int64_t axis, rank, shape[2] = {1, 1};

  if (x == NULL || !attr_int(imp, "axis", 1, &axis, error))
    return FALSE;
  /* The rank ONNX sees includes the batch dim that graph tensors omit. */
  rank = x->is_const ? x->ndim : x->ndim + 1;
  if (axis < 0)
    axis += rank;
  if (axis < 0 || axis > rank) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "%s (Flatten): axis out of range for a rank-%" G_GINT64_FORMAT
                " input",
                imp->label, rank);
    return FALSE;
  }
  if (!x->is_const) {
    if (axis > 1) {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                  "%s (Flatten): axis %" G_GINT64_FORMAT " would fold "
                  "features into the batch; only axis 0 or 1 is supported",
                  imp->label, axis);
      return FALSE;
    }
    return set_output(imp, reshaped(x, 1, &x->numel), error);
  }
  for (int i = 0; i < x->ndim; i++)
    shape[i < axis ? 0 : 1] *= x->shape[i];
  return set_output(imp, reshaped(x, 2, shape), error);
}

static gboolean import_reshape(Importer *imp, GError **error) {
  Value *x, *s;
  int64_t full[MAX_DIMS + 1], target[MAX_DIMS + 1], allowzero, known = 1;
  int nfull = 0, infer = -1, n;

  if ((x = input(imp, 0, error)) == NULL ||
      (s = input(imp, 1, error)) == NULL ||
      !attr_int(imp, "allowzero", 0, &allowzero, error))
    return FALSE;
  if (!s->is_const || s->ints == NULL || s->ndim != 1) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (Reshape): the target shape must be a 1-D int64 constant",
                imp->label);
    return FALSE;
  }
  if (s->numel > MAX_DIMS) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "%s (Reshape): target shape has %" G_GINT64_FORMAT
                " dimensions; at most %d are supported",
                imp->label, s->numel, MAX_DIMS);
    return FALSE;
  }
  if (!x->is_const)
    full[nfull++] = 1;
  for (int i = 0; i < x->ndim; i++)
    full[nfull++] = x->shape[i];
  n = (int)s->numel;
  for (int i = 0; i < n; i++) {
    target[i] = s->ints[i];
    if (target[i] == 0 && allowzero == 0) {
      if (i >= nfull)
        goto bad;
      target[i] = full[i];
    }
    if (target[i] == -1 && infer < 0)
      infer = i;
    else if (target[i] < 1)
      goto bad;
    else if (known > x->numel / target[i])
      goto bad;
    else
      known *= target[i];
  }
  if (infer >= 0) {
    if (x->numel % known != 0)
      goto bad;
    target[infer] = x->numel / known;
    known *= target[infer];
  }
  if (known != x->numel)
    goto bad;
  if (!x->is_const && n >= 2 && target[0] == 1)
    return set_output(imp, reshaped(x, n - 1, target + 1), error);
  return set_output(imp, reshaped(x, n, target), error);

bad : {
  g_autofree char *xs = shape_to_string(x->ndim, x->shape);
  g_autofree char *ts = shape_to_string(n, s->ints);

  g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
              "%s (Reshape): cannot reshape %s (%" G_GINT64_FORMAT
              " elements per batch item) to %s",
              imp->label, xs, x->numel, ts);
  return FALSE;
}
}

static gboolean import_constant(Importer *imp, GError **error) {
  const Onnx__NodeProto *nd = imp->node;
  Value *v = g_new0(Value, 1);

  for (size_t i = 0; i < nd->n_attribute; i++) {
    const Onnx__AttributeProto *a = nd->attribute[i];
    const char *name = str_or_empty(a->name);

    if (strcmp(name, "value") == 0 && a->t != NULL) {
      if (!tensor_convert(a->t, v, error)) {
        g_prefix_error(error, "%s (Constant): ", imp->label);
        value_free(v);
        return FALSE;
      }
      return set_output(imp, v, error);
    }
    if (strcmp(name, "value_float") == 0 || strcmp(name, "value_floats") == 0) {
      gboolean one = strcmp(name, "value_float") == 0;

      v->is_const = TRUE;
      v->numel = one ? 1 : (int64_t)a->n_floats;
      v->ndim = one ? 0 : 1;
      v->shape[0] = v->numel;
      v->data = g_new(float, v->numel + 1);
      if (one)
        v->data[0] = a->f;
      else if (v->numel > 0)
        memcpy(v->data, a->floats, sizeof(float) * v->numel);
      return set_output(imp, v, error);
    }
    if (strcmp(name, "value_int") == 0 || strcmp(name, "value_ints") == 0) {
      gboolean one = strcmp(name, "value_int") == 0;

      v->is_const = TRUE;
      v->numel = one ? 1 : (int64_t)a->n_ints;
      v->ndim = one ? 0 : 1;
      v->shape[0] = v->numel;
      v->ints = g_new(int64_t, v->numel + 1);
      if (one)
        v->ints[0] = a->i;
      else if (v->numel > 0)
        memcpy(v->ints, a->ints, sizeof(int64_t) * v->numel);
      return set_output(imp, v, error);
    }
  }
  value_free(v);
  g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
              "%s (Constant) has none of the supported attributes value, "
              "value_float(s), value_int(s)",
              imp->label);
  return FALSE;
}

typedef struct {
  const char *op_type;
  gboolean (*import)(Importer *imp, GError **error);
} OpEntry;

static const OpEntry ops[] = {
    {"Gemm", import_gemm},
    {"MatMul", import_matmul},
    {"Add", import_elementwise},
    {"Sub", import_elementwise},
    {"Mul", import_elementwise},
    {"Div", import_elementwise},
    {"Relu", import_relu},
    {"Conv", import_conv},
    {"BatchNormalization", import_batchnorm},
    {"Flatten", import_flatten},
    {"Reshape", import_reshape},
    {"Constant", import_constant},
    {"Identity", import_identity},
    {"Dropout", import_identity},
};

/* ---- the graph -------------------------------------------------------- */

static char *node_label(const Onnx__NodeProto *nd, size_t index) {
  if (nd->name != NULL && nd->name[0] != '\0')
    return g_strdup_printf("node '%s'", nd->name);
  if (nd->n_output > 0 && nd->output[0][0] != '\0')
    return g_strdup_printf("node #%zu (output '%s')", index, nd->output[0]);
  return g_strdup_printf("node #%zu", index);
}

/* The network input: the single graph input that is not an initializer. A
 * leading batch dim (1 or symbolic) is dropped. */
static gboolean add_network_input(Importer *imp, const Onnx__GraphProto *g,
                                  GError **error) {
  const Onnx__ValueInfoProto *in = NULL;
  const Onnx__TypeProto__Tensor *tt;
  const Onnx__TensorShapeProto *sp;
  int64_t dims[MAX_DIMS + 1];
  int ndim, first = 0, n_inputs = 0;
  GString *names = g_string_new(NULL);
  SbNode node = {0};
  Value *v;

  for (size_t i = 0; i < g->n_input; i++) {
    const char *name = str_or_empty(g->input[i]->name);

    if (g_hash_table_contains(imp->values, name))
      continue;
    in = g->input[i];
    g_string_append_printf(names, "%s'%s'", n_inputs > 0 ? ", " : "", name);
    n_inputs++;
  }
  if (n_inputs != 1) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                n_inputs == 0 ? "the model has no network input%s"
                              : "the model has several network inputs (%s); "
                                "only one is supported",
                names->str);
    g_string_free(names, TRUE);
    return FALSE;
  }
  g_string_free(names, TRUE);
  if (in->name == NULL || in->name[0] == '\0') {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "the network input has no name");
    return FALSE;
  }
  tt = in->type != NULL ? in->type->tensor_type : NULL;
  sp = tt != NULL ? tt->shape : NULL;
  if (sp == NULL || sp->n_dim == 0) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "network input '%s' has no tensor shape", in->name);
    return FALSE;
  }
  if (tt->has_elem_type && tt->elem_type != ONNX_FLOAT) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "network input '%s' has element type %s; only float32 is "
                "supported",
                in->name, data_type_name(tt->elem_type));
    return FALSE;
  }
  if (sp->n_dim > MAX_DIMS + 1) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                "network input '%s' has %zu dimensions; at most %d are "
                "supported",
                in->name, sp->n_dim, MAX_DIMS + 1);
    return FALSE;
  }
  ndim = (int)sp->n_dim;
  for (int i = 0; i < ndim; i++) {
    const Onnx__TensorShapeProto__Dimension *d = sp->dim[i];

    if (d->has_dim_value && d->dim_value >= 1)
      dims[i] = d->dim_value;
    else if (i == 0 && ndim > 1 && !d->has_dim_value)
      dims[i] = 1; /* symbolic batch */
    else {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "network input '%s': dimension %d is %s", in->name, i,
                  d->has_dim_value ? "not positive" : "unknown");
      return FALSE;
    }
  }
  if (ndim > 1 && dims[0] == 1)
    first = 1;
  {
    g_autofree char *what = g_strdup_printf("network input '%s'", in->name);
    int64_t numel;

    if (!checked_numel(ndim, dims, what, &numel, error))
      return FALSE;
  }
  v = value_graph(0, ndim - first, dims + first);
  node.kind = SB_NODE_INPUT;
  node.name = g_strdup(in->name);
  node.size = v->numel;
  node.ndim = v->ndim <= 3 ? v->ndim : 0;
  memcpy(node.shape, v->shape, sizeof(int64_t) * node.ndim);
  sb_graph_append(imp->graph, &node);
  imp->graph->input_size = v->numel;
  g_hash_table_replace(imp->values, g_strdup(in->name), v);
  return TRUE;
}

/* A topological order of the nodes (ONNX requires one, but exporters and
 * hand-edited files do not always deliver it). Fails on undefined inputs,
 * duplicate producers and cycles. */
/* A node on the depth-first stack of sort_nodes and its next input. */
typedef struct {
  size_t node;
  size_t next_input;
} Visit;

static size_t *sort_nodes(Importer *imp, const Onnx__GraphProto *g,
                          GError **error) {
  g_autoptr(GHashTable) producer = g_hash_table_new(g_str_hash, g_str_equal);
  size_t *order = g_new(size_t, g->n_node + 1), n_done = 0;
  guint8 *done = g_new0(guint8, g->n_node + 1);
  GArray *stack = NULL;

  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *nd = g->node[i];

    if (nd->op_type == NULL) {
      g_autofree char *l = node_label(nd, i);

      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_MALFORMED,
                  "%s has no op_type", l);
      goto fail;
    }
    /* Every operator we import defines output 0 (set_output relies on
     * it): refuse the node here, before anything is built for it. */
    if (nd->n_output < 1 || nd->output[0][0] == '\0') {
      g_autofree char *l = node_label(nd, i);

      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "%s (%s) has no output", l, nd->op_type);
      goto fail;
    }
    for (size_t j = 0; j < nd->n_output; j++) {
      const char *o = nd->output[j];

      if (o[0] == '\0')
        continue;
      if (g_hash_table_contains(producer, o) ||
          g_hash_table_contains(imp->values, o)) {
        g_autofree char *l = node_label(nd, i);

        g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                    "tensor '%s' (output of %s) is defined more than once", o,
                    l);
        goto fail;
      }
      g_hash_table_insert(producer, (gpointer)o, GSIZE_TO_POINTER(i + 1));
    }
  }
  for (size_t i = 0; i < g->n_node; i++)
    for (size_t j = 0; j < g->node[i]->n_input; j++) {
      const char *name = g->node[i]->input[j];

      if (name[0] != '\0' && !g_hash_table_contains(producer, name) &&
          !g_hash_table_contains(imp->values, name)) {
        g_autofree char *l = node_label(g->node[i], i);

        g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                    "%s (%s) reads tensor '%s', which is neither a graph "
                    "input, an initializer nor the output of a node",
                    l, g->node[i]->op_type, name);
        goto fail;
      }
    }
  /* Depth first from each node in file order, a node emitted once its
   * producers are: linear time, an explicit stack however deep the graph,
   * and the file order wherever it is already valid. done[i]: 0 unseen,
   * 1 on the stack, 2 emitted. */
  stack = g_array_new(FALSE, FALSE, sizeof(Visit));
  for (size_t root = 0; root < g->n_node; root++) {
    Visit start = {root, 0};

    if (done[root] != 0)
      continue;
    done[root] = 1;
    g_array_append_val(stack, start);
    while (stack->len > 0) {
      Visit *top = &g_array_index(stack, Visit, stack->len - 1);
      const Onnx__NodeProto *nd = g->node[top->node];
      gsize p;

      if (top->next_input == nd->n_input) {
        done[top->node] = 2;
        order[n_done++] = top->node;
        g_array_set_size(stack, stack->len - 1);
        continue;
      }
      p = GPOINTER_TO_SIZE(
          g_hash_table_lookup(producer, nd->input[top->next_input++]));
      if (p == 0 || done[p - 1] == 2)
        continue;
      if (done[p - 1] == 1) {
        g_autofree char *l = node_label(g->node[p - 1], p - 1);

        g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                    "the graph has a cycle: %s (%s) depends on its own "
                    "output",
                    l, g->node[p - 1]->op_type);
        goto fail;
      }
      done[p - 1] = 1;
      g_array_append_val(stack, ((Visit){p - 1, 0}));
    }
  }
  g_array_free(stack, TRUE);
  g_free(done);
  return order;

fail:
  if (stack != NULL)
    g_array_free(stack, TRUE);
  g_free(done);
  g_free(order);
  return NULL;
}

/* Drops constants once their last reader is done, so that a large model's
 * weights exist only in the nodes. */
static void release_inputs(Importer *imp, const char *graph_output) {
  const Onnx__NodeProto *nd = imp->node;

  for (size_t j = 0; j < nd->n_input; j++) {
    const char *name = nd->input[j];
    int left = GPOINTER_TO_INT(g_hash_table_lookup(imp->consumers, name)) - 1;
    Value *v;

    if (name[0] == '\0')
      continue;
    g_hash_table_insert(imp->consumers, (gpointer)name, GINT_TO_POINTER(left));
    v = g_hash_table_lookup(imp->values, name);
    if (left <= 0 && v != NULL && v->is_const &&
        g_strcmp0(name, graph_output) != 0)
      g_hash_table_remove(imp->values, name);
  }
}

static gboolean import_graph(Importer *imp, const Onnx__GraphProto *g,
                             GError **error) {
  g_autofree size_t *order = NULL;
  const char *out_name;
  Value *out;

  for (size_t i = 0; i < g->n_initializer; i++) {
    const Onnx__TensorProto *t = g->initializer[i];
    Value *v;

    if (t->name == NULL || t->name[0] == '\0') {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "initializer %zu has no name", i);
      return FALSE;
    }
    if (g_hash_table_contains(imp->values, t->name)) {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                  "initializer '%s' is defined more than once", t->name);
      return FALSE;
    }
    v = g_new0(Value, 1);
    v->is_const = TRUE;
    v->proto = t;
    g_hash_table_insert(imp->values, g_strdup(t->name), v);
  }
  if (!add_network_input(imp, g, error))
    return FALSE;
  if (g->n_output != 1) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                "the model has %zu outputs; exactly one is supported",
                g->n_output);
    return FALSE;
  }
  out_name = str_or_empty(g->output[0]->name);
  if ((order = sort_nodes(imp, g, error)) == NULL)
    return FALSE;
  for (size_t i = 0; i < g->n_node; i++)
    for (size_t j = 0; j < g->node[i]->n_input; j++) {
      const char *name = g->node[i]->input[j];

      g_hash_table_insert(
          imp->consumers, (gpointer)name,
          GINT_TO_POINTER(
              GPOINTER_TO_INT(g_hash_table_lookup(imp->consumers, name)) + 1));
    }

  for (size_t k = 0; k < g->n_node; k++) {
    const Onnx__NodeProto *nd = g->node[order[k]];
    const OpEntry *entry = NULL;

    imp->node = nd;
    g_free(imp->label);
    imp->label = node_label(nd, order[k]);
    for (size_t e = 0; e < G_N_ELEMENTS(ops); e++)
      if (strcmp(nd->op_type, ops[e].op_type) == 0)
        entry = &ops[e];
    if (nd->domain != NULL && nd->domain[0] != '\0' &&
        strcmp(nd->domain, "ai.onnx") != 0) {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                  "unsupported operator '%s' of domain '%s' (%s)", nd->op_type,
                  nd->domain, imp->label);
      return FALSE;
    }
    if (entry == NULL) {
      g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_UNSUPPORTED,
                  "unsupported operator '%s' (%s)", nd->op_type, imp->label);
      return FALSE;
    }
    if (!entry->import(imp, error))
      return FALSE;
    release_inputs(imp, out_name);
  }

  out = g_hash_table_lookup(imp->values, out_name);
  if (out == NULL || out->is_const) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_INVALID,
                out == NULL ? "the graph output '%s' is never computed"
                            : "the graph output '%s' is a constant",
                out_name);
    return FALSE;
  }
  imp->graph->output = out->node;
  imp->graph->output_size = out->numel;
  return TRUE;
}

SbGraph *sb_onnx_parse(const guint8 *data, gsize length, GError **error) {
  Onnx__ModelProto *model;
  Importer imp = {0};
  gboolean ok;

  g_return_val_if_fail(data != NULL || length == 0, NULL);
  g_return_val_if_fail(error == NULL || *error == NULL, NULL);

  if (length == 0) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_MALFORMED,
                "not an ONNX model: the data is empty");
    return NULL;
  }
  model = onnx__model_proto__unpack(NULL, length, data);
  if (model == NULL) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_MALFORMED,
                "not an ONNX model: the protobuf data (%" G_GSIZE_FORMAT
                " bytes) is truncated or corrupt",
                length);
    return NULL;
  }
  if (model->graph == NULL) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_MALFORMED,
                "not an ONNX model: no graph in %" G_GSIZE_FORMAT " bytes "
                "(empty, truncated or another kind of file)",
                length);
    onnx__model_proto__free_unpacked(model, NULL);
    return NULL;
  }
  imp.graph = sb_graph_new();
  imp.values =
      g_hash_table_new_full(g_str_hash, g_str_equal, g_free, value_free);
  imp.consumers = g_hash_table_new(g_str_hash, g_str_equal);
  ok = import_graph(&imp, model->graph, error);
  g_hash_table_unref(imp.values);
  g_hash_table_unref(imp.consumers);
  g_free(imp.label);
  onnx__model_proto__free_unpacked(model, NULL);
  if (!ok) {
    sb_graph_free(imp.graph);
    return NULL;
  }
  return imp.graph;
}

/* Heap bytes touched per byte of the file, measured on mnist_fc's
 * networks: the unpacked protobuf's copy of the weights, which the graph
 * takes over, and the backend's copy, made next (network.c). */
#define SB_ONNX_PARSE_BYTES_PER_BYTE 2

SbGraph *sb_onnx_load(const char *path, GError **error) {
  g_autoptr(GMappedFile) file = NULL;
  GError *local = NULL;
  SbGraph *graph;

  /* GLib's message for mapping a directory is "mmap() failed: No such
   * device", which names neither the file's kind nor what to do. */
  if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_IO,
                "%s: is a directory, not an ONNX model file", path);
    return NULL;
  }
  file = g_mapped_file_new(path, FALSE, &local);
  if (file == NULL) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_IO, "%s", local->message);
    g_error_free(local);
    return NULL;
  }
  sb_mapping_prefault(g_mapped_file_get_contents(file),
                      g_mapped_file_get_length(file));
  sb_heap_prefault(SB_ONNX_PARSE_BYTES_PER_BYTE *
                   g_mapped_file_get_length(file));
  graph = sb_onnx_parse((const guint8 *)g_mapped_file_get_contents(file),
                        g_mapped_file_get_length(file), &local);
  if (graph == NULL) {
    g_propagate_prefixed_error(error, local, "%s: ", path);
    return NULL;
  }
  return graph;
}
