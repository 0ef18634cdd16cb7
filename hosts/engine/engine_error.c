/* SPDX-License-Identifier: MIT */
/* The engine's error domain. */
#include "config.h"

#include "engine_error.h"

G_DEFINE_QUARK(sb - engine - error - quark, sb_engine_error)

gboolean sb_engine_error_is_input(const GError *error) {
  return error != NULL && error->domain == SB_ENGINE_ERROR &&
         (error->code == SB_ENGINE_ERROR_INVALID_INPUT ||
          error->code == SB_ENGINE_ERROR_UNSUPPORTED);
}
