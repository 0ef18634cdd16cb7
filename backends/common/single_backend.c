/* SPDX-License-Identifier: MIT */
/* The ABI glue of a single-device backend: argument checking, tensors and
 * layers as handles, and dispatch to the operator families. */
#include "backends/common/single_backend.h"
#include "backends/common/abi_checks.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/common/layer.h"
#include "backends/common/tensor.h"
#include "backends/common/tracked_alloc.h"

struct sb_context {
  const SbDeviceOps *ops;
  SbDevice *dev;
  SbMemTracker mem;
  const char *backend_name;
  /* tensor_create_empty fills with NaN (SHARDBOUND_POISON_EMPTY set, as
   * the test suite does): an element that a backward step fails to
   * overwrite then shows as NaN in the bounds. */
  int poison_empty;
  char error[1024];
};

static int fail(sb_context *ctx, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(sb_context *ctx, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
  va_end(ap);
  return status;
}

static SbExec exec_of(sb_context *ctx) {
  SbExec x = {ctx->ops, ctx->dev, &ctx->mem, ctx->error, sizeof ctx->error};
  return x;
}

/* Every fallible entry point starts here: a NULL context cannot carry a
 * message, so it is only reported by status. */
#define BEGIN(ctx)                                                             \
  do {                                                                         \
    if ((ctx) == NULL)                                                         \
      return SB_ERR_INVALID_ARGUMENT;                                          \
    (ctx)->error[0] = '\0';                                                    \
  } while (0)

int sb_option_parse_long(const char *s, long min, long max, long *out) {
  if (s == NULL || *s == '\0')
    return 0;
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end != '\0' || v < min || v > max)
    return 0;
  *out = v;
  return 1;
}

int sb_context_create_check(const char *backend_name, const sb_option *options,
                            size_t n_options, sb_context **out, char *error,
                            size_t error_size) {
  if (out == NULL) {
    snprintf(error, error_size, "%s: context_create needs an output pointer",
             backend_name);
    return SB_ERR_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (n_options > 0 && options == NULL) {
    snprintf(error, error_size, "%s: %zu options announced but none given",
             backend_name, n_options);
    return SB_ERR_INVALID_ARGUMENT;
  }
  return SB_OK;
}

int sb_single_context_create(const SbDeviceOps *ops, const char *backend_name,
                             const sb_host_v1 *host, const sb_option *options,
                             size_t n_options, sb_context **out, char *error,
                             size_t error_size) {
  char scratch[8];
  if (error == NULL || error_size == 0) {
    error = scratch;
    error_size = sizeof scratch;
  }
  error[0] = '\0';
  int check = sb_context_create_check(backend_name, options, n_options, out,
                                      error, error_size);
  if (check != SB_OK)
    return check;
  long ordinal = 0;
  for (size_t i = 0; i < n_options; i++) {
    const char *key = options[i].key, *value = options[i].value;
    if (key == NULL) {
      snprintf(error, error_size, "%s: option %zu has no key", backend_name, i);
      return SB_ERR_INVALID_ARGUMENT;
    }
    if (strcmp(key, "device") == 0) {
      if (!sb_option_parse_long(value, 0, INT_MAX, &ordinal)) {
        snprintf(error, error_size,
                 "%s: option device='%s' is not a device number (expected an "
                 "integer >= 0)",
                 backend_name, value ? value : "(null)");
        return SB_ERR_INVALID_ARGUMENT;
      }
    } else {
      snprintf(error, error_size,
               "%s: unknown option '%s' (this backend knows: device)",
               backend_name, key);
      return SB_ERR_INVALID_ARGUMENT;
    }
  }
  sb_context *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    snprintf(error, error_size, "%s: out of host memory creating a context",
             backend_name);
    return SB_ERR_OUT_OF_MEMORY;
  }
  ctx->ops = ops;
  ctx->backend_name = backend_name;
  const char *poison = getenv("SHARDBOUND_POISON_EMPTY");
  ctx->poison_empty = poison != NULL && poison[0] != '\0';
  if (sb_mem_tracker_init(&ctx->mem) != SB_OK) {
    free(ctx);
    snprintf(error, error_size, "%s: cannot initialise the memory tracker",
             backend_name);
    return SB_ERR_INTERNAL;
  }
  int st = ops->open((int)ordinal, &ctx->dev, error, error_size);
  if (st != SB_OK) {
    sb_mem_tracker_destroy(&ctx->mem);
    free(ctx);
    return st;
  }
  *out = ctx;
  return SB_OK;
}

