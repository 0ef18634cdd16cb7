/* SPDX-License-Identifier: MIT */
/* The ReLU relaxation with an indicator term (relu_relax.h,
 * sb_relu_indicator_backward), the step cutting planes need: it must bound
 * g(x) = a * relu(x) + q * z on the neuron's interval for every indicator
 * z the point allows, touch the lower envelope of g (else a trivially
 * loose line would pass), give exactly the plain relaxation when q = 0,
 * and its vector-Jacobian product must be the derivative of what it
 * computes. The loops test with `if` and ck_abort_msg: a passing
 * ck_assert writes its line to Check's pipe, and millions of them took
 * seconds of system time. */
#include <check.h>
#include <glib.h>
#include <math.h>
#include <stdlib.h>

#include "backends/common/relu_relax.h"

/* Uniform in [lo, hi), from one seeded generator: every run draws the
 * same neurons. */
static GRand *rng;
static double uniform(double lo, double hi) {
  return g_rand_double_range(rng, lo, hi);
}

/* One random neuron: an unstable interval most of the time, else a stable
 * one (either side, 0 included as an end); coefficients of either sign,
 * q = 0 in a fifth of the draws. */
typedef struct {
  float l, u, a, q, alpha;
} Case;

static Case draw(void) {
  Case c;
  double kind = uniform(0, 1);
  if (kind < 0.7) {
    c.l = (float)uniform(-5, -0.01);
    c.u = (float)uniform(0.01, 5);
  } else if (kind < 0.85) {
    c.l = kind < 0.78 ? 0.0f : (float)uniform(0, 2);
    c.u = c.l + (float)uniform(0.01, 3);
  } else {
    c.u = kind < 0.93 ? 0.0f : (float)uniform(-2, 0);
    c.l = c.u - (float)uniform(0.01, 3);
  }
  c.a = (float)uniform(-3, 3);
  c.q = uniform(0, 1) < 0.2 ? 0.0f : (float)uniform(-3, 3);
  c.alpha = (float)uniform(0, 1);
  return c;
}

/* g at x with indicator z, in double. */
static double g_at(const Case *c, double x, int z) {
  return c->a * (x > 0 ? x : 0) + c->q * z;
}

START_TEST(test_indicator_relaxation_with_q_zero_is_the_plain_one) {
  for (int k = 0; k < 200000; k++) {
    Case c = draw();
    for (int side = 0; side < 2; side++)
      for (int has_alpha = 0; has_alpha < 2; has_alpha++) {
        SbReluBackTerm plain = sb_relu_relax_backward(
            side, c.a, c.l, c.u, has_alpha ? &c.alpha : NULL);
        SbReluBackTerm ind = sb_relu_indicator_backward(
            side, c.a, 0.0f, c.l, c.u, has_alpha, c.alpha);
        if (ind.coef != plain.coef || ind.bias != plain.bias)
          ck_abort_msg("l %g u %g a %g alpha %g side %d: (%a, %a), plain (%a, "
                       "%a)",
                       c.l, c.u, c.a, c.alpha, side, ind.coef, ind.bias,
                       plain.coef, plain.bias);
      }
  }
}
END_TEST

/* Sound on a grid of the interval (its ends and 0 among the points) with
 * every indicator the point allows, and tight: on an unstable neuron the
 * line meets the envelope at one of P1, P0, P2 at least; on a stable one
 * it is g itself. */
