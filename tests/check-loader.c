/* SPDX-License-Identifier: MIT */
/* The registry accepts good backends, refuses each kind of broken one with an
 * actionable message, and never lets a bad one stop the others. */
#include <check.h>
#include <dlfcn.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/shardbound-plugin.h"

static const char *fixtures_dir(void) {
  const char *dir = g_getenv("SHARDBOUND_TEST_FIXTURES");
  return dir != NULL ? dir : "tests/fixtures/.libs";
}

/* Directories made by the running test, removed by its teardown. */
static GPtrArray *made_dirs;

/* A fresh directory per test, so each backend is loaded alone (or with
 * exactly the neighbours the test wants). */
static char *make_dir(void) {
  GError *error = NULL;
  char *dir = g_dir_make_tmp("sb-loader-XXXXXX", &error);
  ck_assert_msg(dir != NULL, "cannot make a temporary directory: %s",
                error != NULL ? error->message : "?");
  g_ptr_array_add(made_dirs, g_strdup(dir));
  return dir;
}

static void remove_dir(const char *dir) {
  GDir *handle = g_dir_open(dir, 0, NULL);
  if (handle == NULL)
    return;
  const char *name;
  while ((name = g_dir_read_name(handle)) != NULL) {
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_remove(path);
  }
  g_dir_close(handle);
  g_rmdir(dir);
}

static void setup_dirs(void) {
  made_dirs = g_ptr_array_new_with_free_func(g_free);
}

/* The registry of load_alone, which keeps its entry valid until the
 * test's teardown frees it. */
static SbRegistry *alone_registry;

static void remove_made_dirs(void) {
  if (alone_registry != NULL)
    sb_registry_free(alone_registry);
  alone_registry = NULL;
  for (guint i = 0; i < made_dirs->len; i++)
    remove_dir(g_ptr_array_index(made_dirs, i));
  g_ptr_array_unref(made_dirs);
}

/* Copies fixture shardbound-backend-FIXTURE.so into `dir` as
 * shardbound-backend-AS.so and returns the new path. */
static char *install_fixture(const char *dir, const char *fixture,
                             const char *as) {
  g_autofree char *src_name =
      g_strdup_printf("shardbound-backend-%s.%s", fixture, G_MODULE_SUFFIX);
  g_autofree char *dst_name =
      g_strdup_printf("shardbound-backend-%s.%s", as, G_MODULE_SUFFIX);
  g_autofree char *src = g_build_filename(fixtures_dir(), src_name, NULL);
  char *dst = g_build_filename(dir, dst_name, NULL);
  g_autofree char *data = NULL;
  gsize length = 0;
  GError *error = NULL;
  ck_assert_msg(g_file_get_contents(src, &data, &length, &error),
                "fixture missing (build check_LTLIBRARIES first): %s",
                error != NULL ? error->message : src);
  ck_assert(g_file_set_contents(dst, data, length, NULL));
  return dst;
}

/* Loads one fixture alone and returns its entry. */
static const SbBackendEntry *load_alone(const char *fixture, char **path_out) {
  g_autofree char *dir = make_dir();
  char *path = install_fixture(dir, fixture, fixture);
  SbRegistry *registry = alone_registry = sb_registry_new();
  sb_registry_load_dir(registry, dir);
  const GPtrArray *entries = sb_registry_entries(registry);
  ck_assert_uint_eq(entries->len, 1);
  const SbBackendEntry *entry = g_ptr_array_index(entries, 0);
  ck_assert_str_eq(entry->path, path);
  ck_assert_str_eq(entry->name, fixture);
  *path_out = path;
  return entry;
}

/* The host's version as refusals print it, from the header rather than
 * hard-coded, so that a minor bump does not break every expectation. */
#define ABI_MINOR_TEXT G_STRINGIFY(SB_ABI_MINOR)
#define ABI_TEXT       G_STRINGIFY(SB_ABI_MAJOR) "." ABI_MINOR_TEXT
#define HOST_ABI       "host ABI " ABI_TEXT

