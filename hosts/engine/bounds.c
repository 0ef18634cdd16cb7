/* SPDX-License-Identifier: MIT */
/* IBP and CROWN over the graph IR, sequenced by the host, computed by the
 * backend through the ABI only (DESIGN.md section 4). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "bounds.h"

struct _SbNetwork {
  SbSession *session;
  const SbGraph *graph;
  sb_layer **layers;            /* per node; NULL for the input */
  gboolean *has_relu_ancestor;  /* a ReLU lies between the input and it */
  gboolean *feeds_relu;         /* it is the input of some ReLU */
  gboolean intersect_ibp;       /* keep min/max of CROWN and IBP bounds */
};

void
sb_network_set_intersect_ibp (SbNetwork *net, gboolean intersect)
{
  net->intersect_ibp = intersect;
}

gboolean
sb_method_from_string (const char *text, SbMethod *out)
{
  if (g_ascii_strcasecmp (text, "ibp") == 0)
    *out = SB_METHOD_IBP;
  else if (g_ascii_strcasecmp (text, "crown") == 0)
    *out = SB_METHOD_CROWN;
  else
    return FALSE;
  return TRUE;
}

const char *
sb_method_to_string (SbMethod method)
{
  return method == SB_METHOD_IBP ? "ibp" : "crown";
}

void
sb_bounds_result_clear (SbBoundsResult *result)
{
  g_clear_pointer (&result->output_lower, g_free);
  g_clear_pointer (&result->output_upper, g_free);
  g_clear_pointer (&result->spec_lower, g_free);
  g_clear_pointer (&result->spec_upper, g_free);
  result->n_outputs = result->n_specs = result->n_unstable = 0;
}

double *
sb_property_spec_rows (const SbProperty *property)
{
  double *rows = g_new (double, (gsize) property->n_atoms * property->n_outputs);
  for (int k = 0; k < property->n_atoms; k++)
    memcpy (rows + (gsize) k * property->n_outputs, property->atoms[k].c,
            sizeof (double) * property->n_outputs);
  return rows;
}

/* ---- small wrappers that turn statuses into GErrors -------------------- */

#define BE(net) ((net)->session->be)
#define CTX(net) ((net)->session->ctx)

static sb_tensor *
tensor_new (SbNetwork *net, sb_mem_category category, int64_t d0, int64_t d1,
            int64_t d2, GError **error)
{
  int64_t shape[3] = { d0, d1, d2 };
  sb_tensor *t = NULL;
  int ndim = d2 > 0 ? 3 : 2;
  int status = BE (net)->tensor_create (CTX (net), category, ndim, shape, &t);
  if (!sb_session_check (net->session, status, "tensor_create", error))
    return NULL;
  return t;
}

static void
tensor_free (SbNetwork *net, sb_tensor *t)
{
  if (t != NULL)
    BE (net)->tensor_free (CTX (net), t);
}

static gboolean
tensor_write (SbNetwork *net, sb_tensor *t, int64_t count, const double *src,
              GError **error)
{
  int status = BE (net)->tensor_write (CTX (net), t, 0, count, SB_DTYPE_F64, src);
  return sb_session_check (net->session, status, "tensor_write", error);
}

static gboolean
tensor_read (SbNetwork *net, const sb_tensor *t, int64_t count, double *dst,
             GError **error)
{
  int status = BE (net)->tensor_read (CTX (net), t, 0, count, SB_DTYPE_F64, dst);
  return sb_session_check (net->session, status, "tensor_read", error);
}

/* A new tensor holding the same values (host round trip; used only when a
 * lower/upper pair that shared one tensor must diverge). */
static sb_tensor *
tensor_clone (SbNetwork *net, const sb_tensor *src, sb_mem_category category,
              int64_t d0, int64_t d1, int64_t d2, GError **error)
{
  int64_t count = d0 * d1 * (d2 > 0 ? d2 : 1);
  g_autofree double *buf = g_new (double, count);
  sb_tensor *t;
  if (!tensor_read (net, src, count, buf, error))
    return NULL;
  t = tensor_new (net, category, d0, d1, d2, error);
  if (t != NULL && !tensor_write (net, t, count, buf, error))
    {
      tensor_free (net, t);
      return NULL;
    }
  return t;
}

/* ---- network ------------------------------------------------------------ */

