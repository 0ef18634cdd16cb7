/* SPDX-License-Identifier: MIT */
/* Complete verification never gives a wrong answer: tiny random networks
 * against a dense-grid ground truth, and VNN-COMP instances whose published
 * outcome is known. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine-testlib.h"
#include "hosts/engine/bab_domain.h"
#include "hosts/engine/float_round.h"
#include "hosts/engine/verify.h"

/* ---- tiny random networks with a 2-D input ------------------------------- */

/* Weights in [-1,1] and biases in [-0.5,0.5]: outputs vary enough over
 * small boxes for many properties to be clearly true or clearly false. */
static int tiny_linear(SbGraph *g, GRand *rng, int in, int64_t out) {
  int64_t n_in = sb_graph_node(g, in)->size;
  return sb_test_add_node(g, SB_NODE_LINEAR, in, 0, out,
                          sb_test_random_array(rng, out * n_in, 1.0),
                          sb_test_random_array(rng, out, 0.5));
}

/* 2 -> width (hidden times, each with a ReLU) -> 3. */
static SbGraph *tiny_mlp(GRand *rng, int64_t width, int hidden) {
  SbGraph *g = sb_graph_new();
  int h = sb_test_add_node(g, SB_NODE_INPUT, 0, 0, 2, NULL, NULL);
  for (int l = 0; l < hidden; l++)
    h = sb_test_add_node(g, SB_NODE_RELU, tiny_linear(g, rng, h, width), 0,
                         width, NULL, NULL);
  g->output = tiny_linear(g, rng, h, 3);
  g->input_size = 2;
  g->output_size = 3;
  return g;
}

/* 2 -> width -> width -> 3 with ReLUs. */
static SbGraph *tiny_net(GRand *rng, int64_t width) {
  return tiny_mlp(rng, width, 2);
}

/* Robustness of label `label` around (cx, cy) with radius eps. */
static SbProperty *tiny_property(double cx, double cy, double eps, int label) {
  g_autoptr(GString) text =
      g_string_new("(declare-const X_0 Real)\n(declare-const X_1 Real)\n");
  for (int j = 0; j < 3; j++)
    g_string_append_printf(text, "(declare-const Y_%d Real)\n", j);
  g_string_append_printf(text,
                         "(assert (>= X_0 %.17g))\n(assert (<= X_0 %.17g))\n",
                         cx - eps, cx + eps);
  g_string_append_printf(text,
                         "(assert (>= X_1 %.17g))\n(assert (<= X_1 %.17g))\n",
                         cy - eps, cy + eps);
  g_string_append(text, "(assert (or");
  for (int j = 0; j < 3; j++)
    if (j != label)
      g_string_append_printf(text, " (and (>= Y_%d Y_%d))", j, label);
  g_string_append(text, "))\n");
  g_autoptr(GError) error = NULL;
  SbProperty *p = sb_vnnlib_parse(text->str, text->len, &error);
  ck_assert_msg(p != NULL, "%s", error ? error->message : "");
  return p;
}

/* The robustness property of g's class at a random centre in [-1,1]^2
 * (*label), over a box of radius drawn from [eps_lo, eps_hi]. */
static SbProperty *random_robustness(GRand *rng, const SbGraph *g,
                                     double eps_lo, double eps_hi, int *label) {
  double cx = g_rand_double_range(rng, -1, 1),
         cy = g_rand_double_range(rng, -1, 1);
  double eps = g_rand_double_range(rng, eps_lo, eps_hi), yc[3];
  float c[2] = {(float)cx, (float)cy};
  sb_graph_eval(g, c, yc);
  *label = yc[0] >= yc[1] ? (yc[0] >= yc[2] ? 0 : 2) : (yc[1] >= yc[2] ? 1 : 2);
  return tiny_property(cx, cy, eps, *label);
}

/* g on the session's backend. */
static SbNetwork *tiny_network(SbSessionSetup *setup, SbGraph *g) {
  g_autoptr(GError) error = NULL;
  SbNetwork *net = sb_network_new(setup->session, g, &error);
  ck_assert_msg(net != NULL, "%s", error ? error->message : "");
  return net;
}

/* min over a dense grid of (y_label - max_{j != label} y_j). */
static double grid_margin(const SbGraph *g, const SbProperty *p, int label,
                          int steps) {
  const SbRegion *r = &p->regions[0];
  double best = INFINITY, y[3];
  for (int a = 0; a <= steps; a++)
    for (int b = 0; b <= steps; b++) {
      float x[2] = {
          (float)(r->x_lower[0] + (r->x_upper[0] - r->x_lower[0]) * a / steps),
          (float)(r->x_lower[1] + (r->x_upper[1] - r->x_lower[1]) * b / steps)};
      sb_graph_eval(g, x, y);
      for (int j = 0; j < 3; j++)
        if (j != label)
          best = MIN(best, y[label] - y[j]);
    }
  return best;
}

/* Stored bounds are rounded outward by one float: sb_float_down and
 * sb_float_up are nextafterf towards -inf and +inf, bit for bit, at every
 * exponent's edges (zeros, subnormals, the largest finite floats and the
 * infinities among them) and at every 4099th bit pattern, and keep NaN. */
static void check_float_steps(uint32_t bits) {
  float x;
  memcpy(&x, &bits, sizeof x);
  float want[2] = {nextafterf(x, -INFINITY), nextafterf(x, INFINITY)};
  float got[2] = {sb_float_down(x), sb_float_up(x)};
  for (int up = 0; up < 2; up++) {
    if (isnan(x)) {
      ck_assert_msg(isnan(got[up]), "0x%08x: not NaN", bits);
      continue;
    }
    ck_assert_msg(memcmp(&got[up], &want[up], sizeof(float)) == 0,
                  "0x%08x %s: %a, nextafterf %a", bits, up ? "up" : "down",
                  (double)got[up], (double)want[up]);
  }
}