#define assert_contains(haystack, needle)                                      \
  ck_assert_msg((haystack) != NULL && strstr((haystack), (needle)) != NULL,    \
                "expected \"%s\" in \"%s\"", (needle),                         \
                (haystack) != NULL ? (haystack) : "(null)")

/* Every refusal names the file and, in the form the user reads, the host's
 * ABI version. */
static const char *assert_refused(const SbBackendEntry *entry,
                                  const char *path) {
  ck_assert_msg(entry->desc == NULL, "%s was accepted", path);
  ck_assert_ptr_nonnull(entry->refusal);
  ck_assert_msg(g_str_has_prefix(entry->refusal, path),
                "refusal does not start with the file: %s", entry->refusal);
  assert_contains(entry->refusal, HOST_ABI);
  return entry->refusal;
}

START_TEST(test_loader_accepts_good_backend) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("good", &path);
  ck_assert_msg(entry->desc != NULL, "refused: %s", entry->refusal);
  ck_assert_ptr_null(entry->refusal);
  ck_assert_str_eq(entry->desc->name, "good");
  ck_assert_uint_eq(entry->abi_major, 1);
  ck_assert_uint_eq(entry->abi_minor, SB_ABI_MINOR);
}
END_TEST

START_TEST(test_loader_rejects_file_that_is_not_a_shared_object) {
  g_autofree char *dir = make_dir();
  g_autofree char *path = g_build_filename(
      dir, "shardbound-backend-garbage." G_MODULE_SUFFIX, NULL);
  ck_assert(g_file_set_contents(path, "this is text, not ELF\n", -1, NULL));
  g_autoptr(SbRegistry) registry = sb_registry_new();
  sb_registry_load_dir(registry, dir);
  const GPtrArray *entries = sb_registry_entries(registry);
  ck_assert_uint_eq(entries->len, 1);
  const SbBackendEntry *entry = g_ptr_array_index(entries, 0);
  const char *why = assert_refused(entry, path);
  assert_contains(why, "not a loadable shared object");
  assert_contains(why, "remove the file");
  ck_assert_uint_eq(entry->abi_major, 0);
}
END_TEST

START_TEST(test_loader_rejects_missing_entry_symbol) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("noentry", &path);
  const char *why = assert_refused(entry, path);
  assert_contains(why, "no entry symbol sb_backend_get_v1");
  assert_contains(why, "rebuild the backend against shardbound ABI 1.x");
}
END_TEST

START_TEST(test_loader_rejects_failing_entry) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("entryfails", &path);
  const char *why = assert_refused(entry, path);
  assert_contains(why, "sb_backend_get_v1 failed with status -6");
  assert_contains(why, "internal error");
  assert_contains(why, "remove it from the search path");
}
END_TEST

START_TEST(test_loader_rejects_wrong_major) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("wrongmajor", &path);
  const char *why = assert_refused(entry, path);
  assert_contains(why, "backend ABI 2." ABI_MINOR_TEXT ", " HOST_ABI);
  assert_contains(why, "rebuild the backend against shardbound ABI 1.x");
  ck_assert_uint_eq(entry->abi_major, 2);
}
END_TEST

START_TEST(test_loader_rejects_struct_smaller_than_v1_0) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("short", &path);
  const char *why = assert_refused(entry, path);
  g_autofree char *size =
      g_strdup_printf("struct_size %zu", offsetof(sb_backend_v1, memory_stats));
  assert_contains(why, size);
  assert_contains(why, "backend ABI " ABI_TEXT ", " HOST_ABI);
  assert_contains(why, "rebuild the backend against shardbound ABI 1.x");
}
END_TEST

START_TEST(test_loader_rejects_null_function_naming_it) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("nullop", &path);
  const char *why = assert_refused(entry, path);
  assert_contains(why, "required function layer_backward is NULL");
  assert_contains(why, "backend ABI " ABI_TEXT ", " HOST_ABI);
  assert_contains(why, "SB_ERR_UNSUPPORTED");
}
END_TEST

START_TEST(test_loader_rejects_null_1_1_function_naming_it) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("nullvjp", &path);
  const char *why = assert_refused(entry, path);
  assert_contains(why, "required function beta_vjp is NULL");
  assert_contains(why, "backend ABI " ABI_TEXT ", " HOST_ABI);
}
END_TEST

