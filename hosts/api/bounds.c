/* SPDX-License-Identifier: MIT */
/* Bounds of a network's outputs and of a specification over an input box. */
#include "config.h"

#include <math.h>

#include "host-private.h"

struct _ShardboundBounds {
  SbBoundsResult result;
  double seconds;
};

gboolean shardbound_method_parse(const char *name, ShardboundMethod *method,
                                 GError **error) {
  SbMethod m;
  if (name == NULL || !sb_method_from_string(name, &m)) {
    g_set_error(error, SHARDBOUND_HOST_ERROR,
                SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
                "unknown method '%s' (expected ibp, crown or alpha-crown)",
                name ? name : "(null)");
    return FALSE;
  }
  *method = (ShardboundMethod)m;
  return TRUE;
}

G_STATIC_ASSERT((int)SHARDBOUND_METHOD_IBP == (int)SB_METHOD_IBP);
G_STATIC_ASSERT((int)SHARDBOUND_METHOD_CROWN == (int)SB_METHOD_CROWN);
G_STATIC_ASSERT((int)SHARDBOUND_METHOD_ALPHA_CROWN ==
                (int)SB_METHOD_ALPHA_CROWN);

const char *shardbound_method_name(ShardboundMethod method) {
  return sb_method_to_string((SbMethod)method);
}

static gboolean box_is_valid(const ShardboundNetwork *network, const double *lo,
                             const double *hi, GError **error) {
  for (int64_t i = 0; i < network->graph->input_size; i++)
    if (!(lo[i] <= hi[i]) || isnan(lo[i]) || isnan(hi[i])) {
      g_set_error(
          error, SHARDBOUND_HOST_ERROR, SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
          "input box: lower %g > upper %g (or NaN) at input %" G_GINT64_FORMAT,
          lo[i], hi[i], (gint64)i);
      return FALSE;
    }
  return TRUE;
}

ShardboundBounds *shardbound_network_bounds(ShardboundNetwork *network,
                                            ShardboundMethod method,
                                            const ShardboundSettings *settings,
                                            const double *x_lower,
                                            const double *x_upper, int n_specs,
                                            const double *spec_rows,
                                            GError **error) {
  g_return_val_if_fail(network != NULL && x_lower != NULL && x_upper != NULL,
                       NULL);
  if (method < SHARDBOUND_METHOD_IBP ||
      method > SHARDBOUND_METHOD_ALPHA_CROWN) {
    g_set_error(error, SHARDBOUND_HOST_ERROR,
                SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
                "unknown method number %d", (int)method);
    return NULL;
  }
  if (n_specs < 0 || (n_specs > 0 && spec_rows == NULL)) {
    g_set_error(error, SHARDBOUND_HOST_ERROR,
                SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
                "specification: %d rows but %s", n_specs,
                n_specs < 0 ? "a count cannot be negative" : "no row array");
    return NULL;
  }
  if (!box_is_valid(network, x_lower, x_upper, error))
    return NULL;
  g_autoptr(ShardboundSettings) defaults =
      settings == NULL ? shardbound_settings_new() : NULL;
  if (settings == NULL)
    settings = defaults;
  SbBoundsOptions options = settings->bounds;
  options.method = (SbMethod)method;

  ShardboundBounds *bounds = g_new0(ShardboundBounds, 1);
  SbSpec spec = {n_specs, spec_rows};
  GError *e = NULL;
  gint64 t0 = g_get_monotonic_time();
  if (!sb_network_compute_bounds(network->net, &options, x_lower, x_upper,
                                 n_specs > 0 ? &spec : NULL, &bounds->result,
                                 &e)) {
    g_free(bounds);
    sb_host_propagate_error(error, e);
    return NULL;
  }
  bounds->seconds = (g_get_monotonic_time() - t0) / 1e6;
  return bounds;
}

void shardbound_bounds_free(ShardboundBounds *bounds) {
  if (bounds == NULL)
    return;
  sb_bounds_result_clear(&bounds->result);
  g_free(bounds);
}

int shardbound_bounds_output_count(const ShardboundBounds *b) {
  return b->result.n_outputs;
}

const double *shardbound_bounds_output_lower(const ShardboundBounds *b) {
  return b->result.output_lower;
}

const double *shardbound_bounds_output_upper(const ShardboundBounds *b) {
  return b->result.output_upper;
}

int shardbound_bounds_spec_count(const ShardboundBounds *b) {
  return b->result.n_specs;
}

const double *shardbound_bounds_spec_lower(const ShardboundBounds *b) {
  return b->result.spec_lower;
}

const double *shardbound_bounds_spec_upper(const ShardboundBounds *b) {
  return b->result.spec_upper;
}

int shardbound_bounds_unstable_relus(const ShardboundBounds *b) {
  return b->result.n_unstable;
}

double shardbound_bounds_seconds(const ShardboundBounds *b) {
  return b->seconds;
}
