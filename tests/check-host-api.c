/* SPDX-License-Identifier: MIT */
/* The public host API as an outside program sees it (only its header):
 * goldens, verification, memory, settings and every error's code. */
#include "config.h"

#include <check.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <glib/gstdio.h>
#include <stddef.h>
#include <string.h>

#include "hosts/api/shardbound-host.h"

static char *data_path(const char *sub, const char *file) {
  const char *dir = g_getenv("SHARDBOUND_TEST_DATA");
  return g_build_filename(dir ? dir : "tests/data", sub, file, NULL);
}

static char *example_path(const char *file) {
  const char *dir = g_getenv("SHARDBOUND_EXAMPLES");
  return g_build_filename(dir ? dir : "examples", "mnist_fc", file, NULL);
}

static ShardboundSession *open_session(const char *backend, int ranks) {
  g_autoptr(GError) error = NULL;
  ShardboundSession *s =
      shardbound_session_open(backend, ranks, NULL, NULL, NULL, &error);
  ck_assert_msg(s != NULL, "%s", error ? error->message : "");
  return s;
}

static void assert_close(JsonObject *m, const char *key, const double *got,
                         int n, const char *what) {
  JsonArray *want = json_object_get_array_member(m, key);
  ck_assert_int_eq(json_array_get_length(want), n);
  for (int i = 0; i < n; i++) {
    double w = json_array_get_double_element(want, i);
    ck_assert_msg(fabs(got[i] - w) <= MAX(1e-4, 1e-4 * fabs(w)),
                  "%s %s[%d]: got %.9g, auto_LiRPA %.9g", what, key, i, got[i],
                  w);
  }
}

/* IBP and CROWN through the API equal auto_LiRPA's on every golden file. */
START_TEST(test_api_bounds_match_every_golden) {
  g_autoptr(GDir) dir = NULL;
  g_autofree char *gdir = data_path("goldens", "");
  dir = g_dir_open(gdir, 0, NULL);
  ck_assert(dir != NULL);
  g_autoptr(ShardboundSession) s = open_session("cpu", 0);
  int checked = 0;
  for (const char *name; (name = g_dir_read_name(dir)) != NULL;) {
    if (!g_str_has_suffix(name, ".json"))
      continue;
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autofree char *path = g_build_filename(gdir, name, NULL);
    ck_assert(json_parser_load_from_file(parser, path, NULL));
    JsonObject *root = json_node_get_object(json_parser_get_root(parser));
    g_autofree char *onnx =
        data_path("onnx", json_object_get_string_member(root, "onnx"));
    g_autofree char *vnnlib =
        data_path("vnnlib", json_object_get_string_member(root, "vnnlib"));
    g_autoptr(GError) error = NULL;
    g_autoptr(ShardboundNetwork) net = shardbound_network_load(s, onnx, &error);
    ck_assert_msg(net != NULL, "%s", error ? error->message : "");
    g_autoptr(ShardboundProperty) p = shardbound_property_load(vnnlib, &error);
    ck_assert_msg(p != NULL &&
                      shardbound_property_check_network(p, net, &error),
                  "%s", error ? error->message : "");
    const char *keys[] = {"IBP", "CROWN"};
    for (int m = 0; m < 2; m++) {
      g_autoptr(ShardboundBounds) b = shardbound_network_bounds(
          net, m == 0 ? SHARDBOUND_METHOD_IBP : SHARDBOUND_METHOD_CROWN, NULL,
          shardbound_property_region_lower(p, 0),
          shardbound_property_region_upper(p, 0),
          shardbound_property_atom_count(p), shardbound_property_atom_rows(p),
          &error);
      ck_assert_msg(b != NULL, "%s: %s", name, error ? error->message : "");
      JsonObject *want = json_object_get_object_member(
          json_object_get_object_member(root, "methods"), keys[m]);
      int n = shardbound_bounds_output_count(b),
          k = shardbound_bounds_spec_count(b);
      assert_close(want, "output_lower", shardbound_bounds_output_lower(b), n,
                   name);
      assert_close(want, "output_upper", shardbound_bounds_output_upper(b), n,
                   name);
      assert_close(want, "spec_lower", shardbound_bounds_spec_lower(b), k,
                   name);
      assert_close(want, "spec_upper", shardbound_bounds_spec_upper(b), k,
                   name);
    }
    checked++;
  }
  ck_assert_int_ge(checked, 5);
}
END_TEST

