/* SPDX-License-Identifier: MIT */
/* `shardbound mkmodel`: writes a synthetic ONNX model (MLP or ResNet) and a
 * robustness property for benchmarks and tests. */
#include "config.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "tools/mkmodel/mkmodel.h"

/* "784,4096,10" -> widths; FALSE with a message on anything else. */
static gboolean parse_widths(const char *text, GArray *widths, GError **error) {
  g_auto(GStrv) parts = g_strsplit(text, ",", -1);

  for (guint i = 0; parts[i] != NULL; i++) {
    guint64 v;
    int64_t w;

    if (!g_ascii_string_to_unsigned(g_strstrip(parts[i]), 10, 1, G_MAXINT32, &v,
                                    NULL)) {
      g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                  "--mlp: '%s' is not a positive width (expected e.g. "
                  "784,256,256,10)",
                  parts[i]);
      return FALSE;
    }
    w = (int64_t)v;
    g_array_append_val(widths, w);
  }
  if (widths->len < 2) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                "--mlp needs at least two widths (input and output)");
    return FALSE;
  }
  return TRUE;
}

/* "3x32x32" -> C, H, W */
static gboolean parse_input_shape(const char *text, SbResnetSpec *spec,
                                  GError **error) {
  g_auto(GStrv) parts = g_strsplit(text, "x", -1);
  guint64 v[3];

  if (g_strv_length(parts) != 3)
    goto bad;
  for (int i = 0; i < 3; i++)
    if (!g_ascii_string_to_unsigned(parts[i], 10, 1, 4096, &v[i], NULL))
      goto bad;
  spec->in_c = (int64_t)v[0];
  spec->in_h = (int64_t)v[1];
  spec->in_w = (int64_t)v[2];
  return TRUE;

bad:
  g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
              "--input: '%s' is not CxHxW (e.g. 3x32x32)", text);
  return FALSE;
}

int sb_cmd_mkmodel(int argc, char **argv) {
  g_autofree char *mlp = NULL, *input = NULL, *out = NULL, *property = NULL;
  gboolean resnet = FALSE;
  gint channels = 8, blocks = 2, classes = 10;
  gint64 seed = 0;
  gdouble eps = 0.01;
  GOptionEntry entries[] = {
      {"mlp", 0, 0, G_OPTION_ARG_STRING, &mlp,
       "an MLP with these layer widths (Gemm + Relu)", "784,256,256,10"},
      {"resnet", 0, 0, G_OPTION_ARG_NONE, &resnet,
       "a ResNet: Conv/BatchNorm stem, residual blocks, Flatten, Gemm", NULL},
      {"input", 0, 0, G_OPTION_ARG_STRING, &input,
       "ResNet input image (default 3x32x32)", "CxHxW"},
      {"channels", 0, 0, G_OPTION_ARG_INT, &channels,
       "ResNet stem channels; each block after the first doubles them (default "
       "8)",
       "N"},
      {"blocks", 0, 0, G_OPTION_ARG_INT, &blocks,
       "ResNet residual blocks (default 2)", "N"},
      {"classes", 0, 0, G_OPTION_ARG_INT, &classes,
       "ResNet outputs (default 10)", "N"},
      {"seed", 0, 0, G_OPTION_ARG_INT64, &seed,
       "seed of the random weights and of the property's centre (default 0)",
       "N"},
      {"eps", 0, 0, G_OPTION_ARG_DOUBLE, &eps,
       "L-inf radius of the input box (default 0.01)", "E"},
      {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "the ONNX file to write",
       "OUT.onnx"},
      {"property", 0, 0, G_OPTION_ARG_FILENAME, &property,
       "the VNNLIB file to write (default: OUT with .vnnlib)", "OUT.vnnlib"},
      {NULL}};
  g_autoptr(GOptionContext) ctx =
      g_option_context_new("--mlp W0,W1,...|--resnet -o OUT.onnx");
  g_autoptr(GError) error = NULL;
  g_autoptr(SbMkModel) model = NULL;
  int64_t label;

  g_option_context_set_summary(
      ctx,
      "Write a synthetic ONNX model with random weights and a robustness\n"
      "property: an L-inf box of radius eps around a random input in [0,1],\n"
      "unsafe when some output reaches the one that is largest at the centre.");
  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    fprintf(stderr, "shardbound mkmodel: %s\n", error->message);
    return 2;
  }
  if (argc > 1) {
    fprintf(stderr, "shardbound mkmodel: unexpected argument '%s'\n", argv[1]);
    return 2;
  }
  if ((mlp != NULL) == resnet) {
    fprintf(stderr,
            "shardbound mkmodel: give exactly one of --mlp and --resnet\n");
    return 2;
  }
  if (out == NULL) {
    fprintf(stderr, "shardbound mkmodel: -o OUT.onnx is required\n");
    return 2;
  }
  if (!(eps >= 0.0 && eps <= 1.0)) {
    fprintf(stderr, "shardbound mkmodel: --eps must lie in [0,1]\n");
    return 2;
  }
  if (property == NULL)
    property = g_str_has_suffix(out, ".onnx")
                   ? g_strdup_printf("%.*s.vnnlib", (int)strlen(out) - 5, out)
                   : g_strdup_printf("%s.vnnlib", out);

  if (mlp != NULL) {
    g_autoptr(GArray) widths = g_array_new(FALSE, FALSE, sizeof(int64_t));

    if (!parse_widths(mlp, widths, &error)) {
      fprintf(stderr, "shardbound mkmodel: %s\n", error->message);
      return 2;
    }
    model = sb_mkmodel_new_mlp((const int64_t *)widths->data, (int)widths->len,
                               (guint64)seed, &error);
  } else {
    SbResnetSpec spec = {3, 32, 32, channels, blocks, classes};

    if (input != NULL && !parse_input_shape(input, &spec, &error)) {
      fprintf(stderr, "shardbound mkmodel: %s\n", error->message);
      return 2;
    }
    model = sb_mkmodel_new_resnet(&spec, (guint64)seed, &error);
  }
  if (model == NULL) {
    fprintf(stderr, "shardbound mkmodel: %s\n", error->message);
    return 2;
  }
  if (!sb_mkmodel_write(model, (guint64)seed, eps, out, property, &label,
                        &error)) {
    fprintf(stderr, "shardbound mkmodel: %s\n", error->message);
    return 1;
  }
  printf("wrote %s (%" G_GINT64_FORMAT " inputs, %" G_GINT64_FORMAT
         " outputs) and %s (label %" G_GINT64_FORMAT ", eps %g)\n",
         out, sb_mkmodel_input_size(model), sb_mkmodel_output_size(model),
         property, label, eps);
  return 0;
}