SbNetwork *
sb_network_new (SbSession *session, const SbGraph *graph, GError **error)
{
  int n = sb_graph_n_nodes (graph);
  g_autoptr (SbNetwork) net = g_new0 (SbNetwork, 1);
  net->session = session;
  net->graph = graph;
  net->layers = g_new0 (sb_layer *, n);
  net->has_relu_ancestor = g_new0 (gboolean, n);
  net->feeds_relu = g_new0 (gboolean, n);

  for (int i = 0; i < n; i++)
    {
      const SbNode *node = sb_graph_node (graph, i);
      if (node->kind == SB_NODE_INPUT)
        {
          if (i != 0)
            {
              g_set_error (error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_BACKEND,
                           "graph has a second input node '%s'", node->name);
              return NULL;
            }
          continue;
        }
      for (int k = 0; k < node->n_inputs; k++)
        {
          int in = node->inputs[k];
          const SbNode *src = sb_graph_node (graph, in);
          if (src->kind == SB_NODE_RELU || net->has_relu_ancestor[in])
            net->has_relu_ancestor[i] = TRUE;
          if (node->kind == SB_NODE_RELU)
            net->feeds_relu[in] = TRUE;
        }
      sb_layer_desc_v1 desc = node->desc;
      desc.struct_size = sizeof desc;
      desc.kind = (int32_t) node->kind;
      int status = session->be->layer_create (session->ctx, &desc, &net->layers[i]);
      if (status != SB_OK)
        {
          g_autofree char *what = g_strdup_printf ("layer_create (node '%s')", node->name);
          sb_session_check (session, status, what, error);
          return NULL;
        }
    }
  return g_steal_pointer (&net);
}

void
sb_network_free (SbNetwork *net)
{
  if (net == NULL)
    return;
  if (net->layers != NULL)
    for (int i = 0; i < sb_graph_n_nodes (net->graph); i++)
      if (net->layers[i] != NULL)
        BE (net)->layer_free (CTX (net), net->layers[i]);
  g_free (net->layers);
  g_free (net->has_relu_ancestor);
  g_free (net->feeds_relu);
  g_free (net);
}

/* ---- CROWN backward sweep ----------------------------------------------- */

/* Per-pass state. Until a ReLU makes them differ, the coefficients of the
 * lower and the upper bound are the same tensor (lA[j] == uA[j]) and one
 * backward call serves both; likewise the bias. */
typedef struct {
  SbNetwork *net;
  int64_t n_specs;
  sb_tensor **lA, **uA;
  sb_tensor *lbias, *ubias;
} Sweep;

static void
sweep_clear (Sweep *s, int n_nodes)
{
  for (int j = 0; j < n_nodes; j++)
    {
      if (s->uA[j] != s->lA[j])
        tensor_free (s->net, s->uA[j]);
      tensor_free (s->net, s->lA[j]);
    }
  if (s->ubias != s->lbias)
    tensor_free (s->net, s->ubias);
  tensor_free (s->net, s->lbias);
  g_free (s->lA);
  g_free (s->uA);
}

static int64_t
node_size (const SbNetwork *net, int i)
{
  return sb_graph_node (net->graph, i)->size;
}

/* Gives node k its own upper-bound tensor when it shared one with lower. */
static gboolean
sweep_unshare (Sweep *s, int k, GError **error)
{
  if (s->lA[k] == NULL || s->uA[k] != s->lA[k])
    return TRUE;
  s->uA[k] = tensor_clone (s->net, s->lA[k], SB_MEM_COEFFICIENTS, s->n_specs,
                           1, node_size (s->net, k), error);
  return s->uA[k] != NULL;
}

