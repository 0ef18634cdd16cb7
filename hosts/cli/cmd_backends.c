/* SPDX-License-Identifier: MIT */
/* `shardbound backends`: what the search path holds, which backends were
 * accepted and why the others were refused. */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "abi/shardbound.h"
#include "hosts/api/shardbound-host.h"

static void json_string(GString *out, const char *text) {
  if (text == NULL) {
    g_string_append(out, "null");
    return;
  }
  g_string_append_c(out, '"');
  for (const char *p = text; *p != '\0'; p++) {
    if (*p == '"' || *p == '\\')
      g_string_append_printf(out, "\\%c", *p);
    else if ((unsigned char)*p < 0x20)
      g_string_append_printf(out, "\\u%04x", (unsigned char)*p);
    else
      g_string_append_c(out, *p);
  }
  g_string_append_c(out, '"');
}

static void json_string_list(GString *out, const char *const *items) {
  g_string_append_c(out, '[');
  for (guint i = 0; items != NULL && items[i] != NULL; i++) {
    if (i > 0)
      g_string_append(out, ", ");
    json_string(out, items[i]);
  }
  g_string_append_c(out, ']');
}

static void print_json(const ShardboundBackendList *list) {
  GString *out = g_string_new("{\n  \"search_path\": ");
  json_string_list(out, shardbound_backend_list_searched(list));
  g_string_append(out, ",\n  \"config_file\": ");
  json_string(out, shardbound_backend_list_config_file(list));
  g_string_append(out, ",\n  \"default\": ");
  json_string(out, shardbound_backend_list_default(list));
  g_string_append(out, ",\n  \"abi\": ");
  g_autofree char *host_abi =
      g_strdup_printf("%d.%d", SB_ABI_MAJOR, SB_ABI_MINOR);
  json_string(out, host_abi);

  int n = shardbound_backend_list_count(list);
  for (int pass = 0; pass < 2; pass++) {
    gboolean accepted_pass = pass == 0;
    g_string_append(out, accepted_pass ? ",\n  \"backends\": ["
                                       : ",\n  \"refused\": [");
    gboolean first = TRUE;
    for (int i = 0; i < n; i++) {
      const char *refusal = shardbound_backend_list_refusal(list, i);
      if ((refusal == NULL) != accepted_pass)
        continue;
      g_string_append(out, first ? "\n    {" : ",\n    {");
      first = FALSE;
      g_string_append(out, "\"name\": ");
      json_string(out, shardbound_backend_list_name(list, i));
      g_string_append(out, ", \"path\": ");
      json_string(out, shardbound_backend_list_path(list, i));
      const char *abi = shardbound_backend_list_abi(list, i);
      g_string_append(out, ", \"abi\": ");
      json_string(out, abi[0] != '\0' ? abi : NULL);
      if (accepted_pass) {
        g_string_append(out, ", \"version\": ");
        json_string(out, shardbound_backend_list_version(list, i));
        g_string_append(out, ", \"description\": ");
        json_string(out, shardbound_backend_list_description(list, i));
        const char *cap_text = shardbound_backend_list_capabilities(list, i);
        g_auto(GStrv) caps = g_str_equal(cap_text, "none")
                                 ? g_new0(char *, 1)
                                 : g_strsplit(cap_text, ",", -1);
        g_string_append(out, ", \"capabilities\": ");
        json_string_list(out, (const char *const *)caps);
      } else {
        g_string_append(out, ", \"reason\": ");
        json_string(out, refusal);
      }
      g_string_append_c(out, '}');
    }
    g_string_append(out, first ? "]" : "\n  ]");
  }
  g_string_append(out, "\n}\n");
  fputs(out->str, stdout);
  g_string_free(out, TRUE);
}