/* Every rank's memory of a verdict: the root phase was measured, the whole
 * run's peak is the larger of the phases', and a bad rank is refused. */
static void check_verdict_memory(const ShardboundVerdict *v, int ranks) {
  ck_assert_int_eq(shardbound_verdict_rank_count(v), ranks);
  ck_assert(shardbound_verdict_bab_seconds(v) >= 0 &&
            shardbound_verdict_bab_seconds(v) <= shardbound_verdict_seconds(v));
  ck_assert(shardbound_verdict_has_memory(v, SHARDBOUND_VERIFY_PHASE_ALL));
  ck_assert(shardbound_verdict_has_memory(v, SHARDBOUND_VERIFY_PHASE_ROOT));
  gboolean branched =
      shardbound_verdict_has_memory(v, SHARDBOUND_VERIFY_PHASE_BAB);
  ck_assert(branched || shardbound_verdict_domains(v) == 0);
  g_autoptr(GError) error = NULL;
  for (int r = 0; r < ranks; r++) {
    ShardboundMemoryStats all = {.struct_size = sizeof all}, root = all,
                          bab = all;
    ck_assert(shardbound_verdict_memory(v, r, SHARDBOUND_VERIFY_PHASE_ALL, &all,
                                        &error));
    ck_assert(shardbound_verdict_memory(v, r, SHARDBOUND_VERIFY_PHASE_ROOT,
                                        &root, &error));
    ck_assert_uint_gt(root.baseline_bytes, 0);
    ck_assert_uint_ge(root.peak_bytes, root.baseline_bytes);
    if (branched) {
      ck_assert(shardbound_verdict_memory(v, r, SHARDBOUND_VERIFY_PHASE_BAB,
                                          &bab, &error));
      ck_assert_uint_eq(all.peak_bytes, MAX(root.peak_bytes, bab.peak_bytes));
    } else {
      ck_assert(!shardbound_verdict_memory(v, r, SHARDBOUND_VERIFY_PHASE_BAB,
                                           &bab, &error));
      ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                                SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT));
      g_clear_error(&error);
      ck_assert_uint_eq(all.peak_bytes, root.peak_bytes);
    }
  }
  ShardboundMemoryStats st = {.struct_size = sizeof st};
  ck_assert(!shardbound_verdict_memory(v, ranks, SHARDBOUND_VERIFY_PHASE_ALL,
                                       &st, &error));
  ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                            SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT));
}

START_TEST(test_verify_answers_unsat_and_sat_with_a_counterexample_in_the_box) {
  g_autoptr(ShardboundSession) s = open_session("fsdp", 2);
  g_autofree char *onnx = example_path("mnist-net_256x2.onnx");
  g_autoptr(GError) error = NULL;
  g_autoptr(ShardboundNetwork) net = shardbound_network_load(s, onnx, &error);
  ck_assert(net != NULL);
  g_autoptr(ShardboundSettings) settings = shardbound_settings_new();
  ck_assert(shardbound_settings_set(settings, "timeout", "120", &error));
  const char *props[] = {"prop_0_0.03.vnnlib", "prop_1_0.03.vnnlib"};
  for (int i = 0; i < 2; i++) {
    g_autofree char *path = example_path(props[i]);
    g_autoptr(ShardboundProperty) p = shardbound_property_load(path, &error);
    ck_assert(p != NULL);
    ck_assert(shardbound_session_memory_reset(s, &error));
    g_autoptr(ShardboundVerdict) v =
        shardbound_verify(net, p, settings, &error);
    ck_assert_msg(v != NULL, "%s", error ? error->message : "");
    ck_assert_str_eq(shardbound_answer_name(shardbound_verdict_answer(v)),
                     i ? "sat" : "unsat");
    const float *x = shardbound_verdict_input(v);
    if (i == 0) {
      check_verdict_memory(v, 2);
      ck_assert(x == NULL && shardbound_verdict_region(v) == -1);
      continue;
    }
    int r = shardbound_verdict_region(v);
    const double *lo = shardbound_property_region_lower(p, r);
    const double *hi = shardbound_property_region_upper(p, r);
    for (int k = 0; k < shardbound_property_input_count(p); k++)
      ck_assert(lo[k] <= x[k] && x[k] <= hi[k]);
    double y[10];
    shardbound_network_evaluate(net, x, y);
    for (int k = 0; k < 10; k++)
      ck_assert_double_eq_tol(y[k], shardbound_verdict_output(v)[k], 1e-9);
  }
}
END_TEST

