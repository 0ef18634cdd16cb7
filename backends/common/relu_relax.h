/* SPDX-License-Identifier: MIT */
/* The linear relaxation of ReLU on a pre-activation interval [l, u], per
 * element, written once for the CPU device (C) and the CUDA kernels (nvcc):
 * the two devices must bound with the same lines.
 *
 * On an unstable neuron (l < 0 < u) the upper line is the chord
 * y = slope * (x - l), slope = u / (u - l), and the lower line is
 * y = lo_slope * x with lo_slope in [0, 1]: alpha when given (alpha-CROWN),
 * else CROWN's choice, 1 when u > -l and 0 otherwise. Stable neurons are
 * exact: identity when l >= 0, zero when u <= 0. */
#ifndef SB_BACKENDS_RELU_RELAX_H
#define SB_BACKENDS_RELU_RELAX_H

#ifdef __CUDACC__
#define SB_HOST_DEVICE __host__ __device__
#else
/* The CPU's loops vectorise only once every call in them is inlined. */
#define SB_HOST_DEVICE __attribute__((always_inline))
#endif

static inline SB_HOST_DEVICE float sb_relu(float x) {
  return x > 0.0f ? x : 0.0f;
}

/* CROWN's lower slope, the default alpha: the line of the two (0 or x)
 * that leaves the smaller area on [l, u]. */
static inline SB_HOST_DEVICE float sb_relu_default_alpha(float l, float u) {
  return u > -l ? 1.0f : 0.0f;
}

/* The lines of one neuron, which depend on its bounds only: the CPU
 * works them out once per neuron (sb_relu_lines) and applies them to each
 * of its rows' coefficients (sb_relu_lines_backward). The division in the
 * chord's slope, done for every element, bounded the speed of a CROWN
 * pass's ReLU steps. state is SB_RELU_ACTIVE (l >= 0), SB_RELU_UNSTABLE
 * (else u > 0, or a NaN bound, which propagates) or SB_RELU_INACTIVE;
 * slope and icpt are the chord's (0 unless unstable); lower is CROWN's
 * lower slope. */
#define SB_RELU_INACTIVE 0.0f
#define SB_RELU_ACTIVE   1.0f
#define SB_RELU_UNSTABLE 2.0f

typedef struct {
  float state, slope, icpt, lower;
} SbReluLines;

static inline SB_HOST_DEVICE SbReluLines sb_relu_lines(float l, float u) {
  const int active = l >= 0.0f;
  const int unstable = !active & !(u <= 0.0f);
  /* Computed for every neuron (a stable one's may be inf or NaN, and is
   * not selected): a division under a condition is not vectorised. */
  const float chord = u / (u - l);
  SbReluLines r;
  r.state = active     ? SB_RELU_ACTIVE
            : unstable ? SB_RELU_UNSTABLE
                       : SB_RELU_INACTIVE;
  r.slope = unstable ? chord : 0.0f;
  r.icpt = unstable ? -l * chord : 0.0f;
  r.lower = sb_relu_default_alpha(l, u);
  return r;
}

/* One coefficient a of a bound on the output pulled back onto the input:
 * the input's coefficient, and the constant the relaxation adds to the
 * bound (0 for stable neurons). A lower bound takes the lower line where
 * the coefficient is positive and the upper line where it is negative; an
 * upper bound the opposite. alpha: this element's lower slope when
 * has_alpha, else the default (a flag, not a pointer: a CPU loop that
 * selected pointers did not vectorise). Written without branches, as
 * selects between the three cases, so that the CPU's loop over neurons
 * vectorises; each case computes what it did with branches. */
typedef struct {
  float coef, bias;
} SbReluBackTerm;

static inline SB_HOST_DEVICE SbReluBackTerm sb_relu_lines_backward(
    int lower_side, float a, SbReluLines r, int has_alpha, float alpha) {
  const int active = r.state == SB_RELU_ACTIVE;
  const int unstable = r.state == SB_RELU_UNSTABLE;
  const float chosen = has_alpha ? alpha : r.lower;
  const float lo_slope = unstable ? chosen : 0.0f;
  const float pos = a > 0.0f ? a : 0.0f;
  const float neg = a < 0.0f ? a : 0.0f;
  SbReluBackTerm t;
  /* An active neuron passes a on as it is (a NaN too). */
  t.coef = active       ? a
           : lower_side ? lo_slope * pos + r.slope * neg
                        : lo_slope * neg + r.slope * pos;
  t.bias = unstable ? (lower_side ? neg : pos) * r.icpt : 0.0f;
  return t;
}