void sb_single_context_destroy(sb_context *ctx) {
  if (ctx == NULL)
    return;
  ctx->ops->close(ctx->dev);
  sb_mem_tracker_destroy(&ctx->mem);
  free(ctx);
}

const char *sb_single_last_error(const sb_context *ctx) {
  return ctx ? ctx->error : "no context";
}

int sb_single_rank_count(const sb_context *ctx) { return 1; }

/* ---- tensors ---- */

/* Fills a new tensor's buffer with NaN, a chunk uploaded at a time. */
static int poison(sb_context *ctx, SbBuffer *b) {
  float chunk[4096];
  for (size_t i = 0; i < sizeof chunk / sizeof chunk[0]; i++)
    chunk[i] = NAN;
  int st = SB_OK;
  for (size_t done = 0; done < b->bytes && st == SB_OK; done += sizeof chunk) {
    size_t n = b->bytes - done < sizeof chunk ? b->bytes - done : sizeof chunk;
    st = ctx->ops->upload(ctx->dev, (char *)b->ptr + done, chunk, n);
  }
  return st;
}

/* tensor_create, with the zero fill (fill) or without (tensor_create_empty,
 * then poisoned when asked). */
static int create(sb_context *ctx, int32_t category, int32_t ndim,
                  const int64_t *shape, sb_tensor **out, int fill) {
  BEGIN(ctx);
  if (out == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "tensor_create: NULL output pointer");
  *out = NULL;
  if (category < 0 || category >= SB_MEM_CATEGORY_COUNT)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "tensor_create: invalid memory category %d (valid 0..%d)",
                (int)category, SB_MEM_CATEGORY_COUNT - 1);
  if (ndim < 1 || ndim > 4 || shape == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "tensor_create: ndim %d must be 1..4 with a shape", (int)ndim);
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0)
      return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                  "tensor_create: dimension %d is negative (%lld)", i,
                  (long long)shape[i]);
    if (shape[i] > 0 && numel > INT64_MAX / (int64_t)sizeof(float) / shape[i])
      return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                  "tensor_create: shape overflows the addressable size");
    numel *= shape[i];
  }
  sb_tensor *t = calloc(1, sizeof *t);
  if (t == NULL)
    return fail(ctx, SB_ERR_OUT_OF_MEMORY, "tensor_create: out of host memory");
  t->ndim = ndim;
  memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->numel = numel;
  SbExec x = exec_of(ctx);
  int st = sb_exec_alloc(&x, category, numel, &t->buf);
  if (st == SB_OK && t->buf.bytes && (fill || ctx->poison_empty)) {
    st = fill ? ctx->ops->zero(ctx->dev, t->buf.ptr, t->buf.bytes)
              : poison(ctx, &t->buf);
    if (st != SB_OK)
      st = sb_exec_device_fail(&x, st, "filling a new tensor");
  }
  if (st != SB_OK) {
    sb_exec_free(&x, &t->buf);
    free(t);
    return st;
  }
  *out = t;
  return SB_OK;
}

int sb_single_tensor_create(sb_context *ctx, int32_t category, int32_t ndim,
                            const int64_t *shape, sb_tensor **out) {
  return create(ctx, category, ndim, shape, out, 1);
}

int sb_single_tensor_create_empty(sb_context *ctx, int32_t category,
                                  int32_t ndim, const int64_t *shape,
                                  sb_tensor **out) {
  return create(ctx, category, ndim, shape, out, 0);
}

/* Every entry point that writes a tensor calls this first: whatever it
 * writes, the tensor no longer holds the unit rows it may have held. */
static void written(sb_tensor *t) {
  if (t != NULL && t->unit_index != NULL) {
    free(t->unit_index);
    t->unit_index = NULL;
  }
}

void sb_single_tensor_free(sb_context *ctx, sb_tensor *t) {
  if (ctx == NULL || t == NULL)
    return;
  written(t);
  sb_buffer_free(&ctx->mem, ctx->ops, ctx->dev, &t->buf);
  free(t);
}

