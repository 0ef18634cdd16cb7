/* SPDX-License-Identifier: MIT */
/* A small ONNX writer: a ModelProto built node by node and serialised with
 * protobuf-c, for the generated models and the importer's tests. */
#include "config.h"

#include <string.h>

#include "onnx_writer.h"
#include "hosts/engine/onnx.pb-c.h"

struct SbOnnxBuilder {
  GPtrArray *allocs;     /* every piece of the message tree, g_free'd */
  GPtrArray *nodes;      /* Onnx__NodeProto* */
  GPtrArray *node_attrs; /* per node: GPtrArray of Onnx__AttributeProto* */
  GPtrArray *inits;      /* Onnx__TensorProto* */
  GPtrArray *inputs;     /* Onnx__ValueInfoProto* */
  GPtrArray *outputs;
};

static gpointer keep(SbOnnxBuilder *b, gpointer p) {
  g_ptr_array_add(b->allocs, p);
  return p;
}

static char *keep_str(SbOnnxBuilder *b, const char *s) {
  return keep(b, g_strdup(s != NULL ? s : ""));
}

static gpointer keep_dup(SbOnnxBuilder *b, gconstpointer src, gsize size) {
  gpointer p = g_malloc(MAX(size, 1));

  if (size > 0)
    memcpy(p, src, size);
  return keep(b, p);
}

SbOnnxBuilder *sb_onnx_builder_new(void) {
  SbOnnxBuilder *b = g_new0(SbOnnxBuilder, 1);

  b->allocs = g_ptr_array_new_with_free_func(g_free);
  b->nodes = g_ptr_array_new();
  b->node_attrs =
      g_ptr_array_new_with_free_func((GDestroyNotify)g_ptr_array_unref);
  b->inits = g_ptr_array_new();
  b->inputs = g_ptr_array_new();
  b->outputs = g_ptr_array_new();
  return b;
}

void sb_onnx_builder_free(SbOnnxBuilder *b) {
  if (b == NULL)
    return;
  g_ptr_array_unref(b->nodes);
  g_ptr_array_unref(b->node_attrs);
  g_ptr_array_unref(b->inits);
  g_ptr_array_unref(b->inputs);
  g_ptr_array_unref(b->outputs);
  g_ptr_array_unref(b->allocs);
  g_free(b);
}

static Onnx__ValueInfoProto *value_info(SbOnnxBuilder *b, const char *name,
                                        int n_dims, const int64_t *dims) {
  Onnx__ValueInfoProto *vi = keep(b, g_new(Onnx__ValueInfoProto, 1));
  Onnx__TypeProto *tp = keep(b, g_new(Onnx__TypeProto, 1));
  Onnx__TypeProto__Tensor *tt = keep(b, g_new(Onnx__TypeProto__Tensor, 1));
  Onnx__TensorShapeProto *sp = keep(b, g_new(Onnx__TensorShapeProto, 1));

  onnx__value_info_proto__init(vi);
  onnx__type_proto__init(tp);
  onnx__type_proto__tensor__init(tt);
  onnx__tensor_shape_proto__init(sp);
  sp->n_dim = n_dims;
  sp->dim = keep(b, g_new0(Onnx__TensorShapeProto__Dimension *, n_dims + 1));
  for (int i = 0; i < n_dims; i++) {
    Onnx__TensorShapeProto__Dimension *d =
        keep(b, g_new(Onnx__TensorShapeProto__Dimension, 1));

    onnx__tensor_shape_proto__dimension__init(d);
    d->has_dim_value = TRUE;
    d->dim_value = dims[i];
    sp->dim[i] = d;
  }
  tt->has_elem_type = TRUE;
  tt->elem_type = SB_ONNX_FLOAT;
  tt->shape = sp;
  tp->tensor_type = tt;
  vi->name = keep_str(b, name);
  vi->type = tp;
  return vi;
}

void sb_onnx_builder_add_input(SbOnnxBuilder *b, const char *name, int n_dims,
                               const int64_t *dims) {
  g_ptr_array_add(b->inputs, value_info(b, name, n_dims, dims));
}

void sb_onnx_builder_add_output(SbOnnxBuilder *b, const char *name, int n_dims,
                                const int64_t *dims) {
  g_ptr_array_add(b->outputs, value_info(b, name, n_dims, dims));
}

static Onnx__TensorProto *new_tensor(SbOnnxBuilder *b, const char *name,
                                     int data_type, int n_dims,
                                     const int64_t *dims) {
  Onnx__TensorProto *t = keep(b, g_new(Onnx__TensorProto, 1));

  onnx__tensor_proto__init(t);
  t->name = keep_str(b, name);
  t->has_data_type = TRUE;
  t->data_type = data_type;
  t->n_dims = n_dims;
  t->dims = keep_dup(b, dims, sizeof(int64_t) * n_dims);
  g_ptr_array_add(b->inits, t);
  return t;
}

void sb_onnx_builder_add_tensor_raw(SbOnnxBuilder *b, const char *name,
                                    int data_type, int n_dims,
                                    const int64_t *dims, const void *raw,
                                    gsize raw_len) {
  Onnx__TensorProto *t = new_tensor(b, name, data_type, n_dims, dims);

  t->has_raw_data = TRUE;
  t->raw_data.len = raw_len;
  t->raw_data.data = keep_dup(b, raw, raw_len);
}