START_TEST(test_memory_stats_per_rank) {
  g_autoptr(ShardboundSession) s = open_session("tp", 4);
  ck_assert_int_eq(shardbound_session_rank_count(s), 4);
  ck_assert_str_eq(shardbound_session_backend(s), "tp");
  g_autofree char *onnx = example_path("mnist-net_256x2.onnx");
  g_autoptr(GError) error = NULL;
  g_autoptr(ShardboundNetwork) net = shardbound_network_load(s, onnx, &error);
  ck_assert(shardbound_session_memory_reset(s, &error));
  for (int r = 0; r < 4; r++) {
    ShardboundMemoryStats st = {.struct_size = sizeof st};
    ck_assert(shardbound_session_memory_stats(s, r, &st, &error));
    ck_assert_uint_eq(st.baseline_bytes, st.current_bytes);
    ck_assert_uint_gt(st.current_by_category[SHARDBOUND_MEMORY_WEIGHTS], 0);
  }
  ShardboundMemoryStats st = {.struct_size = sizeof st};
  ck_assert(!shardbound_session_memory_stats(s, 4, &st, &error));
  ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                            SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT));
  ck_assert_str_eq(shardbound_memory_category_name(SHARDBOUND_MEMORY_ALPHA),
                   "alpha");
  ck_assert(shardbound_memory_category_name(SHARDBOUND_MEMORY_CATEGORIES) ==
            NULL);
}
END_TEST

/* Thread ranks run in one process: process 0 of 1, no rank ever lost; the
 * lifetime peak RSS is the process's own, and a caller built against API
 * 1.0 (a struct without peak_rss_bytes) is still served, that member left
 * alone. */
START_TEST(test_thread_ranks_are_one_process_with_its_peak_rss) {
  g_autoptr(ShardboundSession) s = open_session("tp", 2);
  ck_assert_int_eq(shardbound_session_process_index(s), 0);
  ck_assert_int_eq(shardbound_session_process_count(s), 1);
  ck_assert_int_eq(shardbound_session_lost_rank(s), -1);
  g_autoptr(GError) error = NULL;
  ShardboundMemoryStats st = {.struct_size = sizeof st};
  ck_assert(shardbound_session_memory_stats(s, 1, &st, &error));
  ck_assert_int_gt(st.peak_rss_bytes, 0);
  ShardboundMemoryStats old = {
      .struct_size = offsetof(ShardboundMemoryStats, peak_rss_bytes),
      .peak_rss_bytes = 12345};
  ck_assert(shardbound_session_memory_stats(s, 1, &old, &error));
  ck_assert_int_eq(old.peak_rss_bytes, 12345);
  ShardboundMemoryStats short_one = {
      .struct_size = offsetof(ShardboundMemoryStats, peak_by_category)};
  ck_assert(!shardbound_session_memory_stats(s, 1, &short_one, &error));
  ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                            SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT));
}
END_TEST

