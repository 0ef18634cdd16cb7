/* SPDX-License-Identifier: MIT */
/* IBP, CROWN and alpha-CROWN bounds of a network's outputs and of a linear
 * specification, sequenced by the host and computed by the backend through
 * the ABI only (DESIGN.md section 4). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "alpha.h"
#include "lockstep.h"
#include "bounds_private.h"

gboolean sb_method_from_string(const char *text, SbMethod *out) {
  if (g_ascii_strcasecmp(text, "ibp") == 0)
    *out = SB_METHOD_IBP;
  else if (g_ascii_strcasecmp(text, "crown") == 0)
    *out = SB_METHOD_CROWN;
  else if (g_ascii_strcasecmp(text, "alpha-crown") == 0 ||
           g_ascii_strcasecmp(text, "alpha") == 0)
    *out = SB_METHOD_ALPHA_CROWN;
  else
    return FALSE;
  return TRUE;
}

const char *sb_method_to_string(SbMethod method) {
  switch (method) {
  case SB_METHOD_IBP:
    return "ibp";
  case SB_METHOD_CROWN:
    return "crown";
  default:
    return "alpha-crown";
  }
}

void sb_bounds_result_clear(SbBoundsResult *result) {
  g_clear_pointer(&result->output_lower, g_free);
  g_clear_pointer(&result->output_upper, g_free);
  g_clear_pointer(&result->spec_lower, g_free);
  g_clear_pointer(&result->spec_upper, g_free);
  result->n_outputs = result->n_specs = result->n_unstable = 0;
}

double *sb_property_spec_rows(const SbProperty *property) {
  double *rows = g_new(double, (gsize)property->n_atoms * property->n_outputs);
  for (int k = 0; k < property->n_atoms; k++)
    memcpy(rows + (gsize)k * property->n_outputs, property->atoms[k].c,
           sizeof(double) * property->n_outputs);
  return rows;
}

/* ---- per-node bounds ----------------------------------------------------- */

void sb_node_bounds_clear(SbNetwork *net, SbNodeBounds *nb) {
  for (int i = 0; i < nb->n_nodes; i++) {
    if (nb->lo)
      sb_net_tensor_free(net, nb->lo[i]);
    if (nb->hi)
      sb_net_tensor_free(net, nb->hi[i]);
  }
  g_clear_pointer(&nb->lo, g_free);
  g_clear_pointer(&nb->hi, g_free);
  nb->n_nodes = 0;
}

gboolean sb_node_bounds_init(SbNetwork *net, SbNodeBounds *nb, int64_t B,
                             const double *x_lower, const double *x_upper,
                             GError **error) {
  const SbGraph *g = net->graph;
  int n = sb_graph_n_nodes(g);
  nb->n_nodes = n;
  nb->B = B;
  nb->lo = g_new0(sb_tensor *, n);
  nb->hi = g_new0(sb_tensor *, n);
  for (int64_t k = 0; k < g->input_size; k++)
    if (!(x_lower[k] <= x_upper[k])) {
      g_set_error(error, SB_ENGINE_ERROR, SB_ENGINE_ERROR_INVALID_INPUT,
                  "input box is empty or not a number at X_%" G_GINT64_FORMAT,
                  k);
      return FALSE;
    }
  for (int i = 0; i < n; i++) {
    int64_t size = sb_net_node_size(net, i);
    if ((nb->lo[i] = sb_net_tensor_new(net, SB_MEM_BOUNDS, B, size, 0,
                                       error)) == NULL ||
        (nb->hi[i] =
             sb_net_tensor_new(net, SB_MEM_BOUNDS, B, size, 0, error)) == NULL)
      return FALSE;
  }
  /* The input box, repeated for every batch element. */
  int64_t in = g->input_size;
  g_autofree double *l = g_new(double, B *in);
  g_autofree double *u = g_new(double, B *in);
  for (int64_t b = 0; b < B; b++) {
    memcpy(l + b * in, x_lower, sizeof(double) * in);
    memcpy(u + b * in, x_upper, sizeof(double) * in);
  }
  return sb_net_tensor_write(net, nb->lo[0], B * in, l, error) &&
         sb_net_tensor_write(net, nb->hi[0], B * in, u, error);
}

