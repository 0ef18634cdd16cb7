/* SPDX-License-Identifier: MIT */
/* A verification problem: a model with the property stated over it. */
#include "config.h"

#include "problem.h"

gboolean sb_problem_check(const SbGraph *graph, const SbProperty *property,
                          const char *model_name, const char *property_name,
                          GError **error) {
  if (property->n_inputs == graph->input_size &&
      property->n_outputs == graph->output_size)
    return TRUE;
  g_set_error(
      error, SB_VNNLIB_ERROR, SB_VNNLIB_ERROR_INVALID,
      "%s declares %d inputs and %d outputs but %s has %" G_GINT64_FORMAT
      " inputs and %" G_GINT64_FORMAT " outputs",
      property_name, property->n_inputs, property->n_outputs, model_name,
      graph->input_size, graph->output_size);
  return FALSE;
}