/* Old minors keep working: a backend built against ABI 1.0 declares the
 * 1.0 size, and the 1.1 functions it cannot know are not required. */
START_TEST(test_loader_accepts_abi_1_0_backend) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("abi10", &path);
  ck_assert_msg(entry->desc != NULL, "refused: %s", entry->refusal);
  ck_assert_ptr_null(entry->refusal);
  ck_assert_uint_eq(entry->abi_major, 1);
  ck_assert_uint_eq(entry->abi_minor, 0);
  ck_assert_uint_eq(entry->desc->struct_size, SB_BACKEND_V1_0_SIZE);
  ck_assert(!SB_HAS_MEMBER(entry->desc, sb_backend_v1, layer_backward_vjp));
}
END_TEST

START_TEST(test_loader_rejects_name_not_matching_file) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("misnamed", &path);
  const char *why = assert_refused(entry, path);
  assert_contains(why, "descriptor name 'other' does not match");
  assert_contains(why, "'misnamed'");
  assert_contains(
      why, "rename the file to shardbound-backend-other." G_MODULE_SUFFIX);
}
END_TEST

START_TEST(test_loader_rejects_failing_trial_context_with_backend_text) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("createfails", &path);
  const char *why = assert_refused(entry, path);
  assert_contains(why, "trial context_create failed: device error: "
                       "no CUDA device");
  assert_contains(why, "backend ABI " ABI_TEXT ", " HOST_ABI);
  assert_contains(why, "remove it from the search path");
}
END_TEST

START_TEST(test_loader_accepts_newer_minor) {
  g_autofree char *path = NULL;
  const SbBackendEntry *entry = load_alone("newer", &path);
  ck_assert_msg(entry->desc != NULL, "refused: %s", entry->refusal);
  ck_assert_uint_eq(entry->abi_major, 1);
  ck_assert_uint_eq(entry->abi_minor, 7);
  ck_assert_uint_gt(entry->desc->struct_size, sizeof(sb_backend_v1));
}
END_TEST

START_TEST(test_loader_refuses_duplicate_naming_the_first) {
  g_autofree char *first_dir = make_dir();
  g_autofree char *second_dir = make_dir();
  g_autofree char *first = install_fixture(first_dir, "good", "good");
  g_autofree char *second = install_fixture(second_dir, "good", "good");
  g_autoptr(SbConfig) config = sb_config_new();
  g_autofree char *path_list =
      g_strjoin(G_SEARCHPATH_SEPARATOR_S, first_dir, second_dir, NULL);
  sb_config_set_backend_path(config, path_list);
  g_autoptr(SbRegistry) registry = sb_registry_new();
  sb_registry_load_config(registry, config);

  const GPtrArray *entries = sb_registry_entries(registry);
  ck_assert_uint_eq(entries->len, 2);
  const SbBackendEntry *kept = g_ptr_array_index(entries, 0);
  ck_assert_ptr_nonnull(kept->desc);
  ck_assert_str_eq(kept->path, first);
  const char *why = assert_refused(g_ptr_array_index(entries, 1), second);
  assert_contains(why, "duplicate backend 'good'");
  assert_contains(why, first);
  ck_assert_str_eq(sb_registry_lookup(registry, "good")->path, first);
}
END_TEST

static const char *const broken_fixtures[] = {
    "noentry",  "wrongmajor", "short",       "nullop",
    "misnamed", "entryfails", "createfails",
};

/* Whether a shared object at `path` is mapped into this process. */
static gboolean is_mapped(const char *path) {
  g_autofree char *maps = NULL;
  ck_assert(g_file_get_contents("/proc/self/maps", &maps, NULL, NULL));
  return strstr(maps, path) != NULL;
}

