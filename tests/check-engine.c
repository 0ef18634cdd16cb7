/* SPDX-License-Identifier: MIT */
/* Engine tests: IBP and CROWN reproduce auto_LiRPA's goldens on real
 * VNN-COMP networks, and bounds contain every sampled output. */
#include "config.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine-testlib.h"
#include "hosts/engine/network.h"

static void assert_close_array(JsonObject *method, const char *key,
                               const double *got, int n, const char *golden) {
  JsonArray *want = json_object_get_array_member(method, key);
  ck_assert_int_eq((int)json_array_get_length(want), n);
  for (int i = 0; i < n; i++) {
    double w = json_array_get_double_element(want, i);
    double tol = MAX(1e-4, 1e-4 * fabs(w));
    ck_assert_msg(fabs(got[i] - w) <= tol,
                  "%s %s[%d]: got %.9g, auto_LiRPA %.9g", golden, key, i,
                  got[i], w);
  }
}

static void check_golden(int i, SbMethod method, const char *key) {
  SbTestCase c = {0};
  g_autoptr(GError) error = NULL;
  sb_test_case_load(&c, sb_test_goldens[i], "cpu", 0);
  g_autofree double *rows = sb_property_spec_rows(c.prop);
  SbSpec spec = {c.prop->n_atoms, rows};
  SbBoundsResult r;
  ck_assert_msg(
      sb_test_compute_bounds(c.net, method, FALSE, c.prop->regions[0].x_lower,
                             c.prop->regions[0].x_upper, &spec, &r, &error),
      "%s: %s", sb_test_goldens[i], error ? error->message : "");
  JsonObject *m = json_object_get_object_member(
      json_object_get_object_member(c.root, "methods"), key);
  assert_close_array(m, "output_lower", r.output_lower, r.n_outputs,
                     sb_test_goldens[i]);
  assert_close_array(m, "output_upper", r.output_upper, r.n_outputs,
                     sb_test_goldens[i]);
  assert_close_array(m, "spec_lower", r.spec_lower, r.n_specs,
                     sb_test_goldens[i]);
  assert_close_array(m, "spec_upper", r.spec_upper, r.n_specs,
                     sb_test_goldens[i]);
  sb_bounds_result_clear(&r);
  sb_test_case_free(&c);
}

START_TEST(test_ibp_matches_auto_lirpa_golden) {
  check_golden(_i, SB_METHOD_IBP, "IBP");
}
END_TEST

START_TEST(test_crown_matches_auto_lirpa_golden) {
  check_golden(_i, SB_METHOD_CROWN, "CROWN");
}
END_TEST

/* alpha-CROWN: lower bounds at least as tight as auto_LiRPA's (DESIGN.md
 * section 7), and never looser than our own CROWN. */
START_TEST(test_alpha_crown_at_least_as_tight_as_auto_lirpa) {
  SbTestCase c = {0};
  g_autoptr(GError) error = NULL;
  sb_test_case_load(&c, sb_test_goldens[_i], "cpu", 0);
  g_autofree double *rows = sb_property_spec_rows(c.prop);
  SbSpec spec = {c.prop->n_atoms, rows};
  const double *xl = c.prop->regions[0].x_lower,
               *xu = c.prop->regions[0].x_upper;
  SbBoundsResult crown, alpha;
  ck_assert(sb_test_compute_bounds(c.net, SB_METHOD_CROWN, FALSE, xl, xu, &spec,
                                   &crown, &error));
  ck_assert_msg(sb_test_compute_bounds(c.net, SB_METHOD_ALPHA_CROWN, FALSE, xl,
                                       xu, &spec, &alpha, &error),
                "%s", error ? error->message : "");
  JsonObject *m = json_object_get_object_member(
      json_object_get_object_member(c.root, "methods"), "alpha-CROWN");
  const char *keys[2] = {"output_lower", "spec_lower"};
  const double *got[2] = {alpha.output_lower, alpha.spec_lower};
  const double *ours[2] = {crown.output_lower, crown.spec_lower};
  for (int a = 0; a < 2; a++) {
    JsonArray *want = json_object_get_array_member(m, keys[a]);
    for (guint k = 0; k < json_array_get_length(want); k++) {
      double w = json_array_get_double_element(want, k);
      ck_assert_msg(got[a][k] >= w - 1e-4,
                    "%s %s[%u]: alpha-CROWN %.9g looser than auto_LiRPA %.9g",
                    sb_test_goldens[_i], keys[a], k, got[a][k], w);
      ck_assert_msg(got[a][k] >= ours[a][k] - 1e-5,
                    "%s %s[%u]: alpha-CROWN %.9g looser than CROWN %.9g",
                    sb_test_goldens[_i], keys[a], k, got[a][k], ours[a][k]);
    }
  }
  sb_test_assert_contains_samples(c.graph, xl, xu, &alpha, 200, 77 + _i,
                                  sb_test_goldens[_i]);
  sb_bounds_result_clear(&crown);
  sb_bounds_result_clear(&alpha);
  sb_test_case_free(&c);
}
END_TEST

