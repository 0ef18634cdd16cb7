/* SPDX-License-Identifier: MIT */
/* `shardbound backends`: what the search path holds, which backends were
 * accepted and why the others were refused. */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "plugin/shardbound-plugin.h"

static void
json_string (GString *out, const char *text)
{
  if (text == NULL)
    {
      g_string_append (out, "null");
      return;
    }
  g_string_append_c (out, '"');
  for (const char *p = text; *p != '\0'; p++)
    {
      if (*p == '"' || *p == '\\')
        g_string_append_printf (out, "\\%c", *p);
      else if ((unsigned char) *p < 0x20)
        g_string_append_printf (out, "\\u%04x", (unsigned char) *p);
      else
        g_string_append_c (out, *p);
    }
  g_string_append_c (out, '"');
}

static void
json_string_list (GString *out, const char *const *items)
{
  g_string_append_c (out, '[');
  for (guint i = 0; items != NULL && items[i] != NULL; i++)
    {
      if (i > 0)
        g_string_append (out, ", ");
      json_string (out, items[i]);
    }
  g_string_append_c (out, ']');
}

static void
print_json (const SbRegistry *registry, const SbConfig *config)
{
  GString *out = g_string_new ("{\n  \"search_path\": ");
  json_string_list (out, sb_registry_searched_dirs (registry));
  g_string_append (out, ",\n  \"config_file\": ");
  json_string (out, sb_config_get_file (config));
  g_string_append (out, ",\n  \"default\": ");
  json_string (out, sb_registry_lookup (registry,
                                        sb_registry_default_name (registry))
                        ? sb_registry_default_name (registry) : NULL);
  g_string_append (out, ",\n  \"abi\": ");
  g_autofree char *host_abi = g_strdup_printf ("%d.%d", SB_ABI_MAJOR,
                                               SB_ABI_MINOR);
  json_string (out, host_abi);

  const GPtrArray *entries = sb_registry_entries (registry);
  for (int pass = 0; pass < 2; pass++)
    {
      gboolean accepted_pass = pass == 0;
      g_string_append (out, accepted_pass ? ",\n  \"backends\": ["
                                          : ",\n  \"refused\": [");
      gboolean first = TRUE;
      for (guint i = 0; i < entries->len; i++)
        {
          const SbBackendEntry *e = g_ptr_array_index (entries, i);
          if ((e->desc != NULL) != accepted_pass)
            continue;
          g_string_append (out, first ? "\n    {" : ",\n    {");
          first = FALSE;
          g_string_append (out, "\"name\": ");
          json_string (out, e->name);
          g_string_append (out, ", \"path\": ");
          json_string (out, e->path);
          g_autofree char *abi =
              e->abi_major != 0 ? g_strdup_printf ("%u.%u", e->abi_major,
                                                   e->abi_minor)
                                : NULL;
          g_string_append (out, ", \"abi\": ");
          json_string (out, abi);
          if (accepted_pass)
            {
              g_string_append (out, ", \"version\": ");
              json_string (out, e->desc->version);
              g_string_append (out, ", \"description\": ");
              json_string (out, e->desc->description);
              g_auto (GStrv) caps = NULL;
              g_autofree char *cap_text =
                  sb_capabilities_to_string (e->desc->capabilities);
              caps = e->desc->capabilities != 0
                         ? g_strsplit (cap_text, ",", -1)
                         : g_new0 (char *, 1);
              g_string_append (out, ", \"capabilities\": ");
              json_string_list (out, (const char *const *) caps);
            }
          else
            {
              g_string_append (out, ", \"reason\": ");
              json_string (out, e->refusal);
            }
          g_string_append_c (out, '}');
        }
      g_string_append (out, first ? "]" : "\n  ]");
    }
  g_string_append (out, "\n}\n");
  fputs (out->str, stdout);
  g_string_free (out, TRUE);
}