START_TEST(test_bounds_round_outward_as_nextafterf) {
  for (uint32_t sign = 0; sign < 2; sign++)
    for (uint32_t exponent = 0; exponent < 256; exponent++) {
      const uint32_t mantissas[] = {0, 1, 2, 0x400000, 0x7ffffe, 0x7fffff};
      for (size_t m = 0; m < G_N_ELEMENTS(mantissas); m++)
        check_float_steps(sign << 31 | exponent << 23 | mantissas[m]);
    }
  for (uint64_t bits = 0; bits <= UINT32_MAX; bits += 4099)
    check_float_steps((uint32_t)bits);
}
END_TEST

START_TEST(test_verify_never_contradicts_dense_grid_on_tiny_networks) {
  GRand *rng = g_rand_new_with_seed(4242 + _i);
  g_autoptr(SbSessionSetup) setup = sb_test_open("cpu", 0);
  int decided = 0, checked = 0;
  for (int trial = 0; trial < 6; trial++) {
    g_autoptr(SbGraph) g = tiny_net(rng, 8);
    int label;
    g_autoptr(SbProperty) p = random_robustness(rng, g, 0.05, 0.4, &label);
    double truth = grid_margin(g, p, label, 400);
    /* The grid is 2*eps/400 fine; skip properties too close to call. */
    if (fabs(truth) < 0.05)
      continue;
    g_autoptr(SbNetwork) net = tiny_network(setup, g);
    g_autoptr(GError) error = NULL;
    SbVerifyParams params;
    sb_verify_params_init(&params);
    params.timeout = 20;
    /* Every branching heuristic and both ways of bounding new domains. */
    params.branching = trial % 2 ? SB_BRANCH_FSB : SB_BRANCH_BABSR;
    params.refine_intermediate = trial % 3 == 2;
    params.warm_betas = trial % 4 == 3;
    SbVerifyOutcome o;
    ck_assert_msg(sb_verify(net, p, &params, &o, &error), "%s",
                  error ? error->message : "");
    checked++;
    if (truth > 0)
      ck_assert_msg(o.result != SB_RESULT_SAT,
                    "trial %d: sat but the grid minimum margin is %g", trial,
                    truth);
    else
      ck_assert_msg(o.result != SB_RESULT_UNSAT,
                    "trial %d: unsat but the grid finds margin %g", trial,
                    truth);
    if (o.result == SB_RESULT_SAT)
      ck_assert(sb_counterexample_check(g, p, o.region, o.x, NULL));
    decided += o.result == SB_RESULT_SAT || o.result == SB_RESULT_UNSAT;
    sb_verify_outcome_clear(&o);
  }
  /* Tiny networks are always decided well within the timeout. */
  ck_assert_int_gt(checked, 0);
  ck_assert_int_eq(decided, checked);
  g_printerr("tiny networks, seed %d: %d of 6 properties clear enough to "
             "check, all decided\n",
             4242 + _i, checked);
  g_rand_free(rng);
}
END_TEST

/* The least margin found is that of an input checked in float64: a
 * counterexample's own for sat, above 0 for unsat; and the attack, which
 * starts from the box's centre, never reports one worse than the centre's
 * (up to the backend's float32). With the attack off, a property decided at
 * the root checked no input. */
START_TEST(test_found_margin_is_that_of_a_checked_input) {
  GRand *rng = g_rand_new_with_seed(2718);
  g_autoptr(SbSessionSetup) setup = sb_test_open("cpu", 0);
  int sat = 0, unsat = 0, unchecked = 0;
  for (int trial = 0; trial < 12; trial++) {
    g_autoptr(SbGraph) g = tiny_net(rng, 8);
    int label;
    g_autoptr(SbProperty) p = random_robustness(rng, g, 0.05, 0.4, &label);
    g_autoptr(SbNetwork) net = tiny_network(setup, g);
    g_autoptr(GError) error = NULL;
    SbVerifyParams params;
    sb_verify_params_init(&params);
    params.timeout = 20;
    params.attack = trial % 3 != 2;
    SbVerifyOutcome o;
    ck_assert_msg(sb_verify(net, p, &params, &o, &error), "%s",
                  error ? error->message : "");
    const SbRegion *r = &p->regions[0];
    float centre[2];
    double y[3];
    for (int k = 0; k < 2; k++)
      centre[k] = sb_float_in_range(0.5 * (r->x_lower[k] + r->x_upper[k]),
                                    r->x_lower[k], r->x_upper[k]);
    sb_graph_eval(g, centre, y);
    double at_centre = sb_point_margin(p, 0, y);
    if (params.attack)
      ck_assert_msg(o.found_margin <= at_centre + 1e-4 * (1 + fabs(at_centre)),
                    "trial %d: found %g, the centre's %g", trial,
                    o.found_margin, at_centre);
    if (o.result == SB_RESULT_SAT) {
      ck_assert(o.found_margin <= 0);
      ck_assert(o.found_margin == sb_point_margin(p, o.region, o.y));
      sat++;
    } else if (o.result == SB_RESULT_UNSAT) {
      ck_assert_msg(o.found_margin > 0, "trial %d: unsat, found %g", trial,
                    o.found_margin);
      unsat++;
    }
    if (!params.attack && o.result == SB_RESULT_UNSAT && o.domains <= 1) {
      ck_assert(isinf(o.found_margin) && o.found_margin > 0);
      unchecked++;
    }
    sb_verify_outcome_clear(&o);
  }
  ck_assert_int_gt(sat, 0);
  ck_assert_int_gt(unsat, 0);
  ck_assert_int_gt(unchecked, 0);
  g_rand_free(rng);
}
END_TEST

/* ---- intermediate bounds tightened by branch-and-bound --------------------
 */

/* The root bounds (every node's), as verify branches from them. */
static void root_bounds_of(SbNetwork *net, const SbProperty *p,
                           const SbVerifyParams *params, double **lo,
                           double **hi) {
  g_autoptr(GError) error = NULL;
  ck_assert_msg(sb_verify_root_bounds(net, p, 0, params, lo, hi, &error), "%s",
                error ? error->message : "");
}

static void free_node_arrays(int n, double **a) {
  for (int i = 0; i < n; i++)
    g_free(a[i]);
  g_free(a);
}

/* Every node's value at every point of a dense grid lies within the root
 * bounds that searches tightened (a bound no point crosses), which are
 * never looser than alpha-CROWN's and strictly tighter on most of these
 * networks. The hidden layers are wide enough (16) to leave unstable
 * neurons after alpha-CROWN. */
