/* SPDX-License-Identifier: MIT */
/* Configuration precedence (file < environment < command line), backend
 * option groups, and the errors a malformed file or option produces. */
#include <check.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/shardbound-plugin.h"

/* Each test gets its own XDG_CONFIG_HOME; Check forks per test, so the
 * environment changes stay inside the test. */
static char *config_home;

static void setup_home(void) {
  config_home = g_dir_make_tmp("sb-config-XXXXXX", NULL);
  ck_assert_ptr_nonnull(config_home);
  g_setenv("XDG_CONFIG_HOME", config_home, TRUE);
  g_unsetenv("SHARDBOUND_BACKEND");
  g_unsetenv("SHARDBOUND_BACKEND_PATH");
}

static void teardown_home(void) {
  g_autofree char *dir = g_build_filename(config_home, "shardbound", NULL);
  g_autofree char *file = g_build_filename(dir, "shardbound.conf", NULL);
  g_remove(file);
  g_rmdir(dir);
  g_rmdir(config_home);
  g_free(config_home);
}

/* Writes the default configuration file and returns its path. */
static char *write_default_file(const char *text) {
  g_autofree char *dir = g_build_filename(config_home, "shardbound", NULL);
  ck_assert_int_eq(g_mkdir_with_parents(dir, 0700), 0);
  char *path = g_build_filename(dir, "shardbound.conf", NULL);
  ck_assert(g_file_set_contents(path, text, -1, NULL));
  return path;
}

#define assert_contains(haystack, needle)                                      \
  ck_assert_msg((haystack) != NULL && strstr((haystack), (needle)) != NULL,    \
                "expected \"%s\" in \"%s\"", (needle),                         \
                (haystack) != NULL ? (haystack) : "(null)")

static const char *option_value(SbConfig *config, const char *backend,
                                const char *key) {
  size_t n = 0;
  const sb_option *options = sb_config_get_options(config, backend, &n);
  for (size_t i = 0; i < n; i++)
    if (strcmp(options[i].key, key) == 0)
      return options[i].value;
  return NULL;
}

START_TEST(test_config_missing_default_file_is_fine) {
  g_autoptr(SbConfig) config = sb_config_new();
  GError *error = NULL;
  ck_assert_msg(sb_config_load_default(config, &error), "%s",
                error != NULL ? error->message : "");
  ck_assert_ptr_null(sb_config_get_file(config));
  ck_assert_ptr_null(sb_config_get_backend(config));
  const char *const *dirs = sb_config_get_backend_path(config);
  ck_assert_ptr_nonnull(dirs[0]);
  assert_contains(dirs[0], "backends");
  ck_assert_ptr_null(dirs[1]);
  size_t n = 99;
  sb_config_get_options(config, "cpu", &n);
  ck_assert_uint_eq(n, 0);
}
END_TEST

/* A program of the build tree (this test, with SHARDBOUND_BACKEND_PATH unset
 * by the fixture) finds that tree's freshly built backends by itself. */
START_TEST(test_config_build_tree_program_defaults_to_built_backends) {
  /* make check sets SHARDBOUND_TEST_FIXTURES to BUILDDIR/tests/fixtures/.libs
   */
  const char *fixtures = g_getenv("SHARDBOUND_TEST_FIXTURES");
  ck_assert_msg(fixtures != NULL, "run through make check");
  g_autofree char *tests = g_path_get_dirname(fixtures);
  g_autofree char *tests_dir = g_path_get_dirname(tests);
  g_autofree char *top = g_path_get_dirname(tests_dir);
  g_autofree char *expected = g_build_filename(top, "backends", ".libs", NULL);
  g_autoptr(SbConfig) config = sb_config_new();
  sb_config_apply_environment(config);
  const char *const *dirs = sb_config_get_backend_path(config);
  ck_assert_str_eq(dirs[0], expected);
  ck_assert_ptr_null(dirs[1]);
}
END_TEST