static int check_range(sb_context *ctx, const char *fn, const sb_tensor *t,
                       int64_t offset, int64_t count, int32_t dtype,
                       const void *host) {
  if (t == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL tensor", fn);
  if (dtype != SB_DTYPE_F32 && dtype != SB_DTYPE_F64)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "%s: unknown dtype %d (0 = f32, 1 = f64)", fn, (int)dtype);
  if (offset < 0 || count < 0 || offset > t->numel || count > t->numel - offset)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "%s: elements [%lld, %lld) lie outside the tensor of %lld "
                "elements",
                fn, (long long)offset, (long long)(offset + count),
                (long long)t->numel);
  if (host == NULL && count > 0)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL host buffer", fn);
  return SB_OK;
}

/* Conversions go through a small stack buffer so that no untracked heap
 * memory is ever needed, whatever the tensor size. */
#define STAGE_FLOATS 4096

int sb_single_tensor_write(sb_context *ctx, sb_tensor *t, int64_t offset,
                           int64_t count, int32_t dtype, const void *src) {
  BEGIN(ctx);
  int st = check_range(ctx, "tensor_write", t, offset, count, dtype, src);
  if (st != SB_OK || count == 0)
    return st;
  written(t);
  float *dst = (float *)t->buf.ptr + offset;
  if (dtype == SB_DTYPE_F32) {
    st = ctx->ops->upload(ctx->dev, dst, src, (size_t)count * sizeof(float));
  } else {
    float stage[STAGE_FLOATS];
    const double *s = src;
    for (int64_t done = 0; done < count && st == SB_OK;) {
      int64_t n = count - done < STAGE_FLOATS ? count - done : STAGE_FLOATS;
      for (int64_t i = 0; i < n; i++)
        stage[i] = (float)s[done + i];
      st = ctx->ops->upload(ctx->dev, dst + done, stage,
                            (size_t)n * sizeof(float));
      done += n;
    }
  }
  if (st != SB_OK) {
    SbExec x = exec_of(ctx);
    return sb_exec_device_fail(&x, st, "tensor_write");
  }
  return SB_OK;
}

int sb_single_tensor_read(sb_context *ctx, const sb_tensor *t, int64_t offset,
                          int64_t count, int32_t dtype, void *dst) {
  BEGIN(ctx);
  int st = check_range(ctx, "tensor_read", t, offset, count, dtype, dst);
  if (st != SB_OK || count == 0)
    return st;
  const float *src = (const float *)t->buf.ptr + offset;
  if (dtype == SB_DTYPE_F32) {
    st = ctx->ops->download(ctx->dev, dst, src, (size_t)count * sizeof(float));
  } else {
    float stage[STAGE_FLOATS];
    double *d = dst;
    for (int64_t done = 0; done < count && st == SB_OK;) {
      int64_t n = count - done < STAGE_FLOATS ? count - done : STAGE_FLOATS;
      st = ctx->ops->download(ctx->dev, stage, src + done,
                              (size_t)n * sizeof(float));
      for (int64_t i = 0; i < n && st == SB_OK; i++)
        d[done + i] = stage[i];
      done += n;
    }
  }
  if (st != SB_OK) {
    SbExec x = exec_of(ctx);
    return sb_exec_device_fail(&x, st, "tensor_read");
  }
  return SB_OK;
}

/* A coefficient tensor [S,B,N...]: S and B are its first two dimensions,
 * N the product of the rest. */
static int coef_dims(sb_context *ctx, const char *fn, const char *what,
                     const sb_tensor *A, int64_t *S, int64_t *B, int64_t *N) {
  if (A == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, what);
  if (A->ndim < 3)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "%s: %s must have shape [S,B,N] (it has %d dimensions)", fn,
                what, (int)A->ndim);
  *S = A->shape[0];
  *B = A->shape[1];
  *N = (*S * *B) != 0 ? A->numel / (*S * *B) : 0;
  return SB_OK;
}

static int expect_numel(sb_context *ctx, const char *fn, const char *what,
                        const sb_tensor *t, int64_t numel,
                        const char *shape_text) {
  if (t == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, what);
  if (t->numel != numel)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "%s: %s has %lld elements, expected %lld (%s)", fn, what,
                (long long)t->numel, (long long)numel, shape_text);
  return SB_OK;
}

/* expect_numel for input i of an array argument: the name WHAT[i] is
 * written out only for the message (per call, it was a tenth of the
 * backend's own time in a resnet_2b CROWN pass). */
static int expect_input_numel(sb_context *ctx, const char *fn, const char *what,
                              int i, const sb_tensor *t, int64_t numel,
                              const char *shape_text) {
  if (t != NULL && t->numel == numel)
    return SB_OK;
  char name[64];
  snprintf(name, sizeof name, "%s[%d]", what, i);
  return expect_numel(ctx, fn, name, t, numel, shape_text);
}

