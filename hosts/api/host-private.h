/* SPDX-License-Identifier: MIT */
/* What the host API's objects hold, and how engine and plugin errors become
 * SHARDBOUND_HOST_ERROR errors at the library's boundary. */
#ifndef SB_HOST_PRIVATE_H
#define SB_HOST_PRIVATE_H

#include "shardbound-host.h"
#include "hosts/engine/bounds.h"
#include "session_setup.h"
#include "hosts/engine/verify.h"

G_BEGIN_DECLS

struct _ShardboundSession {
  SbSessionSetup *setup;
};

struct _ShardboundNetwork {
  ShardboundSession *session; /* borrowed */
  SbGraph *graph;
  SbNetwork *net;
};

/* The bounds options' method is chosen per call; their alpha-CROWN
 * settings also drive verification (verify.alpha is set from them). */
struct _ShardboundSettings {
  SbBoundsOptions bounds;
  SbVerifyParams verify;
};

struct _ShardboundProperty {
  SbProperty *prop;
  double *atom_rows; /* [n_atoms x n_outputs] */
  double *atom_rhs;  /* [n_atoms] */
};

/* A backend's statistics as the API gives them (struct_size untouched). */
void sb_host_memory_stats_from_backend(const sb_memory_stats_v1 *st,
                                       ShardboundMemoryStats *stats);

/* Moves an engine or plugin error into *error, re-coded in the
 * SHARDBOUND_HOST_ERROR domain with the same message. */
void sb_host_propagate_error(GError **error, GError *engine_error);

G_END_DECLS

#endif