START_TEST(test_loader_opens_only_the_backend_asked_for) {
  g_autofree char *dir = make_dir();
  g_autofree char *good = install_fixture(dir, "good", "good");
  g_autofree char *other = install_fixture(dir, "createfails", "createfails");
  g_autoptr(SbRegistry) registry = sb_registry_new();
  sb_registry_load_dir(registry, dir);
  ck_assert(!is_mapped(good));
  ck_assert(!is_mapped(other));

  const SbBackendEntry *entry = sb_registry_lookup(registry, "good");
  ck_assert_ptr_nonnull(entry);
  ck_assert(entry->probed);
  ck_assert(is_mapped(good));
  ck_assert_msg(!is_mapped(other),
                "looking up 'good' opened the createfails backend too");

  /* Listing needs every verdict, so it opens the rest. */
  const GPtrArray *entries = sb_registry_entries(registry);
  ck_assert_uint_eq(entries->len, 2);
  const SbBackendEntry *refused = g_ptr_array_index(entries, 0);
  ck_assert_str_eq(refused->name, "createfails");
  ck_assert(refused->probed);
  assert_contains(refused->refusal, "trial context_create failed");
}
END_TEST

START_TEST(test_loader_keeps_loading_good_backend_beside_bad_ones) {
  g_autofree char *dir = make_dir();
  for (gsize i = 0; i < G_N_ELEMENTS(broken_fixtures); i++)
    g_free(install_fixture(dir, broken_fixtures[i], broken_fixtures[i]));
  g_free(install_fixture(dir, "good", "good"));
  g_free(install_fixture(dir, "newer", "newer"));
  g_autofree char *garbage = g_build_filename(
      dir, "shardbound-backend-garbage." G_MODULE_SUFFIX, NULL);
  ck_assert(g_file_set_contents(garbage, "not a library", -1, NULL));
  /* Files that do not follow the naming scheme are not backends at all. */
  g_autofree char *other = g_build_filename(dir, "README.txt", NULL);
  ck_assert(g_file_set_contents(other, "ignored", -1, NULL));

  g_autoptr(SbRegistry) registry = sb_registry_new();
  sb_registry_load_dir(registry, dir);
  ck_assert_ptr_nonnull(sb_registry_lookup(registry, "good"));
  ck_assert_ptr_nonnull(sb_registry_lookup(registry, "newer"));
  const GPtrArray *entries = sb_registry_entries(registry);
  ck_assert_uint_eq(entries->len, G_N_ELEMENTS(broken_fixtures) + 3);
  guint accepted = 0;
  for (guint i = 0; i < entries->len; i++) {
    const SbBackendEntry *entry = g_ptr_array_index(entries, i);
    if (entry->desc != NULL)
      accepted++;
    else
      assert_refused(entry, entry->path);
  }
  ck_assert_uint_eq(accepted, 2);
}
END_TEST

/* What `shardbound backends` prints comes from the entries alone: accepted
 * ones carry a descriptor, refused ones a reason, in a stable order. */
START_TEST(test_loader_lists_entries_sorted_with_refusals) {
  g_autofree char *dir = make_dir();
  g_free(install_fixture(dir, "wrongmajor", "wrongmajor"));
  g_free(install_fixture(dir, "good", "good"));
  g_free(install_fixture(dir, "createfails", "createfails"));
  g_autoptr(SbRegistry) registry = sb_registry_new();
  sb_registry_load_dir(registry, dir);
  const GPtrArray *entries = sb_registry_entries(registry);
  ck_assert_uint_eq(entries->len, 3);
  const char *expected[] = {"createfails", "good", "wrongmajor"};
  for (guint i = 0; i < entries->len; i++) {
    const SbBackendEntry *entry = g_ptr_array_index(entries, i);
    ck_assert_str_eq(entry->name, expected[i]);
    ck_assert((entry->desc == NULL) == (entry->refusal != NULL));
  }
  ck_assert_ptr_null(sb_registry_lookup(registry, "wrongmajor"));
  ck_assert_ptr_null(sb_registry_lookup(registry, "createfails"));
}
END_TEST

START_TEST(test_loader_scans_a_repeated_directory_once) {
  g_autofree char *dir = make_dir();
  g_free(install_fixture(dir, "good", "good"));
  g_autoptr(SbRegistry) registry = sb_registry_new();
  sb_registry_load_dir(registry, dir);
  g_autofree char *with_slash = g_strconcat(dir, "/", NULL);
  sb_registry_load_dir(registry, with_slash);
  ck_assert_uint_eq(sb_registry_entries(registry)->len, 1);
}
END_TEST