int sb_single_tensor_set_unit_rows(sb_context *ctx, sb_tensor *A,
                                   const int64_t *index) {
  BEGIN(ctx);
  int64_t S, B, N;
  int st = coef_dims(ctx, "tensor_set_unit_rows", "A", A, &S, &B, &N);
  if (st != SB_OK)
    return st;
  if (index == NULL && S > 0)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "tensor_set_unit_rows: NULL index");
  for (int64_t s = 0; s < S; s++)
    if (index[s] < 0 || index[s] >= N)
      return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                  "tensor_set_unit_rows: index[%lld] = %lld is outside "
                  "[0, %lld)",
                  (long long)s, (long long)index[s], (long long)N);
  written(A);
  st = ctx->ops->set_unit_rows(ctx->dev, S, B, N, index, A->buf.ptr);
  /* Remembering the rows is an optimisation only: without host memory for
   * it, linear backward just multiplies as usual. */
  if (st == SB_OK && S > 0 &&
      (A->unit_index = malloc((size_t)S * sizeof *index)))
    memcpy(A->unit_index, index, (size_t)S * sizeof *index);
  if (st != SB_OK) {
    SbExec x = exec_of(ctx);
    return sb_exec_device_fail(&x, st, "tensor_set_unit_rows");
  }
  return SB_OK;
}

/* ---- layers ---- */

int sb_single_layer_create(sb_context *ctx, const sb_layer_desc_v1 *desc,
                           sb_layer **out) {
  BEGIN(ctx);
  if (out == NULL || desc == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "layer_create: NULL description or output pointer");
  *out = NULL;
  if (desc->struct_size < sizeof(sb_layer_desc_v1))
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "layer_create: description struct_size %u is smaller than "
                "sb_layer_desc_v1 (%zu bytes)",
                (unsigned)desc->struct_size, sizeof(sb_layer_desc_v1));
  const SbOpFamily *fam = sb_op_family(desc->kind);
  if (fam == NULL)
    return fail(ctx, SB_ERR_UNSUPPORTED, "layer_create: unknown layer kind %d",
                (int)desc->kind);
  if (desc->in_size <= 0 || desc->out_size <= 0)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "layer_create: %s layer sizes must be positive (in_size "
                "%lld, out_size %lld)",
                fam->name, (long long)desc->in_size, (long long)desc->out_size);
  sb_layer *l = calloc(1, sizeof *l);
  if (l == NULL)
    return fail(ctx, SB_ERR_OUT_OF_MEMORY, "layer_create: out of host memory");
  l->kind = desc->kind;
  l->in_size = desc->in_size;
  l->out_size = desc->out_size;
  l->n_inputs = fam->n_inputs;
  SbExec x = exec_of(ctx);
  int st = fam->create(&x, desc, l);
  if (st != SB_OK) {
    sb_layer_release(&x, l);
    free(l);
    return st;
  }
  *out = l;
  return SB_OK;
}

void sb_single_layer_free(sb_context *ctx, sb_layer *layer) {
  if (ctx == NULL || layer == NULL)
    return;
  SbExec x = exec_of(ctx);
  sb_layer_release(&x, layer);
  free(layer);
}

/* Batch size of a [B, N...] tensor of a layer with flat size N. */
static int batch_of(sb_context *ctx, const char *fn, const char *what,
                    const sb_tensor *t, int64_t n, int64_t *B) {
  if (t == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, what);
  if (t->numel % n != 0)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "%s: %s has %lld elements, not a multiple of the layer size "
                "%lld",
                fn, what, (long long)t->numel, (long long)n);
  *B = t->numel / n;
  return SB_OK;
}

