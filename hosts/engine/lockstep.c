/* SPDX-License-Identifier: MIT */
/* Clock and file decisions taken on process 0 and broadcast. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "lockstep.h"
#include "onnx_import.h"

gboolean sb_net_deadline_passed(SbNetwork *net, gint64 deadline) {
  if (deadline <= 0)
    return FALSE;
  /* Every process reads its own clock, but only process 0's reading
   * survives the broadcast. */
  guint8 passed = g_get_monotonic_time() > deadline;
  return !sb_session_broadcast(net->session, &passed, sizeof passed, NULL) ||
         passed;
}

gboolean sb_net_counterexample_check(SbNetwork *net, const SbProperty *prop,
                                     int region, const float *x,
                                     double *y_out) {
  const SbGraph *g = net->graph;
  if (!g->weights_dropped)
    return sb_counterexample_check(g, prop, region, x, y_out);
  int64_t n = g->output_size;
  /* y, then the verdict. */
  g_autofree double *msg = g_new0(double, n + 1);
  for (int64_t o = 0; o < n; o++)
    msg[o] = NAN; /* unless process 0 evaluates it */
  if (sb_session_process_index(net->session) == 0 && g->source != NULL) {
    g_autoptr(SbGraph) full = sb_onnx_load(g->source, NULL);
    if (full != NULL && full->output_size == n)
      msg[n] = sb_counterexample_check(full, prop, region, x, msg);
  }
  if (!sb_session_broadcast(net->session, msg, (gsize)(n + 1) * sizeof(double),
                            NULL))
    return FALSE;
  if (y_out != NULL)
    memcpy(y_out, msg, (gsize)n * sizeof(double));
  return msg[n] != 0;
}
