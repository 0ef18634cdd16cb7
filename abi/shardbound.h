/* SPDX-License-Identifier: MIT */
/* The shardbound backend plugin ABI, version 1: the only contract between a
 * host verifier and a backend shared object. */
#ifndef SHARDBOUND_ABI_H
#define SHARDBOUND_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Versioning (see docs/abi.md):
 * - Each ABI major has its own entry symbol (SB_ENTRY_SYMBOL_V1). A major bump
 *   adds a new symbol; hosts try the newest they know first.
 * - A minor version only appends members at the end of a struct. Every
 *   versioned struct starts with `struct_size`; a reader MUST NOT touch a
 *   member that lies beyond the size the writer declared (SB_HAS_MEMBER).
 * - Members appended in minor N are marked `@since 1.N`.
 *
 * Conventions for every function below:
 * - Return 0 (SB_OK) on success or a negative sb_status. On failure the
 *   backend SHOULD leave a human-readable explanation in last_error(ctx).
 * - Backends MUST NOT print, exit or abort; they log through the host.
 * - Nothing is freed across the boundary: whoever allocates frees. Buffers
 *   passed in are lent for the duration of the call only; a backend copies
 *   what it keeps.
 * - Tensors are opaque handles with a logical shape. How a backend lays one
 *   out (one device, split across ranks) is invisible to the host.
 */

#define SB_ABI_MAJOR 1
#define SB_ABI_MINOR 3

/* Name of the v1 entry point every backend exports (and nothing else). */
#define SB_ENTRY_SYMBOL_V1 "sb_backend_get_v1"

/* True when `member` of the struct pointed to by `ptr` lies inside the size
 * its writer declared in ptr->struct_size. */
#define SB_HAS_MEMBER(ptr, type, member)                                       \
  ((ptr)->struct_size >= offsetof(type, member) + sizeof(((type *)0)->member))

typedef enum sb_status {
  SB_OK = 0,
  SB_ERR_INVALID_ARGUMENT = -1, /* bad shape, NULL handle, bad option */
  SB_ERR_OUT_OF_MEMORY = -2,    /* host or device allocation failed */
  SB_ERR_UNSUPPORTED = -3,      /* operator or option not implemented */
  SB_ERR_DEVICE = -4,           /* device / driver / math library error */
  SB_ERR_COMMUNICATION = -5,    /* a collective between ranks failed */
  SB_ERR_INTERNAL = -6,         /* broken invariant inside the backend */
  SB_ERR_RANK_FAILED = -7       /* one rank failed; last_error names it */
} sb_status;

/* Log levels passed to sb_host_v1.log. */
typedef enum sb_log_level {
  SB_LOG_ERROR = 0,
  SB_LOG_WARNING = 1,
  SB_LOG_INFO = 2,
  SB_LOG_DEBUG = 3
} sb_log_level;

/* Capability flags (sb_backend_v1.capabilities). */
#define SB_CAP_LINEAR     (UINT64_C(1) << 0)
#define SB_CAP_CONV2D     (UINT64_C(1) << 1)
#define SB_CAP_AFFINE     (UINT64_C(1) << 2)
#define SB_CAP_ADD        (UINT64_C(1) << 3)
#define SB_CAP_RELU       (UINT64_C(1) << 4)
#define SB_CAP_GPU        (UINT64_C(1) << 5) /* runs on an accelerator */
#define SB_CAP_MULTI_RANK (UINT64_C(1) << 6) /* honours the `ranks` option */

/* Memory categories for the tracked allocator (sb_memory_stats_v1). */
typedef enum sb_mem_category {
  SB_MEM_WEIGHTS = 0,          /* resident weights (or this rank's shard) */
  SB_MEM_GATHERED_WEIGHTS = 1, /* transient all-gathered weights (FSDP) */
  SB_MEM_COEFFICIENTS = 2,     /* A matrices and their biases */
  SB_MEM_BOUNDS = 3,           /* lower/upper bounds, input boxes */
  SB_MEM_ALPHA = 4,            /* alpha-CROWN slope parameters */
  SB_MEM_WORKSPACE = 5,        /* scratch inside an operator */
  SB_MEM_COMMUNICATION = 6,    /* buffers of collectives */
  SB_MEM_CATEGORY_COUNT = 7
} sb_mem_category;

/* Data type of a host buffer handed to tensor_write / tensor_read. The
 * backend converts to and from its own compute type. */
typedef enum sb_dtype { SB_DTYPE_F32 = 0, SB_DTYPE_F64 = 1 } sb_dtype;

