/* SPDX-License-Identifier: MIT */
/* Backend loading, tensors, random layer graphs and side-by-side CROWN
 * passes for the suites that compare FSDP and TP with the CPU backend. */
#include "tests/backend-testlib.h"

#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Backend load(const char *name) {
  const char *dir = getenv("SHARDBOUND_BACKEND_PATH");
  char path[4096];
  snprintf(path, sizeof path, "%s/shardbound-backend-%s.so",
           dir ? dir : "backends/.libs", name);
  Backend b = {dlopen(path, RTLD_NOW | RTLD_LOCAL), NULL};
  ck_assert_msg(b.handle != NULL, "dlopen %s: %s", path, dlerror());
  sb_backend_get_v1_fn get =
      (sb_backend_get_v1_fn)dlsym(b.handle, SB_ENTRY_SYMBOL_V1);
  ck_assert_ptr_nonnull(get);
  ck_assert_int_eq(get(NULL, &b.d), SB_OK);
  return b;
}

Ctx open_ctx(const Backend *b, const sb_option *opts, size_t n) {
  Ctx c = {b->d, NULL};
  char err[512] = "";
  int st = b->d->context_create(NULL, opts, n, &c.ctx, err, sizeof err);
  ck_assert_msg(st == SB_OK, "%s context_create: %s", b->d->name, err);
  return c;
}

Ctx open_ranks(const Backend *b, int P) {
  char v[8];
  snprintf(v, sizeof v, "%d", P);
  sb_option o = {"ranks", v};
  return open_ctx(b, &o, 1);
}

void ok(Ctx *c, int st, const char *what) {
  ck_assert_msg(st == SB_OK, "%s %s: %s", c->d->name, what,
                c->d->last_error(c->ctx));
}

sb_tensor *tensor(Ctx *c, int32_t cat, int64_t d0, int64_t d1, int64_t d2,
                  const float *data) {
  int64_t shape[3] = {d0, d1, d2};
  sb_tensor *t = NULL;
  ok(c, c->d->tensor_create(c->ctx, cat, d2 ? 3 : 2, shape, &t), "create");
  if (data)
    ok(c,
       c->d->tensor_write(c->ctx, t, 0, d0 * d1 * (d2 ? d2 : 1), SB_DTYPE_F32,
                          data),
       "write");
  return t;
}

float *read_all(Ctx *c, const sb_tensor *t, int64_t n) {
  float *v = malloc((size_t)n * sizeof(float) + 1);
  ok(c, c->d->tensor_read(c->ctx, t, 0, n, SB_DTYPE_F32, v), "read");
  return v;
}

void same_bits(Ctx *a, const sb_tensor *ta, Ctx *b, const sb_tensor *tb,
               int64_t n, const char *what, int P) {
  float *x = read_all(a, ta, n), *y = read_all(b, tb, n);
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(memcmp(&x[i], &y[i], sizeof(float)) == 0,
                  "P=%d %s[%lld]: %s %.9g, %s %.9g", P, what, (long long)i,
                  a->d->name, x[i], b->d->name, y[i]);
  free(x);
  free(y);
}

int close_enough(float x, float y) {
  float m = fabsf(x) > fabsf(y) ? fabsf(x) : fabsf(y);
  return fabsf(x - y) <= 1e-5f * (m > 1.0f ? m : 1.0f);
}

void same_values(Ctx *a, const sb_tensor *ta, Ctx *b, const sb_tensor *tb,
                 int64_t n, const char *what, int P) {
  float *x = read_all(a, ta, n), *y = read_all(b, tb, n);
  for (int64_t i = 0; i < n; i++)
    ck_assert_msg(close_enough(x[i], y[i]), "P=%d %s[%lld]: %s %.9g, %s %.9g",
                  P, what, (long long)i, a->d->name, x[i], b->d->name, y[i]);
  free(x);
  free(y);
}

unsigned rng_state;
float frand(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}
float *rand_vec(int64_t n, float scale) {
  float *v = malloc((size_t)n * sizeof(float) + 1);
  for (int64_t i = 0; i < n; i++)
    v[i] = frand() * scale;
  return v;
}

void net_init(Net *net, int64_t in_size) {
  memset(net, 0, sizeof *net);
  net->n = 1;
  net->size[0] = in_size;
}

sb_layer_desc_v1 *net_add(Net *net, int32_t kind, int in0, int in1,
                          int64_t out_size) {
  int k = net->n++;
  sb_layer_desc_v1 *d = &net->desc[k];
  d->struct_size = sizeof *d;
  d->kind = kind;
  d->in_size = net->size[in0];
  d->out_size = out_size;
  net->in[k][0] = in0;
  net->in[k][1] = in1;
  net->size[k] = out_size;
  return d;
}