START_TEST(test_config_reads_host_group_of_default_file) {
  g_autofree char *path = write_default_file(
      "# comment\n[host]\nbackend = cuda\nbackend_path = /opt/a:/opt/b\n");
  g_autoptr(SbConfig) config = sb_config_new();
  ck_assert(sb_config_load_default(config, NULL));
  ck_assert_str_eq(sb_config_get_file(config), path);
  ck_assert_str_eq(sb_config_get_backend(config), "cuda");
  const char *const *dirs = sb_config_get_backend_path(config);
  ck_assert_str_eq(dirs[0], "/opt/a");
  ck_assert_str_eq(dirs[1], "/opt/b");
  ck_assert_ptr_null(dirs[2]);
}
END_TEST

START_TEST(test_config_relative_backend_path_is_relative_to_the_file) {
  g_autofree char *path = write_default_file("[host]\nbackend_path = mine\n");
  g_autoptr(SbConfig) config = sb_config_new();
  ck_assert(sb_config_load_default(config, NULL));
  g_autofree char *expected =
      g_build_filename(config_home, "shardbound", "mine", NULL);
  ck_assert_str_eq(sb_config_get_backend_path(config)[0], expected);
}
END_TEST

START_TEST(test_config_environment_overrides_file) {
  g_autofree char *path =
      write_default_file("[host]\nbackend = cuda\nbackend_path = /from/file\n");
  g_setenv("SHARDBOUND_BACKEND", "cpu", TRUE);
  g_setenv("SHARDBOUND_BACKEND_PATH", "/from/env1:/from/env2", TRUE);
  g_autoptr(SbConfig) config = sb_config_new();
  ck_assert(sb_config_load_default(config, NULL));
  sb_config_apply_environment(config);
  ck_assert_str_eq(sb_config_get_backend(config), "cpu");
  const char *const *dirs = sb_config_get_backend_path(config);
  ck_assert_str_eq(dirs[0], "/from/env1");
  ck_assert_str_eq(dirs[1], "/from/env2");
  ck_assert_ptr_null(dirs[2]);
}
END_TEST

START_TEST(test_config_empty_environment_counts_as_unset) {
  g_autofree char *path =
      write_default_file("[host]\nbackend = cuda\nbackend_path = /from/file\n");
  g_setenv("SHARDBOUND_BACKEND", "", TRUE);
  g_setenv("SHARDBOUND_BACKEND_PATH", "", TRUE);
  g_autoptr(SbConfig) config = sb_config_new();
  ck_assert(sb_config_load_default(config, NULL));
  sb_config_apply_environment(config);
  ck_assert_str_eq(sb_config_get_backend(config), "cuda");
  ck_assert_str_eq(sb_config_get_backend_path(config)[0], "/from/file");
}
END_TEST

START_TEST(test_config_command_line_overrides_environment_and_file) {
  g_autofree char *path =
      write_default_file("[host]\nbackend = cuda\nbackend_path = /from/file\n");
  g_setenv("SHARDBOUND_BACKEND", "cpu", TRUE);
  g_setenv("SHARDBOUND_BACKEND_PATH", "/from/env", TRUE);
  g_autoptr(SbConfig) config = sb_config_new();
  /* Set before the environment is applied: precedence must not depend on
   * the order a host calls these in. */
  sb_config_set_backend(config, "tp");
  sb_config_set_backend_path(config, "/from/cli");
  ck_assert(sb_config_load_default(config, NULL));
  sb_config_apply_environment(config);
  ck_assert_str_eq(sb_config_get_backend(config), "tp");
  const char *const *dirs = sb_config_get_backend_path(config);
  ck_assert_str_eq(dirs[0], "/from/cli");
  ck_assert_ptr_null(dirs[1]);
}
END_TEST