START_TEST(test_tightened_root_bounds_hold_on_a_dense_grid) {
  GRand *rng = g_rand_new_with_seed(5150);
  g_autoptr(SbSessionSetup) setup = sb_test_open("cpu", 0);
  int tighter = 0, trials = 6, steps = 150;
  for (int trial = 0; trial < trials; trial++) {
    g_autoptr(SbGraph) g = tiny_net(rng, 16);
    int label;
    g_autoptr(SbProperty) p = random_robustness(rng, g, 0.3, 0.6, &label);
    g_autoptr(SbNetwork) net = tiny_network(setup, g);
    int n = sb_graph_n_nodes(g);
    double **lo0 = g_new0(double *, n), **hi0 = g_new0(double *, n);
    double **lo = g_new0(double *, n), **hi = g_new0(double *, n);
    SbVerifyParams params;
    sb_verify_params_init(&params);
    params.tighten_layers = 0;
    root_bounds_of(net, p, &params, lo0, hi0);
    params.tighten_layers = 1;
    params.tighten_domains = 64;
    root_bounds_of(net, p, &params, lo, hi);
    gboolean any = FALSE;
    for (int i = 0; i < n; i++)
      for (int64_t k = 0; k < sb_graph_node(g, i)->size; k++) {
        ck_assert_msg(lo[i][k] >= lo0[i][k] && hi[i][k] <= hi0[i][k],
                      "trial %d node %d neuron %" G_GINT64_FORMAT
                      ": [%.9g, %.9g] looser than alpha-CROWN's [%.9g, %.9g]",
                      trial, i, k, lo[i][k], hi[i][k], lo0[i][k], hi0[i][k]);
        any = any || lo[i][k] > lo0[i][k] + 1e-3 || hi[i][k] < hi0[i][k] - 1e-3;
      }
    tighter += any;
    const SbRegion *r = &p->regions[0];
    for (int a = 0; a <= steps; a++)
      for (int b = 0; b <= steps; b++) {
        float x[2] = {(float)(r->x_lower[0] +
                              (r->x_upper[0] - r->x_lower[0]) * a / steps),
                      (float)(r->x_lower[1] +
                              (r->x_upper[1] - r->x_lower[1]) * b / steps)};
        double **v = sb_graph_eval_nodes(g, x);
        for (int i = 0; i < n; i++)
          for (int64_t k = 0; k < sb_graph_node(g, i)->size; k++) {
            /* float32 passes against a float64 evaluation */
            double tol = 1e-5 * (1 + fabs(v[i][k]));
            ck_assert_msg(v[i][k] >= lo[i][k] - tol &&
                              v[i][k] <= hi[i][k] + tol,
                          "trial %d node %d neuron %" G_GINT64_FORMAT
                          ": %.9g outside the tightened [%.9g, %.9g]",
                          trial, i, k, v[i][k], lo[i][k], hi[i][k]);
          }
        sb_graph_values_free(g, v);
      }
    free_node_arrays(n, lo0);
    free_node_arrays(n, hi0);
    free_node_arrays(n, lo);
    free_node_arrays(n, hi);
  }
  g_printerr("tightened root bounds: strictly tighter on %d of %d networks\n",
             tighter, trials);
  ck_assert_int_ge(tighter, trials / 2);
  g_rand_free(rng);
}
END_TEST

/* ---- published VNN-COMP outcomes ------------------------------------------
 */

static SbResult verify_instance(const char *onnx, const char *vnnlib,
                                SbVerifyOutcome *o, SbGraph **graph_out,
                                SbProperty **prop_out) {
  g_autoptr(GError) error = NULL;
  g_autofree char *op = sb_test_data_path("onnx", onnx);
  g_autofree char *vp = sb_test_data_path("vnnlib", vnnlib);
  SbGraph *g = sb_onnx_load(op, &error);
  ck_assert_msg(g != NULL, "%s", error ? error->message : "");
  SbProperty *p = sb_vnnlib_load(vp, &error);
  ck_assert_msg(p != NULL, "%s", error ? error->message : "");
  g_autoptr(SbSessionSetup) setup = sb_test_open("cpu", 0);
  g_autoptr(SbNetwork) net = sb_network_new(setup->session, g, &error);
  ck_assert(net != NULL);
  SbVerifyParams params;
  sb_verify_params_init(&params);
  params.timeout = 60;
  ck_assert_msg(sb_verify(net, p, &params, o, &error), "%s",
                error ? error->message : "");
  *graph_out = g;
  *prop_out = p;
  return o->result;
}

START_TEST(test_verify_finds_published_counterexample) {
  SbVerifyOutcome o;
  SbGraph *g;
  SbProperty *p;
  /* reference_results.csv: mnist-net_256x2, prop_1_0.03 is sat. */
  ck_assert_str_eq(
      sb_result_to_string(verify_instance("mnist-net_256x2.onnx",
                                          "prop_1_0.03.vnnlib", &o, &g, &p)),
      "sat");
  ck_assert(sb_counterexample_check(g, p, o.region, o.x, NULL));
  sb_verify_outcome_clear(&o);
  sb_graph_free(g);
  sb_property_free(p);
}
END_TEST

START_TEST(test_verify_proves_published_unsat_instance) {
  SbVerifyOutcome o;
  SbGraph *g;
  SbProperty *p;
  /* reference_results.csv: mnist-net_256x2, prop_0_0.03 and prop_3_0.05 are
   * unsat. */
  const char *props[2] = {"prop_0_0.03.vnnlib", "prop_3_0.05.vnnlib"};
  ck_assert_str_eq(sb_result_to_string(verify_instance("mnist-net_256x2.onnx",
                                                       props[_i], &o, &g, &p)),
                   "unsat");
  sb_verify_outcome_clear(&o);
  sb_graph_free(g);
  sb_property_free(p);
}
END_TEST

/* The BaB-heavy case of the tests below: VNN-COMP mnist-net_256x4 with
 * prop_0_0.05 (unsat; hundreds of domains, minutes on this CPU, 45 s for
 * alpha-beta-CROWN on a GPU), on cpu, attack off. */