START_TEST(test_indicator_relaxation_bounds_g_and_is_tight) {
  for (int k = 0; k < 20000; k++) {
    Case c = draw();
    for (int side = 0; side < 2; side++) {
      SbReluBackTerm t =
          sb_relu_indicator_backward(side, c.a, c.q, c.l, c.u, 1, c.alpha);
      double scale = 1 + fabs(c.a) * fmax(fabs(c.l), fabs(c.u)) + fabs(c.q);
      double tol = 1e-5 * scale, closest = INFINITY, farthest = 0;
      for (int i = -1; i <= 64; i++) {
        double x = i < 0 ? 0.0 : c.l + (c.u - c.l) * i / 64.0;
        if (x < c.l || x > c.u)
          continue;
        for (int z = 0; z <= 1; z++) {
          if ((x > 0 && !z) || (x < 0 && z))
            continue;
          /* A stable neuron's fixed indicator (see relu_relax.h). */
          if ((c.l >= 0 && !z) || (c.u <= 0 && z))
            continue;
          double gap = side ? g_at(&c, x, z) - (t.coef * x + t.bias)
                            : (t.coef * x + t.bias) - g_at(&c, x, z);
          if (!(gap >= -tol))
            ck_abort_msg("side %d, l %g u %g a %g q %g alpha %g: the line "
                         "%g x + %g misses g at x %g, z %d by %g",
                         side, c.l, c.u, c.a, c.q, c.alpha, t.coef, t.bias, x,
                         z, -gap);
          closest = fmin(closest, gap);
          farthest = fmax(farthest, gap);
        }
      }
      int stable = c.l >= 0 || c.u <= 0;
      if (stable && !(farthest <= tol))
        ck_abort_msg("side %d, l %g u %g a %g q %g: a stable neuron's line "
                     "%g x + %g is %g away from g somewhere",
                     side, c.l, c.u, c.a, c.q, t.coef, t.bias, farthest);
      if (!(closest <= tol))
        ck_abort_msg("side %d, l %g u %g a %g q %g alpha %g: the line %g x + "
                     "%g is %g away from g everywhere",
                     side, c.l, c.u, c.a, c.q, c.alpha, t.coef, t.bias,
                     closest);
    }
  }
}
END_TEST

/* The loss gn * coef + gb * bias as a function of one input. */
static double loss(const Case *c, int side, float gn, float gb) {
  SbReluBackTerm t =
      sb_relu_indicator_backward(side, c->a, c->q, c->l, c->u, 1, c->alpha);
  return (double)gn * t.coef + (double)gb * t.bias;
}

/* Central differences in a, q and alpha against the VJP, where a step of
 * h either way keeps the case (q's sign, chord or not): the function is
 * linear in each there, so the differences are exact but for rounding. */
START_TEST(test_indicator_relaxation_vjp_is_its_derivative) {
  int checked = 0;
  for (int k = 0; k < 20000; k++) {
    Case c = draw();
    float gn = (float)uniform(-2, 2), gb = (float)uniform(-2, 2);
    const float h = 1e-2f;
    for (int side = 0; side < 2; side++) {
      float ga, gq, gal;
      sb_relu_indicator_backward_vjp(side, c.a, c.q, c.l, c.u, 1, c.alpha, gn,
                                     gb, &ga, &gq, &gal);
      float *inputs[3] = {&c.a, &c.q, &c.alpha};
      float grads[3] = {ga, gq, gal};
      for (int v = 0; v < 3; v++) {
        float keep = *inputs[v];
        if (v == 2 && (keep < h || keep > 1 - h))
          continue;
        /* The case on either side must be the point's own. */
        SbReluLines r = sb_relu_lines(c.l, c.u);
        float d = side ? 1.0f : -1.0f;
        int cases[3];
        for (int e = -1; e <= 1; e++) {
          *inputs[v] = keep + e * h;
          SbReluIndicatorLine line = sb_relu_indicator_lower_line(
              d * c.a, d * c.q, c.l, c.u, r, c.alpha);
          cases[e + 1] = line.on_chord * 3 + (c.q > 0) - (c.q < 0);
        }
        *inputs[v] = keep + h;
        double up = loss(&c, side, gn, gb);
        *inputs[v] = keep - h;
        double down = loss(&c, side, gn, gb);
        *inputs[v] = keep;
        if (cases[0] != cases[1] || cases[2] != cases[1])
          continue;
        double diff = (up - down) / (2.0 * h);
        double scale = 1 + fabs(diff) + fabs(grads[v]);
        if (!(fabs(diff - grads[v]) <= 2e-3 * scale))
          ck_abort_msg("side %d, input %d, l %g u %g a %g q %g alpha %g: VJP "
                       "%g, differences %g",
                       side, v, c.l, c.u, c.a, c.q, c.alpha, grads[v], diff);
        checked++;
      }
    }
  }
  ck_assert_int_gt(checked, 50000);
}
END_TEST

int main(void) {
  rng = g_rand_new_with_seed(2026);
  Suite *s = suite_create("relu-relax");
  TCase *tc = tcase_create("indicator");
  tcase_add_test(tc, test_indicator_relaxation_with_q_zero_is_the_plain_one);
  tcase_add_test(tc, test_indicator_relaxation_bounds_g_and_is_tight);
  tcase_add_test(tc, test_indicator_relaxation_vjp_is_its_derivative);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  g_rand_free(rng);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