static int check_inputs(sb_context *ctx, const char *fn, const char *what,
                        const sb_layer *l, const sb_tensor *const *in,
                        int64_t B, const float **ptrs) {
  if (in == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL %s array", fn, what);
  for (int i = 0; i < l->n_inputs; i++) {
    int st =
        expect_input_numel(ctx, fn, what, i, in[i], B * l->in_size, "[B,N_in]");
    if (st != SB_OK)
      return st;
    ptrs[i] = in[i]->buf.ptr;
  }
  return SB_OK;
}

int sb_single_layer_forward(sb_context *ctx, const sb_layer *layer,
                            const sb_tensor *const *inputs, sb_tensor *out) {
  BEGIN(ctx);
  if (layer == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "layer_forward: NULL layer");
  int64_t B;
  const float *in[SB_MAX_LAYER_INPUTS] = {0};
  int st = batch_of(ctx, "layer_forward", "out", out, layer->out_size, &B);
  if (st == SB_OK)
    st = check_inputs(ctx, "layer_forward", "inputs", layer, inputs, B, in);
  if (st == SB_OK)
    st = sb_check_forward_aliasing(SB_CTX_ERROR(ctx), "layer_forward",
                                   layer->n_inputs, inputs, out);
  if (st != SB_OK)
    return st;
  written(out);
  SbExec x = exec_of(ctx);
  return sb_op_family(layer->kind)->forward(&x, layer, B, in, out->buf.ptr);
}

int sb_single_layer_ibp(sb_context *ctx, const sb_layer *layer,
                        const sb_tensor *const *in_lower,
                        const sb_tensor *const *in_upper, sb_tensor *out_lower,
                        sb_tensor *out_upper) {
  BEGIN(ctx);
  if (layer == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "layer_ibp: NULL layer");
  int64_t B;
  const float *lo[SB_MAX_LAYER_INPUTS] = {0}, *up[SB_MAX_LAYER_INPUTS] = {0};
  int st =
      batch_of(ctx, "layer_ibp", "out_lower", out_lower, layer->out_size, &B);
  if (st == SB_OK)
    st = expect_numel(ctx, "layer_ibp", "out_upper", out_upper,
                      B * layer->out_size, "[B,N_out]");
  if (st == SB_OK)
    st = check_inputs(ctx, "layer_ibp", "in_lower", layer, in_lower, B, lo);
  if (st == SB_OK)
    st = check_inputs(ctx, "layer_ibp", "in_upper", layer, in_upper, B, up);
  if (st == SB_OK)
    st = sb_check_ibp_aliasing(SB_CTX_ERROR(ctx), "layer_ibp", layer->n_inputs,
                               in_lower, in_upper, out_lower, out_upper);
  if (st != SB_OK)
    return st;
  written(out_lower);
  written(out_upper);
  SbExec x = exec_of(ctx);
  return sb_op_family(layer->kind)
      ->ibp(&x, layer, B, lo, up, out_lower->buf.ptr, out_upper->buf.ptr);
}

/* A ReLU's backward and its VJP take the same relaxation inputs: the
 * pre-activation bounds [B,N] and, optionally, the slopes [S,B,N]. */
static int check_relu_args(sb_context *ctx, const char *fn,
                           const struct sb_layer *layer, int64_t B, int64_t R,
                           const sb_tensor *pre_lower,
                           const sb_tensor *pre_upper, const sb_tensor *alpha,
                           const float **lower_out, const float **upper_out,
                           const float **alpha_out) {
  const int64_t BN = B * layer->out_size;
  int st;
  if ((st = expect_numel(ctx, fn, "pre_lower", pre_lower, BN, "[B,N]")) ||
      (st = expect_numel(ctx, fn, "pre_upper", pre_upper, BN, "[B,N]")) ||
      (alpha && (st = expect_numel(ctx, fn, "alpha", alpha, R * layer->out_size,
                                   "[S,B,N]"))))
    return st;
  *lower_out = pre_lower->buf.ptr;
  *upper_out = pre_upper->buf.ptr;
  *alpha_out = alpha ? alpha->buf.ptr : NULL;
  return SB_OK;
}

int sb_single_layer_backward(sb_context *ctx, const sb_layer *layer,
                             const sb_backward_args_v1 *args) {
  BEGIN(ctx);
  static const char fn[] = "layer_backward";
  if (layer == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL layer", fn);
  int st = sb_check_backward_args(SB_CTX_ERROR(ctx), fn, args);
  if (st != SB_OK)
    return st;
  SbOpBackward a;
  memset(&a, 0, sizeof a);
  a.side = args->side;
  int64_t N;
  st = coef_dims(ctx, fn, "A_out", args->A_out, &a.S, &a.B, &N);
  if (st != SB_OK)
    return st;
  a.batch_blocks = sb_blocks_by_batch(a.S, a.B);
  if (N != layer->out_size)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "%s: A_out has %lld neurons per row, the layer outputs %lld",
                fn, (long long)N, (long long)layer->out_size);
  const int64_t R = a.S * a.B;
  a.A_out = args->A_out->buf.ptr;
  for (int i = 0; i < layer->n_inputs; i++) {
    st = expect_input_numel(ctx, fn, "A_in", i, args->A_in[i],
                            R * layer->in_size, "[S,B,N_in]");
    if (st != SB_OK)
      return st;
    a.A_in[i] = args->A_in[i]->buf.ptr;
    a.accumulate[i] = args->accumulate[i];
  }
  st = expect_numel(ctx, fn, "bias", args->bias, R, "[S,B]");
  if (st != SB_OK)
    return st;
  a.bias = args->bias->buf.ptr;
  if (layer->kind == SB_LAYER_RELU &&
      (st = check_relu_args(ctx, fn, layer, a.B, R, args->pre_lower,
                            args->pre_upper, args->alpha, &a.pre_lower,
                            &a.pre_upper, &a.alpha)))
    return st;
  if ((st = sb_check_backward_aliasing(SB_CTX_ERROR(ctx), fn, layer->n_inputs,
                                       layer->kind, args)))
    return st;
  for (int i = 0; i < layer->n_inputs; i++)
    written(args->A_in[i]);
  written(args->bias);
  /* After the outputs were marked written, so that an output which is A_out
   * itself has already dropped the promise. */
  if (layer->kind == SB_LAYER_LINEAR)
    a.unit_index = args->A_out->unit_index;
  SbExec x = exec_of(ctx);
  return sb_op_family(layer->kind)->backward(&x, layer, &a);
}

int sb_single_concretize(sb_context *ctx, const sb_tensor *A,
                         const sb_tensor *bias, const sb_tensor *x_lower,
                         const sb_tensor *x_upper, int32_t side,
                         sb_tensor *out) {
  BEGIN(ctx);
  static const char fn[] = "concretize";
  int st = sb_check_side(SB_CTX_ERROR(ctx), fn, side);
  int64_t S = 0, B = 0, N = 0;
  if (st == SB_OK)
    st = coef_dims(ctx, fn, "A", A, &S, &B, &N);
  if (st == SB_OK && bias)
    st = expect_numel(ctx, fn, "bias", bias, S * B, "[S,B]");
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "x_lower", x_lower, B * N, "[B,N]");
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "x_upper", x_upper, B * N, "[B,N]");
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "out", out, S * B, "[S,B]");
  if (st == SB_OK)
    st = sb_check_concretize_aliasing(SB_CTX_ERROR(ctx), fn, A, bias, x_lower,
                                      x_upper, out);
  if (st != SB_OK)
    return st;
  written(out);
  SbExec x = exec_of(ctx);
  return sb_concretize(&x, side, S, B, N, A->buf.ptr,
                       bias ? bias->buf.ptr : NULL, x_lower->buf.ptr,
                       x_upper->buf.ptr, out->buf.ptr);
}