gboolean sb_node_ibp(SbNetwork *net, SbNodeBounds *nb, int i, GError **error) {
  const SbNode *node = sb_graph_node(net->graph, i);
  const sb_tensor *il[SB_MAX_LAYER_INPUTS], *iu[SB_MAX_LAYER_INPUTS];
  for (int k = 0; k < node->n_inputs; k++) {
    il[k] = nb->lo[node->inputs[k]];
    iu[k] = nb->hi[node->inputs[k]];
  }
  net->product_flops += 2 * sb_net_node_flops(net, i, nb->B);
  int status = SB_NET_BE(net)->layer_ibp(SB_NET_CTX(net), net->layers[i], il,
                                         iu, nb->lo[i], nb->hi[i]);
  return sb_net_check(net, status, "layer_ibp", i, error);
}

gboolean sb_node_needs_crown(const SbNetwork *net, int i) {
  return net->feeds_relu[i] && net->has_relu_ancestor[i];
}

/* A [S,B,N] whose row s is the unit vector e_{index[s]} for every b. */
static sb_tensor *unit_rows(SbNetwork *net, const int64_t *index, int64_t S,
                            int64_t B, int64_t N, GError **error) {
  sb_tensor *A = sb_net_tensor_new(net, SB_MEM_COEFFICIENTS, S, B, N, error);
  if (A == NULL)
    return NULL;
  int status = SB_NET_BE(net)->tensor_set_unit_rows(SB_NET_CTX(net), A, index);
  if (!sb_net_check(net, status, "tensor_set_unit_rows", -1, error)) {
    sb_net_tensor_free(net, A);
    return NULL;
  }
  return A;
}

/* With more than one batch element (branch-and-bound's domains), plain
 * CROWN bounds at most this many unstable neurons per pass: the pass's
 * coefficients [rows, B, N] stay bounded however many neurons are unstable
 * in some domain, and a multi-rank backend, whose spec-row blocks are
 * larger (128 rows), splits such a pass by batch elements, evenly across
 * its ranks, rather than by a few uneven row blocks. */
#define SB_TIGHTEN_BATCHED_ROWS 64

/* On a single CPU device, plain CROWN over one batch element (`bounds`,
 * the root) also runs on at most this many unstable neurons at a time: a
 * pass's coefficients then stay in the caches, and a fresh process
 * touches less memory for the first time, which on the virtual machines
 * this is measured on costs more than the products (heap_prefault.c).
 * resnet_2b's whole `bounds` took 0.23 s with one pass over every neuron
 * and 0.13 s at 128 rows. Fewer rows slow an MLP's GEMMs down more than
 * they save (784-256x6-10: 45 ms whole at 128 rows, 50 ms at 32;
 * 784-4096x4-10: 6.2 s, 9.0 s), but a network with convolutions, whose
 * CPU kernels compute each row on its own at the same speed, runs on as
 * many rows as fit SB_TIGHTEN_CPU_CONV_BYTES of coefficients, in multiples
 * of SB_TIGHTEN_CPU_MIN_ROWS: resnet_2b (about 110 KB a row) at 32 rows
 * took 0.10 s, with bitwise the same bounds (its two dense layers are
 * small; a GEMM may round differently at other row counts, which the
 * chunked-bounds test allows for). GPUs and multi-rank backends want big
 * passes and keep them. */
#define SB_TIGHTEN_CPU_ROWS       128
#define SB_TIGHTEN_CPU_MIN_ROWS   32
#define SB_TIGHTEN_CPU_CONV_BYTES (4.0 * 1024 * 1024)

/* Rows of one pass from start node i within `budget` bytes: a row holds
 * a float per batch element and neuron of every node up to i, in as many
 * copies as the pass keeps (on the safe side: both sides of the
 * coefficients; with alpha-CROWN also the recorded pass, its gradient
 * sweep, and the slopes with their gradients and Adam state). */
static int64_t rows_within(SbNetwork *net, int i, int64_t B, gboolean alpha,
                           double budget) {
  double floats = 0;
  for (int j = 0; j <= i; j++)
    floats += (double)sb_net_node_size(net, j);
  double row_bytes = floats * (double)B * sizeof(float) * (alpha ? 8 : 2);
  return MAX(1, (int64_t)(budget / row_bytes));
}