static gboolean
sweep_node (Sweep *s, int j, sb_tensor **lo, sb_tensor **hi, GError **error)
{
  SbNetwork *net = s->net;
  const SbNode *node = sb_graph_node (net->graph, j);
  gboolean shared = s->uA[j] == s->lA[j] && node->kind != SB_NODE_RELU
                    && s->ubias == s->lbias;
  for (int k = 0; k < node->n_inputs && shared; k++)
    if (s->lA[node->inputs[k]] != s->uA[node->inputs[k]])
      shared = FALSE;

  if (!shared && s->ubias == s->lbias)
    {
      s->ubias = tensor_clone (net, s->lbias, SB_MEM_COEFFICIENTS, s->n_specs, 1, 0, error);
      if (s->ubias == NULL)
        return FALSE;
    }

  sb_backward_args_v1 args;
  memset (&args, 0, sizeof args);
  args.struct_size = sizeof args;
  if (node->kind == SB_NODE_RELU)
    {
      args.pre_lower = lo[node->inputs[0]];
      args.pre_upper = hi[node->inputs[0]];
    }

  for (int side = SB_SIDE_LOWER; side <= SB_SIDE_UPPER; side++)
    {
      sb_tensor **A = side == SB_SIDE_LOWER ? s->lA : s->uA;
      args.side = side;
      args.A_out = A[j];
      args.bias = side == SB_SIDE_LOWER ? s->lbias : s->ubias;
      for (int k = 0; k < node->n_inputs; k++)
        {
          int in = node->inputs[k];
          if (!shared && !sweep_unshare (s, in, error))
            return FALSE;
          args.accumulate[k] = A[in] != NULL;
          if (A[in] == NULL)
            {
              A[in] = tensor_new (net, SB_MEM_COEFFICIENTS, s->n_specs, 1,
                                  node_size (net, in), error);
              if (A[in] == NULL)
                return FALSE;
              if (shared)
                s->lA[in] = s->uA[in] = A[in];
            }
          args.A_in[k] = A[in];
        }
      int status = BE (net)->layer_backward (CTX (net), net->layers[j], &args);
      if (status != SB_OK)
        {
          g_autofree char *what = g_strdup_printf ("layer_backward (node '%s')", node->name);
          return sb_session_check (net->session, status, what, error);
        }
      if (shared)
        break;
    }

  if (s->uA[j] != s->lA[j])
    tensor_free (net, s->uA[j]);
  tensor_free (net, s->lA[j]);
  s->lA[j] = s->uA[j] = NULL;
  return TRUE;
}

/* Bounds of A_start . (output of node `start`) over the input box, where
 * A_start is [n_specs, 1, size(start)]; takes ownership of A_start. */
static gboolean
crown_from (SbNetwork *net, int start, sb_tensor *A_start, int64_t n_specs,
            sb_tensor **lo, sb_tensor **hi, double *out_lower,
            double *out_upper, GError **error)
{
  int n = sb_graph_n_nodes (net->graph);
  Sweep s = { net, n_specs, g_new0 (sb_tensor *, n), g_new0 (sb_tensor *, n), NULL, NULL };
  sb_tensor *result = NULL;
  gboolean ok = FALSE;

  s.lA[start] = s.uA[start] = A_start;
  s.lbias = s.ubias = tensor_new (net, SB_MEM_COEFFICIENTS, n_specs, 1, 0, error);
  if (s.lbias == NULL)
    goto out;
  for (int j = start; j > 0; j--)
    if (s.lA[j] != NULL && !sweep_node (&s, j, lo, hi, error))
      goto out;
  if (s.lA[0] == NULL) /* the output does not depend on the input */
    {
      s.lA[0] = s.uA[0] = tensor_new (net, SB_MEM_COEFFICIENTS, n_specs, 1,
                                      node_size (net, 0), error);
      if (s.lA[0] == NULL)
        goto out;
    }
  result = tensor_new (net, SB_MEM_BOUNDS, n_specs, 1, 0, error);
  if (result == NULL)
    goto out;
  for (int side = SB_SIDE_LOWER; side <= SB_SIDE_UPPER; side++)
    {
      int status = BE (net)->concretize (
          CTX (net), side == SB_SIDE_LOWER ? s.lA[0] : s.uA[0],
          side == SB_SIDE_LOWER ? s.lbias : s.ubias, lo[0], hi[0], side, result);
      if (!sb_session_check (net->session, status, "concretize", error)
          || !tensor_read (net, result, n_specs,
                           side == SB_SIDE_LOWER ? out_lower : out_upper, error))
        goto out;
    }
  ok = TRUE;
out:
  tensor_free (net, result);
  sweep_clear (&s, n);
  return ok;
}

/* CROWN bounds for the IBP-unstable neurons of node i, written in place of
 * their IBP bounds (or intersected with them when asked). */
