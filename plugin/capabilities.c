/* SPDX-License-Identifier: MIT */
/* Names of the SB_CAP_* capability flags, for listings and messages. */
#include "plugin/shardbound-plugin.h"

static const struct {
  guint64 flag;
  const char *name;
} capability_names[] = {
    {SB_CAP_LINEAR, "linear"},
    {SB_CAP_CONV2D, "conv2d"},
    {SB_CAP_AFFINE, "affine"},
    {SB_CAP_ADD, "add"},
    {SB_CAP_RELU, "relu"},
    {SB_CAP_GPU, "gpu"},
    {SB_CAP_MULTI_RANK, "multi-rank"},
};

char *sb_capabilities_to_string(guint64 caps) {
  if (caps == 0)
    return g_strdup("none");
  GString *out = g_string_new(NULL);
  guint64 known = 0;
  for (gsize i = 0; i < G_N_ELEMENTS(capability_names); i++) {
    known |= capability_names[i].flag;
    if ((caps & capability_names[i].flag) == 0)
      continue;
    if (out->len > 0)
      g_string_append_c(out, ',');
    g_string_append(out, capability_names[i].name);
  }
  /* Bits from a newer ABI minor are shown rather than dropped. */
  if ((caps & ~known) != 0)
    g_string_append_printf(out, "%s0x%" G_GINT64_MODIFIER "x",
                           out->len > 0 ? "," : "", caps & ~known);
  return g_string_free(out, FALSE);
}