/* Both steps for one element: on the pre-activation interval [l, u]. */
static inline SB_HOST_DEVICE SbReluBackTerm sb_relu_relax_backward(
    int lower_side, float a, float l, float u, const float *alpha) {
  return sb_relu_lines_backward(lower_side, a, sb_relu_lines(l, u),
                                alpha != NULL, alpha ? *alpha : 0.0f);
}

/* The vector-Jacobian product of sb_relu_lines_backward for one element:
 * gn is the gradient on the returned coefficient, gb the gradient on the
 * bias. *grad_a receives the gradient on a, *grad_alpha the one on the lower
 * slope (zero where the lower line is not used). The line taken is the
 * forward step's, chosen by the sign of a, and the neuron's case is the
 * forward step's too (a NaN bound is unstable, and its NaN propagates).
 * Written as selects: with branches the CPU's loop vectorised into mask
 * shuffling through scalar registers (a tenth of an MLP's
 * branch-and-bound). */
static inline SB_HOST_DEVICE void
sb_relu_lines_backward_vjp(int lower_side, float a, SbReluLines r,
                           int has_alpha, float alpha, float gn, float gb,
                           float *grad_a, float *grad_alpha) {
  const int active = r.state == SB_RELU_ACTIVE;
  const int unstable = r.state == SB_RELU_UNSTABLE;
  const float lo_slope = has_alpha ? alpha : r.lower;
  /* The sign that takes the lower line: times +-1 is exact, and a zero or
   * NaN a takes neither line, as with the comparisons on a itself. */
  const float signed_a = lower_side ? a : -a;
  const int on_alpha = signed_a > 0.0f;
  const int on_icpt = signed_a < 0.0f;
  const float unstable_va =
      gn * (on_alpha ? lo_slope : r.slope) + (on_icpt ? gb * r.icpt : 0.0f);
  *grad_a = active ? gn : unstable ? unstable_va : 0.0f;
  *grad_alpha = unstable & on_alpha ? gn * a : 0.0f;
}

/* Both steps for one element: on the pre-activation interval [l, u]. */
static inline SB_HOST_DEVICE void
sb_relu_relax_backward_vjp(int lower_side, float a, float l, float u,
                           const float *alpha, float gn, float gb,
                           float *grad_a, float *grad_alpha) {
  sb_relu_lines_backward_vjp(lower_side, a, sb_relu_lines(l, u), alpha != NULL,
                             alpha ? *alpha : 0.0f, gn, gb, grad_a, grad_alpha);
}

/* ---- The relaxation with an indicator term (cutting planes) ----------
 * GCP-CROWN's and BICCOS's cuts are linear constraints over the ReLUs'
 * indicator variables z = [x > 0] (either value where x = 0). Their
 * Lagrange multipliers give each neuron a coefficient q on its z next to
 * the coefficient a on its output, and the backward step must bound
 *   g(x) = a * relu(x) + q * z(x)   on [l, u]
 * by a line in x. On an unstable neuron g is 0 on [l, 0), a * x + q on
 * (0, u], and 0 or q at 0, so a line below the three points
 *   P1 = (l, 0),  P0 = (0, m) with m = min(0, q),  P2 = (u, a * u + q)
 * is below g on the whole interval (g is linear between them). When P0
 * lies below the chord P1 P2 the tight lines are those through P0 with a
 * slope between s1 (of P1 P0) and s2 (of P0 P2), and alpha in [0, 1]
 * picks one: slope s1 + alpha * (s2 - s1). Otherwise the chord is the one
 * tight line. With q = 0 this gives the values of the lines above (a zero
 * constant may come out as -0 instead of +0): P0 is the
 * origin, s1 = 0 and s2 = a (alpha * a, alpha-CROWN's lower line) when
 * a > 0, the chord times a otherwise. A stable neuron's z is fixed:
 * 1 when l >= 0, 0 when u <= 0 (x = 0 allows either value, and a cut
 * holds for every indicator a point allows). An upper bound is minus the
 * lower bound of -g. No backend calls it yet (docs/verification.md,
 * "Cutting planes"). */