int net_linear(Net *net, int in, int64_t out) {
  sb_layer_desc_v1 *d = net_add(net, SB_LAYER_LINEAR, in, -1, out);
  net->w[net->n - 1] = rand_vec(out * d->in_size, 0.5f);
  net->b[net->n - 1] = rand_vec(out, 0.3f);
  d->weight = net->w[net->n - 1];
  d->bias = net->b[net->n - 1];
  return net->n - 1;
}

int net_simple(Net *net, int32_t kind, int in) {
  net_add(net, kind, in, -1, net->size[in]);
  return net->n - 1;
}

int net_conv(Net *net, int in, int64_t c, int64_t h, int64_t w, int64_t oc,
             int64_t k, int64_t stride, int64_t pad, int64_t groups) {
  int64_t oh = (h + 2 * pad - k) / stride + 1,
          ow = (w + 2 * pad - k) / stride + 1;
  sb_layer_desc_v1 *d = net_add(net, SB_LAYER_CONV2D, in, -1, oc * oh * ow);
  ck_assert_int_eq(d->in_size, c * h * w);
  d->in_c = c, d->in_h = h, d->in_w = w;
  d->out_c = oc, d->out_h = oh, d->out_w = ow;
  d->kernel_h = d->kernel_w = k;
  d->stride_h = d->stride_w = stride;
  d->pad_top = d->pad_left = d->pad_bottom = d->pad_right = pad;
  d->dilation_h = d->dilation_w = 1;
  d->groups = groups;
  net->w[net->n - 1] = rand_vec(oc * (c / groups) * k * k, 0.4f);
  net->b[net->n - 1] = rand_vec(oc, 0.2f);
  d->weight = net->w[net->n - 1];
  d->bias = net->b[net->n - 1];
  return net->n - 1;
}

int net_affine(Net *net, int in, int64_t channels) {
  sb_layer_desc_v1 *d = net_add(net, SB_LAYER_AFFINE, in, -1, net->size[in]);
  d->channels = channels;
  d->spatial = net->size[in] / channels;
  net->w[net->n - 1] = rand_vec(channels, 1.5f);
  net->b[net->n - 1] = rand_vec(channels, 0.5f);
  d->weight = net->w[net->n - 1];
  d->bias = net->b[net->n - 1];
  return net->n - 1;
}

void net_free(Net *net) {
  for (int k = 0; k < net->n; k++)
    free(net->w[k]), free(net->b[k]);
}

void run_ibp(Run *r, const Net *net, int64_t batch, const float *xl,
             const float *xu) {
  Ctx *c = &r->c;
  r->lo[0] = tensor(c, SB_MEM_BOUNDS, batch, net->size[0], 0, xl);
  r->hi[0] = tensor(c, SB_MEM_BOUNDS, batch, net->size[0], 0, xu);
  for (int k = 1; k < net->n; k++) {
    ok(c, c->d->layer_create(c->ctx, &net->desc[k], &r->layer[k]),
       "layer_create");
    r->lo[k] = tensor(c, SB_MEM_BOUNDS, batch, net->size[k], 0, NULL);
    r->hi[k] = tensor(c, SB_MEM_BOUNDS, batch, net->size[k], 0, NULL);
    const sb_tensor *il[2] = {r->lo[net->in[k][0]],
                              net->in[k][1] >= 0 ? r->lo[net->in[k][1]] : NULL};
    const sb_tensor *iu[2] = {r->hi[net->in[k][0]],
                              net->in[k][1] >= 0 ? r->hi[net->in[k][1]] : NULL};
    ok(c, c->d->layer_ibp(c->ctx, r->layer[k], il, iu, r->lo[k], r->hi[k]),
       "layer_ibp");
  }
}

void run_free(Run *r, const Net *net) {
  Ctx *c = &r->c;
  for (int k = 0; k < net->n; k++) {
    c->d->tensor_free(c->ctx, r->lo[k]);
    c->d->tensor_free(c->ctx, r->hi[k]);
    c->d->tensor_free(c->ctx, r->A[k]);
    if (k)
      c->d->layer_free(c->ctx, r->layer[k]);
  }
  c->d->tensor_free(c->ctx, r->bias);
  r->bias = NULL;
  memset(r->lo, 0, sizeof r->lo);
  memset(r->hi, 0, sizeof r->hi);
  memset(r->A, 0, sizeof r->A);
}

