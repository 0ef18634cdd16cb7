/* SPDX-License-Identifier: MIT */
/* The shardbound host API (libshardbound-host): open a backend, load a
 * network, compute IBP/CROWN/alpha-CROWN bounds and verify VNNLIB
 * properties. The `shardbound` command and the Python package are written
 * over it; docs/host-api.md describes it.
 *
 * Conventions:
 * - Every object is opaque and read through functions, so bindings (ctypes)
 *   never mirror a layout, except ShardboundMemoryStats, which starts with
 *   its own size.
 * - A call that can fail takes GError **error last and reports failure by
 *   returning NULL or FALSE with error set in the SHARDBOUND_HOST_ERROR
 *   domain. Nothing is printed and nothing exits.
 * - Ownership: whoever creates an object frees it with its _free/_close
 *   function. Arrays passed in are lent for the call and copied if kept.
 *   `const` arrays and strings returned belong to the object they were read
 *   from and live as long as it does.
 * - A network borrows its session: close the session after its networks. */
#ifndef SHARDBOUND_HOST_H
#define SHARDBOUND_HOST_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* The API version: the major changes only when a call changes meaning. */
#define SHARDBOUND_HOST_API_MAJOR 1
#define SHARDBOUND_HOST_API_MINOR 1

/* The package version of the library that was loaded ("0.1.0"). */
const char *shardbound_host_version(void);
/* SHARDBOUND_HOST_API_MAJOR and _MINOR of the library that was loaded. */
void shardbound_host_api_version(int *major, int *minor);

/* ---- errors ------------------------------------------------------------ */
#define SHARDBOUND_HOST_ERROR (shardbound_host_error_quark())
GQuark shardbound_host_error_quark(void);
typedef enum {
  SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT, /* a bad argument, option or setting:
                                             the message names it */
  SHARDBOUND_HOST_ERROR_BAD_INPUT,        /* malformed ONNX or VNNLIB, shapes
                                             that do not agree */
  SHARDBOUND_HOST_ERROR_UNSUPPORTED,      /* an operator or construct the
                                             engine does not handle: named */
  SHARDBOUND_HOST_ERROR_NO_BACKEND,       /* no backend of that name, or it
                                             was refused (the reason given) */
  SHARDBOUND_HOST_ERROR_BACKEND,          /* the backend failed: a device
                                             error, a broken backend */
  SHARDBOUND_HOST_ERROR_IO,               /* a file could not be read */
  SHARDBOUND_HOST_ERROR_NO_MEMORY         /* the backend ran out of memory */
} ShardboundHostError;

/* ---- backends on the search path --------------------------------------- */
typedef struct _ShardboundBackendList ShardboundBackendList;

/* Scans the configured search path (backend_path, else SHARDBOUND_BACKEND_PATH,
 * else the configuration file, else the installed directory). Every backend
 * file found is listed, usable or refused. backend_path and config_file may
 * be NULL. */
ShardboundBackendList *shardbound_backend_list_new(const char *backend_path,
                                                   const char *config_file,
                                                   GError **error);
void shardbound_backend_list_free(ShardboundBackendList *list);
int shardbound_backend_list_count(const ShardboundBackendList *list);
const char *shardbound_backend_list_name(const ShardboundBackendList *list,
                                         int i);
const char *shardbound_backend_list_path(const ShardboundBackendList *list,
                                         int i);
/* Why backend i was refused, or NULL when it is usable. */
const char *shardbound_backend_list_refusal(const ShardboundBackendList *list,
                                            int i);
/* Its capabilities as comma-separated names ("linear,relu,multi-rank"),
 * "" for a refused backend. */
const char *
shardbound_backend_list_capabilities(const ShardboundBackendList *list, int i);
/* The ABI version the backend declared ("1.1"; "" when unknown). */
const char *shardbound_backend_list_abi(const ShardboundBackendList *list,
                                        int i);
/* The version and description a usable backend gives; NULL when refused. */
const char *shardbound_backend_list_version(const ShardboundBackendList *list,
                                            int i);
const char *
shardbound_backend_list_description(const ShardboundBackendList *list, int i);
/* The backend a session opens when none is named or configured (cuda when
 * usable, else cpu); NULL when that one is not usable. */