/* Which bound a backward pass is building: the relaxation of a ReLU depends
 * on it (DESIGN.md section 4). */
typedef enum sb_side { SB_SIDE_LOWER = 0, SB_SIDE_UPPER = 1 } sb_side;

typedef enum sb_layer_kind {
  SB_LAYER_LINEAR = 0, /* y = W x + b, W row-major [out_size, in_size] */
  SB_LAYER_CONV2D = 1, /* NCHW cross-correlation, ONNX Conv semantics */
  SB_LAYER_AFFINE = 2, /* y[c,s] = scale[c] * x[c,s] + shift[c] */
  SB_LAYER_ADD = 3,    /* y = x0 + x1 (two graph inputs) */
  SB_LAYER_RELU = 4    /* y = max(x, 0) */
} sb_layer_kind;

/* Maximum number of graph inputs of one layer (Add has two). */
#define SB_MAX_LAYER_INPUTS 2

/* Opaque handles. Ownership: created and destroyed by the backend. */
typedef struct sb_context sb_context;
typedef struct sb_tensor sb_tensor;
typedef struct sb_layer sb_layer;

/* What the host offers a backend. Ownership: the host keeps it alive for as
 * long as any context of the backend exists. */
typedef struct sb_host_v1 {
  uint32_t struct_size; /* sizeof(sb_host_v1) as the host compiled it */
  uint32_t abi_major;   /* SB_ABI_MAJOR of the host */
  uint32_t abi_minor;   /* SB_ABI_MINOR of the host */
  /* MAY be NULL. Called by the backend to log; `message` is lent for the
   * call. MUST be callable from any thread. */
  void (*log)(void *user_data, sb_log_level level, const char *message);
  void *user_data; /* Ownership: host's; passed back to log unchanged. */
} sb_host_v1;

/* One key=value configuration option. Ownership: lent for the call. */
typedef struct sb_option {
  const char *key;
  const char *value;
} sb_option;

/* Description of a layer handed to layer_create. All pointers are lent for
 * the call: the backend copies (or shards) what it keeps. */
typedef struct sb_layer_desc_v1 {
  uint32_t struct_size;
  int32_t kind;     /* sb_layer_kind */
  int64_t in_size;  /* flat size of each input, per batch element */
  int64_t out_size; /* flat size of the output, per batch element */

  /* LINEAR: weight [out_size, in_size] row-major; bias [out_size] or NULL.
   * CONV2D: weight [out_c, in_c/groups, kernel_h, kernel_w]; bias [out_c] or
   *         NULL.
   * AFFINE: weight = scale [channels], bias = shift [channels] (either MAY be
   *         NULL meaning 1 and 0). */
  const float *weight;
  const float *bias;

  /* CONV2D geometry (NCHW); in_size = in_c*in_h*in_w, out_size likewise. */
  int64_t in_c, in_h, in_w;
  int64_t out_c, out_h, out_w;
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left, pad_bottom, pad_right;
  int64_t dilation_h, dilation_w;
  int64_t groups;

  /* AFFINE: in_size = out_size = channels * spatial. */
  int64_t channels;
  int64_t spatial;
} sb_layer_desc_v1;

/* Arguments of layer_backward. Shapes use S = number of specifications
 * (rows of A), B = batch, N_in/N_out = flat layer sizes. */
typedef struct sb_backward_args_v1 {
  uint32_t struct_size;
  int32_t side;           /* sb_side */
  const sb_tensor *A_out; /* [S,B,N_out] coefficients w.r.t. the output */
  /* RELU only: pre-activation bounds [B,N] (MUST be given) and optional
   * lower-relaxation slopes alpha [S,B,N] in [0,1]; NULL alpha means the
   * default slope (1 where u > -l, else 0). Other layers: NULL. */
  const sb_tensor *pre_lower;
  const sb_tensor *pre_upper;
  const sb_tensor *alpha;
  /* Per layer input i: A_in[i] [S,B,N_in] receives the coefficients w.r.t.
   * that input; when accumulate[i] is non-zero the result is added to what
   * A_in[i] holds, else it overwrites it (a DAG node with several consumers
   * sums their contributions). An ADD layer's A_in[i] MAY be its A_out,
   * with accumulate[i] = 0: that input's coefficients are then in place. */
  sb_tensor *A_in[SB_MAX_LAYER_INPUTS];
  int32_t accumulate[SB_MAX_LAYER_INPUTS];
  /* [S,B]: the constant term; this layer's contribution is always added. */
  sb_tensor *bias;
} sb_backward_args_v1;

