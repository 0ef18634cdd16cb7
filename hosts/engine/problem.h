/* SPDX-License-Identifier: MIT */
/* A verification problem: a model with the property stated over it. */
#ifndef SB_PROBLEM_H
#define SB_PROBLEM_H

#include <glib.h>
#include "graph.h"
#include "vnnlib.h"

G_BEGIN_DECLS

/* TRUE when the property declares as many inputs and outputs as the model
 * has; otherwise an SB_VNNLIB_ERROR_INVALID error naming both (model_name,
 * property_name: how the error refers to them, e.g. their file names). */
gboolean sb_problem_check(const SbGraph *graph, const SbProperty *property,
                          const char *model_name, const char *property_name,
                          GError **error);

G_END_DECLS

#endif
