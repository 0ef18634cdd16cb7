/* SPDX-License-Identifier: MIT */
/* Bound propagation over a graph on any backend: IBP and CROWN. */
#ifndef SB_BOUNDS_H
#define SB_BOUNDS_H

#include <glib.h>
#include "plugin/shardbound-plugin.h"
#include "engine_error.h"
#include "graph.h"
#include "vnnlib.h"

G_BEGIN_DECLS

typedef enum { SB_METHOD_IBP, SB_METHOD_CROWN, SB_METHOD_ALPHA_CROWN } SbMethod;

/* Parses "ibp" / "crown" / "alpha-crown"; FALSE for anything else. */
gboolean sb_method_from_string(const char *text, SbMethod *out);
const char *sb_method_to_string(SbMethod method);

/* alpha-CROWN: projected Adam over the lower-relaxation slopes, one set per
 * start node (DESIGN.md section 4). */
typedef struct {
  int iterations;            /* Adam steps per intermediate start node (20) */
  int final_iterations;      /* Adam steps for the outputs and the spec, where
                                few rows make steps cheap */
  double learning_rate;      /* 0.5 */
  double beta_learning_rate; /* beta-CROWN's multipliers; <= 0: learning_rate */
  double decay;              /* learning rate factor per step (0.98) */
  int patience; /* stop after this many steps without improvement */
  gboolean optimize_intermediate; /* also tighten every ReLU input's bounds */
  gint64 deadline; /* g_get_monotonic_time () after which Adam stops
                      with the best bounds so far (any slopes give
                      sound bounds); 0 for none */
} SbAlphaParams;

void sb_alpha_params_init(SbAlphaParams *params);

/* A graph whose layers live in a backend context. Ownership: the network
 * borrows session and graph, which must outlive it. */
typedef struct _SbNetwork SbNetwork;

SbNetwork *sb_network_new(SbSession *session, const SbGraph *graph,
                          GError **error);
void sb_network_free(SbNetwork *network);

/* How sb_network_compute_bounds bounds. */
typedef struct {
  SbMethod method;
  /* FALSE: CROWN intermediate bounds replace the IBP bounds of the
   * IBP-unstable neurons, as auto_LiRPA does (the default, which reproduces
   * its bounds). TRUE: each bound is the tighter of the two: never looser,
   * often tighter, and what complete verification uses. */
  gboolean intersect_ibp;
  SbAlphaParams alpha; /* SB_METHOD_ALPHA_CROWN only */
} SbBoundsOptions;

/* CROWN, auto_LiRPA's intermediate bounds, default alpha-CROWN settings. */
void sb_bounds_options_init(SbBoundsOptions *options);

/* The number of ranks the network's backend runs on. */
int sb_network_rank_count(const SbNetwork *network);
/* Starts a memory measurement: what the backend holds now becomes the
 * baseline, and the peaks restart from it. */
gboolean sb_network_memory_reset(SbNetwork *network, GError **error);
/* The backend's memory statistics of one rank (0 <= rank < rank count). */
gboolean sb_network_memory_stats(SbNetwork *network, int rank,
                                 sb_memory_stats_v1 *stats, GError **error);

/* FLOPs of the matrix products issued so far (IBP counts two: centre and
 * radius); for comparing a pass with the device's GEMM rate. */
double sb_network_product_flops(const SbNetwork *network);

/* A linear specification: rows c (n_specs x n_outputs, row-major) whose
 * bounds of c.y are wanted. */
typedef struct {
  int n_specs;
  const double *rows;
} SbSpec;

typedef struct {
  int n_outputs;
  double *output_lower; /* [n_outputs] */
  double *output_upper;
  int n_specs;
  double *spec_lower; /* [n_specs] */
  double *spec_upper;
  /* Counts of the intermediate CROWN passes (for reports). */
  int n_unstable; /* unstable ReLU inputs after intermediate bounds */
} SbBoundsResult;

void sb_bounds_result_clear(SbBoundsResult *result);

/* Bounds of the network output and of every spec row (spec MAY be NULL)
 * over the box [x_lower, x_upper] (graph->input_size entries each).
 * Errors are in SB_ENGINE_ERROR. */
gboolean sb_network_compute_bounds(SbNetwork *network,
                                   const SbBoundsOptions *options,
                                   const double *x_lower, const double *x_upper,
                                   const SbSpec *spec, SbBoundsResult *result,
                                   GError **error);

/* Spec rows of a property's atoms in file order (n_atoms x n_outputs). */
double *sb_property_spec_rows(const SbProperty *property);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SbNetwork, sb_network_free)

G_END_DECLS

#endif