const char *shardbound_backend_list_default(const ShardboundBackendList *list);
/* The configuration file that was read, or NULL. */
const char *
shardbound_backend_list_config_file(const ShardboundBackendList *list);
/* The directories scanned, NULL-terminated. */
const char *const *
shardbound_backend_list_searched(const ShardboundBackendList *list);

/* ---- sessions: one backend context ------------------------------------- */
typedef struct _ShardboundSession ShardboundSession;

/* Opens `backend` (NULL: the configured one, else the default) with
 * `ranks` ranks (0: the backend's default; more than 1 needs a multi-rank
 * backend such as fsdp or tp) and backend options, a NULL-terminated array
 * of "key=value" (may be NULL). backend_path and config_file may be NULL
 * (see shardbound_backend_list_new). Precedence: configuration file <
 * environment (SHARDBOUND_BACKEND, SHARDBOUND_BACKEND_PATH) < arguments. */
ShardboundSession *shardbound_session_open(const char *backend, int ranks,
                                           const char *const *options,
                                           const char *backend_path,
                                           const char *config_file,
                                           GError **error);
void shardbound_session_close(ShardboundSession *session);
const char *shardbound_session_backend(const ShardboundSession *session);
int shardbound_session_rank_count(const ShardboundSession *session);

/* Ranks that are processes (backend option comm=mpi, run under mpirun;
 * docs/embedding.md). Every process of the job opens the session and then
 * makes the same calls in the same order: opening the session joins the
 * job. This process's index (0 alone should print and write files) and the
 * number of processes; 0 and 1 when the ranks are threads. @since 1.1 */
int shardbound_session_process_index(const ShardboundSession *session);
int shardbound_session_process_count(const ShardboundSession *session);
/* The rank whose process ended, once the job lost one; -1 when none is
 * known. Async-signal-safe: for a handler of the SIGTERM that mpirun sends
 * the remaining processes when one dies. @since 1.1 */
int shardbound_session_lost_rank(const ShardboundSession *session);

/* ---- memory statistics per rank ---------------------------------------- */
typedef enum {
  SHARDBOUND_MEMORY_WEIGHTS,
  SHARDBOUND_MEMORY_GATHERED_WEIGHTS,
  SHARDBOUND_MEMORY_COEFFICIENTS,
  SHARDBOUND_MEMORY_BOUNDS,
  SHARDBOUND_MEMORY_ALPHA,
  SHARDBOUND_MEMORY_WORKSPACE,
  SHARDBOUND_MEMORY_COMMUNICATION,
  SHARDBOUND_MEMORY_CATEGORIES
} ShardboundMemoryCategory;

/* "weights", "gathered_weights", ...; NULL out of range. */
const char *shardbound_memory_category_name(int category);

/* Bytes measured by the backend's own allocator on one rank. The caller
 * sets struct_size = sizeof (ShardboundMemoryStats); later minor versions
 * only append members. */
typedef struct {
  size_t struct_size;
  uint64_t
      baseline_bytes; /* total at the last shardbound_session_memory_reset */
  uint64_t current_bytes;    /* total resident now */
  uint64_t peak_bytes;       /* high-water mark since that reset */
  int64_t device_used_bytes; /* the driver's view, -1 when it has none */
  uint64_t current_by_category[SHARDBOUND_MEMORY_CATEGORIES];
  uint64_t peak_by_category[SHARDBOUND_MEMORY_CATEGORIES];
  /* @since 1.1: the lifetime peak resident set of the process that holds
   * the rank (with comm=mpi, that rank's own process); -1 when the backend
   * does not report it. Left alone when struct_size ends before it. */
  int64_t peak_rss_bytes;
} ShardboundMemoryStats;

/* Makes the current total every rank's baseline and restarts the peaks. */
gboolean shardbound_session_memory_reset(ShardboundSession *session,
                                         GError **error);
gboolean shardbound_session_memory_stats(ShardboundSession *session, int rank,
                                         ShardboundMemoryStats *stats,
                                         GError **error);

