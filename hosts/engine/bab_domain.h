/* SPDX-License-Identifier: MIT */
/* Branch-and-bound domains: a subdomain of one input region defined by its
 * ReLU splits, its stored intermediate bounds and slopes, and the context
 * (layout, open atoms) that every step of one region's search shares. */
#ifndef SB_BAB_DOMAIN_H
#define SB_BAB_DOMAIN_H

#include "alpha.h"
#include "bounds_private.h"
#include "verify.h"

G_BEGIN_DECLS

/* A ReLU split: the input neuron `neuron` of node `node` (a ReLU input) is
 * constrained to z >= 0 (sign -1, "active") or z <= 0 (sign +1). */
typedef struct {
  int node;
  int64_t neuron;
  int sign;
} SbBabSplit;

/* One allocation each (bab_domain.c): free with sb_bab_domain_free only. */
typedef struct {
  float *bounds;      /* lower then upper bounds of every ReLU input */
  double *spec_lower; /* [S]; never below the parent's (a subdomain) */
  float *alpha;       /* [S, alpha_size] slopes the bound was found
                         with, inherited as the children's start; NULL:
                         CROWN's defaults */
  float *beta;        /* [S, n_splits]: the optimised beta of each split
                         (in the order of splits), inherited as the
                         children's start (their new split's at 0);
                         NULL: all 0 */
  double margin;      /* > 0: verified */
  SbBabSplit *splits;
  int n_splits;
  int branch_node; /* -1: nothing left to split */
  int64_t branch_neuron;
  int64_t *candidates; /* FSB: (node, neuron) pairs, best first */
  int n_candidates;
  gboolean tried; /* its bound's minimiser was checked */
} SbBabDomain;

#define SB_BAB_FREE_SAMPLES 15
/* How many times the median freeing time per domain a queued domain is
 * taken to cost at the end of a search (verify.c, search_from). */
#define SB_BAB_TEARDOWN_FACTOR 10.0

/* The search over one region of a property. */
typedef struct {
  SbNetwork *net;
  const SbProperty *prop;
  const SbVerifyParams *params;
  int region;
  gint64 deadline;
  /* When the region's branch-and-bound started, and its --bab-time end
   * (0: none). */
  gint64 t0, budget_end;
  /* The node whose output the atoms' rows weigh (n_out neurons): the
   * network's output, or an intermediate node whose bounds the search
   * tightens (`refining`: no counterexample is looked for, and the search
   * keeps the least margin it left open in open_min). */
  int out_node;
  int64_t n_out;
  gboolean refining;
  double open_min;
  /* Layout of a domain's bounds: the ReLU-input nodes and their offsets. */
  int n_ri;
  int *ri_node;
  int64_t *ri_offset;
  int64_t R;
  /* Layout of a domain's slopes: the spec pass's ReLU nodes, each N wide. */
  int64_t alpha_size;
  /* Whether children start from their parent's betas (else from 0). */
  gboolean warm_betas;
  /* The split-dependent host memory (splits, betas) of the queued domains,
   * in bytes: the rest of a domain's is the same for all. */
  int64_t queued_split_bytes;
  /* Microseconds a popped domain took to free in each of the last
   * SB_BAB_FREE_SAMPLES steps (a ring indexed by n_free_samples): their
   * median measures what freeing the queue will take under the current
   * load. */
  double free_us[SB_BAB_FREE_SAMPLES];
  int n_free_samples;
  gint64 last_step_us; /* how long the last step took */
  /* The atoms BaB still has to prove, grouped by open disjunct. */
  int S;
  double *rows; /* [S, n_outputs] */
  double *rhs;  /* [S] */
  int n_open;
  int *open_start; /* [n_open + 1] */
  /* Queued domains, a heap by margin (bab_heap.h). */
  GPtrArray *heap;
  int64_t evaluated;
  int64_t tightened; /* domains the searches of the root's intermediate
                        bounds evaluated (verify.c, tighten_root) */
  /* A search stops (paused) once the region has evaluated tighten_at
   * domains (0: never) so that the root can be tightened first, which
   * happens once per region (root_tightened). */
  int64_t tighten_at;
  gboolean paused, root_tightened;
  /* The queue a paused search keeps while the root is tightened, in MiB:
   * the tightening's searches count it against --max-memory. */
  double paused_queue_mib;
  gboolean limit_hit;   /* stopped by --max-domains or --max-memory */
  int64_t limit_open;   /* then: the open domains */
  double limit_mib;     /* and the queues' host memory, in MiB */
  int over_rank;        /* >= 0: the rank whose memory passed --max-memory */
  double over_rank_mib; /* and its peak */
  gboolean found;
  float *cex;
  double found_margin; /* the least sb_point_margin of the inputs checked */
} SbBab;