typedef struct {
  SbGraph *g;
  SbProperty *p;
  SbSessionSetup *setup;
  SbNetwork *net;
  SbVerifyParams params;
} HardCase;

static void hard_case_open(HardCase *c) {
  g_autoptr(GError) error = NULL;
  g_autofree char *op = sb_test_data_path("onnx", "mnist-net_256x4.onnx");
  g_autofree char *vp = sb_test_data_path("vnnlib", "prop_0_0.05.vnnlib");
  c->g = sb_onnx_load(op, &error);
  ck_assert_msg(c->g != NULL, "%s", error ? error->message : "");
  c->p = sb_vnnlib_load(vp, &error);
  ck_assert_msg(c->p != NULL, "%s", error ? error->message : "");
  c->setup = sb_test_open("cpu", 0);
  c->net = sb_network_new(c->setup->session, c->g, &error);
  ck_assert_msg(c->net != NULL, "%s", error ? error->message : "");
  sb_verify_params_init(&c->params);
  c->params.attack = FALSE;
}

static void hard_case_close(HardCase *c) {
  g_clear_pointer(&c->net, sb_network_free);
  g_clear_pointer(&c->setup, sb_session_setup_free);
  g_clear_pointer(&c->p, sb_property_free);
  g_clear_pointer(&c->g, sb_graph_free);
}

START_TEST(test_verify_honours_timeout) {
  /* The answer must be "timeout", on time. */
  HardCase c;
  hard_case_open(&c);
  SbVerifyOutcome o;
  g_autoptr(GError) error = NULL;
  c.params.timeout = 1.0;
  gint64 t0 = g_get_monotonic_time();
  ck_assert(sb_verify(c.net, c.p, &c.params, &o, &error));
  double seconds = (g_get_monotonic_time() - t0) / 1e6;
  ck_assert_str_eq(sb_result_to_string(o.result), "timeout");
  /* Honoured within a margin that a loaded machine cannot break, yet far
   * below the minutes the instance takes without the deadline (how close
   * to the cap it ends is a benchmark figure, not asserted here). A
   * sanitizer build (SHARDBOUND_TEST_SLOWDOWN, set by configure
   * --enable-sanitizers) runs the passes between two deadline checks many
   * times slower. */
  const char *slowdown_text = g_getenv("SHARDBOUND_TEST_SLOWDOWN");
  double slowdown =
      slowdown_text != NULL ? g_ascii_strtod(slowdown_text, NULL) : 1.0;
  ck_assert_msg(seconds < c.params.timeout + 5.0 * MAX(slowdown, 1.0),
                "took %.2f s", seconds);
  sb_verify_outcome_clear(&o);
  hard_case_close(&c);
}
END_TEST

/* The deadline is checked inside the long stretches, not only between BaB
 * steps: with the root's alpha-CROWN (_i == 0) or every BaB batch's
 * alpha/beta optimisation (_i == 1) made to run ~forever (no early stop, a
 * million Adam steps, minutes per start node), the run still ends soon
 * after the cap. The bound is generous for a loaded CI machine, yet far
 * below what an unchecked stretch takes. */
START_TEST(test_verify_timeout_interrupts_long_optimisation) {
  HardCase c;
  hard_case_open(&c);
  SbVerifyOutcome o;
  g_autoptr(GError) error = NULL;
  c.params.timeout = 1.0;
  c.params.alpha.patience = G_MAXINT;
  if (_i == 0)
    c.params.alpha.iterations = c.params.alpha.final_iterations = 1000000;
  else
    c.params.bab_iterations = 1000000;
  gint64 t0 = g_get_monotonic_time();
  ck_assert(sb_verify(c.net, c.p, &c.params, &o, &error));
  double seconds = (g_get_monotonic_time() - t0) / 1e6;
  ck_assert_str_eq(sb_result_to_string(o.result), "timeout");
  ck_assert_msg(seconds < c.params.timeout + 8.0, "took %.2f s", seconds);
  sb_verify_outcome_clear(&o);
  hard_case_close(&c);
}
END_TEST

/* The queue limits end branch-and-bound with "unknown" and say why. */
START_TEST(test_verify_stops_at_domain_and_memory_limits) {
  g_autoptr(GError) error = NULL;
  HardCase c;
  hard_case_open(&c);
  c.params.batch = 4;
  c.params.timeout = 60;
  if (_i == 0)
    c.params.max_domains = 3;
  else
    c.params.max_memory_mib = 0.01; /* a few domains' bounds */
  SbVerifyOutcome o;
  ck_assert_msg(sb_verify(c.net, c.p, &c.params, &o, &error), "%s",
                error ? error->message : "");
  ck_assert_str_eq(sb_result_to_string(o.result), "unknown");
  /* The reason names the limit that was reached. */
  const char *option = _i == 0 ? "over --max-domains 3" : "over --max-memory";
  ck_assert_msg(o.reason != NULL && strstr(o.reason, option) != NULL, "%s",
                o.reason ? o.reason : "(none)");
  sb_verify_outcome_clear(&o);
  hard_case_close(&c);
}
END_TEST

/* A budget of branch-and-bound domains ends the run with "timeout" once
 * that many domains were evaluated: no fewer, and no more than the one
 * batch (at most 2 x batch children) that crossed it, plus the root. */
START_TEST(test_verify_stops_after_bab_domains) {
  g_autoptr(GError) error = NULL;
  HardCase c;
  hard_case_open(&c);
  c.params.batch = 4;
  c.params.timeout = 120;
  c.params.bab_domains = 20;
  SbVerifyOutcome o;
  ck_assert_msg(sb_verify(c.net, c.p, &c.params, &o, &error), "%s",
                error ? error->message : "");
  ck_assert_str_eq(sb_result_to_string(o.result), "timeout");
  ck_assert_int_ge(o.domains, c.params.bab_domains);
  ck_assert_int_le(o.domains, 1 + c.params.bab_domains + 2 * c.params.batch);
  sb_verify_outcome_clear(&o);
  hard_case_close(&c);
}
END_TEST

/* ---- domain-parallel branch-and-bound on fsdp --------------------------- */

/* The backend call at which
 * test_verify_rank_failing_during_bab_is_a_clean_error injects its fault: past
 * the root's attack-free bounds of its network. */