START_TEST(test_golden_network_bounds_contain_samples) {
  SbTestCase c = {0};
  g_autoptr(GError) error = NULL;
  sb_test_case_load(&c, sb_test_goldens[_i], "cpu", 0);
  for (int m = SB_METHOD_IBP; m <= SB_METHOD_CROWN; m++) {
    SbBoundsResult r;
    ck_assert_msg(
        sb_test_compute_bounds(c.net, m, FALSE, c.prop->regions[0].x_lower,
                               c.prop->regions[0].x_upper, NULL, &r, &error),
        "%s", error ? error->message : "");
    sb_test_assert_contains_samples(c.graph, c.prop->regions[0].x_lower,
                                    c.prop->regions[0].x_upper, &r, 200, 7 + _i,
                                    sb_test_goldens[_i]);
    sb_bounds_result_clear(&r);
  }
  sb_test_case_free(&c);
}
END_TEST

START_TEST(test_random_dag_bounds_contain_samples) {
  GRand *rng = g_rand_new_with_seed(1000 + _i);
  g_autoptr(SbGraph) g = _i % 2 == 0 ? sb_test_random_residual_mlp(rng)
                                     : sb_test_random_conv_net(rng);
  g_autoptr(SbSessionSetup) setup = sb_test_open("cpu", 0);
  g_autoptr(GError) error = NULL;
  g_autoptr(SbNetwork) net = sb_network_new(setup->session, g, &error);
  ck_assert_msg(net != NULL, "%s", error ? error->message : "");
  g_autofree double *xl = g_new(double, g->input_size);
  g_autofree double *xu = g_new(double, g->input_size);
  for (int64_t k = 0; k < g->input_size; k++) {
    double c = g_rand_double_range(rng, -1, 1),
           eps = g_rand_double_range(rng, 0.05, 0.5);
    xl[k] = c - eps;
    xu[k] = c + eps;
  }
  for (int m = 0; m < 3; m++) /* IBP, CROWN, CROWN intersected with IBP */
  {
    SbBoundsResult r;
    ck_assert_msg(
        sb_test_compute_bounds(net, m == 0 ? SB_METHOD_IBP : SB_METHOD_CROWN,
                               m == 2, xl, xu, NULL, &r, &error),
        "%s", error ? error->message : "");
    sb_test_assert_contains_samples(g, xl, xu, &r, 1000, 99 + _i,
                                    m == 0 ? "IBP" : "CROWN");
    for (int j = 0; j < r.n_outputs; j++)
      ck_assert(r.output_lower[j] <= r.output_upper[j]);
    sb_bounds_result_clear(&r);
  }
  g_rand_free(rng);
}
END_TEST

/* Intersecting CROWN's intermediate bounds with IBP's can only tighten the
 * final bounds, and they stay sound. */
START_TEST(test_crown_with_ibp_intersection_is_never_looser) {
  SbTestCase c = {0};
  g_autoptr(GError) error = NULL;
  sb_test_case_load(&c, sb_test_goldens[_i], "cpu", 0);
  const double *xl = c.prop->regions[0].x_lower,
               *xu = c.prop->regions[0].x_upper;
  SbBoundsResult plain, tight;
  ck_assert(sb_test_compute_bounds(c.net, SB_METHOD_CROWN, FALSE, xl, xu, NULL,
                                   &plain, &error));
  ck_assert(sb_test_compute_bounds(c.net, SB_METHOD_CROWN, TRUE, xl, xu, NULL,
                                   &tight, &error));
  for (int j = 0; j < plain.n_outputs; j++) {
    ck_assert_msg(tight.output_lower[j] >= plain.output_lower[j] - 1e-5,
                  "%s lower[%d]", sb_test_goldens[_i], j);
    ck_assert_msg(tight.output_upper[j] <= plain.output_upper[j] + 1e-5,
                  "%s upper[%d]", sb_test_goldens[_i], j);
  }
  sb_test_assert_contains_samples(c.graph, xl, xu, &tight, 200, 31 + _i,
                                  sb_test_goldens[_i]);
  sb_bounds_result_clear(&plain);
  sb_bounds_result_clear(&tight);
  sb_test_case_free(&c);
}
END_TEST

