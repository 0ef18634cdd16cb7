/* SPDX-License-Identifier: MIT */
/* The engine's whole load path on one byte string, shared by the fuzz
 * harness and the regression test that replays what it found.
 *
 * Input layout: a 4-byte little-endian length n, then n bytes of ONNX
 * model, then the VNNLIB property (the rest). A length past the end means
 * the whole rest is the model and the property is empty. */
#ifndef SB_FUZZ_LOAD_PATH_H
#define SB_FUZZ_LOAD_PATH_H

#include <glib.h>
#include "plugin/shardbound-plugin.h"

G_BEGIN_DECLS

/* Parses both parts, checks them against each other, loads the model on
 * `session` and bounds the first input region by IBP. TRUE when all of it
 * succeeded; FALSE with an error from whichever step refused the input.
 * Aborts on what no input may cause: a failure without an error, an
 * error without a message, a lower bound above its upper bound. */
gboolean sb_fuzz_load_path(SbSession *session, const guint8 *data, gsize size,
                           GError **error);

G_END_DECLS

#endif