#define BAB_FAULT_CALL 2000

/* One verify run of g and p on backend (ranks; options NULL-terminated
 * key=value or NULL). */
static gboolean verify_on(const char *backend, int ranks,
                          const char *const *options, const SbGraph *g,
                          const SbProperty *p, const SbVerifyParams *params,
                          SbVerifyOutcome *o, GError **error) {
  SbSessionRequest req = {
      .backend = backend, .ranks = ranks, .options = options};
  g_autoptr(SbSessionSetup) setup = sb_session_setup(&req, error);
  ck_assert_msg(setup != NULL, "%s: %s", backend,
                *error ? (*error)->message : "");
  g_autoptr(SbNetwork) net = sb_network_new(setup->session, g, error);
  ck_assert(net != NULL);
  return sb_verify(net, p, params, o, error);
}

/* fsdp at P = 1..4 takes the very same branch-and-bound path as cpu: the
 * bounds are bitwise equal, so the answer, the number of domains and the
 * counterexample are too. */
static void assert_fsdp_follows_cpu(const SbGraph *g, const SbProperty *p,
                                    const SbVerifyParams *params,
                                    const char *what, SbVerifyOutcome *want) {
  g_autoptr(GError) error = NULL;
  ck_assert_msg(verify_on("cpu", 0, NULL, g, p, params, want, &error), "%s: %s",
                what, error ? error->message : "");
  for (int P = 1; P <= 4; P++) {
    SbVerifyOutcome o;
    ck_assert_msg(verify_on("fsdp", P, NULL, g, p, params, &o, &error),
                  "%s P=%d: %s", what, P, error ? error->message : "");
    ck_assert_msg(o.result == want->result, "%s P=%d: %s, cpu %s", what, P,
                  sb_result_to_string(o.result),
                  sb_result_to_string(want->result));
    ck_assert_msg(o.domains == want->domains,
                  "%s P=%d: %" G_GINT64_FORMAT
                  " domains, cpu %" G_GINT64_FORMAT,
                  what, P, (gint64)o.domains, (gint64)want->domains);
    ck_assert_msg(o.tighten_domains == want->tighten_domains,
                  "%s P=%d: %" G_GINT64_FORMAT
                  " domains tightening the root, cpu %" G_GINT64_FORMAT,
                  what, P, (gint64)o.tighten_domains,
                  (gint64)want->tighten_domains);
    if (want->result == SB_RESULT_SAT)
      ck_assert_msg(o.region == want->region &&
                        memcmp(o.x, want->x, sizeof(float) * g->input_size) ==
                            0,
                    "%s P=%d: another counterexample than cpu's", what, P);
    sb_verify_outcome_clear(&o);
  }
}

/* A 2 -> 24 -> 24 -> 3 network and the robustness property of a random
 * box around a random centre; *label is the class at the centre. */
static void random_wide_case(GRand *rng, SbGraph **g, SbProperty **p,
                             int *label) {
  *g = tiny_net(rng, 24);
  *p = random_robustness(rng, *g, 0.3, 0.8, label);
}

/* Seed 778's second property needs about 100 domains (see below). */
static void bab_heavy_case(SbGraph **g, SbProperty **p) {
  GRand *rng = g_rand_new_with_seed(778);
  int label;
  for (int trial = 0; trial < 2; trial++) {
    if (trial > 0) {
      sb_graph_free(*g);
      sb_property_free(*p);
    }
    random_wide_case(rng, g, p, &label);
  }
  g_rand_free(rng);
}

/* Random networks wide enough that branch-and-bound evaluates batches of
 * more than one batch block (so fsdp splits the domains across ranks),
 * without the attack so that every property goes through the splits; the
 * answers must also agree with the dense grid. */
START_TEST(test_verify_on_fsdp_follows_cpu_on_random_networks) {
  int64_t most = 0;
  int checked = 0;
  for (int seed = 777; seed <= 778; seed++) {
    GRand *rng = g_rand_new_with_seed(seed);
    for (int trial = 0; trial < 4; trial++) {
      g_autoptr(SbGraph) g = NULL;
      g_autoptr(SbProperty) p = NULL;
      int label;
      random_wide_case(rng, &g, &p, &label);
      double truth = grid_margin(g, p, label, 400);
      SbVerifyParams params;
      sb_verify_params_init(&params);
      params.attack = FALSE;
      params.batch = 32; /* a batch block of parents, two of children */
      SbVerifyOutcome want;
      char what[64];
      g_snprintf(what, sizeof what, "seed %d property %d", seed, trial);
      assert_fsdp_follows_cpu(g, p, &params, what, &want);
      if (fabs(truth) >= 0.05) {
        checked++;
        if (truth > 0)
          ck_assert_msg(want.result != SB_RESULT_SAT, "%s: sat, grid margin %g",
                        what, truth);
        else
          ck_assert_msg(want.result != SB_RESULT_UNSAT,
                        "%s: unsat, grid margin %g", what, truth);
      }
      most = MAX(most, want.domains);
      g_printerr("%s: %s after %" G_GINT64_FORMAT
                 " domains on cpu and fsdp P=1..4 (grid margin %g)\n",
                 what, sb_result_to_string(want.result), (gint64)want.domains,
                 truth);
      sb_verify_outcome_clear(&want);
    }
    g_rand_free(rng);
  }
  /* At least one property needed batches wider than a batch block. */
  ck_assert_int_gt(most, 2 * 32);
  ck_assert_int_gt(checked, 0);
}
END_TEST

/* With betas warm-started from the parent, fsdp still follows cpu: the
 * betas each domain keeps are read back like its slopes. */
START_TEST(test_verify_on_fsdp_follows_cpu_with_warm_betas) {
  g_autoptr(SbGraph) g = NULL;
  g_autoptr(SbProperty) p = NULL;
  bab_heavy_case(&g, &p);
  SbVerifyParams params;
  sb_verify_params_init(&params);
  params.attack = FALSE;
  params.warm_betas = TRUE;
  params.batch = 32; /* a batch block of parents, two of children */
  SbVerifyOutcome want;
  assert_fsdp_follows_cpu(g, p, &params, "seed 778 property 1, warm betas",
                          &want);
  /* Enough domains that children of children inherited betas. */
  ck_assert_int_gt(want.domains, 2 * params.batch);
  g_printerr("seed 778 property 1, warm betas: %s after %" G_GINT64_FORMAT
             " domains on cpu and fsdp P=1..4\n",
             sb_result_to_string(want.result), (gint64)want.domains);
  sb_verify_outcome_clear(&want);
}
END_TEST

