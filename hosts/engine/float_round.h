/* SPDX-License-Identifier: MIT */
/* One float outward: nextafterf(x, -INFINITY) and nextafterf(x,
 * INFINITY), for every float (zeros, subnormals, infinities and NaN
 * included), as an integer step the compiler inlines. Storing
 * branch-and-bound's bounds called libm's once per neuron and domain (2%
 * of an MLP's search). */
#ifndef SB_FLOAT_ROUND_H
#define SB_FLOAT_ROUND_H

#include <float.h>
#include <stdint.h>
#include <string.h>

/* A float's bits are sign and magnitude: away from zero is one more, towards
 * zero one less, whatever the sign. */
static inline float sb_float_step(float x, int up) {
  uint32_t bits;
  if (x != x)
    return x;
  if (x == 0.0f)
    return up ? FLT_TRUE_MIN : -FLT_TRUE_MIN;
  memcpy(&bits, &x, sizeof bits);
  const int negative = (bits >> 31) != 0;
  if (negative == !up && (bits & 0x7fffffffu) == 0x7f800000u)
    return x; /* already the infinity it steps towards */
  bits = negative == up ? bits - 1 : bits + 1;
  memcpy(&x, &bits, sizeof x);
  return x;
}

static inline float sb_float_down(float x) { return sb_float_step(x, 0); }
static inline float sb_float_up(float x) { return sb_float_step(x, 1); }

#endif