/* Arguments of layer_backward_vjp (@since 1.1): the vector-Jacobian product
 * of one layer_backward call, for gradients of a bound with respect to the
 * alpha slopes (alpha-CROWN). The forward call computed
 *   A_in[i] (+)= f_i(A_out, alpha),  bias += g(A_out, alpha);
 * given the gradients of a scalar loss with respect to A_in[i] and bias,
 * this produces the gradients with respect to A_out and alpha. */
typedef struct sb_vjp_args_v1 {
  uint32_t struct_size;
  int32_t side;               /* as in the forward call */
  const sb_tensor *A_out;     /* [S,B,N_out] as in the forward call */
  const sb_tensor *pre_lower; /* RELU: as in the forward call, else NULL */
  const sb_tensor *pre_upper;
  const sb_tensor *alpha; /* RELU: as in the forward call (MAY be NULL) */
  /* [S,B,N_in] gradient w.r.t. A_in[i]; NULL means zero. */
  const sb_tensor *grad_A_in[SB_MAX_LAYER_INPUTS];
  /* [S,B] gradient w.r.t. the bias; NULL means all ones. */
  const sb_tensor *grad_bias;
  /* [S,B,N_out] receives dL/dA_out: overwritten, or added to when
   * accumulate_A_out is non-zero. */
  sb_tensor *grad_A_out;
  int32_t accumulate_A_out;
  /* RELU only, MAY be NULL: [S,B,N] receives dL/dalpha (overwritten, or
   * added to when accumulate_alpha is non-zero). Entries of stable neurons
   * are zero. */
  sb_tensor *grad_alpha;
  int32_t accumulate_alpha;
} sb_vjp_args_v1;

/* One projected Adam step (@since 1.1), in place on a parameter tensor. */
typedef struct sb_adam_args_v1 {
  uint32_t struct_size;
  int32_t step; /* 1 for the first step (bias correction) */
  float learning_rate;
  float beta1, beta2, epsilon;
  int32_t maximize;           /* non-zero: ascend the gradient */
  float clamp_min, clamp_max; /* projection after the step */
} sb_adam_args_v1;

/* Per-rank memory accounting measured by the backend's tracked allocator. */
typedef struct sb_memory_stats_v1 {
  uint32_t struct_size;
  uint32_t rank;
  uint64_t current_bytes[SB_MEM_CATEGORY_COUNT]; /* resident now */
  uint64_t peak_bytes[SB_MEM_CATEGORY_COUNT];    /* high-water mark */
  uint64_t total_current_bytes;
  uint64_t total_peak_bytes; /* high-water mark of the sum */
  uint64_t baseline_bytes;   /* total when memory_mark_baseline ran */
  int64_t device_used_bytes; /* driver's view (cudaMemGetInfo) or -1 */
  /* @since 1.2: peak resident set size of the operating-system process that
   * runs this rank over its life so far (getrusage ru_maxrss, in bytes),
   * or -1 when unknown; memory_reset_peak does not restart it. Ranks that
   * are threads of one process report the same figure. */
  int64_t peak_rss_bytes;
} sb_memory_stats_v1;

/* The backend descriptor. Ownership: static storage of the backend; valid
 * until the shared object is unloaded. Every function pointer present in
 * the declared struct_size MUST be non-NULL. */
