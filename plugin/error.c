/* SPDX-License-Identifier: MIT */
/* The GError domain of libshardbound. */
#include "plugin/shardbound-plugin.h"

G_DEFINE_QUARK(sb - plugin - error - quark, sb_plugin_error)
