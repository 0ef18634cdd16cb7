/* SPDX-License-Identifier: MIT */
/* The engine's whole load path, as `shardbound bounds` takes it, on the
 * CPU backend (input layout and checks: fuzz/load_path.h). Any step may
 * refuse the input with a GError; none may crash or leak. */
#include "config.h"

#include "fuzz/fuzz_common.h"
#include "fuzz/load_path.h"
#include "hosts/api/session_setup.h"

static SbSessionSetup *setup;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  sb_fuzz_init();
  /* The CPU backend of the fuzz build, next to the harness by default. */
  const char *path = g_getenv("SHARDBOUND_FUZZ_BACKEND_PATH");
  g_autofree char *exe_dir = g_path_get_dirname((*argv)[0]);
  g_autofree char *default_path = g_build_filename(exe_dir, "backends", NULL);
  g_setenv("XDG_CONFIG_HOME", "/nonexistent", TRUE);
  SbSessionRequest request = {
      .backend = "cpu", .backend_path = path != NULL ? path : default_path};
  GError *error = NULL;
  setup = sb_session_setup(&request, &error);
  if (setup == NULL) {
    g_printerr("fuzz-load: no CPU backend: %s\n", error->message);
    exit(1);
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  GError *error = NULL;
  if (!sb_fuzz_load_path(setup->session, data, size, &error))
    g_clear_error(&error);
  return 0;
}