static void print_text(const ShardboundBackendList *list) {
  g_autofree char *path =
      g_strjoinv(G_SEARCHPATH_SEPARATOR_S,
                 (char **)shardbound_backend_list_searched(list));
  const char *file = shardbound_backend_list_config_file(list);
  printf("Search path:   %s\n", path);
  printf("Configuration: %s\n", file != NULL ? file : "none");
  printf("Host ABI:      %d.%d\n", SB_ABI_MAJOR, SB_ABI_MINOR);

  int n = shardbound_backend_list_count(list);
  int name_w = 4, version_w = 7;
  guint n_accepted = 0, n_refused = 0;
  for (int i = 0; i < n; i++) {
    if (shardbound_backend_list_refusal(list, i) != NULL) {
      n_refused++;
      continue;
    }
    n_accepted++;
    name_w = MAX(name_w, (int)strlen(shardbound_backend_list_name(list, i)));
    const char *version = shardbound_backend_list_version(list, i);
    if (version != NULL)
      version_w = MAX(version_w, (int)strlen(version));
  }

  const char *default_name = shardbound_backend_list_default(list);
  printf("\nBackends (* = default):\n");
  if (n_accepted == 0)
    printf("  none found; set SHARDBOUND_BACKEND_PATH, [host] backend_path "
           "or --backend-path\n");
  else
    printf("  %-*s  %-*s  %-4s  %-40s  %s\n", name_w + 1, "NAME", version_w,
           "VERSION", "ABI", "CAPABILITIES", "PATH");
  for (int i = 0; i < n; i++) {
    if (shardbound_backend_list_refusal(list, i) != NULL)
      continue;
    const char *name = shardbound_backend_list_name(list, i);
    const char *version = shardbound_backend_list_version(list, i);
    g_autofree char *marked =
        g_strconcat(name, g_strcmp0(name, default_name) == 0 ? "*" : "", NULL);
    printf("  %-*s  %-*s  %-4s  %-40s  %s\n", name_w + 1, marked, version_w,
           version != NULL ? version : "?",
           shardbound_backend_list_abi(list, i),
           shardbound_backend_list_capabilities(list, i),
           shardbound_backend_list_path(list, i));
  }
  if (n_refused > 0) {
    printf("\nRefused:\n");
    for (int i = 0; i < n; i++) {
      const char *refusal = shardbound_backend_list_refusal(list, i);
      if (refusal != NULL)
        printf("  %s: %s\n", shardbound_backend_list_name(list, i), refusal);
    }
  }
}

int sb_cmd_backends(int argc, char **argv) {
  g_autofree char *backend_path = NULL;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
      {"backend-path", 0, 0, G_OPTION_ARG_STRING, &backend_path,
       "Directories to search for backends, separated by ':' (overrides "
       "SHARDBOUND_BACKEND_PATH and the configuration file)",
       "DIR[:DIR]"},
      {"json", 0, 0, G_OPTION_ARG_NONE, &json,
       "Print one JSON object instead of a table", NULL},
      {NULL}};
  g_autoptr(GOptionContext) context = g_option_context_new(NULL);
  g_option_context_set_summary(
      context, "List the backends found on the search path, with their "
               "version, ABI and capabilities,\nand the refused ones with "
               "the reason.");
  g_option_context_add_main_entries(context, entries, NULL);
  g_autoptr(GError) error = NULL;
  if (!g_option_context_parse(context, &argc, &argv, &error)) {
    fprintf(stderr, "shardbound backends: %s\n", error->message);
    return 2;
  }
  if (argc > 1) {
    fprintf(stderr, "shardbound backends: unexpected argument '%s'\n", argv[1]);
    return 2;
  }

  g_autoptr(ShardboundBackendList) list =
      shardbound_backend_list_new(backend_path, NULL, &error);
  if (list == NULL) {
    fprintf(stderr, "shardbound backends: %s\n", error->message);
    return 2;
  }
  /* Refusals are part of the answer, not a failure of the command. */
  if (json)
    print_json(list);
  else
    print_text(list);
  return 0;
}