static gboolean
tighten_intermediate (SbNetwork *net, int i, sb_tensor **lo, sb_tensor **hi,
                      int *n_unstable, GError **error)
{
  int64_t size = node_size (net, i);
  g_autofree double *l = g_new (double, size);
  g_autofree double *u = g_new (double, size);
  g_autofree int64_t *index = g_new (int64_t, size);
  int64_t n_idx = 0;

  if (!tensor_read (net, lo[i], size, l, error) || !tensor_read (net, hi[i], size, u, error))
    return FALSE;
  for (int64_t k = 0; k < size; k++)
    if (l[k] < 0 && u[k] > 0)
      index[n_idx++] = k;
  if (n_idx == 0)
    return TRUE;

  sb_tensor *A = tensor_new (net, SB_MEM_COEFFICIENTS, n_idx, 1, size, error);
  if (A == NULL)
    return FALSE;
  int status = BE (net)->tensor_set_unit_rows (CTX (net), A, index);
  if (!sb_session_check (net->session, status, "tensor_set_unit_rows", error))
    {
      tensor_free (net, A);
      return FALSE;
    }
  g_autofree double *cl = g_new (double, n_idx);
  g_autofree double *cu = g_new (double, n_idx);
  if (!crown_from (net, i, A, n_idx, lo, hi, cl, cu, error))
    return FALSE;
  for (int64_t k = 0; k < n_idx; k++)
    {
      int64_t j = index[k];
      l[j] = net->intersect_ibp ? MAX (l[j], cl[k]) : cl[k];
      u[j] = net->intersect_ibp ? MIN (u[j], cu[k]) : cu[k];
      if (l[j] < 0 && u[j] > 0)
        (*n_unstable)++;
    }
  return tensor_write (net, lo[i], size, l, error) && tensor_write (net, hi[i], size, u, error);
}

/* IBP of the spec: folded into the last layer when it is linear (as
 * auto_LiRPA does), else interval arithmetic on the output bounds. */
static gboolean
ibp_spec (SbNetwork *net, sb_tensor **lo, sb_tensor **hi, const SbSpec *spec,
          const double *out_l, const double *out_u, SbBoundsResult *r,
          GError **error)
{
  const SbGraph *g = net->graph;
  const SbNode *last = sb_graph_node (g, g->output);
  int64_t n_out = g->output_size;

  if (last->kind != SB_NODE_LINEAR)
    {
      for (int s = 0; s < spec->n_specs; s++)
        {
          const double *c = spec->rows + (gsize) s * n_out;
          double sl = 0, su = 0;
          for (int64_t j = 0; j < n_out; j++)
            {
              sl += c[j] * (c[j] >= 0 ? out_l[j] : out_u[j]);
              su += c[j] * (c[j] >= 0 ? out_u[j] : out_l[j]);
            }
          r->spec_lower[s] = sl;
          r->spec_upper[s] = su;
        }
      return TRUE;
    }

  int64_t in = last->desc.in_size;
  g_autofree float *w = g_new0 (float, (gsize) spec->n_specs * in);
  g_autofree float *b = g_new0 (float, spec->n_specs);
  for (int s = 0; s < spec->n_specs; s++)
    {
      const double *c = spec->rows + (gsize) s * n_out;
      for (int64_t j = 0; j < n_out; j++)
        {
          if (c[j] == 0)
            continue;
          const float *wrow = last->weight + j * in;
          for (int64_t k = 0; k < in; k++)
            w[s * in + k] += (float) (c[j] * wrow[k]);
          if (last->bias != NULL)
            b[s] += (float) (c[j] * last->bias[j]);
        }
    }
  sb_layer_desc_v1 desc = last->desc;
  desc.struct_size = sizeof desc;
  desc.kind = SB_LAYER_LINEAR;
  desc.out_size = spec->n_specs;
  desc.weight = w;
  desc.bias = b;
  sb_layer *layer = NULL;
  sb_tensor *sl = NULL, *su = NULL;
  gboolean ok = FALSE;
  int status = BE (net)->layer_create (CTX (net), &desc, &layer);
  if (!sb_session_check (net->session, status, "layer_create (spec)", error))
    return FALSE;
  sl = tensor_new (net, SB_MEM_BOUNDS, 1, spec->n_specs, 0, error);
  su = sl ? tensor_new (net, SB_MEM_BOUNDS, 1, spec->n_specs, 0, error) : NULL;
  if (su != NULL)
    {
      const sb_tensor *il[1] = { lo[last->inputs[0]] };
      const sb_tensor *iu[1] = { hi[last->inputs[0]] };
      status = BE (net)->layer_ibp (CTX (net), layer, il, iu, sl, su);
      ok = sb_session_check (net->session, status, "layer_ibp (spec)", error)
           && tensor_read (net, sl, spec->n_specs, r->spec_lower, error)
           && tensor_read (net, su, spec->n_specs, r->spec_upper, error);
    }
  tensor_free (net, sl);
  tensor_free (net, su);
  BE (net)->layer_free (CTX (net), layer);
  return ok;
}