/* The one struct of the API is read by bindings at fixed offsets. */
START_TEST(test_memory_stats_layout_is_pinned) {
  ck_assert_uint_eq(offsetof(ShardboundMemoryStats, baseline_bytes), 8);
  ck_assert_uint_eq(offsetof(ShardboundMemoryStats, device_used_bytes), 32);
  ck_assert_uint_eq(offsetof(ShardboundMemoryStats, current_by_category), 40);
  ck_assert_uint_eq(offsetof(ShardboundMemoryStats, peak_by_category), 96);
  ck_assert_uint_eq(offsetof(ShardboundMemoryStats, peak_rss_bytes), 152);
  ck_assert_uint_eq(sizeof(ShardboundMemoryStats), 160);
}
END_TEST

START_TEST(test_every_setting_key_accepts_a_valid_value_and_refuses_a_bad_one) {
  g_autoptr(ShardboundSettings) s = shardbound_settings_new();
  const char *const *keys = shardbound_settings_keys();
  int n = 0;
  for (; keys[n] != NULL; n++) {
    g_autoptr(GError) error = NULL;
    const char *good = g_str_equal(keys[n], "branching") ? "fsb" : "1";
    ck_assert_msg(shardbound_settings_set(s, keys[n], good, &error), "%s: %s",
                  keys[n], error ? error->message : "");
    /* What get reads back, set accepts and gives back unchanged. */
    g_autofree char *value = shardbound_settings_get(s, keys[n], &error);
    ck_assert_msg(value != NULL &&
                      shardbound_settings_set(s, keys[n], value, &error),
                  "%s", keys[n]);
    g_autofree char *again = shardbound_settings_get(s, keys[n], &error);
    ck_assert_str_eq(again, value);
    ck_assert(!shardbound_settings_set(s, keys[n], "-3x", &error));
    ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                              SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT));
    ck_assert_msg(strstr(error->message, keys[n]) != NULL, "%s",
                  error->message);
  }
  ck_assert_int_ge(n, 18);
  g_autoptr(GError) error = NULL;
  ck_assert(shardbound_settings_set(s, "bab_time", "2.5", &error));
  g_autofree char *bab_time = shardbound_settings_get(s, "bab_time", &error);
  ck_assert_str_eq(bab_time, "2.5");
  ck_assert(shardbound_settings_get(s, "iteratoins", &error) == NULL);
  ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                            SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT));
  g_clear_error(&error);
  ck_assert(!shardbound_settings_set(s, "iteratoins", "3", &error));
  ck_assert_msg(strstr(error->message, "unknown setting 'iteratoins'") != NULL,
                "%s", error->message);
}
END_TEST

START_TEST(test_errors_carry_their_codes) {
  g_autoptr(GError) error = NULL;
  ck_assert(shardbound_session_open("nosuch", 0, NULL, NULL, NULL, &error) ==
            NULL);
  ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                            SHARDBOUND_HOST_ERROR_NO_BACKEND));
  g_clear_error(&error);
  ck_assert(shardbound_session_open("cpu", 2, NULL, NULL, NULL, &error) ==
            NULL);
  ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                            SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT));
  g_clear_error(&error);
  const char *bad_option[] = {"frobnicate=1", NULL};
  ck_assert(shardbound_session_open("cpu", 0, bad_option, NULL, NULL, &error) ==
            NULL);
  ck_assert_msg(strstr(error->message, "frobnicate") != NULL, "%s",
                error->message);
  g_clear_error(&error);

  g_autoptr(ShardboundSession) s = open_session("cpu", 0);
  ck_assert(shardbound_network_load(s, "/nonexistent/x.onnx", &error) == NULL);
  ck_assert(
      g_error_matches(error, SHARDBOUND_HOST_ERROR, SHARDBOUND_HOST_ERROR_IO));
  g_clear_error(&error);
  ck_assert(shardbound_network_load_bytes(s, "\x08\x07garbage", 9, &error) ==
            NULL);
  ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                            SHARDBOUND_HOST_ERROR_BAD_INPUT));
  g_clear_error(&error);
  ck_assert(shardbound_property_parse("(assert (<= X_0", 15, &error) == NULL);
  ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                            SHARDBOUND_HOST_ERROR_BAD_INPUT));
  g_clear_error(&error);
  ShardboundMethod m;
  ck_assert(!shardbound_method_parse("forward", &m, &error));
  ck_assert_msg(strstr(error->message, "forward") != NULL, "%s",
                error->message);
  g_clear_error(&error);

  g_autofree char *onnx = example_path("mnist-net_256x2.onnx");
  g_autoptr(ShardboundNetwork) net = shardbound_network_load(s, onnx, &error);
  ck_assert(net != NULL);
  double lo[784], hi[784];
  for (int i = 0; i < 784; i++)
    lo[i] = 0, hi[i] = 1;
  hi[5] = -1;
  ck_assert(shardbound_network_bounds(net, SHARDBOUND_METHOD_IBP, NULL, lo, hi,
                                      0, NULL, &error) == NULL);
  ck_assert(g_error_matches(error, SHARDBOUND_HOST_ERROR,
                            SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT));
  ck_assert_msg(strstr(error->message, "input 5") != NULL, "%s",
                error->message);
}
END_TEST