static gboolean has_conv(SbNetwork *net) {
  for (int j = 0; j < sb_graph_n_nodes(net->graph); j++)
    if (sb_graph_node(net->graph, j)->kind == SB_NODE_CONV2D)
      return TRUE;
  return FALSE;
}

gboolean sb_node_tighten(SbNetwork *net, SbNodeBounds *nb, int i,
                         const SbAlphaParams *alpha, gboolean intersect_ibp,
                         const SbPassConfig *extra, int *n_unstable,
                         GError **error) {
  int64_t size = sb_net_node_size(net, i), B = nb->B, n_idx = 0;
  /* Floats, as the tensors hold them: the bounds come back as they went
   * (the new ones are floats read as doubles), without a conversion each
   * way, which was 3% of a resnet_2b CROWN pass. */
  g_autofree float *l = g_new(float, B *size);
  g_autofree float *u = g_new(float, B *size);
  g_autofree int64_t *index = g_new(int64_t, size);

  if (!sb_net_tensor_read_floats(net, nb->lo[i], B * size, l, error) ||
      !sb_net_tensor_read_floats(net, nb->hi[i], B * size, u, error))
    return FALSE;
  /* Neurons unstable in any batch element (auto_LiRPA's union). */
  for (int64_t k = 0; k < size; k++)
    for (int64_t b = 0; b < B; b++)
      if (l[b * size + k] < 0 && u[b * size + k] > 0) {
        index[n_idx++] = k;
        break;
      }
  if (n_idx == 0)
    return TRUE;

  g_autofree double *cl = g_new(double, n_idx *B);
  g_autofree double *cu = g_new(double, n_idx *B);
  SbPassConfig cfg = {0};
  if (extra != NULL)
    cfg = *extra;
  cfg.sides = SB_SIDES_BOTH;
  cfg.record = FALSE;
  /* Plain CROWN over many batch elements runs on a few unstable neurons
   * at a time (their rows are independent, cl/cu are [k,B]). */
  const gboolean single_cpu =
      !(SB_NET_BE(net)->capabilities & (SB_CAP_GPU | SB_CAP_MULTI_RANK));
  int64_t chunk = n_idx;
  if (alpha == NULL && B > 1)
    chunk = MIN(n_idx, SB_TIGHTEN_BATCHED_ROWS);
  else if (alpha == NULL && single_cpu) {
    chunk = MIN(n_idx, SB_TIGHTEN_CPU_ROWS);
    if (has_conv(net)) {
      int64_t fit = rows_within(net, i, B, FALSE, SB_TIGHTEN_CPU_CONV_BYTES) /
                    SB_TIGHTEN_CPU_MIN_ROWS * SB_TIGHTEN_CPU_MIN_ROWS;
      chunk = MIN(chunk, MAX(fit, SB_TIGHTEN_CPU_MIN_ROWS));
    }
  }
  chunk = MIN(chunk,
              rows_within(net, i, B, alpha != NULL, net->tighten_pass_bytes));
  gboolean ok = TRUE;
  int64_t done = 0;
  for (int64_t k0 = 0; k0 < n_idx && ok; k0 = done) {
    /* Past alpha-CROWN's deadline the neurons left keep the bounds they
     * have (any bound is sound), and the caller meets the deadline next. */
    if (k0 > 0 && alpha != NULL && sb_net_deadline_passed(net, alpha->deadline))
      break;
    int64_t m = MIN(chunk, n_idx - k0);
    done = k0 + m;
    sb_tensor *A = unit_rows(net, index + k0, m, B, size, error);
    if (A == NULL)
      return FALSE;
    ok = sb_crown_pass(net, i, A, m, B, nb->lo, nb->hi, &cfg, NULL, cl + k0 * B,
                       cu + k0 * B, error);
    if (ok && alpha != NULL) {
      SbAlphaSet set;
      ok = sb_alpha_set_init(net, &set, i, m, B, SB_SIDES_BOTH, nb->lo, nb->hi,
                             error) &&
           sb_alpha_optimize(net, &set, alpha, i, A, m, B, nb->lo, nb->hi,
                             SB_SIDES_BOTH, &cfg, cl + k0 * B, cu + k0 * B,
                             error);
      sb_alpha_set_clear(net, &set);
    }
    sb_net_tensor_free(net, A);
  }
  if (!ok)
    return FALSE;
  for (int64_t k = 0; k < n_idx; k++)
    for (int64_t b = 0; b < B; b++) {
      int64_t j = b * size + index[k];
      if (k < done) {
        double nl = cl[k * B + b], nu = cu[k * B + b];
        l[j] = intersect_ibp ? MAX(l[j], nl) : nl;
        u[j] = intersect_ibp ? MIN(u[j], nu) : nu;
      }
      if (n_unstable != NULL && l[j] < 0 && u[j] > 0)
        (*n_unstable)++;
    }
  return sb_net_tensor_write_floats(net, nb->lo[i], B * size, l, error) &&
         sb_net_tensor_write_floats(net, nb->hi[i], B * size, u, error);
}