/* The backend's matrix-product rate in FLOP/s, from an n x n x n product
 * (best of 3 after a warm-up): with shardbound_network_product_flops, the
 * floor of a pass. 0 with error set on failure. */
double shardbound_session_gemm_rate(ShardboundSession *session, int64_t n,
                                    GError **error);

/* ---- settings of bounds and verification ------------------------------- */
typedef struct _ShardboundSettings ShardboundSettings;

/* Defaults: alpha-CROWN 20 steps per intermediate start node, 50 for the
 * outputs, learning rate 0.5; verification without timeout. */
ShardboundSettings *shardbound_settings_new(void);
ShardboundSettings *
shardbound_settings_copy(const ShardboundSettings *settings);
void shardbound_settings_free(ShardboundSettings *settings);
/* Sets one setting from text. Bounds: iterations, final_iterations, lr,
 * decay, patience, optimize_intermediate, intersect_ibp. Verification:
 * timeout, bab_time, batch, max_domains, max_memory_mib (per rank: the
 * backend memory a rank may hold in branch-and-bound, and the host memory
 * of the queued domains), branching (babsr|fsb), fsb_candidates,
 * bab_iterations, bab_lr_alpha, bab_lr_beta (0: the bounds' lr),
 * refine_intermediate (off by default), tighten_layers, tighten_domains,
 * tighten_after, tighten_min_gain (docs/verification.md), warm_betas, attack,
 * attack_restarts, attack_steps.
 * bab_time is seconds of branch-and-bound per region, the root not counted,
 * then TIMEOUT (0: none): a fixed budget for benchmarks. Booleans are
 * true/false/1/0. An unknown key or a value out of range fails with
 * INVALID_ARGUMENT naming both. */
gboolean shardbound_settings_set(ShardboundSettings *settings, const char *key,
                                 const char *value, GError **error);
/* The current value of a setting as text that shardbound_settings_set
 * accepts (free with g_free); NULL with INVALID_ARGUMENT for an unknown
 * key. */
char *shardbound_settings_get(const ShardboundSettings *settings,
                              const char *key, GError **error);
/* The keys shardbound_settings_set accepts, NULL-terminated. */
const char *const *shardbound_settings_keys(void);
/* Called as each branch-and-bound search of shardbound_verify starts and
 * after each of its steps (from the calling thread): domains done and
 * left, the worst margin, seconds. */
typedef void (*ShardboundProgressFunc)(void *user, int64_t done, int64_t left,
                                       double worst_margin, double seconds);
void shardbound_settings_set_progress(ShardboundSettings *settings,
                                      ShardboundProgressFunc func, void *user);

/* ---- networks ---------------------------------------------------------- */
typedef struct _ShardboundNetwork ShardboundNetwork;

/* Loads an ONNX model onto the session's backend. Errors: IO, BAD_INPUT,
 * UNSUPPORTED (naming operator and node), BACKEND. With ranks that are
 * processes, shardbound_network_load is collective: process 0 alone reads
 * the file and sends the others its structure, and the host copy of the
 * weights is dropped once the backend holds them (no process keeps the
 * whole model). shardbound_network_load_bytes parses the bytes each
 * process passes (the same model on every process) and keeps the host
 * copy. */
ShardboundNetwork *shardbound_network_load(ShardboundSession *session,
                                           const char *onnx_path,
                                           GError **error);
ShardboundNetwork *shardbound_network_load_bytes(ShardboundSession *session,
                                                 const void *data,
                                                 size_t length, GError **error);
void shardbound_network_free(ShardboundNetwork *network);
int64_t shardbound_network_input_size(const ShardboundNetwork *network);
int64_t shardbound_network_output_size(const ShardboundNetwork *network);
/* The input's shape without the batch dimension (C,H,W or N): fills up to
 * 3 entries of dims and returns how many. */
int shardbound_network_input_shape(const ShardboundNetwork *network,
                                   int64_t dims[3]);
/* A plain float64 forward pass on the host: y[output_size] from
 * x[input_size]. For checking samples against bounds. Where the host copy
 * of the weights was dropped (see shardbound_network_load) the model file
 * is read again for it; y is all NaN when that fails. */