START_TEST(test_backend_list_shows_refusals) {
  g_autofree char *dir = g_dir_make_tmp("sbapi-XXXXXX", NULL);
  g_autofree char *bad =
      g_build_filename(dir, "shardbound-backend-broken.so", NULL);
  ck_assert(g_file_set_contents(bad, "not a shared object", -1, NULL));
  g_autofree char *path =
      g_strconcat(g_getenv("SHARDBOUND_BACKEND_PATH"), ":", dir, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(ShardboundBackendList) list =
      shardbound_backend_list_new(path, NULL, &error);
  ck_assert(list != NULL);
  gboolean cpu = FALSE, broken = FALSE;
  for (int i = 0; i < shardbound_backend_list_count(list); i++) {
    const char *name = shardbound_backend_list_name(list, i);
    if (g_str_equal(name, "cpu"))
      cpu = shardbound_backend_list_refusal(list, i) == NULL &&
            shardbound_backend_list_version(list, i) != NULL;
    if (g_str_equal(name, "broken"))
      broken = shardbound_backend_list_refusal(list, i) != NULL &&
               shardbound_backend_list_version(list, i) == NULL;
  }
  ck_assert(cpu && broken);
  ck_assert_str_eq(shardbound_backend_list_default(list), "cpu");
  g_unlink(bad);
  g_rmdir(dir);
}
END_TEST

START_TEST(test_version_is_the_package_and_header_one) {
  int major = -1, minor = -1;
  shardbound_host_api_version(&major, &minor);
  ck_assert_int_eq(major, SHARDBOUND_HOST_API_MAJOR);
  ck_assert_int_eq(minor, SHARDBOUND_HOST_API_MINOR);
  ck_assert_str_eq(shardbound_host_version(), PACKAGE_VERSION);
}
END_TEST

static Suite *host_api_suite(void) {
  Suite *s = suite_create("host-api");
  TCase *tc = tcase_create("api");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_api_bounds_match_every_golden);
  tcase_add_test(
      tc, test_verify_answers_unsat_and_sat_with_a_counterexample_in_the_box);
  tcase_add_test(tc, test_memory_stats_per_rank);
  tcase_add_test(tc, test_memory_stats_layout_is_pinned);
  tcase_add_test(tc, test_thread_ranks_are_one_process_with_its_peak_rss);
  tcase_add_test(
      tc, test_every_setting_key_accepts_a_valid_value_and_refuses_a_bad_one);
  tcase_add_test(tc, test_errors_carry_their_codes);
  tcase_add_test(tc, test_backend_list_shows_refusals);
  tcase_add_test(tc, test_version_is_the_package_and_header_one);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(host_api_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