/* A domain counts as proven only when its margin clears the float32
 * rounding of the bound computation, not merely zero. */
#define SB_BAB_PROVEN_MARGIN 1e-6

static inline gboolean sb_bab_domain_proven(const SbBabDomain *d) {
  return d->margin > SB_BAB_PROVEN_MARGIN;
}

/* min over open disjuncts of max over their atoms of (lower - d): the
 * domain is verified when it is positive (see sb_bab_domain_proven). */
double sb_bab_margin(const SbBab *bab, const double *spec_lower);

/* The region's root: no splits, no bounds yet (spec bounds -inf). */
SbBabDomain *sb_bab_domain_new_root(const SbBab *bab);
/* A copy of parent with one more split; it keeps the parent's slopes and
 * betas (the new split's beta 0). */
SbBabDomain *sb_bab_domain_new_child(const SbBab *bab,
                                     const SbBabDomain *parent, int node,
                                     int64_t neuron, int sign);
void sb_bab_domain_free(SbBabDomain *domain);

/* Writes the B domains' ReLU-input bounds into nb, applying each domain's
 * splits. */
gboolean sb_bab_domains_load_bounds(SbBab *bab, SbNodeBounds *nb,
                                    SbBabDomain **doms, int B, GError **error);
/* Reads the ReLU-input bounds of nb back into the domains, rounded
 * outwards; empty[b] is set where a domain's bounds cross (no input
 * satisfies its splits). */
gboolean sb_bab_domains_store_bounds(SbBab *bab, SbNodeBounds *nb,
                                     SbBabDomain **doms, int B, gboolean *empty,
                                     GError **error);
/* [B, N_i] split signs per ReLU-input node into sign[] (left NULL where no
 * domain splits node i). */
gboolean sb_bab_domains_split_signs(SbBab *bab, SbBabDomain **doms, int B,
                                    sb_tensor **sign, GError **error);

/* Moves slopes between the domains and the optimiser's lower-side tensors:
 * with `save`, each domain keeps its optimised slopes; without, the tensors
 * (holding CROWN's defaults) take each domain's inherited ones. */
gboolean sb_bab_domains_exchange_alphas(SbBab *bab, SbAlphaSet *set,
                                        SbBabDomain **doms, int B,
                                        gboolean save, GError **error);

/* Moves betas between the domains and the optimiser's tensors set->beta
 * (one [S, B, N] tensor per split node, zero-initialised), like
 * sb_bab_domains_exchange_alphas: with `save`, each domain keeps the betas
 * of its splits; without, the tensors take each domain's inherited ones. */
gboolean sb_bab_domains_exchange_betas(SbBab *bab, SbAlphaSet *set,
                                       SbBabDomain **doms, int B, gboolean save,
                                       GError **error);

/* The alpha set of the lower-bound pass of the open atoms over B
 * domains whose bounds nb holds: each domain's inherited slopes and, with
 * `betas`, a beta tensor per split node (sign[] from
 * sb_bab_domains_split_signs) holding the domain's inherited betas when
 * bab->warm_betas, zeros otherwise. */
gboolean sb_bab_domains_inherited_set(SbBab *bab, SbAlphaSet *set,
                                      SbNodeBounds *nb, SbBabDomain **doms,
                                      int B, sb_tensor **sign, gboolean betas,
                                      GError **error);

/* The host bytes a domain's splits and betas take (counted into
 * queued_split_bytes while it is queued). */
int64_t sb_bab_domain_split_bytes(const SbBab *bab, const SbBabDomain *domain);

G_END_DECLS

#endif