/* A start node's neurons bounded a chunk of rows at a time (what a pass
 * over too many of them does to stay within its memory budget) give the
 * bounds of one pass over all of them for CROWN, and sound alpha-CROWN
 * bounds. */
START_TEST(test_bounds_in_row_chunks_equal_one_pass) {
  SbTestCase c = {0};
  g_autoptr(GError) error = NULL;
  sb_test_case_load(&c, sb_test_goldens[_i], "cpu", 0);
  const double *xl = c.prop->regions[0].x_lower,
               *xu = c.prop->regions[0].x_upper;
  SbBoundsResult whole, chunked, alpha;
  ck_assert(sb_test_compute_bounds(c.net, SB_METHOD_CROWN, FALSE, xl, xu, NULL,
                                   &whole, &error));
  /* About 50 neurons a pass on mnist 256x4, 8 on resnet_2b. */
  c.net->tighten_pass_bytes = 1 << 20;
  ck_assert(sb_test_compute_bounds(c.net, SB_METHOD_CROWN, FALSE, xl, xu, NULL,
                                   &chunked, &error));
  for (int j = 0; j < whole.n_outputs; j++) {
    /* float32 products of other shapes may round differently. */
    double tol = 1e-5 * MAX(1.0, fabs(whole.output_lower[j]));
    ck_assert_msg(fabs(chunked.output_lower[j] - whole.output_lower[j]) <= tol,
                  "%s lower[%d]: %.9g in chunks, %.9g in one pass",
                  sb_test_goldens[_i], j, chunked.output_lower[j],
                  whole.output_lower[j]);
    tol = 1e-5 * MAX(1.0, fabs(whole.output_upper[j]));
    ck_assert_msg(fabs(chunked.output_upper[j] - whole.output_upper[j]) <= tol,
                  "%s upper[%d]: %.9g in chunks, %.9g in one pass",
                  sb_test_goldens[_i], j, chunked.output_upper[j],
                  whole.output_upper[j]);
  }
  ck_assert(sb_test_compute_bounds(c.net, SB_METHOD_ALPHA_CROWN, TRUE, xl, xu,
                                   NULL, &alpha, &error));
  sb_test_assert_contains_samples(c.graph, xl, xu, &alpha, 200, 57 + _i,
                                  sb_test_goldens[_i]);
  sb_bounds_result_clear(&whole);
  sb_bounds_result_clear(&chunked);
  sb_bounds_result_clear(&alpha);
  sb_test_case_free(&c);
}
END_TEST

/* A property's spec bound can never be looser than what the output bounds
 * alone imply when the spec is a single output (c = e_j). */
START_TEST(test_crown_spec_of_unit_rows_equals_output_bounds) {
  GRand *rng = g_rand_new_with_seed(5);
  g_autoptr(SbGraph) g = sb_test_random_residual_mlp(rng);
  g_autoptr(SbSessionSetup) setup = sb_test_open("cpu", 0);
  g_autoptr(GError) error = NULL;
  g_autoptr(SbNetwork) net = sb_network_new(setup->session, g, &error);
  double xl[6], xu[6];
  for (int k = 0; k < 6; k++)
    xl[k] = -0.3, xu[k] = 0.4;
  double rows[4 * 4] = {0};
  for (int j = 0; j < 4; j++)
    rows[j * 4 + j] = 1;
  SbSpec spec = {4, rows};
  SbBoundsResult r;
  ck_assert(sb_test_compute_bounds(net, SB_METHOD_CROWN, FALSE, xl, xu, &spec,
                                   &r, &error));
  for (int j = 0; j < 4; j++) {
    ck_assert_double_eq_tol(r.spec_lower[j], r.output_lower[j], 1e-6);
    ck_assert_double_eq_tol(r.spec_upper[j], r.output_upper[j], 1e-6);
  }
  sb_bounds_result_clear(&r);
  g_rand_free(rng);
}
END_TEST

/* The engine reports in its own error domain, with a code that says whose
 * fault a failure is: an empty box is the caller's input. */
