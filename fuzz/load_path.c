/* SPDX-License-Identifier: MIT */
/* The engine's whole load path on one byte string (load_path.h). */
#include "config.h"

#include <stdlib.h>

#include "fuzz/load_path.h"
#include "hosts/engine/bounds.h"
#include "hosts/engine/onnx_import.h"
#include "hosts/engine/problem.h"

/* A refusal must say why. */
static gboolean refused(GError **error, GError *local) {
  if (local == NULL || local->message == NULL || local->message[0] == '\0')
    abort();
  g_propagate_error(error, local);
  return FALSE;
}

static gboolean bound(SbSession *session, const SbGraph *graph,
                      const SbProperty *prop, GError **error) {
  GError *local = NULL;
  g_autoptr(SbNetwork) net = sb_network_new(session, graph, &local);
  if (net == NULL)
    return refused(error, local);
  g_autofree double *rows = sb_property_spec_rows(prop);
  SbSpec spec = {prop->n_atoms, rows};
  SbBoundsOptions options;
  sb_bounds_options_init(&options);
  options.method = SB_METHOD_IBP;
  SbBoundsResult result;
  if (!sb_network_compute_bounds(net, &options, prop->regions[0].x_lower,
                                 prop->regions[0].x_upper, &spec, &result,
                                 &local))
    return refused(error, local);
  for (int i = 0; i < result.n_outputs; i++)
    if (result.output_lower[i] > result.output_upper[i])
      abort();
  for (int i = 0; i < result.n_specs; i++)
    if (result.spec_lower[i] > result.spec_upper[i])
      abort();
  sb_bounds_result_clear(&result);
  return TRUE;
}

gboolean sb_fuzz_load_path(SbSession *session, const guint8 *data, gsize size,
                           GError **error) {
  if (size < 4) {
    g_set_error(error, SB_ONNX_ERROR, SB_ONNX_ERROR_MALFORMED,
                "input of %zu bytes has no 4-byte model length", (size_t)size);
    return FALSE;
  }
  gsize n = (gsize)data[0] | (gsize)data[1] << 8 | (gsize)data[2] << 16 |
            (gsize)data[3] << 24;
  data += 4;
  size -= 4;
  n = MIN(n, size);

  GError *local = NULL;
  g_autoptr(SbGraph) graph = sb_onnx_parse(data, n, &local);
  if (graph == NULL)
    return refused(error, local);
  g_autoptr(SbProperty) prop =
      sb_vnnlib_parse((const char *)data + n, size - n, &local);
  if (prop == NULL)
    return refused(error, local);
  if (!sb_problem_check(graph, prop, "model", "property", &local))
    return refused(error, local);
  return bound(session, graph, prop, error);
}