START_TEST(test_loader_missing_directory_is_not_an_error) {
  g_autoptr(SbRegistry) registry = sb_registry_new();
  sb_registry_load_dir(registry, "/nonexistent/shardbound-test-dir");
  ck_assert_uint_eq(sb_registry_entries(registry)->len, 0);
  const char *const *dirs = sb_registry_searched_dirs(registry);
  ck_assert_str_eq(dirs[0], "/nonexistent/shardbound-test-dir");
  ck_assert_ptr_null(dirs[1]);
}
END_TEST

typedef struct {
  GLogLevelFlags level;
  char *message;
} LoggedMessage;

static void capture_log(const char *domain, GLogLevelFlags level,
                        const char *message, gpointer user_data) {
  LoggedMessage *logged = user_data;
  logged->level = level & G_LOG_LEVEL_MASK;
  g_free(logged->message);
  logged->message = g_strdup(message);
}

START_TEST(test_loader_host_struct_declares_v1_and_logs) {
  g_autoptr(SbRegistry) registry = sb_registry_new();
  const sb_host_v1 *host = sb_registry_host(registry);
  ck_assert_uint_eq(host->struct_size, sizeof(sb_host_v1));
  ck_assert_uint_eq(host->abi_major, SB_ABI_MAJOR);
  ck_assert_uint_eq(host->abi_minor, SB_ABI_MINOR);
  ck_assert_ptr_nonnull(host->log);
  /* An error-level message from a backend must not abort the host, as
   * G_LOG_LEVEL_ERROR would: it arrives as a warning in our domain. */
  LoggedMessage logged = {0, NULL};
  guint handler =
      g_log_set_handler("shardbound", G_LOG_LEVEL_MASK, capture_log, &logged);
  host->log(host->user_data, SB_LOG_ERROR, "test message from a backend");
  ck_assert_int_eq(logged.level, G_LOG_LEVEL_WARNING);
  assert_contains(logged.message, "test message from a backend");
  host->log(host->user_data, SB_LOG_DEBUG, "debug message");
  ck_assert_int_eq(logged.level, G_LOG_LEVEL_DEBUG);
  ck_assert_str_eq(logged.message, "debug message");
  g_log_remove_handler("shardbound", handler);
  g_free(logged.message);
}
END_TEST

/* A registry over one directory holding the given fixtures. */
static SbRegistry *registry_with(const char *const *fixtures, gsize n) {
  g_autofree char *dir = make_dir();
  for (gsize i = 0; i < n; i++)
    g_free(install_fixture(dir, fixtures[i], fixtures[i]));
  SbRegistry *registry = sb_registry_new();
  sb_registry_load_dir(registry, dir);
  return registry;
}

START_TEST(test_session_passes_configured_options_to_backend) {
  const char *const fixtures[] = {"good"};
  g_autoptr(SbRegistry) registry = registry_with(fixtures, 1);
  g_autoptr(SbConfig) config = sb_config_new();
  sb_config_set_option(config, "good", "ranks", "3");
  GError *error = NULL;
  SbSession *session = sb_session_open(registry, config, "good", &error);
  ck_assert_msg(session != NULL, "%s", error != NULL ? error->message : "");
  ck_assert_str_eq(session->name, "good");
  ck_assert_int_eq(session->be->rank_count(session->ctx), 3);
  sb_session_close(session);

  /* -o on the command line overrides the configured value. */
  ck_assert(sb_config_set_option_string(config, "ranks=5", NULL));
  session = sb_session_open(registry, config, "good", &error);
  ck_assert_msg(session != NULL, "%s", error != NULL ? error->message : "");
  ck_assert_int_eq(session->be->rank_count(session->ctx), 5);
  sb_session_close(session);
}
END_TEST