START_TEST(test_config_backend_group_options_are_overlaid_by_command_line) {
  g_autofree char *path =
      write_default_file("[host]\nbackend = cpu\n"
                         "[backend cpu]\nthreads = 4\nranks = 2\n"
                         "[backend cuda]\ndevice = 1\n");
  g_autoptr(SbConfig) config = sb_config_new();
  ck_assert(sb_config_load_default(config, NULL));
  ck_assert_str_eq(option_value(config, "cpu", "threads"), "4");
  ck_assert_str_eq(option_value(config, "cpu", "ranks"), "2");
  ck_assert_str_eq(option_value(config, "cuda", "device"), "1");
  ck_assert_ptr_null(option_value(config, "cpu", "device"));

  ck_assert(sb_config_set_option_string(config, "ranks=8", NULL));
  ck_assert(sb_config_set_option_string(config, "seed=7", NULL));
  size_t n = 0;
  const sb_option *options = sb_config_get_options(config, "cpu", &n);
  ck_assert_uint_eq(n, 3);
  /* File order first, overrides in place, new keys appended. */
  ck_assert_str_eq(options[0].key, "threads");
  ck_assert_str_eq(options[0].value, "4");
  ck_assert_str_eq(options[1].key, "ranks");
  ck_assert_str_eq(options[1].value, "8");
  ck_assert_str_eq(options[2].key, "seed");
  ck_assert_str_eq(options[2].value, "7");
  /* -o belongs to the selected backend (cpu), not to the others. */
  ck_assert_ptr_null(option_value(config, "cuda", "ranks"));
}
END_TEST

START_TEST(test_config_command_line_options_apply_to_default_backend) {
  g_autoptr(SbConfig) config = sb_config_new();
  ck_assert(sb_config_set_option_string(config, "ranks=4", NULL));
  /* No backend chosen: the host opens its default, which gets them. */
  ck_assert_str_eq(option_value(config, "cpu", "ranks"), "4");
  sb_config_set_option(config, "cuda", "device", "2");
  ck_assert_str_eq(option_value(config, "cuda", "device"), "2");
  ck_assert_ptr_null(option_value(config, "cpu", "device"));
}
END_TEST

START_TEST(test_config_options_of_two_backends_stay_valid_together) {
  g_autoptr(SbConfig) config = sb_config_new();
  sb_config_set_option(config, "cpu", "threads", "2");
  sb_config_set_option(config, "cuda", "device", "0");
  size_t n_cpu = 0, n_cuda = 0;
  const sb_option *cpu = sb_config_get_options(config, "cpu", &n_cpu);
  const sb_option *cuda = sb_config_get_options(config, "cuda", &n_cuda);
  ck_assert_uint_eq(n_cpu, 1);
  ck_assert_uint_eq(n_cuda, 1);
  ck_assert_str_eq(cpu[0].value, "2");
  ck_assert_str_eq(cuda[0].value, "0");
}
END_TEST

START_TEST(test_config_malformed_file_names_file_and_line) {
  g_autofree char *path =
      write_default_file("[host]\nbackend = cpu\nthis line is not a key\n");
  g_autoptr(SbConfig) config = sb_config_new();
  GError *error = NULL;
  ck_assert(!sb_config_load_default(config, &error));
  ck_assert(g_error_matches(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG));
  g_autofree char *where = g_strdup_printf("%s:3:", path);
  assert_contains(error->message, where);
  assert_contains(error->message, "this line is not a key");
  g_clear_error(&error);
}
END_TEST

/* The line is found by bisection over prefixes, so a long file with its
 * bad line anywhere (first, middle, last) is named at the right line. */
START_TEST(test_config_malformed_line_found_in_long_file) {
  const guint n_lines = 20000;
  const guint bad_lines[] = {2, 12345, 20000};
  for (size_t t = 0; t < G_N_ELEMENTS(bad_lines); t++) {
    g_autoptr(GString) text = g_string_new("[cpu]\n");
    for (guint line = 2; line <= n_lines; line++) {
      if (line == bad_lines[t])
        g_string_append(text, "no equals sign here\n");
      else
        g_string_append_printf(text, "key%u = %u\n", line, line);
    }
    g_autofree char *path = write_default_file(text->str);
    g_autoptr(SbConfig) config = sb_config_new();
    GError *error = NULL;
    ck_assert(!sb_config_load_file(config, path, &error));
    g_autofree char *where = g_strdup_printf("%s:%u:", path, bad_lines[t]);
    assert_contains(error->message, where);
    g_clear_error(&error);
  }
}
END_TEST