START_TEST(test_empty_box_is_an_engine_input_error) {
  GRand *rng = g_rand_new_with_seed(6);
  g_autoptr(SbGraph) g = sb_test_random_residual_mlp(rng);
  g_autoptr(SbSessionSetup) setup = sb_test_open("cpu", 0);
  g_autoptr(GError) error = NULL;
  g_autoptr(SbNetwork) net = sb_network_new(setup->session, g, &error);
  double xl[6], xu[6];
  for (int k = 0; k < 6; k++)
    xl[k] = -0.3, xu[k] = 0.4;
  xl[2] = 0.5;
  SbBoundsResult r;
  ck_assert(!sb_test_compute_bounds(net, SB_METHOD_CROWN, FALSE, xl, xu, NULL,
                                    &r, &error));
  ck_assert_msg(
      g_error_matches(error, SB_ENGINE_ERROR, SB_ENGINE_ERROR_INVALID_INPUT),
      "%s", error ? error->message : "no error");
  ck_assert(strstr(error->message, "X_2") != NULL);
  ck_assert(sb_engine_error_is_input(error));
  g_rand_free(rng);
}
END_TEST

/* Memory statistics come through the engine with the backend's status: a
 * measurement started before a pass sees the pass's peak, and a rank that
 * does not exist is an engine error naming the backend call, not a silent
 * zero. */
START_TEST(test_memory_stats_report_the_peak_and_refuse_a_missing_rank) {
  GRand *rng = g_rand_new_with_seed(7);
  g_autoptr(SbGraph) g = sb_test_random_residual_mlp(rng);
  g_autoptr(SbSessionSetup) setup = sb_test_open("cpu", 0);
  g_autoptr(GError) error = NULL;
  g_autoptr(SbNetwork) net = sb_network_new(setup->session, g, &error);
  double xl[6], xu[6];
  for (int k = 0; k < 6; k++)
    xl[k] = -0.3, xu[k] = 0.4;
  SbBoundsResult r;
  sb_memory_stats_v1 st;
  ck_assert_int_eq(sb_network_rank_count(net), 1);
  ck_assert_msg(sb_network_memory_reset(net, &error), "%s",
                error ? error->message : "");
  ck_assert(sb_test_compute_bounds(net, SB_METHOD_CROWN, FALSE, xl, xu, NULL,
                                   &r, &error));
  sb_bounds_result_clear(&r);
  ck_assert_msg(sb_network_memory_stats(net, 0, &st, &error), "%s",
                error ? error->message : "");
  ck_assert(st.total_peak_bytes > st.baseline_bytes);
  ck_assert(st.total_peak_bytes >= st.total_current_bytes);
  ck_assert(!sb_network_memory_stats(net, 1, &st, &error));
  ck_assert(error != NULL && error->domain == SB_ENGINE_ERROR &&
            !sb_engine_error_is_input(error));
  ck_assert_msg(strstr(error->message, "memory_stats") != NULL, "%s",
                error->message);
  g_rand_free(rng);
}
END_TEST

static Suite *engine_suite(void) {
  Suite *s = suite_create("engine");
  TCase *tc = tcase_create("goldens");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, test_ibp_matches_auto_lirpa_golden, 0,
                      sb_test_n_goldens);
  tcase_add_loop_test(tc, test_crown_matches_auto_lirpa_golden, 0,
                      sb_test_n_goldens);
  tcase_add_loop_test(tc, test_alpha_crown_at_least_as_tight_as_auto_lirpa, 0,
                      sb_test_n_goldens);
  suite_add_tcase(s, tc);
  tc = tcase_create("soundness");
  tcase_set_timeout(tc, 600);
  tcase_add_loop_test(tc, test_golden_network_bounds_contain_samples, 0,
                      sb_test_n_goldens);
  tcase_add_loop_test(tc, test_random_dag_bounds_contain_samples, 0, 8);
  tcase_add_test(tc, test_crown_spec_of_unit_rows_equals_output_bounds);
  tcase_add_loop_test(tc, test_bounds_in_row_chunks_equal_one_pass, 0,
                      sb_test_n_goldens);
  tcase_add_loop_test(tc, test_crown_with_ibp_intersection_is_never_looser, 0,
                      sb_test_n_goldens);
  suite_add_tcase(s, tc);
  tc = tcase_create("interface");
  tcase_add_test(tc, test_empty_box_is_an_engine_input_error);
  tcase_add_test(tc,
                 test_memory_stats_report_the_peak_and_refuse_a_missing_rank);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(engine_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