/* ---- ABI 1.1: alpha-CROWN and beta-CROWN ---- */

int sb_single_layer_backward_vjp(sb_context *ctx, const sb_layer *layer,
                                 const sb_vjp_args_v1 *args) {
  BEGIN(ctx);
  static const char fn[] = "layer_backward_vjp";
  if (layer == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "%s: NULL layer", fn);
  int st = sb_check_vjp_args(SB_CTX_ERROR(ctx), fn, args);
  if (st != SB_OK)
    return st;
  SbOpVjp a;
  memset(&a, 0, sizeof a);
  a.side = args->side;
  int64_t N;
  if ((st = coef_dims(ctx, fn, "A_out", args->A_out, &a.S, &a.B, &N)))
    return st;
  a.batch_blocks = sb_blocks_by_batch(a.S, a.B);
  if (N != layer->out_size)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "%s: A_out has %lld neurons per row, the layer outputs %lld",
                fn, (long long)N, (long long)layer->out_size);
  const int64_t R = a.S * a.B;
  a.A_out = args->A_out->buf.ptr;
  if ((st = expect_numel(ctx, fn, "grad_A_out", args->grad_A_out,
                         R * layer->out_size, "[S,B,N_out]")))
    return st;
  a.grad_A_out = args->grad_A_out->buf.ptr;
  a.accumulate_A_out = args->accumulate_A_out;
  for (int i = 0; i < layer->n_inputs; i++) {
    if (args->grad_A_in[i] == NULL)
      continue;
    if ((st = expect_input_numel(ctx, fn, "grad_A_in", i, args->grad_A_in[i],
                                 R * layer->in_size, "[S,B,N_in]")))
      return st;
    a.grad_A_in[i] = args->grad_A_in[i]->buf.ptr;
  }
  if (args->grad_bias) {
    if ((st = expect_numel(ctx, fn, "grad_bias", args->grad_bias, R, "[S,B]")))
      return st;
    a.grad_bias = args->grad_bias->buf.ptr;
  }
  if (layer->kind == SB_LAYER_RELU) {
    if ((st = check_relu_args(ctx, fn, layer, a.B, R, args->pre_lower,
                              args->pre_upper, args->alpha, &a.pre_lower,
                              &a.pre_upper, &a.alpha)))
      return st;
    if (args->grad_alpha) {
      if ((st = expect_numel(ctx, fn, "grad_alpha", args->grad_alpha,
                             R * layer->out_size, "[S,B,N]")))
        return st;
      a.grad_alpha = args->grad_alpha->buf.ptr;
      a.accumulate_alpha = args->accumulate_alpha;
    }
  } else if (args->grad_alpha) {
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "%s: grad_alpha is only meaningful for a relu layer, this is "
                "a %s layer",
                fn, sb_op_family(layer->kind)->name);
  }
  if ((st =
           sb_check_vjp_aliasing(SB_CTX_ERROR(ctx), fn, layer->n_inputs, args)))
    return st;
  written(args->grad_A_out);
  written(args->grad_alpha);
  SbExec x = exec_of(ctx);
  return sb_op_family(layer->kind)->backward_vjp(&x, layer, &a);
}