typedef struct sb_backend_v1 {
  uint32_t struct_size; /* sizeof(sb_backend_v1) as the backend compiled it */
  uint32_t abi_major;   /* MUST equal 1 for this entry symbol */
  uint32_t abi_minor;   /* the minor the backend was built against */
  const char *name;     /* MUST match the file name shardbound-backend-NAME */
  const char *version;  /* backend's own version string */
  const char *description;
  uint64_t capabilities; /* SB_CAP_* */

  /* Create a context. `options` (n_options entries, lent) are key=value
   * pairs such as ranks=4 or device=0; an unknown key MUST fail with
   * SB_ERR_INVALID_ARGUMENT and a message naming it in `error` (a buffer of
   * error_size bytes owned by the caller), since no context exists yet.
   * Ownership: *out belongs to the caller, released by context_destroy. */
  int (*context_create)(const sb_host_v1 *host, const sb_option *options,
                        size_t n_options, sb_context **out, char *error,
                        size_t error_size);
  void (*context_destroy)(sb_context *ctx);
  /* Ownership: the returned string belongs to the context, valid until the
   * next call on it. Never NULL (empty when there is no error). */
  const char *(*last_error)(const sb_context *ctx);
  /* Number of ranks (workers) the context runs on; >= 1. */
  int (*rank_count)(const sb_context *ctx);

  /* Tensors. shape has ndim entries (1..4); category is sb_mem_category.
   * New tensors are zero-filled. Ownership: *out is freed by tensor_free. */
  int (*tensor_create)(sb_context *ctx, int32_t category, int32_t ndim,
                       const int64_t *shape, sb_tensor **out);
  void (*tensor_free)(sb_context *ctx, sb_tensor *tensor);
  /* Copy `count` elements from/to a host buffer (type `dtype`), starting at
   * flat element `offset` of the tensor (row-major logical order). */
  int (*tensor_write)(sb_context *ctx, sb_tensor *tensor, int64_t offset,
                      int64_t count, int32_t dtype, const void *src);
  int (*tensor_read)(sb_context *ctx, const sb_tensor *tensor, int64_t offset,
                     int64_t count, int32_t dtype, void *dst);
  /* A [S,B,N]: row (s,b) becomes the unit vector e_{index[s]} (an identity
   * specification restricted to the neurons in `index`, S entries). */
  int (*tensor_set_unit_rows)(sb_context *ctx, sb_tensor *A,
                              const int64_t *index);

  /* Layers. Ownership: *out is freed by layer_free. */
  int (*layer_create)(sb_context *ctx, const sb_layer_desc_v1 *desc,
                      sb_layer **out);
  void (*layer_free)(sb_context *ctx, sb_layer *layer);
  /* Plain evaluation: out [B,N_out] from inputs [B,N_in]. */
  int (*layer_forward)(sb_context *ctx, const sb_layer *layer,
                       const sb_tensor *const *inputs, sb_tensor *out);
  /* Interval bound propagation: [out_lower, out_upper] from input boxes. */
  int (*layer_ibp)(sb_context *ctx, const sb_layer *layer,
                   const sb_tensor *const *in_lower,
                   const sb_tensor *const *in_upper, sb_tensor *out_lower,
                   sb_tensor *out_upper);
  /* CROWN: coefficients of the layer output mapped to its inputs. */
  int (*layer_backward)(sb_context *ctx, const sb_layer *layer,
                        const sb_backward_args_v1 *args);
  /* out[s,b] = bias[s,b] + A[s,b,:].c[b,:] -/+ |A[s,b,:]|.r[b,:], with the
   * minus sign for SB_SIDE_LOWER; c, r the centre and radius of the box
   * [x_lower, x_upper] ([B,N]). bias MAY be NULL (zero). */
  int (*concretize)(sb_context *ctx, const sb_tensor *A, const sb_tensor *bias,
                    const sb_tensor *x_lower, const sb_tensor *x_upper,
                    int32_t side, sb_tensor *out);

  /* Memory accounting: record the current total as every rank's baseline
   * (the host calls it once the model is loaded). */
  int (*memory_mark_baseline)(sb_context *ctx);
  /* Restart peak tracking from the current usage. */
  int (*memory_reset_peak)(sb_context *ctx);
  /* Fill *out (whose struct_size the caller set) for one rank. */
  int (*memory_stats)(sb_context *ctx, int rank, sb_memory_stats_v1 *out);

  /* ---- @since 1.1: alpha-CROWN and beta-CROWN ------------------------- */
  /* The vector-Jacobian product of layer_backward (see sb_vjp_args_v1). */
  int (*layer_backward_vjp)(sb_context *ctx, const sb_layer *layer,
                            const sb_vjp_args_v1 *args);
  /* grad_A [S,B,N] (overwritten) = d out / d A of concretize, weighted by
   * grad_out [S,B] (NULL means all ones): grad_out * (c -/+ sign(A) r). The
   * gradient w.r.t. concretize's bias is grad_out itself. */
  int (*concretize_vjp)(sb_context *ctx, const sb_tensor *A,
                        const sb_tensor *x_lower, const sb_tensor *x_upper,
                        int32_t side, const sb_tensor *grad_out,
                        sb_tensor *grad_A);
  /* alpha [S,B,N] = the default lower slopes of a ReLU whose pre-activation
   * bounds are pre_lower/pre_upper [B,N] (1 where u > -l, else 0),
   * broadcast over S: the starting point of alpha-CROWN. */
  int (*relu_init_alpha)(sb_context *ctx, const sb_tensor *pre_lower,
                         const sb_tensor *pre_upper, sb_tensor *alpha);
  /* Projected Adam on `param` with gradient `grad` and moment tensors m, v
   * (same shape, zero before the first step). */
  int (*adam_step)(sb_context *ctx, sb_tensor *param, const sb_tensor *grad,
                   sb_tensor *m, sb_tensor *v, const sb_adam_args_v1 *args);
  /* beta-CROWN split constraints at a ReLU input. sign [B,N] holds -1 for a
   * neuron split active (z >= 0), +1 for split inactive (z <= 0), 0 when not
   * split. beta_apply adds the Lagrangian term to coefficients A [S,B,N]:
   * A += beta * sign for SB_SIDE_LOWER and A -= beta * sign for
   * SB_SIDE_UPPER (beta [S,B,N], >= 0). beta_vjp is its gradient:
   * grad_beta (+)= +/- grad_A * sign. */
  int (*beta_apply)(sb_context *ctx, sb_tensor *A, const sb_tensor *beta,
                    const sb_tensor *sign, int32_t side);
  int (*beta_vjp)(sb_context *ctx, const sb_tensor *grad_A,
                  const sb_tensor *sign, int32_t side, sb_tensor *grad_beta,
                  int32_t accumulate);

  /* ---- @since 1.2: ranks that are processes (docs/embedding.md) ------- */
  /* Where the calling process stands among the processes that run the
   * context's ranks (e.g. comm=mpi under mpirun): *index is 0 for the
   * process that prints and writes files, *count is 1 when every rank runs
   * in this process. With more than one process the host MUST make the
   * same calls on the same context in the same order in every process
   * (each call is collective), and:
   * - tensor_read and memory_stats give every process the same bytes;
   * - layer_create MAY be given weight = bias = NULL on processes other
   *   than 0: the backend takes each rank's part from process 0's call,
   *   which MUST carry the data. */
  int (*process_info)(const sb_context *ctx, int32_t *index, int32_t *count);
  /* buf [bytes] of every process := buf of process 0: how the host makes a
   * decision once (a deadline, a choice read from a clock or a file) and
   * has every process take it. Collective; returns at once with one
   * process. Ownership: buf is lent for the call. */
  int (*broadcast_host)(sb_context *ctx, void *buf, size_t bytes);
  /* The lowest rank whose process is known to have vanished, or -1 (always
   * -1 with one process). MUST be async-signal safe and non-blocking: a host
   * calls it from its handler of the launcher's SIGTERM to say which rank
   * was lost. */
  int32_t (*lost_rank)(const sb_context *ctx);

  /* ---- @since 1.3 ----------------------------------------------------- */
  /* As tensor_create, but the new tensor's contents are unspecified (as
   * torch.empty's): the host has every element written before it reads
   * one, as A_in of a layer_backward with accumulate = 0 or grad_A_out of
   * a layer_backward_vjp with accumulate_A_out = 0, which overwrite every
   * element. It spares the zero fill of memory about to be overwritten (5%
   * of a CROWN pass on a conv network). A backend MAY zero-fill: its
   * tensor_create is a valid implementation. */
  int (*tensor_create_empty)(sb_context *ctx, int32_t category, int32_t ndim,
                             const int64_t *shape, sb_tensor **out);
} sb_backend_v1;