/* With the root's intermediate bounds tightened by searches, fsdp still
 * follows cpu (those searches are branch-and-bound too), and the main
 * search needs fewer domains than from alpha-CROWN's bounds. */
START_TEST(test_verify_on_fsdp_follows_cpu_with_tightened_roots) {
  g_autoptr(SbGraph) g = NULL;
  g_autoptr(SbProperty) p = NULL;
  bab_heavy_case(&g, &p);
  SbVerifyParams params;
  sb_verify_params_init(&params);
  params.attack = FALSE;
  params.batch = 32;
  params.tighten_layers = 0;
  SbVerifyOutcome plain, want;
  g_autoptr(GError) error = NULL;
  ck_assert(verify_on("cpu", 0, NULL, g, p, &params, &plain, &error));
  params.tighten_layers = 1;
  params.tighten_domains = 16;
  params.tighten_after = 0;
  assert_fsdp_follows_cpu(g, p, &params, "seed 778 property 1, tightened",
                          &want);
  ck_assert_int_eq(want.result, plain.result);
  ck_assert_int_gt(want.tighten_domains, 0);
  ck_assert_int_lt(want.domains, plain.domains);
  g_printerr("seed 778 property 1: %s after %" G_GINT64_FORMAT
             " domains, or %" G_GINT64_FORMAT " after %" G_GINT64_FORMAT
             " tightening the root, on cpu and fsdp P=1..4\n",
             sb_result_to_string(want.result), (gint64)plain.domains,
             (gint64)want.domains, (gint64)want.tighten_domains);
  sb_verify_outcome_clear(&plain);
  sb_verify_outcome_clear(&want);
}
END_TEST

/* A network with one hidden layer has no intermediate bound to tighten
 * (IBP is exact before the first ReLU): its search is never stopped for
 * the tightening, and runs as with tightening off. */
START_TEST(test_verify_one_hidden_layer_is_not_restarted_for_tightening) {
  GRand *rng = g_rand_new_with_seed(31337);
  int branched = 0;
  for (int trial = 0; trial < 6; trial++) {
    g_autoptr(SbGraph) g = tiny_mlp(rng, 24, 1);
    int label;
    g_autoptr(SbProperty) p = random_robustness(rng, g, 0.3, 0.8, &label);
    SbVerifyParams params;
    sb_verify_params_init(&params);
    params.attack = FALSE;
    params.tighten_layers = 0;
    /* Without the attack a false property is only decided once a domain
     * has no unstable ReLU left: keep the searches small. */
    params.bab_domains = 3000;
    SbVerifyOutcome plain, tightened;
    g_autoptr(GError) error = NULL;
    ck_assert(verify_on("cpu", 0, NULL, g, p, &params, &plain, &error));
    params.tighten_layers = 3;
    params.tighten_after = 0;
    ck_assert(verify_on("cpu", 0, NULL, g, p, &params, &tightened, &error));
    ck_assert_int_eq(tightened.result, plain.result);
    ck_assert_int_eq(tightened.domains, plain.domains);
    ck_assert_int_eq(tightened.tighten_domains, 0);
    /* A restart would have evaluated the root once more. */
    branched += plain.domains > 1 && plain.result != SB_RESULT_TIMEOUT;
    sb_verify_outcome_clear(&plain);
    sb_verify_outcome_clear(&tightened);
  }
  ck_assert_int_gt(branched, 0); /* some searches went past the root */
  g_rand_free(rng);
}
END_TEST

/* A layer whose first neurons' tightening gains less than
 * tighten_min_gain of their widths is left, and when no layer was
 * tightened whole the paused search goes on from the domains it had
 * queued instead of starting again: with one disjunct (one search) it
 * takes exactly the domains of a search without the tightening. With
 * tighten_min_gain 0 the same cases start again, which takes more. */
START_TEST(test_verify_goes_on_with_the_paused_search_when_no_layer_pays) {
  GRand *rng = g_rand_new_with_seed(2718);
  int resumed = 0, restarted = 0;
  for (int trial = 0; trial < 8; trial++) {
    g_autoptr(SbGraph) g = tiny_mlp(rng, 48, 2);
    int label;
    g_autoptr(SbProperty) robust = random_robustness(rng, g, 0.3, 0.8, &label);
    const SbRegion *r = &robust->regions[0];
    /* One disjunct: the first other class at least as large. */
    g_autofree char *text =
        g_strdup_printf("(declare-const X_0 Real)\n(declare-const X_1 Real)\n"
                        "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
                        "(declare-const Y_2 Real)\n"
                        "(assert (>= X_0 %.17g))\n(assert (<= X_0 %.17g))\n"
                        "(assert (>= X_1 %.17g))\n(assert (<= X_1 %.17g))\n"
                        "(assert (>= Y_%d Y_%d))\n",
                        r->x_lower[0], r->x_upper[0], r->x_lower[1],
                        r->x_upper[1], label == 0 ? 1 : 0, label);
    g_autoptr(GError) error = NULL;
    g_autoptr(SbProperty) p = sb_vnnlib_parse(text, strlen(text), &error);
    ck_assert_msg(p != NULL, "%s", error ? error->message : "");
    SbVerifyParams params;
    sb_verify_params_init(&params);
    params.attack = FALSE;
    params.bab_domains = 3000;
    params.tighten_layers = 0;
    SbVerifyOutcome plain, left, whole;
    ck_assert(verify_on("cpu", 0, NULL, g, p, &params, &plain, &error));
    params.tighten_layers = 1;
    params.tighten_domains = 8;
    params.tighten_after = 8;
    params.tighten_min_gain = 1e9; /* no layer pays */
    ck_assert(verify_on("cpu", 0, NULL, g, p, &params, &left, &error));
    params.tighten_min_gain = 0; /* every layer is tightened whole */
    ck_assert(verify_on("cpu", 0, NULL, g, p, &params, &whole, &error));
    ck_assert_int_eq(left.result, plain.result);
    ck_assert_int_eq(whole.result, plain.result);
    if (left.tighten_domains > 0) {
      /* Paused and probed: 16 neurons, both sides, then left. */
      ck_assert_int_eq(left.domains, plain.domains);
      ck_assert_int_lt(left.tighten_domains, whole.tighten_domains);
      resumed++;
      restarted += whole.domains != plain.domains;
    }
    sb_verify_outcome_clear(&plain);
    sb_verify_outcome_clear(&left);
    sb_verify_outcome_clear(&whole);
  }
  /* Some searches went past tighten_after with more than 16 unstable
   * neurons to tighten, and starting again changed some. */
  ck_assert_int_gt(resumed, 0);
  ck_assert_int_gt(restarted, 0);
  g_printerr("tighten_min_gain: %d of 8 searches went on after the probe, "
             "%d of them differ when started again\n",
             resumed, restarted);
  g_rand_free(rng);
}
END_TEST