int sb_single_concretize_vjp(sb_context *ctx, const sb_tensor *A,
                             const sb_tensor *x_lower, const sb_tensor *x_upper,
                             int32_t side, const sb_tensor *grad_out,
                             sb_tensor *grad_A) {
  BEGIN(ctx);
  static const char fn[] = "concretize_vjp";
  int st = sb_check_side(SB_CTX_ERROR(ctx), fn, side);
  int64_t S = 0, B = 0, N = 0;
  if (st == SB_OK)
    st = coef_dims(ctx, fn, "A", A, &S, &B, &N);
  if (st == SB_OK && grad_out)
    st = expect_numel(ctx, fn, "grad_out", grad_out, S * B, "[S,B]");
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "x_lower", x_lower, B * N, "[B,N]");
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "x_upper", x_upper, B * N, "[B,N]");
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "grad_A", grad_A, S * B * N, "[S,B,N]");
  if (st == SB_OK)
    st = sb_check_concretize_vjp_aliasing(SB_CTX_ERROR(ctx), fn, A, x_lower,
                                          x_upper, grad_out, grad_A);
  if (st != SB_OK)
    return st;
  written(grad_A);
  SbExec x = exec_of(ctx);
  return sb_concretize_vjp(
      &x, side, S, B, N, A->buf.ptr, x_lower->buf.ptr, x_upper->buf.ptr,
      grad_out ? grad_out->buf.ptr : NULL, grad_A->buf.ptr);
}

int sb_single_relu_init_alpha(sb_context *ctx, const sb_tensor *pre_lower,
                              const sb_tensor *pre_upper, sb_tensor *alpha) {
  BEGIN(ctx);
  static const char fn[] = "relu_init_alpha";
  int64_t S = 0, B = 0, N = 0;
  int st = coef_dims(ctx, fn, "alpha", alpha, &S, &B, &N);
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "pre_lower", pre_lower, B * N, "[B,N]");
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "pre_upper", pre_upper, B * N, "[B,N]");
  if (st == SB_OK)
    st = sb_check_init_alpha_aliasing(SB_CTX_ERROR(ctx), fn, pre_lower,
                                      pre_upper, alpha);
  if (st != SB_OK)
    return st;
  written(alpha);
  SbExec x = exec_of(ctx);
  return sb_relu_init_alpha(&x, S, B, N, pre_lower->buf.ptr, pre_upper->buf.ptr,
                            alpha->buf.ptr);
}