gboolean
sb_network_compute_bounds (SbNetwork *net, SbMethod method,
                           const double *x_lower, const double *x_upper,
                           const SbSpec *spec, SbBoundsResult *r,
                           GError **error)
{
  const SbGraph *g = net->graph;
  int n = sb_graph_n_nodes (g);
  g_autofree sb_tensor **lo = g_new0 (sb_tensor *, n);
  g_autofree sb_tensor **hi = g_new0 (sb_tensor *, n);
  gboolean ok = FALSE;
  int n_specs = spec != NULL ? spec->n_specs : 0;

  memset (r, 0, sizeof *r);
  r->n_outputs = (int) g->output_size;
  r->output_lower = g_new0 (double, g->output_size);
  r->output_upper = g_new0 (double, g->output_size);
  r->n_specs = n_specs;
  r->spec_lower = g_new0 (double, MAX (n_specs, 1));
  r->spec_upper = g_new0 (double, MAX (n_specs, 1));

  for (int64_t k = 0; k < g->input_size; k++)
    if (!(x_lower[k] <= x_upper[k]))
      {
        g_set_error (error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_BACKEND,
                     "input box is empty or not a number at X_%" G_GINT64_FORMAT, k);
        goto out;
      }

  for (int i = 0; i < n; i++)
    {
      const SbNode *node = sb_graph_node (g, i);
      lo[i] = tensor_new (net, SB_MEM_BOUNDS, 1, node->size, 0, error);
      hi[i] = lo[i] ? tensor_new (net, SB_MEM_BOUNDS, 1, node->size, 0, error) : NULL;
      if (hi[i] == NULL)
        goto out;
      if (i == 0)
        {
          if (!tensor_write (net, lo[0], node->size, x_lower, error)
              || !tensor_write (net, hi[0], node->size, x_upper, error))
            goto out;
          continue;
        }
      const sb_tensor *il[SB_MAX_LAYER_INPUTS], *iu[SB_MAX_LAYER_INPUTS];
      for (int k = 0; k < node->n_inputs; k++)
        {
          il[k] = lo[node->inputs[k]];
          iu[k] = hi[node->inputs[k]];
        }
      int status = BE (net)->layer_ibp (CTX (net), net->layers[i], il, iu, lo[i], hi[i]);
      if (status != SB_OK)
        {
          g_autofree char *what = g_strdup_printf ("layer_ibp (node '%s')", node->name);
          sb_session_check (net->session, status, what, error);
          goto out;
        }
      if (method == SB_METHOD_CROWN && net->feeds_relu[i] && net->has_relu_ancestor[i]
          && !tighten_intermediate (net, i, lo, hi, &r->n_unstable, error))
        goto out;
    }

  if (method == SB_METHOD_IBP)
    {
      ok = tensor_read (net, lo[g->output], g->output_size, r->output_lower, error)
           && tensor_read (net, hi[g->output], g->output_size, r->output_upper, error)
           && (n_specs == 0
               || ibp_spec (net, lo, hi, spec, r->output_lower, r->output_upper, r, error));
      goto out;
    }

  /* CROWN: the outputs with an identity specification, then the spec. */
  {
    int64_t n_out = g->output_size;
    g_autofree int64_t *all = g_new (int64_t, n_out);
    for (int64_t k = 0; k < n_out; k++)
      all[k] = k;
    sb_tensor *A = tensor_new (net, SB_MEM_COEFFICIENTS, n_out, 1, n_out, error);
    if (A == NULL)
      goto out;
    int status = BE (net)->tensor_set_unit_rows (CTX (net), A, all);
    if (!sb_session_check (net->session, status, "tensor_set_unit_rows", error))
      {
        tensor_free (net, A);
        goto out;
      }
    if (!crown_from (net, g->output, A, n_out, lo, hi, r->output_lower, r->output_upper, error))
      goto out;
    if (n_specs > 0)
      {
        A = tensor_new (net, SB_MEM_COEFFICIENTS, n_specs, 1, n_out, error);
        if (A == NULL)
          goto out;
        if (!tensor_write (net, A, (int64_t) n_specs * n_out, spec->rows, error))
          {
            tensor_free (net, A);
            goto out;
          }
        if (!crown_from (net, g->output, A, n_specs, lo, hi, r->spec_lower, r->spec_upper, error))
          goto out;
      }
    ok = TRUE;
  }

out:
  for (int i = 0; i < n; i++)
    {
      tensor_free (net, lo[i]);
      tensor_free (net, hi[i]);
    }
  if (!ok)
    sb_bounds_result_clear (r);
  return ok;
}
