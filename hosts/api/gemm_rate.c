/* SPDX-License-Identifier: MIT */
/* The backend's matrix-product rate, measured through the ABI: the
 * denominator of a pass's floor (its product FLOPs at that rate). */
#include "config.h"

#include "host-private.h"

double shardbound_session_gemm_rate(ShardboundSession *session, int64_t n,
                                    GError **error) {
  if (n < 1 || n > 16384) {
    g_set_error(error, SHARDBOUND_HOST_ERROR,
                SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
                "GEMM rate probe: size %" G_GINT64_FORMAT " is not in 1..16384",
                (gint64)n);
    return 0;
  }
  SbSession *s = session->setup->session;
  const sb_backend_v1 *be = s->be;
  g_autofree float *w = g_new(float, n *n);
  GRand *rng = g_rand_new_with_seed(7);
  for (int64_t i = 0; i < n * n; i++)
    w[i] = (float)g_rand_double_range(rng, -1, 1);
  g_rand_free(rng);
  /* A CROWN backward step of n unit-free rows through an n x n linear
   * layer is one n^3 GEMM on every backend. */
  sb_layer_desc_v1 desc = {.struct_size = sizeof desc,
                           .kind = SB_LAYER_LINEAR,
                           .in_size = n,
                           .out_size = n,
                           .weight = w};
  sb_layer *layer = NULL;
  sb_tensor *A = NULL, *A_in = NULL, *bias = NULL;
  int64_t shape[3] = {n, 1, n};
  double best = 0;
  int status = be->layer_create(s->ctx, &desc, &layer);
  if (status == SB_OK)
    status = be->tensor_create(s->ctx, SB_MEM_COEFFICIENTS, 3, shape, &A);
  if (status == SB_OK)
    status = be->tensor_create(s->ctx, SB_MEM_COEFFICIENTS, 3, shape, &A_in);
  if (status == SB_OK)
    status = be->tensor_create(s->ctx, SB_MEM_COEFFICIENTS, 2, shape, &bias);
  if (status == SB_OK)
    status = be->tensor_write(s->ctx, A, 0, n * n, SB_DTYPE_F32, w);
  sb_backward_args_v1 args = {.struct_size = sizeof args,
                              .side = SB_SIDE_LOWER,
                              .A_out = A,
                              .A_in = {A_in},
                              .bias = bias};
  for (int rep = 0; rep < 4 && status == SB_OK; rep++) {
    gint64 t0 = g_get_monotonic_time();
    status = be->layer_backward(s->ctx, layer, &args);
    float probe;
    if (status == SB_OK) /* a read waits for asynchronous devices */
      status = be->tensor_read(s->ctx, A_in, 0, 1, SB_DTYPE_F32, &probe);
    double t = (g_get_monotonic_time() - t0) / 1e6;
    if (rep > 0 && t > 0) /* the first one warms up */
      best = MAX(best, 2.0 * n * n * n / t);
  }
  GError *e = NULL;
  if (!sb_session_check(s, status, "GEMM rate probe", &e))
    sb_host_propagate_error(error, e);
  if (bias)
    be->tensor_free(s->ctx, bias);
  if (A_in)
    be->tensor_free(s->ctx, A_in);
  if (A)
    be->tensor_free(s->ctx, A);
  if (layer)
    be->layer_free(s->ctx, layer);
  return status == SB_OK ? best : 0;
}