START_TEST(test_config_unknown_host_key_is_named) {
  g_autofree char *path = write_default_file("[host]\nbackned = cpu\n");
  g_autoptr(SbConfig) config = sb_config_new();
  GError *error = NULL;
  ck_assert(!sb_config_load_file(config, path, &error));
  assert_contains(error->message, path);
  assert_contains(error->message, "unknown key 'backned' in group [host]");
  g_clear_error(&error);
}
END_TEST

START_TEST(test_config_unknown_group_is_named) {
  g_autofree char *path = write_default_file("[hots]\nbackend = cpu\n");
  g_autoptr(SbConfig) config = sb_config_new();
  GError *error = NULL;
  ck_assert(!sb_config_load_file(config, path, &error));
  assert_contains(error->message, "unknown group [hots]");
  g_clear_error(&error);

  g_autofree char *nameless = write_default_file("[backend ]\nranks = 2\n");
  ck_assert(!sb_config_load_file(config, nameless, &error));
  assert_contains(error->message, "names no backend");
  g_clear_error(&error);
}
END_TEST

START_TEST(test_config_missing_explicit_file_is_an_error) {
  g_autoptr(SbConfig) config = sb_config_new();
  GError *error = NULL;
  ck_assert(
      !sb_config_load_file(config, "/nonexistent/shardbound.conf", &error));
  assert_contains(error->message, "cannot read configuration file "
                                  "/nonexistent/shardbound.conf");
  g_clear_error(&error);
}
END_TEST

START_TEST(test_config_option_without_equals_is_an_error) {
  g_autoptr(SbConfig) config = sb_config_new();
  GError *error = NULL;
  ck_assert(!sb_config_set_option_string(config, "ranks", &error));
  ck_assert(g_error_matches(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG));
  assert_contains(error->message, "invalid option 'ranks': expected "
                                  "key=value");
  g_clear_error(&error);
  ck_assert(!sb_config_set_option_string(config, "=4", &error));
  assert_contains(error->message, "invalid option '=4'");
  g_clear_error(&error);
  /* An empty value is a value. */
  ck_assert(sb_config_set_option_string(config, "tag=", NULL));
  ck_assert_str_eq(option_value(config, "cpu", "tag"), "");
}
END_TEST

int main(void) {
  Suite *s = suite_create("config");
  TCase *tc = tcase_create("config");
  tcase_add_checked_fixture(tc, setup_home, teardown_home);
  tcase_add_test(tc, test_config_missing_default_file_is_fine);
  tcase_add_test(tc, test_config_build_tree_program_defaults_to_built_backends);
  tcase_add_test(tc, test_config_reads_host_group_of_default_file);
  tcase_add_test(tc, test_config_relative_backend_path_is_relative_to_the_file);
  tcase_add_test(tc, test_config_environment_overrides_file);
  tcase_add_test(tc, test_config_empty_environment_counts_as_unset);
  tcase_add_test(tc, test_config_command_line_overrides_environment_and_file);
  tcase_add_test(
      tc, test_config_backend_group_options_are_overlaid_by_command_line);
  tcase_add_test(tc, test_config_command_line_options_apply_to_default_backend);
  tcase_add_test(tc, test_config_options_of_two_backends_stay_valid_together);
  tcase_add_test(tc, test_config_malformed_file_names_file_and_line);
  tcase_add_test(tc, test_config_malformed_line_found_in_long_file);
  tcase_add_test(tc, test_config_unknown_host_key_is_named);
  tcase_add_test(tc, test_config_unknown_group_is_named);
  tcase_add_test(tc, test_config_missing_explicit_file_is_an_error);
  tcase_add_test(tc, test_config_option_without_equals_is_an_error);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