/* The lower line of g on an unstable neuron with lines r (sb_relu_lines),
 * as a coefficient and a constant, with the pieces the VJP needs. */
typedef struct {
  float coef, bias;
  int on_chord; /* P0 is not below the chord */
  float s1, s2; /* the slopes around P0 (when !on_chord) */
} SbReluIndicatorLine;

static inline SB_HOST_DEVICE SbReluIndicatorLine sb_relu_indicator_lower_line(
    float a, float q, float l, float u, SbReluLines r, float alpha) {
  SbReluIndicatorLine t;
  const float m = q < 0.0f ? q : 0.0f;
  /* The chord's slope and its value at 0, written as the q = 0 lines plus
   * q's share so that q = 0 computes exactly those. */
  const float chord = a * r.slope + q / (u - l);
  const float chord0 = a * r.icpt + q * -l / (u - l);
  t.on_chord = !(m < chord0);
  t.s1 = m / -l;
  t.s2 = a + (q - m) / u;
  t.coef = t.on_chord ? chord : t.s1 + alpha * (t.s2 - t.s1);
  t.bias = t.on_chord ? chord0 : m;
  return t;
}

/* One coefficient pair (a on the output, q on the indicator) pulled back
 * onto the input, as sb_relu_lines_backward does for q = 0 (alpha: the
 * element's, or CROWN's default when !has_alpha). */
static inline SB_HOST_DEVICE SbReluBackTerm
sb_relu_indicator_backward(int lower_side, float a, float q, float l, float u,
                           int has_alpha, float alpha) {
  const SbReluLines r = sb_relu_lines(l, u);
  const float al = has_alpha ? alpha : r.lower;
  const float d = lower_side ? 1.0f : -1.0f;
  SbReluBackTerm t;
  if (r.state == SB_RELU_ACTIVE) {
    t.coef = a, t.bias = q;
  } else if (r.state == SB_RELU_INACTIVE) {
    t.coef = 0.0f, t.bias = 0.0f;
  } else {
    SbReluIndicatorLine line =
        sb_relu_indicator_lower_line(d * a, d * q, l, u, r, al);
    t.coef = d * line.coef, t.bias = d * line.bias;
  }
  return t;
}

/* Its vector-Jacobian product: gn and gb the gradients on the returned
 * coefficient and constant; the gradients on a, q and the slope parameter
 * alpha (zero where the chord is taken or the neuron is stable). At a
 * kink (q = 0, or P0 on the chord) it takes one side's derivative. */
static inline SB_HOST_DEVICE void
sb_relu_indicator_backward_vjp(int lower_side, float a, float q, float l,
                               float u, int has_alpha, float alpha, float gn,
                               float gb, float *grad_a, float *grad_q,
                               float *grad_alpha) {
  const SbReluLines r = sb_relu_lines(l, u);
  const float al = has_alpha ? alpha : r.lower;
  const float d = lower_side ? 1.0f : -1.0f;
  *grad_alpha = 0.0f;
  if (r.state == SB_RELU_ACTIVE) {
    *grad_a = gn, *grad_q = gb;
    return;
  }
  if (r.state == SB_RELU_INACTIVE) {
    *grad_a = 0.0f, *grad_q = 0.0f;
    return;
  }
  /* coef = d * C(d a, d q), so d coef / d a = C_a(d a, d q): the sign
   * cancels on a and q, and stays on alpha. */
  const float dq = d * q;
  SbReluIndicatorLine line =
      sb_relu_indicator_lower_line(d * a, dq, l, u, r, al);
  if (line.on_chord) {
    *grad_a = gn * r.slope + gb * r.icpt;
    *grad_q = (gn - gb * l) / (u - l);
  } else {
    const float neg = dq < 0.0f ? 1.0f : 0.0f; /* d m / d q */
    *grad_a = gn * al;
    *grad_q = gn * ((1.0f - al) * neg / -l + al * (1.0f - neg) / u) + gb * neg;
    *grad_alpha = d * gn * (line.s2 - line.s1);
  }
}

#endif /* SB_BACKENDS_RELU_RELAX_H */