/* Golden instances: two decided at the root (the attack and alpha-CROWN
 * run on the ranks too) and one that needs branch-and-bound. */
static const char *const follow_instances[][2] = {
    {"mnist-net_256x2.onnx", "prop_0_0.03.vnnlib"},
    {"mnist-net_256x2.onnx", "prop_1_0.03.vnnlib"},
    {"mnist-net_256x4.onnx", "prop_3_0.05.vnnlib"},
};

START_TEST(test_verify_on_fsdp_follows_cpu_on_instances) {
  g_autoptr(GError) error = NULL;
  g_autofree char *op = sb_test_data_path("onnx", follow_instances[_i][0]);
  g_autofree char *vp = sb_test_data_path("vnnlib", follow_instances[_i][1]);
  g_autoptr(SbGraph) g = sb_onnx_load(op, &error);
  g_autoptr(SbProperty) p = sb_vnnlib_load(vp, &error);
  ck_assert(g != NULL && p != NULL);
  SbVerifyParams params;
  sb_verify_params_init(&params);
  SbVerifyOutcome want;
  assert_fsdp_follows_cpu(g, p, &params, follow_instances[_i][1], &want);
  g_printerr("%s %s: %s after %" G_GINT64_FORMAT
             " domains on cpu and fsdp P=1..4\n",
             follow_instances[_i][0], follow_instances[_i][1],
             sb_result_to_string(want.result), (gint64)want.domains);
  sb_verify_outcome_clear(&want);
}
END_TEST

/* A rank that fails in the middle of branch-and-bound (fault injection at
 * a backend call after the root) ends verify with an error naming the
 * rank, after some domains were evaluated, and never with an answer. */
START_TEST(test_verify_rank_failing_during_bab_is_a_clean_error) {
  g_autoptr(SbGraph) g = NULL;
  g_autoptr(SbProperty) p = NULL;
  bab_heavy_case(&g, &p);
  SbVerifyParams params;
  sb_verify_params_init(&params);
  params.attack = FALSE;
  params.batch = 2 * 32;
  const char *const options[] = {"fail_rank=1",
                                 "fail_at=" G_STRINGIFY(BAB_FAULT_CALL), NULL};
  SbVerifyOutcome o;
  g_autoptr(GError) error = NULL;
  ck_assert(!verify_on("fsdp", 3, options, g, p, &params, &o, &error));
  ck_assert_int_eq(o.result, SB_RESULT_ERROR);
  ck_assert_msg(error != NULL && strstr(error->message, "rank 1") != NULL, "%s",
                error ? error->message : "(no error)");
  ck_assert_msg(o.domains > 0, "the fault hit before branch-and-bound");
  sb_verify_outcome_clear(&o);
}
END_TEST

/* --max-memory limits each rank's backend memory in branch-and-bound: a
 * limit above the queue's few domains but below what a rank allocates for
 * a batch stops with unknown and names the rank. */
START_TEST(test_verify_max_memory_applies_per_rank) {
  g_autoptr(SbGraph) g = NULL;
  g_autoptr(SbProperty) p = NULL;
  bab_heavy_case(&g, &p);
  SbVerifyParams params;
  sb_verify_params_init(&params);
  params.attack = FALSE;
  params.batch = 2 * 32;
  params.max_memory_mib = 0.002; /* 2 KiB: the queue's first domains fit */
  SbVerifyOutcome o;
  g_autoptr(GError) error = NULL;
  ck_assert_msg(verify_on("fsdp", 2, NULL, g, p, &params, &o, &error), "%s",
                error ? error->message : "");
  ck_assert_str_eq(sb_result_to_string(o.result), "unknown");
  ck_assert_msg(o.reason != NULL && strstr(o.reason, "per rank") != NULL &&
                    strstr(o.reason, "rank 0") != NULL,
                "%s", o.reason ? o.reason : "(none)");
  ck_assert(o.bab_memory != NULL && o.bab_memory[0].total_peak_bytes > 2048);
  sb_verify_outcome_clear(&o);
}
END_TEST

/* ---- betas warm-started from the parent ---------------------------------- */

/* The value the "optimiser" leaves in beta (s, b, k) of the test below. */
static double optimised_beta(int64_t s, int64_t b, int64_t k) {
  return 1 + 10 * s + 100 * b + 0.5 * k;
}

/* A batch of children keeps the betas the optimiser ended with, per split;
 * their own children inherit them (the new split's at 0), and the next
 * batch's beta tensors start from those values instead of zeros. */
