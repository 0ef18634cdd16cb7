/* SPDX-License-Identifier: MIT */
/* Helpers shared by the engine-level test suites. */
#ifndef SB_ENGINE_TESTLIB_H
#define SB_ENGINE_TESTLIB_H

#include <json-glib/json-glib.h>

#include "hosts/engine/bounds.h"
#include "hosts/engine/onnx_import.h"
#include "hosts/api/session_setup.h"
#include "hosts/engine/vnnlib.h"

/* The auto_LiRPA golden cases in tests/data/goldens (file names without
 * .json). */
extern const char *const sb_test_goldens[];
extern const int sb_test_n_goldens;

/* tests/data/SUB/FILE (SHARDBOUND_TEST_DATA when set). */
char *sb_test_data_path(const char *sub, const char *file);

/* A session on `backend` (ranks 0: its default); fails the test if none. */
SbSessionSetup *sb_test_open(const char *backend, int ranks);

/* Everything one golden case needs, loaded on one backend. */
typedef struct {
  JsonParser *parser;
  JsonObject *root;
  SbGraph *graph;
  SbProperty *prop;
  SbSessionSetup *setup;
  SbNetwork *net;
} SbTestCase;

void sb_test_case_load(SbTestCase *c, const char *golden, const char *backend,
                       int ranks);
void sb_test_case_free(SbTestCase *c);

/* sb_network_compute_bounds with `method`, intersect_ibp and the default
 * alpha-CROWN settings. */
gboolean sb_test_compute_bounds(SbNetwork *net, SbMethod method,
                                gboolean intersect_ibp, const double *xl,
                                const double *xu, const SbSpec *spec,
                                SbBoundsResult *r, GError **error);

/* Random points and random vertices of the box, evaluated in float64 on the
 * host: every output must lie inside r's bounds (up to float32 rounding). */
void sb_test_assert_contains_samples(const SbGraph *g, const double *xl,
                                     const double *xu, const SbBoundsResult *r,
                                     int n_samples, guint32 seed,
                                     const char *what);

/* Graphs built directly in the IR with random weights. */
float *sb_test_random_array(GRand *rng, int64_t n, double scale);
int sb_test_add_node(SbGraph *g, SbNodeKind kind, int in0, int in1,
                     int64_t size, float *w, float *b);
int sb_test_add_linear(SbGraph *g, GRand *rng, int in, int64_t out);
int sb_test_add_conv(SbGraph *g, GRand *rng, int in, int64_t c_in, int64_t h,
                     int64_t c_out, int stride);
int sb_test_add_affine(SbGraph *g, GRand *rng, int in, int64_t channels,
                       int64_t spatial);
/* x(6) -> L -> R -> L -> R -+-> L -> affine -> R -> L(4), with a residual Add.
 */
SbGraph *sb_test_random_residual_mlp(GRand *rng);
/* conv s2 -> R -> conv -> R -> Add -> affine -> R -> linear(3). */
SbGraph *sb_test_random_conv_net(GRand *rng);

#endif