static void
print_text (const SbRegistry *registry, const SbConfig *config)
{
  g_autofree char *path = g_strjoinv (
      G_SEARCHPATH_SEPARATOR_S, (char **) sb_registry_searched_dirs (registry));
  const char *file = sb_config_get_file (config);
  printf ("Search path:   %s\n", path);
  printf ("Configuration: %s\n", file != NULL ? file : "none");
  printf ("Host ABI:      %d.%d\n", SB_ABI_MAJOR, SB_ABI_MINOR);

  const GPtrArray *entries = sb_registry_entries (registry);
  int name_w = 4, version_w = 7;
  guint n_accepted = 0, n_refused = 0;
  for (guint i = 0; i < entries->len; i++)
    {
      const SbBackendEntry *e = g_ptr_array_index (entries, i);
      if (e->desc == NULL)
        {
          n_refused++;
          continue;
        }
      n_accepted++;
      name_w = MAX (name_w, (int) strlen (e->name));
      if (e->desc->version != NULL)
        version_w = MAX (version_w, (int) strlen (e->desc->version));
    }

  const char *default_name = sb_registry_default_name (registry);
  printf ("\nBackends (* = default):\n");
  if (n_accepted == 0)
    printf ("  none found; set SHARDBOUND_BACKEND_PATH, [host] backend_path "
            "or --backend-path\n");
  else
    printf ("  %-*s  %-*s  %-4s  %-40s  %s\n", name_w + 1, "NAME", version_w,
            "VERSION", "ABI", "CAPABILITIES", "PATH");
  for (guint i = 0; i < entries->len; i++)
    {
      const SbBackendEntry *e = g_ptr_array_index (entries, i);
      if (e->desc == NULL)
        continue;
      g_autofree char *caps = sb_capabilities_to_string (e->desc->capabilities);
      g_autofree char *name = g_strconcat (
          e->name, strcmp (e->name, default_name) == 0 ? "*" : "", NULL);
      g_autofree char *abi = g_strdup_printf ("%u.%u", e->abi_major,
                                              e->abi_minor);
      printf ("  %-*s  %-*s  %-4s  %-40s  %s\n", name_w + 1, name, version_w,
              e->desc->version != NULL ? e->desc->version : "?", abi, caps,
              e->path);
    }
  if (n_refused > 0)
    {
      printf ("\nRefused:\n");
      for (guint i = 0; i < entries->len; i++)
        {
          const SbBackendEntry *e = g_ptr_array_index (entries, i);
          if (e->desc == NULL)
            printf ("  %s: %s\n", e->name, e->refusal);
        }
    }
}

int
sb_cmd_backends (int argc, char **argv)
{
  g_autofree char *backend_path = NULL;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "backend-path", 0, 0, G_OPTION_ARG_STRING, &backend_path,
      "Directories to search for backends, separated by ':' (overrides "
      "SHARDBOUND_BACKEND_PATH and the configuration file)", "DIR[:DIR]" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json,
      "Print one JSON object instead of a table", NULL },
    { NULL }
  };
  /* GOption prints the program name in usage lines and errors. */
  g_set_prgname ("shardbound backends");
  g_autoptr (GOptionContext) context = g_option_context_new (NULL);
  g_option_context_set_summary (
      context, "List the backends found on the search path, with their "
               "version, ABI and capabilities,\nand the refused ones with "
               "the reason.");
  g_option_context_add_main_entries (context, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      fprintf (stderr, "shardbound backends: %s\n", error->message);
      return 2;
    }
  if (argc > 1)
    {
      fprintf (stderr, "shardbound backends: unexpected argument '%s'\n",
               argv[1]);
      return 2;
    }

  g_autoptr (SbConfig) config = sb_config_new ();
  if (!sb_config_load_default (config, &error))
    {
      fprintf (stderr, "shardbound backends: %s\n", error->message);
      return 2;
    }
  sb_config_apply_environment (config);
  if (backend_path != NULL)
    sb_config_set_backend_path (config, backend_path);

  g_autoptr (SbRegistry) registry = sb_registry_new ();
  sb_registry_load_config (registry, config);
  /* Refusals are part of the answer, not a failure of the command. */
  if (json)
    print_json (registry, config);
  else
    print_text (registry, config);
  return 0;
}