/* IBP of the spec: folded into the last layer when it is linear (as
 * auto_LiRPA does), else interval arithmetic on the output bounds. */
static gboolean ibp_spec(SbNetwork *net, sb_tensor **lo, sb_tensor **hi,
                         const SbSpec *spec, const double *out_l,
                         const double *out_u, SbBoundsResult *r,
                         GError **error) {
  const SbGraph *g = net->graph;
  const SbNode *last = sb_graph_node(g, g->output);
  int64_t n_out = g->output_size;

  if (last->kind != SB_NODE_LINEAR) {
    for (int s = 0; s < spec->n_specs; s++) {
      const double *c = spec->rows + (gsize)s * n_out;
      double sl = 0, su = 0;
      for (int64_t j = 0; j < n_out; j++) {
        sl += c[j] * (c[j] >= 0 ? out_l[j] : out_u[j]);
        su += c[j] * (c[j] >= 0 ? out_u[j] : out_l[j]);
      }
      r->spec_lower[s] = sl;
      r->spec_upper[s] = su;
    }
    return TRUE;
  }

  int64_t in = last->desc.in_size;
  g_autofree float *w = g_new0(float, (gsize)spec->n_specs *in);
  g_autofree float *b = g_new0(float, spec->n_specs);
  for (int s = 0; s < spec->n_specs; s++) {
    const double *c = spec->rows + (gsize)s * n_out;
    for (int64_t j = 0; j < n_out; j++) {
      if (c[j] == 0)
        continue;
      const float *wrow = last->weight + j * in;
      for (int64_t k = 0; k < in; k++)
        w[s * in + k] += (float)(c[j] * wrow[k]);
      if (last->bias != NULL)
        b[s] += (float)(c[j] * last->bias[j]);
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
  int status = SB_NET_BE(net)->layer_create(SB_NET_CTX(net), &desc, &layer);
  if (!sb_net_check(net, status, "layer_create (spec)", -1, error))
    return FALSE;
  sl = sb_net_tensor_new(net, SB_MEM_BOUNDS, 1, spec->n_specs, 0, error);
  su = sl ? sb_net_tensor_new(net, SB_MEM_BOUNDS, 1, spec->n_specs, 0, error)
          : NULL;
  if (su != NULL) {
    const sb_tensor *il[1] = {lo[last->inputs[0]]};
    const sb_tensor *iu[1] = {hi[last->inputs[0]]};
    status = SB_NET_BE(net)->layer_ibp(SB_NET_CTX(net), layer, il, iu, sl, su);
    ok = sb_net_check(net, status, "layer_ibp (spec)", -1, error) &&
         sb_net_tensor_read(net, sl, spec->n_specs, r->spec_lower, error) &&
         sb_net_tensor_read(net, su, spec->n_specs, r->spec_upper, error);
  }
  sb_net_tensor_free(net, sl);
  sb_net_tensor_free(net, su);
  SB_NET_BE(net)->layer_free(SB_NET_CTX(net), layer);
  return ok;
}

/* Bounds of rows . z_out (rows [S, n_out], the same for every batch
 * element) by CROWN or alpha-CROWN, into lower/upper [S*B]. */
gboolean sb_output_pass(SbNetwork *net, SbNodeBounds *nb, const double *rows,
                        int64_t S, int sides, const SbAlphaParams *alpha,
                        const SbPassConfig *extra, double *lower, double *upper,
                        GError **error) {
  const SbGraph *g = net->graph;
  int64_t B = nb->B;
  sb_tensor *A = sb_spec_tensor_new(net, rows, S, B, g->output_size, error);
  if (A == NULL)
    return FALSE;
  SbPassConfig cfg = {0};
  if (extra != NULL)
    cfg = *extra;
  cfg.sides = sides;
  cfg.record = FALSE;
  gboolean ok = sb_crown_pass(net, g->output, A, S, B, nb->lo, nb->hi, &cfg,
                              NULL, lower, upper, error);
  if (ok && alpha != NULL) {
    SbAlphaSet set;
    /* Few rows make the final pass's steps cheap: it takes more. */
    SbAlphaParams final = *alpha;
    final.iterations = alpha->final_iterations;
    ok = sb_alpha_set_init(net, &set, g->output, S, B, sides, nb->lo, nb->hi,
                           error) &&
         sb_alpha_optimize(net, &set, &final, g->output, A, S, B, nb->lo,
                           nb->hi, sides, &cfg, lower, upper, error);
    sb_alpha_set_clear(net, &set);
  }
  sb_net_tensor_free(net, A);
  return ok;
}

gboolean sb_network_compute_bounds(SbNetwork *net,
                                   const SbBoundsOptions *options,
                                   const double *x_lower, const double *x_upper,
                                   const SbSpec *spec, SbBoundsResult *r,
                                   GError **error) {
  const SbGraph *g = net->graph;
  int n = sb_graph_n_nodes(g);
  int n_specs = spec != NULL ? spec->n_specs : 0;
  int64_t n_out = g->output_size;
  SbMethod method = options->method;
  /* The slopes' settings where alpha-CROWN optimises, else NULL. */
  const SbAlphaParams *alpha =
      method == SB_METHOD_ALPHA_CROWN ? &options->alpha : NULL;
  const SbAlphaParams *alpha_intermediate =
      alpha != NULL && alpha->optimize_intermediate ? alpha : NULL;
  SbNodeBounds nb = {0};
  gboolean ok = FALSE;

  memset(r, 0, sizeof *r);
  r->n_outputs = (int)n_out;
  r->output_lower = g_new0(double, n_out);
  r->output_upper = g_new0(double, n_out);
  r->n_specs = n_specs;
  r->spec_lower = g_new0(double, MAX(n_specs, 1));
  r->spec_upper = g_new0(double, MAX(n_specs, 1));

  if (alpha != NULL && !sb_net_require_vjp(net, error))
    goto out;
  if (!sb_node_bounds_init(net, &nb, 1, x_lower, x_upper, error))
    goto out;
  for (int i = 1; i < n; i++) {
    if (!sb_node_ibp(net, &nb, i, error))
      goto out;
    if (method != SB_METHOD_IBP && sb_node_needs_crown(net, i) &&
        !sb_node_tighten(net, &nb, i, alpha_intermediate,
                         options->intersect_ibp, NULL, &r->n_unstable, error))
      goto out;
  }

  if (method == SB_METHOD_IBP) {
    ok = sb_net_tensor_read(net, nb.lo[g->output], n_out, r->output_lower,
                            error) &&
         sb_net_tensor_read(net, nb.hi[g->output], n_out, r->output_upper,
                            error) &&
         (n_specs == 0 || ibp_spec(net, nb.lo, nb.hi, spec, r->output_lower,
                                   r->output_upper, r, error));
    goto out;
  }

  /* (alpha-)CROWN: the outputs with an identity specification, then the
   * spec. Optimised bounds start from -inf/+inf: the first iterate is
   * plain CROWN. */
  {
    g_autofree double *eye = g_new0(double, n_out *n_out);
    for (int64_t k = 0; k < n_out; k++) {
      eye[k * n_out + k] = 1;
      r->output_lower[k] = -INFINITY;
      r->output_upper[k] = INFINITY;
    }
    for (int k = 0; k < n_specs; k++) {
      r->spec_lower[k] = -INFINITY;
      r->spec_upper[k] = INFINITY;
    }
    ok = sb_output_pass(net, &nb, eye, n_out, SB_SIDES_BOTH, alpha, NULL,
                        r->output_lower, r->output_upper, error) &&
         (n_specs == 0 ||
          sb_output_pass(net, &nb, spec->rows, n_specs, SB_SIDES_BOTH, alpha,
                         NULL, r->spec_lower, r->spec_upper, error));
  }

out:
  sb_node_bounds_clear(net, &nb);
  if (!ok)
    sb_bounds_result_clear(r);
  return ok;
}