void sb_onnx_builder_add_initializer(SbOnnxBuilder *b, const char *name,
                                     int n_dims, const int64_t *dims,
                                     const float *data) {
  int64_t n = 1;
  guint32 *raw;

  for (int i = 0; i < n_dims; i++)
    n *= dims[i];
  /* raw_data is little-endian whatever the host. */
  raw = g_new(guint32, n + 1);
  for (int64_t i = 0; i < n; i++) {
    guint32 u;

    memcpy(&u, &data[i], 4);
    raw[i] = GUINT32_TO_LE(u);
  }
  sb_onnx_builder_add_tensor_raw(b, name, SB_ONNX_FLOAT, n_dims, dims, raw,
                                 (gsize)n * 4);
  g_free(raw);
}

void sb_onnx_builder_add_int64_initializer(SbOnnxBuilder *b, const char *name,
                                           int n_dims, const int64_t *dims,
                                           const int64_t *data) {
  Onnx__TensorProto *t = new_tensor(b, name, SB_ONNX_INT64, n_dims, dims);
  int64_t n = 1;

  for (int i = 0; i < n_dims; i++)
    n *= dims[i];
  t->n_int64_data = n;
  t->int64_data = keep_dup(b, data, sizeof(int64_t) * n);
}

int sb_onnx_builder_add_node(SbOnnxBuilder *b, const char *op_type,
                             const char *name, const char *const *inputs,
                             const char *const *outputs) {
  Onnx__NodeProto *n = keep(b, g_new(Onnx__NodeProto, 1));
  size_t n_in = inputs != NULL ? g_strv_length((char **)inputs) : 0;
  size_t n_out = outputs != NULL ? g_strv_length((char **)outputs) : 0;

  onnx__node_proto__init(n);
  n->op_type = keep_str(b, op_type);
  n->name = keep_str(b, name);
  n->n_input = n_in;
  n->input = keep(b, g_new0(char *, n_in + 1));
  for (size_t i = 0; i < n_in; i++)
    n->input[i] = keep_str(b, inputs[i]);
  n->n_output = n_out;
  n->output = keep(b, g_new0(char *, n_out + 1));
  for (size_t i = 0; i < n_out; i++)
    n->output[i] = keep_str(b, outputs[i]);
  g_ptr_array_add(b->nodes, n);
  g_ptr_array_add(b->node_attrs, g_ptr_array_new());
  return (int)b->nodes->len - 1;
}

static Onnx__AttributeProto *new_attr(SbOnnxBuilder *b, int node,
                                      const char *name, int type) {
  Onnx__AttributeProto *a = keep(b, g_new(Onnx__AttributeProto, 1));

  g_return_val_if_fail(node >= 0 && node < (int)b->nodes->len, a);
  onnx__attribute_proto__init(a);
  a->name = keep_str(b, name);
  a->has_type = TRUE;
  a->type = type;
  g_ptr_array_add(g_ptr_array_index(b->node_attrs, node), a);
  return a;
}

void sb_onnx_builder_set_int(SbOnnxBuilder *b, int node, const char *attr,
                             int64_t value) {
  Onnx__AttributeProto *a =
      new_attr(b, node, attr, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);

  a->has_i = TRUE;
  a->i = value;
}

void sb_onnx_builder_set_float(SbOnnxBuilder *b, int node, const char *attr,
                               float value) {
  Onnx__AttributeProto *a =
      new_attr(b, node, attr, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);

  a->has_f = TRUE;
  a->f = value;
}

void sb_onnx_builder_set_ints(SbOnnxBuilder *b, int node, const char *attr,
                              int n, const int64_t *values) {
  Onnx__AttributeProto *a =
      new_attr(b, node, attr, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);

  a->n_ints = n;
  a->ints = keep_dup(b, values, sizeof(int64_t) * n);
}

GBytes *sb_onnx_builder_serialize(SbOnnxBuilder *b) {
  Onnx__ModelProto model;
  Onnx__GraphProto graph;
  Onnx__OperatorSetIdProto opset;
  Onnx__OperatorSetIdProto *opsets[1] = {&opset};
  size_t len;
  guint8 *buf;

  for (guint i = 0; i < b->nodes->len; i++) {
    Onnx__NodeProto *n = g_ptr_array_index(b->nodes, i);
    GPtrArray *attrs = g_ptr_array_index(b->node_attrs, i);

    n->n_attribute = attrs->len;
    n->attribute = (Onnx__AttributeProto **)attrs->pdata;
  }
  onnx__graph_proto__init(&graph);
  graph.name = (char *)"shardbound";
  graph.n_node = b->nodes->len;
  graph.node = (Onnx__NodeProto **)b->nodes->pdata;
  graph.n_initializer = b->inits->len;
  graph.initializer = (Onnx__TensorProto **)b->inits->pdata;
  graph.n_input = b->inputs->len;
  graph.input = (Onnx__ValueInfoProto **)b->inputs->pdata;
  graph.n_output = b->outputs->len;
  graph.output = (Onnx__ValueInfoProto **)b->outputs->pdata;
  onnx__operator_set_id_proto__init(&opset);
  opset.domain = (char *)"";
  opset.has_version = TRUE;
  opset.version = 13;
  onnx__model_proto__init(&model);
  model.has_ir_version = TRUE;
  model.ir_version = 7;
  model.producer_name = (char *)"shardbound";
  model.producer_version = (char *)PACKAGE_VERSION;
  model.graph = &graph;
  model.n_opset_import = 1;
  model.opset_import = opsets;

  len = onnx__model_proto__get_packed_size(&model);
  buf = g_malloc(MAX(len, 1));
  onnx__model_proto__pack(&model, buf);
  return g_bytes_new_take(buf, len);
}