/* Size of the ABI 1.0 descriptor: the smallest a v1 backend may declare. */
#define SB_BACKEND_V1_0_SIZE                                                   \
  (offsetof(sb_backend_v1, memory_stats) + sizeof(void (*)(void)))

/* The entry point (exported as SB_ENTRY_SYMBOL_V1). Returns SB_OK and sets
 * *out to the static descriptor. `host` is lent for the call; it is passed
 * again to context_create. */
typedef int (*sb_backend_get_v1_fn)(const sb_host_v1 *host,
                                    const sb_backend_v1 **out);

/* Human-readable name of a status code; static storage. */
static inline const char *sb_status_to_string(int status) {
  switch (status) {
  case SB_OK:
    return "ok";
  case SB_ERR_INVALID_ARGUMENT:
    return "invalid argument";
  case SB_ERR_OUT_OF_MEMORY:
    return "out of memory";
  case SB_ERR_UNSUPPORTED:
    return "unsupported";
  case SB_ERR_DEVICE:
    return "device error";
  case SB_ERR_COMMUNICATION:
    return "communication error";
  case SB_ERR_INTERNAL:
    return "internal error";
  case SB_ERR_RANK_FAILED:
    return "a rank failed";
  default:
    return "unknown status";
  }
}

#ifdef __cplusplus
}
#endif

#endif /* SHARDBOUND_ABI_H */