void backward_compare(Run *ref, Run *other, const Net *net, int64_t batch,
                      int side, int use_alpha, CompareFn cmp, int P) {
  Run *runs[2] = {ref, other};
  int last = net->n - 1;
  int64_t index[S_SPECS];
  for (int s = 0; s < S_SPECS; s++)
    index[s] = (s * 5 + 1) % net->size[last];
  float *bias0 = rand_vec(S_SPECS * batch, 1.0f);
  int64_t max_n = 0;
  for (int k = 0; k < net->n; k++)
    max_n = net->size[k] > max_n ? net->size[k] : max_n;
  /* Drawn only when used, so that runs without alpha consume no random
   * numbers for it. */
  float *alpha0 = use_alpha ? rand_vec(S_SPECS * batch * max_n, 0.5f) : NULL;
  for (int64_t i = 0; use_alpha && i < S_SPECS * batch * max_n; i++)
    alpha0[i] += 0.5f;
  for (int i = 0; i < 2; i++) {
    Run *r = runs[i];
    memset(r->touched, 0, sizeof r->touched);
    for (int k = 0; k < net->n; k++)
      r->A[k] = tensor(&r->c, SB_MEM_COEFFICIENTS, S_SPECS, batch, net->size[k],
                       NULL);
    ok(&r->c, r->c.d->tensor_set_unit_rows(r->c.ctx, r->A[last], index),
       "set_unit_rows");
    r->bias = tensor(&r->c, SB_MEM_COEFFICIENTS, S_SPECS, batch, 0, bias0);
    r->touched[last] = 1;
  }
  cmp(&ref->c, ref->A[last], &other->c, other->A[last],
      S_SPECS * batch * net->size[last], "unit rows", P);
  free(bias0);
  for (int k = last; k >= 1; k--) {
    for (int i = 0; i < 2; i++) {
      Run *r = runs[i];
      sb_backward_args_v1 a;
      memset(&a, 0, sizeof a);
      a.struct_size = sizeof a;
      a.side = side;
      a.A_out = r->A[k];
      for (int j = 0; j < 2 && net->in[k][j] >= 0; j++) {
        if (j == 1 && net->desc[k].kind != SB_LAYER_ADD)
          break;
        a.A_in[j] = r->A[net->in[k][j]];
        a.accumulate[j] = r->touched[net->in[k][j]];
      }
      r->alpha = NULL;
      if (net->desc[k].kind == SB_LAYER_RELU) {
        a.pre_lower = r->lo[net->in[k][0]];
        a.pre_upper = r->hi[net->in[k][0]];
        if (use_alpha)
          a.alpha = r->alpha =
              tensor(&r->c, SB_MEM_ALPHA, S_SPECS, batch, net->size[k], alpha0);
      }
      a.bias = r->bias;
      ok(&r->c, r->c.d->layer_backward(r->c.ctx, r->layer[k], &a),
         "layer_backward");
      r->c.d->tensor_free(r->c.ctx, r->alpha);
      for (int j = 0; j < 2 && a.A_in[j]; j++)
        r->touched[net->in[k][j]] = 1;
    }
    for (int j = 0; j < 2 && net->in[k][j] >= 0; j++) {
      int n = net->in[k][j];
      char what[64];
      snprintf(what, sizeof what, "A of node %d after layer %d", n, k);
      cmp(&ref->c, ref->A[n], &other->c, other->A[n],
          S_SPECS * batch * net->size[n], what, P);
    }
    cmp(&ref->c, ref->bias, &other->c, other->bias, S_SPECS * batch,
        "backward bias", P);
  }
  free(alpha0);
  sb_tensor *out[2];
  for (int i = 0; i < 2; i++) {
    Run *r = runs[i];
    out[i] = tensor(&r->c, SB_MEM_BOUNDS, S_SPECS, batch, 0, NULL);
    ok(&r->c,
       r->c.d->concretize(r->c.ctx, r->A[0], r->bias, r->lo[0], r->hi[0], side,
                          out[i]),
       "concretize");
  }
  cmp(&ref->c, out[0], &other->c, out[1], S_SPECS * batch, "concretize", P);
  for (int i = 0; i < 2; i++) {
    runs[i]->c.d->tensor_free(runs[i]->c.ctx, out[i]);
    runs[i]->c.d->tensor_free(runs[i]->c.ctx, runs[i]->bias);
    runs[i]->bias = NULL;
    for (int k = 0; k < net->n; k++) {
      runs[i]->c.d->tensor_free(runs[i]->c.ctx, runs[i]->A[k]);
      runs[i]->A[k] = NULL;
    }
  }
}