int sb_single_adam_step(sb_context *ctx, sb_tensor *param,
                        const sb_tensor *grad, sb_tensor *m, sb_tensor *v,
                        const sb_adam_args_v1 *args) {
  BEGIN(ctx);
  static const char fn[] = "adam_step";
  int st = sb_check_adam_args(SB_CTX_ERROR(ctx), fn, args, param);
  if (st != SB_OK)
    return st;
  const int64_t n = param->numel;
  if ((st = expect_numel(ctx, fn, "grad", grad, n, "param's shape")) ||
      (st = expect_numel(ctx, fn, "m", m, n, "param's shape")) ||
      (st = expect_numel(ctx, fn, "v", v, n, "param's shape")))
    return st;
  if ((st = sb_check_adam_aliasing(SB_CTX_ERROR(ctx), fn, param, grad, m, v)))
    return st;
  written(param);
  written(m);
  written(v);
  SbExec x = exec_of(ctx);
  return sb_adam_step(&x, n, param->buf.ptr, grad->buf.ptr, m->buf.ptr,
                      v->buf.ptr, args);
}

int sb_single_beta_apply(sb_context *ctx, sb_tensor *A, const sb_tensor *beta,
                         const sb_tensor *sign, int32_t side) {
  BEGIN(ctx);
  static const char fn[] = "beta_apply";
  int st = sb_check_side(SB_CTX_ERROR(ctx), fn, side);
  int64_t S = 0, B = 0, N = 0;
  if (st == SB_OK)
    st = coef_dims(ctx, fn, "A", A, &S, &B, &N);
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "beta", beta, S * B * N, "[S,B,N]");
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "sign", sign, B * N, "[B,N]");
  if (st == SB_OK)
    st = sb_check_beta_apply_aliasing(SB_CTX_ERROR(ctx), fn, A, beta, sign);
  if (st != SB_OK)
    return st;
  written(A);
  SbExec x = exec_of(ctx);
  return sb_beta_apply(&x, side, S, B, N, A->buf.ptr, beta->buf.ptr,
                       sign->buf.ptr);
}

int sb_single_beta_vjp(sb_context *ctx, const sb_tensor *grad_A,
                       const sb_tensor *sign, int32_t side,
                       sb_tensor *grad_beta, int32_t accumulate) {
  BEGIN(ctx);
  static const char fn[] = "beta_vjp";
  int st = sb_check_side(SB_CTX_ERROR(ctx), fn, side);
  int64_t S = 0, B = 0, N = 0;
  if (st == SB_OK)
    st = coef_dims(ctx, fn, "grad_A", grad_A, &S, &B, &N);
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "sign", sign, B * N, "[B,N]");
  if (st == SB_OK)
    st = expect_numel(ctx, fn, "grad_beta", grad_beta, S * B * N, "[S,B,N]");
  if (st == SB_OK)
    st = sb_check_beta_vjp_aliasing(SB_CTX_ERROR(ctx), fn, grad_A, sign,
                                    grad_beta);
  if (st != SB_OK)
    return st;
  written(grad_beta);
  SbExec x = exec_of(ctx);
  return sb_beta_vjp(&x, side, S, B, N, grad_A->buf.ptr, sign->buf.ptr,
                     grad_beta->buf.ptr, accumulate);
}

/* ---- memory ---- */

int sb_single_memory_mark_baseline(sb_context *ctx) {
  BEGIN(ctx);
  sb_mem_tracker_mark_baseline(&ctx->mem);
  return SB_OK;
}

int sb_single_memory_reset_peak(sb_context *ctx) {
  BEGIN(ctx);
  sb_mem_tracker_reset_peak(&ctx->mem);
  return SB_OK;
}

int sb_single_memory_stats(sb_context *ctx, int rank, sb_memory_stats_v1 *out) {
  BEGIN(ctx);
  if (out == NULL)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT, "memory_stats: NULL output");
  if (rank != 0)
    return fail(ctx, SB_ERR_INVALID_ARGUMENT,
                "memory_stats: rank %d does not exist (this context has 1 "
                "rank)",
                rank);
  sb_mem_tracker_snapshot(&ctx->mem, 0, out);
  if (SB_HAS_MEMBER(out, sb_memory_stats_v1, device_used_bytes))
    out->device_used_bytes = ctx->ops->used_bytes(ctx->dev);
  return SB_OK;
}

int sb_one_process_info(const sb_context *ctx, int32_t *index, int32_t *count) {
  if (ctx == NULL || index == NULL || count == NULL)
    return SB_ERR_INVALID_ARGUMENT;
  *index = 0;
  *count = 1;
  return SB_OK;
}

int sb_one_process_broadcast_host(sb_context *ctx, void *buf, size_t bytes) {
  return ctx == NULL || (buf == NULL && bytes > 0) ? SB_ERR_INVALID_ARGUMENT
                                                   : SB_OK;
}

int32_t sb_one_process_lost_rank(const sb_context *ctx) { return -1; }
