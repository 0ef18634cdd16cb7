/* SPDX-License-Identifier: MIT */
/* Every input the fuzz harnesses (fuzz/, docs/fuzzing.md) found to crash,
 * hang, leak or misbehave, replayed through the same code path: each file
 * under tests/data/regress/FORMAT/ must now load or be refused with an
 * error of its loader's domain that has a message, and no GLib warning or
 * critical on the way (made fatal here). In the sanitizer build this also
 * proves the fixes free what they allocate. */
#include "config.h"

#include <check.h>
#include <glib.h>
#include <string.h>

#include "fuzz/load_path.h"
#include "hosts/engine/onnx_import.h"
#include "hosts/api/session_setup.h"
#include "hosts/engine/vnnlib.h"
#include "plugin/shardbound-plugin.h"

/* The files of tests/data/regress/<format>, sorted; at least one. */
static GPtrArray *regress_files(const char *format) {
  const char *data = g_getenv("SHARDBOUND_TEST_DATA");
  ck_assert_msg(data != NULL, "run through make check");
  g_autofree char *dir_path = g_build_filename(data, "regress", format, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = g_dir_open(dir_path, 0, &error);
  ck_assert_msg(dir != NULL, "%s", error ? error->message : dir_path);
  GPtrArray *files = g_ptr_array_new_with_free_func(g_free);
  const char *name;
  while ((name = g_dir_read_name(dir)) != NULL)
    g_ptr_array_add(files, g_build_filename(dir_path, name, NULL));
  ck_assert_msg(files->len > 0, "%s is empty", dir_path);
  g_ptr_array_sort(files, (GCompareFunc)g_strcmp0);
  return files;
}

static void expect_clean(const char *file, gboolean ok, GError *error,
                         GQuark domain) {
  if (ok)
    ck_assert_msg(error == NULL, "%s: success with an error set", file);
  else
    ck_assert_msg(error != NULL && error->domain == domain &&
                      error->message[0] != '\0',
                  "%s: failed without a proper error (%s)", file,
                  error != NULL ? error->message : "none");
  if (error != NULL)
    g_error_free(error);
}

static void fatal_warnings(void) {
  g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
}

START_TEST(test_regress_onnx) {
  g_autoptr(GPtrArray) files = regress_files("onnx");
  for (guint i = 0; i < files->len; i++) {
    GError *error = NULL;
    SbGraph *g = sb_onnx_load(files->pdata[i], &error);
    expect_clean(files->pdata[i], g != NULL, error, SB_ONNX_ERROR);
    if (g != NULL)
      sb_graph_free(g);
  }
}
END_TEST

START_TEST(test_regress_vnnlib) {
  g_autoptr(GPtrArray) files = regress_files("vnnlib");
  for (guint i = 0; i < files->len; i++) {
    GError *error = NULL;
    SbProperty *p = sb_vnnlib_load(files->pdata[i], &error);
    expect_clean(files->pdata[i], p != NULL, error, SB_VNNLIB_ERROR);
    if (p != NULL)
      sb_property_free(p);
  }
}
END_TEST

START_TEST(test_regress_config) {
  g_autoptr(GPtrArray) files = regress_files("config");
  for (guint i = 0; i < files->len; i++) {
    GError *error = NULL;
    g_autoptr(SbConfig) config = sb_config_new();
    gboolean ok = sb_config_load_file(config, files->pdata[i], &error);
    expect_clean(files->pdata[i], ok, error, SB_PLUGIN_ERROR);
  }
}
END_TEST

/* The load harness's inputs: model and property in one file
 * (fuzz/load_path.h), bounded on the CPU backend of this build. The
 * directory also holds one valid input (valid-small-mlp.bin, the small
 * MLP seed), so that every step of the path runs here. */
START_TEST(test_regress_load) {
  g_autoptr(GPtrArray) files = regress_files("load");
  SbSessionRequest request = {.backend = "cpu"};
  g_autoptr(GError) setup_error = NULL;
  g_autoptr(SbSessionSetup) setup = sb_session_setup(&request, &setup_error);
  ck_assert_msg(setup != NULL, "%s", setup_error ? setup_error->message : "");
  for (guint i = 0; i < files->len; i++) {
    g_autofree char *data = NULL;
    gsize size = 0;
    ck_assert(g_file_get_contents(files->pdata[i], &data, &size, NULL));
    GError *error = NULL;
    gboolean ok =
        sb_fuzz_load_path(setup->session, (const guint8 *)data, size, &error);
    ck_assert_msg(ok || (error != NULL && error->message[0] != '\0'),
                  "%s: failed without a message", (char *)files->pdata[i]);
    if (g_str_has_suffix(files->pdata[i], "/valid-small-mlp.bin"))
      ck_assert_msg(ok, "the valid input was refused: %s", error->message);
    g_clear_error(&error);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("regress");
  TCase *tc = tcase_create("fuzz-findings");
  tcase_add_checked_fixture(tc, fatal_warnings, NULL);
  tcase_add_test(tc, test_regress_onnx);
  tcase_add_test(tc, test_regress_vnnlib);
  tcase_add_test(tc, test_regress_config);
  tcase_add_test(tc, test_regress_load);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? 0 : 1;
}