START_TEST(test_session_reports_option_the_backend_rejects) {
  const char *const fixtures[] = {"good"};
  g_autoptr(SbRegistry) registry = registry_with(fixtures, 1);
  g_autoptr(SbConfig) config = sb_config_new();
  ck_assert(sb_config_set_option_string(config, "bogus=1", NULL));
  GError *error = NULL;
  ck_assert_ptr_null(sb_session_open(registry, config, "good", &error));
  /* A rejected option is a configuration error, not a backend failure. */
  ck_assert(g_error_matches(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_CONFIG));
  assert_contains(error->message, "good: context_create: invalid argument: "
                                  "unknown option 'bogus'");
  g_clear_error(&error);
}
END_TEST

START_TEST(test_session_unknown_backend_lists_available) {
  const char *const fixtures[] = {"good", "newer"};
  g_autoptr(SbRegistry) registry = registry_with(fixtures, 2);
  GError *error = NULL;
  ck_assert_ptr_null(sb_session_open(registry, NULL, "nope", &error));
  ck_assert(g_error_matches(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_NOT_FOUND));
  assert_contains(error->message, "no backend named 'nope'");
  assert_contains(error->message, "available backends: good, newer");
  g_clear_error(&error);
}
END_TEST

START_TEST(test_session_refused_backend_gives_the_reason) {
  const char *const fixtures[] = {"good", "createfails"};
  g_autoptr(SbRegistry) registry = registry_with(fixtures, 2);
  g_autoptr(SbConfig) config = sb_config_new();
  sb_config_set_backend(config, "createfails");
  GError *error = NULL;
  ck_assert_ptr_null(sb_session_open(registry, config, NULL, &error));
  ck_assert(g_error_matches(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_REFUSED));
  assert_contains(error->message, "backend 'createfails' was refused");
  assert_contains(error->message, "no CUDA device");
  assert_contains(error->message, "available backends: good");
  g_clear_error(&error);
}
END_TEST

START_TEST(test_session_default_is_cpu_without_cuda) {
  const char *const fixtures[] = {"good"};
  g_autoptr(SbRegistry) registry = registry_with(fixtures, 1);
  ck_assert_str_eq(sb_registry_default_name(registry), "cpu");
  GError *error = NULL;
  ck_assert_ptr_null(sb_session_open(registry, NULL, NULL, &error));
  assert_contains(error->message, "no backend named 'cpu'");
  g_clear_error(&error);

  g_autoptr(SbRegistry) empty = sb_registry_new();
  sb_registry_load_dir(empty, "/nonexistent/shardbound-test-dir");
  ck_assert_ptr_null(sb_session_open(empty, NULL, NULL, &error));
  assert_contains(error->message,
                  "none (searched: /nonexistent/shardbound-test-dir");
  g_clear_error(&error);
}
END_TEST

/* Whether the dynamic linker holds this file already (never loads it). */
static gboolean module_loaded(const char *path) {
  void *handle = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
  if (handle != NULL)
    dlclose(handle);
  return handle != NULL;
}

/* On a machine without an NVIDIA driver, choosing the default must not
 * load the cuda backend (and with it the CUDA runtime); naming it still
 * opens it. */
START_TEST(test_default_does_not_open_cuda_without_a_driver) {
  if (g_file_test("/dev/nvidiactl", G_FILE_TEST_EXISTS) ||
      g_file_test("/dev/dxg", G_FILE_TEST_EXISTS))
    return; /* a driver is here: the default rightly tries cuda */
  g_autofree char *dir = make_dir();
  g_autofree char *cuda = install_fixture(dir, "good", "cuda");
  g_autoptr(SbRegistry) registry = sb_registry_new();
  sb_registry_load_dir(registry, dir);
  ck_assert_str_eq(sb_registry_default_name(registry), "cpu");
  ck_assert_msg(!module_loaded(cuda), "the default loaded %s", cuda);
  sb_registry_lookup(registry, "cuda");
  ck_assert_msg(module_loaded(cuda), "a lookup by name did not load %s", cuda);
}
END_TEST