void shardbound_network_evaluate(const ShardboundNetwork *network,
                                 const float *x, double *y);
/* FLOPs of the matrix products the backend was asked for so far. */
double shardbound_network_product_flops(const ShardboundNetwork *network);

/* ---- bounds ------------------------------------------------------------ */
typedef enum {
  SHARDBOUND_METHOD_IBP,
  SHARDBOUND_METHOD_CROWN,
  SHARDBOUND_METHOD_ALPHA_CROWN
} ShardboundMethod;

/* "ibp", "crown" or "alpha-crown". */
gboolean shardbound_method_parse(const char *name, ShardboundMethod *method,
                                 GError **error);
const char *shardbound_method_name(ShardboundMethod method);

typedef struct _ShardboundBounds ShardboundBounds;

/* Bounds of the outputs over the box [x_lower, x_upper] (input_size
 * entries each), and of spec_rows (n_specs x output_size, row-major; NULL
 * when n_specs is 0): the bounds of c.y for every row c, computed from the
 * network's output by the same method (tighter than from the output
 * bounds). settings may be NULL for the defaults. */
ShardboundBounds *
shardbound_network_bounds(ShardboundNetwork *network, ShardboundMethod method,
                          const ShardboundSettings *settings,
                          const double *x_lower, const double *x_upper,
                          int n_specs, const double *spec_rows, GError **error);
void shardbound_bounds_free(ShardboundBounds *bounds);
int shardbound_bounds_output_count(const ShardboundBounds *bounds);
const double *shardbound_bounds_output_lower(const ShardboundBounds *bounds);
const double *shardbound_bounds_output_upper(const ShardboundBounds *bounds);
int shardbound_bounds_spec_count(const ShardboundBounds *bounds);
const double *shardbound_bounds_spec_lower(const ShardboundBounds *bounds);
const double *shardbound_bounds_spec_upper(const ShardboundBounds *bounds);
/* ReLU inputs whose bounds straddle 0 after the intermediate passes. */
int shardbound_bounds_unstable_relus(const ShardboundBounds *bounds);
/* Wall time of the computation. */
double shardbound_bounds_seconds(const ShardboundBounds *bounds);

/* ---- VNNLIB properties ------------------------------------------------- */
typedef struct _ShardboundProperty ShardboundProperty;

ShardboundProperty *shardbound_property_load(const char *vnnlib_path,
                                             GError **error);
ShardboundProperty *shardbound_property_parse(const char *text, size_t length,
                                              GError **error);
void shardbound_property_free(ShardboundProperty *property);
int shardbound_property_input_count(const ShardboundProperty *property);
int shardbound_property_output_count(const ShardboundProperty *property);
/* Input boxes; most properties have one. */
int shardbound_property_region_count(const ShardboundProperty *property);
const double *
shardbound_property_region_lower(const ShardboundProperty *property,
                                 int region);
const double *
shardbound_property_region_upper(const ShardboundProperty *property,
                                 int region);
/* The atoms c.y <= d of the unsafe region, in file order: rows
 * (atom_count x output_count) and right-hand sides d. */
int shardbound_property_atom_count(const ShardboundProperty *property);
const double *shardbound_property_atom_rows(const ShardboundProperty *property);
const double *shardbound_property_atom_rhs(const ShardboundProperty *property);
/* TRUE when lower bounds of the atoms (atom_count) prove that `region`
 * cannot reach the unsafe region. */
gboolean shardbound_property_proven(const ShardboundProperty *property,
                                    int region, const double *atom_lower);
/* FALSE with BAD_INPUT when the property's input or output count differs
 * from the network's. */
gboolean shardbound_property_check_network(const ShardboundProperty *property,
                                           const ShardboundNetwork *network,
                                           GError **error);

/* ---- complete verification --------------------------------------------- */
typedef enum {
  SHARDBOUND_ANSWER_UNSAT,   /* proven: no input of the box is unsafe */
  SHARDBOUND_ANSWER_SAT,     /* a counterexample, checked by a forward pass */
  SHARDBOUND_ANSWER_UNKNOWN, /* gave up (limits); see the reason */
  SHARDBOUND_ANSWER_TIMEOUT
} ShardboundAnswer;

