/* SPDX-License-Identifier: MIT */
/* Helpers shared by the suites that compare a multi-rank backend (FSDP, TP)
 * with the CPU reference through the ABI: loading backends, tensors, random
 * layer graphs and CROWN passes run on two backends side by side. */
#ifndef SB_BACKEND_TESTLIB_H
#define SB_BACKEND_TESTLIB_H

#include <stdint.h>

#include "abi/shardbound.h"

typedef struct {
  void *handle;
  const sb_backend_v1 *d;
} Backend;

/* shardbound-backend-NAME.so from SHARDBOUND_BACKEND_PATH; fails the test
 * when it cannot be loaded. */
Backend load(const char *name);

typedef struct {
  const sb_backend_v1 *d;
  sb_context *ctx;
} Ctx;

Ctx open_ctx(const Backend *b, const sb_option *opts, size_t n);
/* A context with option ranks=P. */
Ctx open_ranks(const Backend *b, int P);
/* Fails the test with the backend's last error unless st is SB_OK. */
void ok(Ctx *c, int st, const char *what);
/* A [d0,d1] tensor, or [d0,d1,d2] when d2 is not 0, holding data if given. */
sb_tensor *tensor(Ctx *c, int32_t cat, int64_t d0, int64_t d1, int64_t d2,
                  const float *data);
/* The first n elements of t; the caller frees them. */
float *read_all(Ctx *c, const sb_tensor *t, int64_t n);

/* Comparisons of the first n elements of ta (on a, the reference) and tb. */
typedef void (*CompareFn)(Ctx *a, const sb_tensor *ta, Ctx *b,
                          const sb_tensor *tb, int64_t n, const char *what,
                          int P);
/* Bitwise equal (FSDP). */
void same_bits(Ctx *a, const sb_tensor *ta, Ctx *b, const sb_tensor *tb,
               int64_t n, const char *what, int P);
/* x and y equal to float rounding: relative 1e-5, absolute below 1. */
int close_enough(float x, float y);
/* Equal to float rounding, close_enough (TP sums in another order). */
void same_values(Ctx *a, const sb_tensor *ta, Ctx *b, const sb_tensor *tb,
                 int64_t n, const char *what, int P);

/* A deterministic generator, so every test sees the same numbers whatever
 * the platform's rand(): tests seed it by setting rng_state. */
extern unsigned rng_state;
/* Uniform in [-1, 1). */
float frand(void);
/* n values frand() * scale; the caller frees them. */
float *rand_vec(int64_t n, float scale);

/* ---- a tiny DAG of layers: node 0 is the input ---- */

#define MAX_NODES 12
typedef struct {
  int n;
  sb_layer_desc_v1 desc[MAX_NODES];
  int in[MAX_NODES][2];
  int64_t size[MAX_NODES];
  float *w[MAX_NODES], *b[MAX_NODES];
} Net;

void net_init(Net *net, int64_t in_size);
sb_layer_desc_v1 *net_add(Net *net, int32_t kind, int in0, int in1,
                          int64_t out_size);
int net_linear(Net *net, int in, int64_t out);
/* A layer without parameters (ReLU) of the input's size. */
int net_simple(Net *net, int32_t kind, int in);
/* Square kernel k, equal strides and paddings, no dilation. */
int net_conv(Net *net, int in, int64_t c, int64_t h, int64_t w, int64_t oc,
             int64_t k, int64_t stride, int64_t pad, int64_t groups);
int net_affine(Net *net, int in, int64_t channels);
void net_free(Net *net);

/* The state of one backend while the net is bounded. */
typedef struct {
  Ctx c;
  sb_layer *layer[MAX_NODES];
  sb_tensor *lo[MAX_NODES], *hi[MAX_NODES], *A[MAX_NODES];
  int touched[MAX_NODES];
  sb_tensor *bias, *alpha;
} Run;

enum { S_SPECS = 7 };

/* Creates every layer and its IBP bounds for inputs [xl, xu] of `batch`
 * rows. */
void run_ibp(Run *r, const Net *net, int64_t batch, const float *xl,
             const float *xu);
void run_free(Run *r, const Net *net);

/* CROWN with S_SPECS unit specs from the last node back to the input, then
 * concretize, on the reference and on other side by side; every
 * intermediate A, bias and the result are compared with cmp. With use_alpha
 * the ReLUs get explicit random slopes. */
void backward_compare(Run *ref, Run *other, const Net *net, int64_t batch,
                      int side, int use_alpha, CompareFn cmp, int P);

#endif /* SB_BACKEND_TESTLIB_H */