START_TEST(test_session_check_formats_backend_error) {
  const char *const fixtures[] = {"good"};
  g_autoptr(SbRegistry) registry = registry_with(fixtures, 1);
  g_autoptr(SbSession) session = sb_session_open(registry, NULL, "good", NULL);
  ck_assert_ptr_nonnull(session);
  ck_assert(sb_session_check(session, SB_OK, "nothing", NULL));
  int64_t shape[] = {2, 3};
  sb_tensor *tensor = NULL;
  int status = session->be->tensor_create(session->ctx, SB_MEM_BOUNDS, 2, shape,
                                          &tensor);
  GError *error = NULL;
  ck_assert(!sb_session_check(session, status, "tensor_create", &error));
  ck_assert(g_error_matches(error, SB_PLUGIN_ERROR, SB_PLUGIN_ERROR_BACKEND));
  ck_assert_str_eq(error->message, "good: tensor_create: unsupported: "
                                   "fixture backend has no tensors");
  g_clear_error(&error);
}
END_TEST

START_TEST(test_capabilities_are_named) {
  g_autofree char *some =
      sb_capabilities_to_string(SB_CAP_LINEAR | SB_CAP_RELU);
  ck_assert_str_eq(some, "linear,relu");
  g_autofree char *none = sb_capabilities_to_string(0);
  ck_assert_str_eq(none, "none");
  g_autofree char *future =
      sb_capabilities_to_string(SB_CAP_GPU | (G_GUINT64_CONSTANT(1) << 40));
  ck_assert_str_eq(future, "gpu,0x10000000000");
}
END_TEST

int main(void) {
  Suite *s = suite_create("loader");
  TCase *refusals = tcase_create("refusals");
  tcase_add_test(refusals, test_loader_accepts_good_backend);
  tcase_add_test(refusals,
                 test_loader_rejects_file_that_is_not_a_shared_object);
  tcase_add_test(refusals, test_loader_rejects_missing_entry_symbol);
  tcase_add_test(refusals, test_loader_rejects_failing_entry);
  tcase_add_test(refusals, test_loader_rejects_wrong_major);
  tcase_add_test(refusals, test_loader_rejects_struct_smaller_than_v1_0);
  tcase_add_test(refusals, test_loader_rejects_null_function_naming_it);
  tcase_add_test(refusals, test_loader_rejects_null_1_1_function_naming_it);
  tcase_add_test(refusals, test_loader_accepts_abi_1_0_backend);
  tcase_add_test(refusals, test_loader_rejects_name_not_matching_file);
  tcase_add_test(refusals,
                 test_loader_rejects_failing_trial_context_with_backend_text);
  tcase_add_test(refusals, test_loader_accepts_newer_minor);
  tcase_add_test(refusals, test_loader_refuses_duplicate_naming_the_first);
  tcase_add_checked_fixture(refusals, setup_dirs, remove_made_dirs);
  suite_add_tcase(s, refusals);

  TCase *scan = tcase_create("scan");
  tcase_add_test(scan, test_loader_keeps_loading_good_backend_beside_bad_ones);
  tcase_add_test(scan, test_loader_opens_only_the_backend_asked_for);
  tcase_add_test(scan, test_loader_lists_entries_sorted_with_refusals);
  tcase_add_test(scan, test_loader_scans_a_repeated_directory_once);
  tcase_add_test(scan, test_loader_missing_directory_is_not_an_error);
  tcase_add_test(scan, test_loader_host_struct_declares_v1_and_logs);
  tcase_add_test(scan, test_capabilities_are_named);
  tcase_add_checked_fixture(scan, setup_dirs, remove_made_dirs);
  suite_add_tcase(s, scan);

  TCase *session = tcase_create("session");
  tcase_add_test(session, test_session_passes_configured_options_to_backend);
  tcase_add_test(session, test_session_reports_option_the_backend_rejects);
  tcase_add_test(session, test_session_unknown_backend_lists_available);
  tcase_add_test(session, test_session_refused_backend_gives_the_reason);
  tcase_add_test(session, test_session_default_is_cpu_without_cuda);
  tcase_add_test(session, test_default_does_not_open_cuda_without_a_driver);
  tcase_add_test(session, test_session_check_formats_backend_error);
  tcase_add_checked_fixture(session, setup_dirs, remove_made_dirs);
  suite_add_tcase(s, session);

  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
