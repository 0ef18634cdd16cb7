/* SPDX-License-Identifier: MIT */
/* The engine's error domain: every engine call that fails sets a GError in
 * it, with a code that says whose fault the failure is. */
#ifndef SB_ENGINE_ERROR_H
#define SB_ENGINE_ERROR_H

#include <glib.h>

G_BEGIN_DECLS

#define SB_ENGINE_ERROR (sb_engine_error_quark())
GQuark sb_engine_error_quark(void);

typedef enum {
  SB_ENGINE_ERROR_INVALID_INPUT, /* the graph, property or input box is not
                                    usable (e.g. an empty box) */
  SB_ENGINE_ERROR_UNSUPPORTED,   /* valid, but the backend cannot do it (an
                                    operator, an ABI too old for a method) */
  SB_ENGINE_ERROR_BACKEND,       /* a backend call failed */
  SB_ENGINE_ERROR_NO_MEMORY,     /* the backend ran out of memory */
  SB_ENGINE_ERROR_INTERNAL       /* a broken invariant of the engine */
} SbEngineError;

/* Whether the failure lies in the request (bad input, unsupported) rather
 * than in the computation: what a command-line tool reports as bad input. */
gboolean sb_engine_error_is_input(const GError *error);

G_END_DECLS

#endif
