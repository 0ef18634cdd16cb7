/* SPDX-License-Identifier: MIT */
/* A host built outside the tree against the installed libshardbound-dev
 * (pkg-config shardbound): opens the backend named on its command line from
 * the installed backend directory (no search path is configured, no
 * environment is read), propagates an input box through one linear layer
 * (IBP) and checks the output box against the exact answer. Compiled once,
 * it runs unchanged on backend packages installed after it
 * (tests/packaging/installed-test.sh).
 * Usage: swap-host NAME [RANKS]; prints the box and exits 0 when it is
 * exact, 1 when the backend is missing, refused or wrong. */
#include <shardbound/shardbound-plugin.h>
#include <stdio.h>
#include <stdlib.h>

enum { IN = 3, OUT = 4 };

/* Small integers and halves: every product and sum below is exact in float,
 * so the backend's box must equal the reference bit for bit. */
static const float weight[OUT * IN] = {1, -2, 0.5f,  -1, 0,  3,
                                       2, 2,  -0.5f, 0,  -1, -1};
static const float bias[OUT] = {0.5f, -1, 0, 2};
static const float x_lower[IN] = {-1, 0, 2};
static const float x_upper[IN] = {1, 0.5f, 4};

static gboolean fail_status(SbSession *session, int status, const char *what) {
  g_autoptr(GError) error = NULL;
  if (sb_session_check(session, status, what, &error))
    return FALSE;
  fprintf(stderr, "swap-host: %s\n", error->message);
  return TRUE;
}

static sb_tensor *box_tensor(SbSession *session, int64_t size,
                             const float *values) {
  int64_t shape[2] = {1, size};
  sb_tensor *t = NULL;
  if (fail_status(
          session,
          session->be->tensor_create(session->ctx, SB_MEM_BOUNDS, 2, shape, &t),
          "tensor_create"))
    return NULL;
  if (values != NULL &&
      fail_status(session,
                  session->be->tensor_write(session->ctx, t, 0, size,
                                            SB_DTYPE_F32, values),
                  "tensor_write"))
    return NULL;
  return t;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: swap-host NAME [RANKS]\n");
    return 2;
  }
  const char *name = argv[1];
  g_autoptr(SbConfig) config = sb_config_new();
  g_autoptr(SbRegistry) registry = sb_registry_new();
  sb_registry_load_config(registry, config);
  g_autofree char *dirs =
      g_strjoinv(":", (char **)sb_registry_searched_dirs(registry));
  printf("searched: %s\n", dirs);
  if (argc == 3)
    sb_config_set_option(config, name, "ranks", argv[2]);

  g_autoptr(GError) error = NULL;
  g_autoptr(SbSession) session =
      sb_session_open(registry, config, name, &error);
  if (session == NULL) {
    fprintf(stderr, "swap-host: %s\n", error->message);
    return 1;
  }
  const sb_backend_v1 *be = session->be;
  printf("backend: %s %s, %d rank(s)\n", be->name, be->version,
         be->rank_count(session->ctx));

  sb_layer_desc_v1 desc = {.struct_size = sizeof desc,
                           .kind = SB_LAYER_LINEAR,
                           .in_size = IN,
                           .out_size = OUT,
                           .weight = weight,
                           .bias = bias};
  sb_layer *layer = NULL;
  if (fail_status(session, be->layer_create(session->ctx, &desc, &layer),
                  "layer_create"))
    return 1;
  sb_tensor *in_lower = box_tensor(session, IN, x_lower);
  sb_tensor *in_upper = box_tensor(session, IN, x_upper);
  sb_tensor *out_lower = box_tensor(session, OUT, NULL);
  sb_tensor *out_upper = box_tensor(session, OUT, NULL);
  if (in_lower == NULL || in_upper == NULL || out_lower == NULL ||
      out_upper == NULL)
    return 1;
  const sb_tensor *lowers[1] = {in_lower}, *uppers[1] = {in_upper};
  float lower[OUT], upper[OUT];
  if (fail_status(session,
                  be->layer_ibp(session->ctx, layer, lowers, uppers, out_lower,
                                out_upper),
                  "layer_ibp") ||
      fail_status(
          session,
          be->tensor_read(session->ctx, out_lower, 0, OUT, SB_DTYPE_F32, lower),
          "tensor_read") ||
      fail_status(
          session,
          be->tensor_read(session->ctx, out_upper, 0, OUT, SB_DTYPE_F32, upper),
          "tensor_read"))
    return 1;

  int wrong = 0;
  printf("box:");
  for (int j = 0; j < OUT; j++) {
    float lo = bias[j], hi = bias[j];
    for (int i = 0; i < IN; i++) {
      float w = weight[j * IN + i];
      lo += w * (w > 0 ? x_lower[i] : x_upper[i]);
      hi += w * (w > 0 ? x_upper[i] : x_lower[i]);
    }
    printf(" [%g, %g]", lower[j], upper[j]);
    wrong += lower[j] != lo || upper[j] != hi;
  }
  printf("\n");

  be->tensor_free(session->ctx, in_lower);
  be->tensor_free(session->ctx, in_upper);
  be->tensor_free(session->ctx, out_lower);
  be->tensor_free(session->ctx, out_upper);
  be->layer_free(session->ctx, layer);
  if (wrong > 0) {
    fprintf(stderr,
            "swap-host: %s: %d output bound(s) differ from the "
            "exact box\n",
            name, wrong);
    return 1;
  }
  printf("exact\n");
  return 0;
}