START_TEST(test_bab_children_start_from_their_parents_betas) {
  GRand *rng = g_rand_new_with_seed(5);
  g_autoptr(SbGraph) g = tiny_net(rng, 6);
  g_rand_free(rng);
  g_autoptr(GError) error = NULL;
  SbSessionRequest req = {.backend = "cpu"};
  g_autoptr(SbSessionSetup) setup = sb_session_setup(&req, &error);
  ck_assert_msg(setup != NULL, "%s", error ? error->message : "");
  g_autoptr(SbNetwork) net = sb_network_new(setup->session, g, &error);
  ck_assert(net != NULL);
  const int n = sb_graph_n_nodes(g), node = 3; /* the second ReLU's input */
  const int64_t S = 2, B = 2, N = sb_net_node_size(net, node);
  SbBab bab = {
      .net = net, .S = (int)S, .R = 12, .alpha_size = 12, .warm_betas = TRUE};
  g_autofree sb_tensor **sign = g_new0(sb_tensor *, n);
  sign[node] = sb_net_tensor_new(net, SB_MEM_BOUNDS, B, N, 0, &error);
  ck_assert(sign[node] != NULL);
  g_autofree double *buf = g_new(double, S *B *N);

  /* First batch: the root's children, split on neuron 1; no betas yet. */
  SbBabDomain *root = sb_bab_domain_new_root(&bab);
  SbBabDomain *kids[2] = {sb_bab_domain_new_child(&bab, root, node, 1, -1),
                          sb_bab_domain_new_child(&bab, root, node, 1, 1)};
  ck_assert(kids[0]->beta == NULL && kids[1]->beta == NULL);
  SbAlphaSet set = {.n_nodes = n};
  ck_assert(sb_alpha_set_add_betas(net, &set, S, B, sign, &error));
  ck_assert(
      sb_bab_domains_exchange_betas(&bab, &set, kids, (int)B, FALSE, &error));
  ck_assert(sb_net_tensor_read(net, set.beta[node], S * B * N, buf, &error));
  for (int64_t k = 0; k < S * B * N; k++)
    ck_assert(buf[k] == 0);
  for (int64_t s = 0; s < S; s++)
    for (int64_t b = 0; b < B; b++)
      for (int64_t k = 0; k < N; k++)
        buf[(s * B + b) * N + k] = optimised_beta(s, b, k);
  ck_assert(sb_net_tensor_write(net, set.beta[node], S * B * N, buf, &error));
  ck_assert(
      sb_bab_domains_exchange_betas(&bab, &set, kids, (int)B, TRUE, &error));
  sb_alpha_set_clear(net, &set);
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      ck_assert_double_eq(kids[b]->beta[s], optimised_beta(s, b, 1));

  /* Second batch: kids[0]'s children, split on neuron 4. */
  SbBabDomain *grand[2] = {sb_bab_domain_new_child(&bab, kids[0], node, 4, -1),
                           sb_bab_domain_new_child(&bab, kids[0], node, 4, 1)};
  for (int64_t b = 0; b < B; b++) {
    for (int64_t s = 0; s < S; s++) {
      ck_assert_double_eq(grand[b]->beta[s * 2], optimised_beta(s, 0, 1));
      ck_assert_double_eq(grand[b]->beta[s * 2 + 1], 0);
    }
    /* The queue's memory estimate counts each split's S betas. */
    ck_assert_int_eq(sb_bab_domain_split_bytes(&bab, grand[b]),
                     2 * (int64_t)sizeof(SbBabSplit) +
                         S * 2 * (int64_t)sizeof(float));
  }
  ck_assert(sb_alpha_set_add_betas(net, &set, S, B, sign, &error));
  ck_assert(
      sb_bab_domains_exchange_betas(&bab, &set, grand, (int)B, FALSE, &error));
  ck_assert(sb_net_tensor_read(net, set.beta[node], S * B * N, buf, &error));
  for (int64_t s = 0; s < S; s++)
    for (int64_t b = 0; b < B; b++)
      for (int64_t k = 0; k < N; k++)
        ck_assert_msg(buf[(s * B + b) * N + k] ==
                          (k == 1 ? optimised_beta(s, 0, 1) : 0),
                      "beta (%d, %d, %d) starts at %g", (int)s, (int)b, (int)k,
                      buf[(s * B + b) * N + k]);
  sb_alpha_set_clear(net, &set);

  sb_net_tensor_free(net, sign[node]);
  for (int b = 0; b < 2; b++) {
    sb_bab_domain_free(kids[b]);
    sb_bab_domain_free(grand[b]);
  }
  sb_bab_domain_free(root);
}
END_TEST

static Suite *verify_suite(void) {
  Suite *s = suite_create("verify");
  TCase *tc = tcase_create("ground truth");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(
      tc, test_verify_never_contradicts_dense_grid_on_tiny_networks, 0, 4);
  tcase_add_test(tc, test_found_margin_is_that_of_a_checked_input);
  suite_add_tcase(s, tc);
  tc = tcase_create("tightened root bounds");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_bounds_round_outward_as_nextafterf);
  tcase_add_test(tc, test_tightened_root_bounds_hold_on_a_dense_grid);
  suite_add_tcase(s, tc);
  tc = tcase_create("vnncomp");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_verify_finds_published_counterexample);
  tcase_add_loop_test(tc, test_verify_proves_published_unsat_instance, 0, 2);
  tcase_add_test(tc, test_verify_honours_timeout);
  tcase_add_loop_test(tc, test_verify_timeout_interrupts_long_optimisation, 0,
                      2);
  tcase_add_loop_test(tc, test_verify_stops_at_domain_and_memory_limits, 0, 2);
  tcase_add_test(tc, test_verify_stops_after_bab_domains);
  suite_add_tcase(s, tc);
  tc = tcase_create("fsdp domains");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_verify_on_fsdp_follows_cpu_on_random_networks);
  tcase_add_loop_test(tc, test_verify_on_fsdp_follows_cpu_on_instances, 0,
                      G_N_ELEMENTS(follow_instances));
  tcase_add_test(tc, test_verify_rank_failing_during_bab_is_a_clean_error);
  tcase_add_test(tc, test_verify_max_memory_applies_per_rank);
  suite_add_tcase(s, tc);
  tc = tcase_create("warm betas");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_bab_children_start_from_their_parents_betas);
  tcase_add_test(tc, test_verify_on_fsdp_follows_cpu_with_warm_betas);
  tcase_add_test(tc, test_verify_on_fsdp_follows_cpu_with_tightened_roots);
  tcase_add_test(tc,
                 test_verify_one_hidden_layer_is_not_restarted_for_tightening);
  tcase_add_test(tc,
                 test_verify_goes_on_with_the_paused_search_when_no_layer_pays);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(verify_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