/* "unsat", "sat", "unknown", "timeout" (the VNN-COMP words). */
const char *shardbound_answer_name(ShardboundAnswer answer);

typedef struct _ShardboundVerdict ShardboundVerdict;

/* Decides the property on the network (attack, alpha-CROWN, then
 * beta-CROWN branch and bound). NULL only on an error (BACKEND when the
 * backend failed, BAD_INPUT when the counts disagree); running out of time
 * or limits is an answer. settings may be NULL (no timeout). */
ShardboundVerdict *shardbound_verify(ShardboundNetwork *network,
                                     const ShardboundProperty *property,
                                     const ShardboundSettings *settings,
                                     GError **error);
void shardbound_verdict_free(ShardboundVerdict *verdict);
ShardboundAnswer shardbound_verdict_answer(const ShardboundVerdict *verdict);
/* SAT: the counterexample (input_count floats, output_count doubles) and
 * its region; NULL and -1 otherwise. */
const float *shardbound_verdict_input(const ShardboundVerdict *verdict);
const double *shardbound_verdict_output(const ShardboundVerdict *verdict);
int shardbound_verdict_region(const ShardboundVerdict *verdict);
/* UNKNOWN or TIMEOUT: why, or NULL. */
const char *shardbound_verdict_reason(const ShardboundVerdict *verdict);
int64_t shardbound_verdict_domains(const ShardboundVerdict *verdict);
double shardbound_verdict_seconds(const ShardboundVerdict *verdict);
/* Of those seconds, the ones spent in branch-and-bound. */
double shardbound_verdict_bab_seconds(const ShardboundVerdict *verdict);
/* The domains of the searches that tightened the roots' intermediate
 * bounds before branching (setting tighten_layers), not counted in
 * shardbound_verdict_domains; their time is in the bab seconds. */
int64_t shardbound_verdict_tighten_domains(const ShardboundVerdict *verdict);
/* The least margin found at an actual input: over the inputs checked by a
 * float64 forward pass (the attack's best point, branch-and-bound's
 * minimisers), the least over the property's disjuncts of the largest
 * c.y - d of their atoms. <= 0 for SAT; otherwise an upper bound on the
 * property's least margin, as the progress callback's worst margin is a
 * lower bound on that of the disjunct being searched. +inf when no input
 * was checked (attack off, decided at the root). */
double shardbound_verdict_found_margin(const ShardboundVerdict *verdict);

/* The backend memory of verification, per rank and per phase: ROOT is the
 * attack and the root's bounds, BAB branch-and-bound (peaks the maximum
 * over the regions), ALL the whole run (BAB's baseline and current bytes,
 * peaks the larger of the two phases'). Measured from the session's last
 * shardbound_session_memory_reset, so reset it before shardbound_verify
 * to measure from the loaded model on. */
typedef enum {
  SHARDBOUND_VERIFY_PHASE_ALL,
  SHARDBOUND_VERIFY_PHASE_ROOT,
  SHARDBOUND_VERIFY_PHASE_BAB
} ShardboundVerifyPhase;

/* The ranks the memory statistics cover (the session's). */
int shardbound_verdict_rank_count(const ShardboundVerdict *verdict);
/* Whether the phase was measured: BAB is not when no region branched. */
gboolean shardbound_verdict_has_memory(const ShardboundVerdict *verdict,
                                       ShardboundVerifyPhase phase);
/* One rank's statistics of a phase into *stats (struct_size set by the
 * caller). INVALID_ARGUMENT for a rank out of range, a phase that was not
 * measured or a struct_size too small. */
gboolean shardbound_verdict_memory(const ShardboundVerdict *verdict, int rank,
                                   ShardboundVerifyPhase phase,
                                   ShardboundMemoryStats *stats,
                                   GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ShardboundBackendList,
                              shardbound_backend_list_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ShardboundSession, shardbound_session_close)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ShardboundSettings, shardbound_settings_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ShardboundNetwork, shardbound_network_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ShardboundBounds, shardbound_bounds_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ShardboundProperty, shardbound_property_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ShardboundVerdict, shardbound_verdict_free)

G_END_DECLS

#endif
