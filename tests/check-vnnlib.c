/* SPDX-License-Identifier: MIT */
/* Tests of the VNNLIB parser: real VNN-COMP properties against the goldens,
 * small inline properties, broken input and sb_region_proven. */
#include <check.h>
#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#endif
#include <glib/gstdio.h>

#include "hosts/engine/heap_prefault.h"
#include "hosts/engine/vnnlib.h"

static char *data_path(const char *sub) {
  const char *dir = g_getenv("SHARDBOUND_TEST_DATA");
  const char *srcdir = g_getenv("srcdir");

  if (dir != NULL)
    return g_build_filename(dir, sub, NULL);
  return g_build_filename(srcdir != NULL ? srcdir : ".", "tests", "data", sub,
                          NULL);
}

/* Reads the numbers of a JSON array (flat or of rows) under key, without a
 * JSON library: the goldens are machine-written and this scan is enough. */
static GArray *golden_numbers(const char *json, const char *key, int *n_rows) {
  char *quoted = g_strdup_printf("\"%s\"", key);
  const char *s = strstr(json, quoted);
  GArray *out = g_array_new(FALSE, FALSE, sizeof(double));
  int depth = 0;

  ck_assert_msg(s != NULL, "golden has no %s", key);
  s = strchr(s + strlen(quoted), '[');
  ck_assert_ptr_nonnull(s);
  *n_rows = 0;
  do {
    if (*s == '[') {
      depth++;
      s++;
    } else if (*s == ']') {
      depth--;
      if (depth == 1)
        (*n_rows)++;
      s++;
    } else if (*s == '-' || g_ascii_isdigit(*s)) {
      char *end;
      double v = g_ascii_strtod(s, &end);
      ck_assert_ptr_ne(end, s);
      g_array_append_val(out, v);
      s = end;
    } else {
      ck_assert_int_ne(*s, '\0');
      s++;
    }
  } while (depth > 0);
  g_free(quoted);
  return out;
}

/* The bound of X_var as written in the file, found by text search so the
 * check does not depend on the parser under test. */
static double file_bound(const char *text, const char *op, int var) {
  char *needle = g_strdup_printf("(%s X_%d ", op, var);
  const char *s = strstr(text, needle);
  double v;

  ck_assert_msg(s != NULL, "no %s in the file", needle);
  v = g_ascii_strtod(s + strlen(needle), NULL);
  g_free(needle);
  return v;
}

static void check_against_golden(const char *vnnlib, const char *golden,
                                 int n_inputs) {
  char *vpath = data_path(vnnlib);
  char *gsub = g_build_filename("goldens", golden, NULL);
  char *gpath = data_path(gsub);
  char *json = NULL, *text = NULL;
  GError *error = NULL;
  g_autoptr(SbProperty) prop = sb_vnnlib_load(vpath, &error);
  GArray *rows, *rhs;
  int n_rows, n_rhs_rows;
  const SbRegion *r;
  int probe[] = {0, 1, n_inputs / 2, n_inputs - 1};

  ck_assert_msg(prop != NULL, "%s", error ? error->message : "");
  ck_assert(g_file_get_contents(gpath, &json, NULL, NULL));
  ck_assert(g_file_get_contents(vpath, &text, NULL, NULL));
  rows = golden_numbers(json, "spec_rows", &n_rows);
  rhs = golden_numbers(json, "spec_rhs", &n_rhs_rows);

  ck_assert_int_eq(prop->n_inputs, n_inputs);
  ck_assert_int_eq(prop->n_outputs, 10);
  ck_assert_int_eq(prop->n_atoms, n_rows);
  ck_assert_int_eq(prop->n_atoms, (int)rhs->len);
  ck_assert_int_eq((int)rows->len, n_rows * prop->n_outputs);
  for (int a = 0; a < prop->n_atoms; a++) {
    for (int j = 0; j < prop->n_outputs; j++)
      ck_assert_double_eq(prop->atoms[a].c[j],
                          g_array_index(rows, double, a * prop->n_outputs + j));
    ck_assert_double_eq(prop->atoms[a].d, g_array_index(rhs, double, a));
  }

  ck_assert_int_eq(prop->n_regions, 1);
  r = &prop->regions[0];
  ck_assert_int_eq(r->n_disjuncts, n_rows);
  for (int k = 0; k < r->n_disjuncts; k++) {
    ck_assert_int_eq(r->disjunct_start[k + 1] - r->disjunct_start[k], 1);
    ck_assert_int_eq(r->atom_index[r->disjunct_start[k]], k);
  }
  for (guint i = 0; i < G_N_ELEMENTS(probe); i++) {
    int v = probe[i];
    ck_assert_double_eq(r->x_lower[v], file_bound(text, ">=", v));
    ck_assert_double_eq(r->x_upper[v], file_bound(text, "<=", v));
  }
  for (int v = 0; v < n_inputs; v++)
    ck_assert(r->x_lower[v] <= r->x_upper[v]);

  g_array_free(rows, TRUE);
  g_array_free(rhs, TRUE);
  g_free(json);
  g_free(text);
  g_free(vpath);
  g_free(gsub);
  g_free(gpath);
}

START_TEST(test_mnist_property_matches_golden) {
  check_against_golden("vnnlib/prop_0_0.03.vnnlib",
                       "mnist-256x2_prop_0_0.03.json", 784);
}
END_TEST

START_TEST(test_bn_resnet_property_matches_golden) {
  check_against_golden("vnnlib/bn_resnet_prop.vnnlib", "bn_resnet.json", 3072);
}
END_TEST

START_TEST(test_oval21_property_matches_golden) {
  check_against_golden(
      "vnnlib/cifar_base_kw-img2578-eps0.021176470588235297.vnnlib",
      "oval21_base_cifar_base_kw-img2578-eps0.021176470588235297.json", 3072);
}
END_TEST

/* ------------------------------------------------------ inline properties */

#define DECLS                                                                  \
  "(declare-const X_0 Real)\n(declare-const X_1 Real)\n"                       \
  "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"                       \
  "(declare-const Y_2 Real)\n"
#define BOX                                                                    \
  "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n"                             \
  "(assert (>= X_1 -1.0))\n(assert (<= X_1 2.0))\n"

static SbProperty *parse_ok(const char *text) {
  GError *error = NULL;
  SbProperty *prop = sb_vnnlib_parse(text, strlen(text), &error);
  ck_assert_msg(prop != NULL, "%s", error ? error->message : "");
  ck_assert_ptr_null(error);
  return prop;
}

/* Atom a is sum_j c[j] y_j <= d with c given for Y_0..Y_2. */
static void assert_atom(const SbProperty *prop, int a, double c0, double c1,
                        double c2, double d) {
  ck_assert_int_lt(a, prop->n_atoms);
  ck_assert_double_eq(prop->atoms[a].c[0], c0);
  ck_assert_double_eq(prop->atoms[a].c[1], c1);
  ck_assert_double_eq(prop->atoms[a].c[2], c2);
  ck_assert_double_eq(prop->atoms[a].d, d);
}

/* Disjunct k of region r holds exactly the atoms in want (length n). */
static void assert_disjunct(const SbProperty *prop, int r, int k,
                            const int *want, int n) {
  const SbRegion *reg = &prop->regions[r];
  ck_assert_int_lt(k, reg->n_disjuncts);
  ck_assert_int_eq(reg->disjunct_start[k + 1] - reg->disjunct_start[k], n);
  for (int i = 0; i < n; i++)
    ck_assert_int_eq(reg->atom_index[reg->disjunct_start[k] + i], want[i]);
}

START_TEST(test_conjunction_is_one_disjunct) {
  g_autoptr(SbProperty) prop =
      parse_ok(DECLS BOX "(assert (and (<= Y_0 Y_1) (>= Y_2 0.5)))\n");
  const int want[] = {0, 1};

  ck_assert_int_eq(prop->n_inputs, 2);
  ck_assert_int_eq(prop->n_outputs, 3);
  ck_assert_int_eq(prop->n_regions, 1);
  ck_assert_int_eq(prop->regions[0].n_disjuncts, 1);
  assert_disjunct(prop, 0, 0, want, 2);
  assert_atom(prop, 0, 1, -1, 0, 0);
  assert_atom(prop, 1, 0, 0, -1, -0.5);
  ck_assert_double_eq(prop->regions[0].x_lower[0], 0.0);
  ck_assert_double_eq(prop->regions[0].x_upper[0], 1.0);
  ck_assert_double_eq(prop->regions[0].x_lower[1], -1.0);
  ck_assert_double_eq(prop->regions[0].x_upper[1], 2.0);
}
END_TEST

START_TEST(test_nested_and_or_expands_to_dnf) {
  /* (A and (B or C)) or D  ==  (A B) | (A C) | D */
  g_autoptr(SbProperty) prop = parse_ok(
      DECLS BOX "(assert (or (and (<= Y_0 1) (or (<= Y_1 2) (<= Y_2 3)))\n"
                "            (>= Y_0 Y_2)))\n");
  const int ab[] = {0, 1}, ac[] = {0, 2}, d[] = {3};

  ck_assert_int_eq(prop->n_regions, 1);
  ck_assert_int_eq(prop->n_atoms, 4);
  ck_assert_int_eq(prop->regions[0].n_disjuncts, 3);
  assert_disjunct(prop, 0, 0, ab, 2);
  assert_disjunct(prop, 0, 1, ac, 2);
  assert_disjunct(prop, 0, 2, d, 1);
  assert_atom(prop, 3, -1, 0, 1, 0);
}
END_TEST

START_TEST(test_asserts_are_conjoined) {
  /* (A | B) & (C | D) & E: four disjuncts, E in each, atoms in file order. */
  g_autoptr(SbProperty) prop =
      parse_ok(DECLS BOX "(assert (or (<= Y_0 1) (<= Y_0 2)))\n"
                         "(assert (<= Y_2 9))\n"
                         "(assert (or (<= Y_1 3) (<= Y_1 4)))\n");
  const int ac[] = {0, 2, 3}, ad[] = {0, 2, 4}, bc[] = {1, 2, 3},
            bd[] = {1, 2, 4};

  ck_assert_int_eq(prop->n_atoms, 5);
  ck_assert_int_eq(prop->regions[0].n_disjuncts, 4);
  assert_disjunct(prop, 0, 0, ac, 3);
  assert_disjunct(prop, 0, 1, ad, 3);
  assert_disjunct(prop, 0, 2, bc, 3);
  assert_disjunct(prop, 0, 3, bd, 3);
  assert_atom(prop, 2, 0, 0, 1, 9);
}
END_TEST

START_TEST(test_disjunction_over_input_boxes_gives_regions) {
  g_autoptr(SbProperty) prop =
      parse_ok(DECLS "(assert (<= X_1 5))\n(assert (>= X_1 4))\n"
                     "(assert (or\n"
                     "  (and (>= X_0 0) (<= X_0 1) (<= Y_0 0))\n"
                     "  (and (>= X_0 2) (<= X_0 3) (<= Y_1 0))\n"
                     "  (and (<= X_0 1) (>= X_0 0) (<= Y_2 0))))\n");
  const int a0[] = {0}, a1[] = {1}, a2[] = {2};

  ck_assert_int_eq(prop->n_regions, 2);
  ck_assert_int_eq(prop->regions[0].n_disjuncts, 2);
  assert_disjunct(prop, 0, 0, a0, 1);
  assert_disjunct(prop, 0, 1, a2, 1);
  ck_assert_double_eq(prop->regions[0].x_lower[0], 0);
  ck_assert_double_eq(prop->regions[0].x_upper[0], 1);
  ck_assert_double_eq(prop->regions[0].x_lower[1], 4);
  ck_assert_double_eq(prop->regions[0].x_upper[1], 5);
  ck_assert_int_eq(prop->regions[1].n_disjuncts, 1);
  assert_disjunct(prop, 1, 0, a1, 1);
  ck_assert_double_eq(prop->regions[1].x_lower[0], 2);
  ck_assert_double_eq(prop->regions[1].x_upper[0], 3);
  ck_assert_double_eq(prop->regions[1].x_lower[1], 4);
  ck_assert_double_eq(prop->regions[1].x_upper[1], 5);
}
END_TEST

START_TEST(test_output_constant_atoms_in_both_operand_orders) {
  /* (>= 3 Y_1) is (<= Y_1 3) and (<= 3 Y_1) is (>= Y_1 3): deduplicated. */
  g_autoptr(SbProperty) prop = parse_ok(
      DECLS BOX "(assert (or (<= Y_1 3) (>= Y_1 3) (<= 3 Y_1) (>= 3 Y_1)))\n");
  const int a0[] = {0}, a1[] = {1};

  ck_assert_int_eq(prop->n_atoms, 2);
  assert_atom(prop, 0, 0, 1, 0, 3);
  assert_atom(prop, 1, 0, -1, 0, -3);
  ck_assert_int_eq(prop->regions[0].n_disjuncts, 2);
  assert_disjunct(prop, 0, 0, a0, 1);
  assert_disjunct(prop, 0, 1, a1, 1);
}
END_TEST

START_TEST(test_input_bounds_in_both_operand_orders_and_strict) {
  g_autoptr(SbProperty) prop =
      parse_ok(DECLS "(assert (>= 1.5 X_0))\n(assert (<= -0.5 X_0))\n"
                     "(assert (< X_1 2))\n(assert (> X_1 1))\n"
                     "(assert (< Y_0 Y_1))\n");

  ck_assert_double_eq(prop->regions[0].x_lower[0], -0.5);
  ck_assert_double_eq(prop->regions[0].x_upper[0], 1.5);
  ck_assert_double_eq(prop->regions[0].x_lower[1], 1);
  ck_assert_double_eq(prop->regions[0].x_upper[1], 2);
  assert_atom(prop, 0, 1, -1, 0, 0);
}
END_TEST

/* A bound written as one comparison of X_i with a number takes the
 * parser's short path (input_bound_literal); inside (and ...) the same
 * comparison takes the general one. Both give the same box, to the bit
 * (the sign of a zero included), for every operator and operand order. */
START_TEST(test_one_line_input_bounds_match_the_general_path) {
  static const char *const lower[] = {"(>= X_0 %s)", "(> X_0 %s)",
                                      "(<= %s X_0)", "(< %s X_0)"};
  static const char *const upper[] = {"(<= X_0 %s)", "(< X_0 %s)",
                                      "(>= %s X_0)", "(> %s X_0)"};
  static const char *const values[][2] = {
      {"-1", "0"}, {"0", "1"}, {"-0.0", "0.3"}, {"-2.5e-3", "7"}};
  for (int form = 0; form < 4; form++)
    for (int v = 0; v < 4; v++) {
      g_autofree char *lo = g_strdup_printf(lower[form], values[v][0]);
      g_autofree char *hi = g_strdup_printf(upper[form], values[v][1]);
      g_autofree char *one_line =
          g_strdup_printf(DECLS "(assert %s)\n(assert %s)\n"
                                "(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
                                "(assert (<= Y_0 Y_1))\n",
                          lo, hi);
      g_autofree char *general =
          g_strdup_printf(DECLS "(assert (and %s))\n(assert (and %s))\n"
                                "(assert (>= X_1 0))\n(assert (<= X_1 1))\n"
                                "(assert (<= Y_0 Y_1))\n",
                          lo, hi);
      g_autoptr(SbProperty) a = parse_ok(one_line);
      g_autoptr(SbProperty) b = parse_ok(general);
      ck_assert_int_eq(a->n_regions, 1);
      ck_assert_int_eq(b->n_regions, 1);
      ck_assert_msg(memcmp(a->regions[0].x_lower, b->regions[0].x_lower,
                           2 * sizeof(double)) == 0 &&
                        memcmp(a->regions[0].x_upper, b->regions[0].x_upper,
                               2 * sizeof(double)) == 0,
                    "%s and %s: [%g, %g] one line, [%g, %g] general", lo, hi,
                    a->regions[0].x_lower[0], a->regions[0].x_upper[0],
                    b->regions[0].x_lower[0], b->regions[0].x_upper[0]);
    }
}
END_TEST

START_TEST(test_repeated_bounds_intersect) {
  g_autoptr(SbProperty) prop =
      parse_ok(DECLS BOX "(assert (<= X_0 0.25))\n(assert (>= X_0 -7))\n"
                         "(assert (<= Y_0 0))\n");

  ck_assert_double_eq(prop->regions[0].x_lower[0], 0.0);
  ck_assert_double_eq(prop->regions[0].x_upper[0], 0.25);
}
END_TEST

START_TEST(test_comments_everywhere) {
  g_autoptr(SbProperty) prop =
      parse_ok("; header\n(declare-const ; name next\n X_0 Real);trailing\n"
               "(declare-const Y_0 Real)(declare-const Y_1 Real)"
               "(declare-const Y_2 Real)\n"
               "(assert ; inside\n (<= X_0 ; between operands\n 1))\n"
               "(assert (>= X_0 0));;;\n"
               "(assert (or ; first\n (<= Y_0 1) ; second\n (<= Y_1 2)))\n"
               "; last line without newline");

  ck_assert_int_eq(prop->n_inputs, 1);
  ck_assert_int_eq(prop->n_atoms, 2);
  ck_assert_double_eq(prop->regions[0].x_upper[0], 1);
}
END_TEST

START_TEST(test_declarations_in_any_order) {
  g_autoptr(SbProperty) prop =
      parse_ok("(declare-const Y_1 Real)\n(declare-const X_1 Real)\n"
               "(declare-const Y_0 Real)\n(declare-fun X_0 () Real)\n"
               "(set-logic QF_LRA)\n"
               "(assert (and (>= X_0 0) (<= X_0 1) (>= X_1 2) (<= X_1 3)))\n"
               "(assert (>= Y_1 Y_0))\n(check-sat)\n");

  ck_assert_int_eq(prop->n_inputs, 2);
  ck_assert_int_eq(prop->n_outputs, 2);
  ck_assert_double_eq(prop->regions[0].x_lower[1], 2);
  ck_assert_double_eq(prop->atoms[0].c[0], 1);
  ck_assert_double_eq(prop->atoms[0].c[1], -1);
}
END_TEST

START_TEST(test_scientific_notation_and_signs) {
  g_autoptr(SbProperty) prop =
      parse_ok(DECLS "(assert (<= X_0 1e-3))\n(assert (>= X_0 -2.5E+2))\n"
                     "(assert (<= X_1 +3.0e0))\n(assert (>= X_1 -.5))\n"
                     "(assert (<= Y_0 1.25E-1))\n");

  ck_assert_double_eq(prop->regions[0].x_upper[0], 1e-3);
  ck_assert_double_eq(prop->regions[0].x_lower[0], -250.0);
  ck_assert_double_eq(prop->regions[0].x_upper[1], 3.0);
  ck_assert_double_eq(prop->regions[0].x_lower[1], -0.5);
  assert_atom(prop, 0, 1, 0, 0, 0.125);
}
END_TEST

START_TEST(test_linear_output_terms) {
  /* Y_0 + 2 Y_1 <= -1  and  (Y_2 - Y_0)/2 >= 1  i.e.  Y_0 - Y_2 <= -2 ... /2 */
  g_autoptr(SbProperty) prop =
      parse_ok(DECLS BOX "(assert (and (<= (+ Y_0 (* 2.0 Y_1)) (- 1))\n"
                         "             (>= (/ (- Y_2 Y_0) 2) 1)\n"
                         "             (<= (* Y_1 3) (- Y_2 Y_2 -4))))\n");

  ck_assert_int_eq(prop->n_atoms, 3);
  assert_atom(prop, 0, 1, 2, 0, -1);
  assert_atom(prop, 1, 0.5, 0, -0.5, -1);
  assert_atom(prop, 2, 0, 3, 0, 4);
}
END_TEST

START_TEST(test_empty_disjunct_for_unconstrained_box) {
  /* The second box has no output atom: all outputs are unsafe there. */
  g_autoptr(SbProperty) prop =
      parse_ok(DECLS "(assert (and (<= X_1 1) (>= X_1 0)))\n"
                     "(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 0))\n"
                     "            (and (>= X_0 2) (<= X_0 3))))\n");
  double lower[1] = {100.0};

  ck_assert_int_eq(prop->n_regions, 2);
  ck_assert_int_eq(prop->regions[1].n_disjuncts, 1);
  assert_disjunct(prop, 1, 0, NULL, 0);
  ck_assert(sb_region_proven(prop, 0, lower));
  ck_assert(!sb_region_proven(prop, 1, lower));
}
END_TEST

START_TEST(test_big_property_parses_and_repeated_parse_is_stable) {
  char *path =
      data_path("vnnlib/cifar_base_kw-img2578-eps0.021176470588235297.vnnlib");
  char *text = NULL;
  gsize length = 0;

  ck_assert(g_file_get_contents(path, &text, &length, NULL));
  for (int i = 0; i < 20; i++) {
    GError *error = NULL;
    SbProperty *prop = sb_vnnlib_parse(text, length, &error);
    ck_assert_msg(prop != NULL, "%s", error ? error->message : "");
    ck_assert_int_eq(prop->n_inputs, 3072);
    sb_property_free(prop);
  }
  g_free(text);
  g_free(path);
}
END_TEST

/* ---------------------------------------------------------- bad input */

typedef struct {
  const char *name;
  const char *text;
  SbVnnlibError code;
  const char *needle1;
  const char *needle2;
} BadCase;

static const BadCase bad_cases[] = {
    {"unbalanced close", DECLS "(assert (<= Y_0 1)))\n", SB_VNNLIB_ERROR_SYNTAX,
     "line 6, column 20", "unmatched ')'"},
    {"unbalanced open", DECLS BOX "(assert (or (<= Y_0 1)\n",
     SB_VNNLIB_ERROR_SYNTAX, "line 11, column 1", "line 10, column 9"},
    {"truncated", DECLS BOX "(assert (<= Y_0 ", SB_VNNLIB_ERROR_SYNTAX,
     "never closed", "line 10"},
    {"undeclared variable", DECLS BOX "(assert (<= Y_7 1))\n",
     SB_VNNLIB_ERROR_INVALID, "'Y_7'", "line 10, column 13"},
    {"use before declaration",
     "(declare-const Y_0 Real)\n(assert (<= X_0 1))\n"
     "(declare-const X_0 Real)\n",
     SB_VNNLIB_ERROR_INVALID, "undeclared variable 'X_0'", "line 2"},
    {"missing upper bound",
     DECLS "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n"
           "(assert (<= Y_0 1))\n",
     SB_VNNLIB_ERROR_INVALID, "X_1 has no upper bound", NULL},
    {"missing lower bound",
     DECLS "(assert (<= X_0 1))\n(assert (<= X_1 1))\n(assert (>= X_1 0))\n"
           "(assert (<= Y_0 1))\n",
     SB_VNNLIB_ERROR_INVALID, "X_0 has no lower bound", NULL},
    {"missing bound in one box",
     DECLS "(assert (and (<= X_1 1) (>= X_1 0)))\n"
           "(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 0))\n"
           "            (and (>= X_0 2) (<= Y_1 0))))\n",
     SB_VNNLIB_ERROR_INVALID, "X_0 has no upper bound", NULL},
    {"lower above upper",
     DECLS BOX "(assert (>= X_1 3))\n(assert (<= Y_0 1))\n",
     SB_VNNLIB_ERROR_INVALID, "X_1 has lower bound 3", "upper bound 2"},
    {"unknown operator", DECLS BOX "(assert (=> (<= Y_0 1) (<= Y_1 1)))\n",
     SB_VNNLIB_ERROR_UNSUPPORTED, "'=>'", "line 10, column 10"},
    {"negation", DECLS BOX "(assert (not (<= Y_0 1)))\n",
     SB_VNNLIB_ERROR_UNSUPPORTED, "'not'", "line 10"},
    {"unknown command", DECLS BOX "(push 1)\n", SB_VNNLIB_ERROR_UNSUPPORTED,
     "unknown command 'push'", "line 10, column 2"},
    {"garbage number", DECLS BOX "(assert (<= Y_0 0.5abc))\n",
     SB_VNNLIB_ERROR_SYNTAX, "malformed number '0.5abc'", "line 10, column 17"},
    {"garbage at top level", DECLS "hello\n" BOX, SB_VNNLIB_ERROR_SYNTAX,
     "found 'hello'", "line 6, column 1"},
    {"garbage operand", DECLS BOX "(assert (<= Y_0 @#!))\n",
     SB_VNNLIB_ERROR_INVALID, "'@#!'", "line 10, column 17"},
    {"infinity is no number", DECLS BOX "(assert (<= Y_0 1e999))\n",
     SB_VNNLIB_ERROR_SYNTAX, "malformed number '1e999'", NULL},
    {"empty file", "", SB_VNNLIB_ERROR_INVALID, "no output variables", NULL},
    {"comments only", "; nothing\n;here", SB_VNNLIB_ERROR_INVALID,
     "no output variables", NULL},
    {"no inputs", "(declare-const Y_0 Real)\n(assert (<= Y_0 1))\n",
     SB_VNNLIB_ERROR_INVALID, "no input variables", NULL},
    {"no output constraint", DECLS BOX, SB_VNNLIB_ERROR_INVALID,
     "no assertion constrains the outputs", NULL},
    {"gap in indices",
     "(declare-const X_0 Real)\n(declare-const X_2 Real)\n"
     "(declare-const Y_0 Real)\n",
     SB_VNNLIB_ERROR_INVALID, "X_1 is not", NULL},
    {"declared twice", DECLS "(declare-const Y_1 Real)\n",
     SB_VNNLIB_ERROR_INVALID, "Y_1 is declared twice", "line 6"},
    {"bad variable name", "(declare-const foo Real)\n",
     SB_VNNLIB_ERROR_UNSUPPORTED, "'foo'", "line 1, column 16"},
    {"bad sort", "(declare-const X_0 Int)\n", SB_VNNLIB_ERROR_UNSUPPORTED,
     "X_0 has sort 'Int'", NULL},
    {"mixed input and output", DECLS BOX "(assert (<= X_0 Y_0))\n",
     SB_VNNLIB_ERROR_UNSUPPORTED, "mixes inputs", "line 10, column 9"},
    {"input linear constraint", DECLS BOX "(assert (<= (+ X_0 X_1) 1))\n",
     SB_VNNLIB_ERROR_UNSUPPORTED, "several inputs (X_0, X_1", NULL},
    {"nonlinear", DECLS BOX "(assert (<= (* Y_0 Y_1) 1))\n",
     SB_VNNLIB_ERROR_UNSUPPORTED, "not linear", NULL},
    {"constants only", DECLS BOX "(assert (<= 1 2))\n",
     SB_VNNLIB_ERROR_UNSUPPORTED, "no variable", NULL},
    {"assert arity", DECLS BOX "(assert (<= Y_0 1) (<= Y_1 1))\n",
     SB_VNNLIB_ERROR_SYNTAX, "assert takes one formula", NULL},
    {"comparison arity", DECLS BOX "(assert (<= Y_0))\n",
     SB_VNNLIB_ERROR_SYNTAX, "at least 2 arguments", NULL},
    {"bare variable as formula", DECLS BOX "(assert Y_0)\n",
     SB_VNNLIB_ERROR_SYNTAX, "found 'Y_0'", NULL},
    {"empty or", DECLS BOX "(assert (or))\n", SB_VNNLIB_ERROR_SYNTAX,
     "'or' needs at least one argument", NULL},
    {"nul byte", DECLS BOX "(assert (<= Y_0 1))\n", SB_VNNLIB_ERROR_SYNTAX,
     "line 10, column 17", "invalid character '\\x00'"},
};

START_TEST(test_bad_input_reports_code_and_position) {
  const BadCase *bc = &bad_cases[_i];
  GError *error = NULL;
  char *text = g_strdup(bc->text);
  gsize length = strlen(text);
  SbProperty *prop;

  if (strcmp(bc->name, "nul byte") == 0) {
    /* A NUL inside a token: line 10 "(assert (<= Y_0 1))", the '1'. */
    char *one = strrchr(text, '1');
    *one = '\0';
  }
  prop = sb_vnnlib_parse(text, length, &error);
  ck_assert_msg(prop == NULL, "case '%s' parsed", bc->name);
  ck_assert_msg(error != NULL, "case '%s': no error", bc->name);
  ck_assert_msg(error->domain == SB_VNNLIB_ERROR, "case '%s'", bc->name);
  ck_assert_msg(error->code == (int)bc->code,
                "case '%s': code %d, want %d (%s)", bc->name, error->code,
                bc->code, error->message);
  ck_assert_msg(strstr(error->message, bc->needle1) != NULL,
                "case '%s': '%s' lacks '%s'", bc->name, error->message,
                bc->needle1);
  ck_assert_msg(
      bc->needle2 == NULL || strstr(error->message, bc->needle2) != NULL,
      "case '%s': '%s' lacks '%s'", bc->name, error->message, bc->needle2);
  g_error_free(error);
  g_free(text);
}
END_TEST

START_TEST(test_dnf_blowup_is_refused) {
  GString *s = g_string_new(DECLS BOX);
  GError *error = NULL;
  SbProperty *prop;

  /* 2^17 = 131072 terms, past the 100000 limit. */
  for (int i = 0; i < 17; i++)
    g_string_append_printf(s, "(assert (or (<= Y_0 %d) (<= Y_1 %d)))\n", i, i);
  prop = sb_vnnlib_parse(s->str, s->len, &error);
  ck_assert_ptr_null(prop);
  ck_assert_ptr_nonnull(error);
  ck_assert_int_eq(error->code, SB_VNNLIB_ERROR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(error->message, "100000"));
  g_error_free(error);
  g_string_free(s, TRUE);
}
END_TEST

/* A million disjuncts (a 20 MB file, generated here): refused with the
 * size limit's message after reading, never an out-of-memory kill. */
START_TEST(test_million_disjuncts_are_refused) {
  GString *s = g_string_new(DECLS BOX "(assert (or\n");
  GError *error = NULL;
  SbProperty *prop;

  for (int i = 0; i < 1000000; i++)
    g_string_append(s, "(and (<= Y_0 Y_1))\n");
  g_string_append(s, "))\n");
  prop = sb_vnnlib_parse(s->str, s->len, &error);
  ck_assert_ptr_null(prop);
  ck_assert_ptr_nonnull(error);
  ck_assert_int_eq(error->code, SB_VNNLIB_ERROR_UNSUPPORTED);
  ck_assert_msg(strstr(error->message, "100000 disjuncts") != NULL, "%s",
                error->message);
  g_error_free(error);
  g_string_free(s, TRUE);
}
END_TEST

/* The box table counts against SHARDBOUND_MAX_BYTES (limits.h). */
START_TEST(test_max_bytes_setting_limits_input_boxes) {
  const char *text = DECLS BOX "(assert (<= Y_0 Y_1))\n";
  GError *error = NULL;
  SbProperty *prop;

  g_setenv("SHARDBOUND_MAX_BYTES", "16", TRUE);
  prop = sb_vnnlib_parse(text, strlen(text), &error);
  g_unsetenv("SHARDBOUND_MAX_BYTES");
  ck_assert_ptr_null(prop);
  ck_assert_int_eq(error->code, SB_VNNLIB_ERROR_UNSUPPORTED);
  ck_assert_msg(strstr(error->message, "limit of 16 bytes") != NULL, "%s",
                error->message);
  g_clear_error(&error);
  prop = sb_vnnlib_parse(text, strlen(text), &error);
  ck_assert_msg(prop != NULL, "%s", error ? error->message : "");
  sb_property_free(prop);
}
END_TEST

START_TEST(test_deep_nesting_is_refused) {
  GString *s = g_string_new(DECLS BOX "(assert ");
  GError *error = NULL;
  SbProperty *prop;

  for (int i = 0; i < 100000; i++)
    g_string_append(s, "(and ");
  prop = sb_vnnlib_parse(s->str, s->len, &error);
  ck_assert_ptr_null(prop);
  ck_assert_int_eq(error->code, SB_VNNLIB_ERROR_SYNTAX);
  ck_assert_ptr_nonnull(strstr(error->message, "nested deeper"));
  g_error_free(error);
  g_string_free(s, TRUE);
}
END_TEST

START_TEST(test_every_prefix_fails_cleanly_or_parses) {
  const char *last =
      "(assert (or (and (<= Y_0 Y_1) (>= Y_2 1e-2)) (<= Y_1 3)))\n";
  char *text = g_strconcat(DECLS BOX, last, NULL);
  gsize full = strlen(text);

  for (gsize len = 0; len < full; len++) {
    GError *error = NULL;
    SbProperty *prop = sb_vnnlib_parse(text, len, &error);
    /* Exactly one of a result or an error, and no prefix that cuts the
     * output assert (before its final newline) may be accepted. */
    ck_assert((prop == NULL) != (error == NULL));
    if (len + 1 < full)
      ck_assert_msg(prop == NULL, "prefix of %zu bytes parsed", len);
    sb_property_free(prop);
    g_clear_error(&error);
  }
  g_free(text);
}
END_TEST

START_TEST(test_truncated_real_file_is_syntax_error) {
  char *path = data_path("vnnlib/prop_0_0.03.vnnlib");
  char *text = NULL;
  gsize length = 0;
  GError *error = NULL;

  ck_assert(g_file_get_contents(path, &text, &length, NULL));
  ck_assert_ptr_null(sb_vnnlib_parse(text, length - 10, &error));
  ck_assert_int_eq(error->code, SB_VNNLIB_ERROR_SYNTAX);
  ck_assert_ptr_nonnull(strstr(error->message, "never closed"));
  g_error_free(error);
  g_free(text);
  g_free(path);
}
END_TEST

START_TEST(test_load_missing_file_is_io_error) {
  GError *error = NULL;

  ck_assert_ptr_null(sb_vnnlib_load("/nonexistent/prop.vnnlib", &error));
  ck_assert_int_eq(error->code, SB_VNNLIB_ERROR_IO);
  ck_assert_ptr_nonnull(strstr(error->message, "/nonexistent/prop.vnnlib"));
  g_error_free(error);
}
END_TEST

START_TEST(test_load_error_names_the_file) {
  char *path = data_path("vnnlib-bad/unclosed.vnnlib");
  GError *error = NULL;

  ck_assert_ptr_null(sb_vnnlib_load(path, &error));
  ck_assert_int_eq(error->code, SB_VNNLIB_ERROR_SYNTAX);
  ck_assert_ptr_nonnull(strstr(error->message, "unclosed.vnnlib: line"));
  g_error_free(error);
  g_free(path);
}
END_TEST

/* ------------------------------------------------------- region_proven */

START_TEST(test_region_proven_truth_table) {
  /* unsafe <=> A | (B & C), with A: Y_0 <= 1, B: Y_1 <= 2, C: Y_2 <= 3. */
  g_autoptr(SbProperty) prop = parse_ok(
      DECLS BOX "(assert (or (<= Y_0 1) (and (<= Y_1 2) (<= Y_2 3))))\n");
  static const struct {
    double a, b, c;
    gboolean proven;
  } rows[] = {
      {0, 0, 0, FALSE},   /* nothing refuted */
      {2, 0, 0, FALSE},   /* A refuted, B&C not */
      {0, 3, 4, FALSE},   /* B&C refuted, A not */
      {2, 3, 0, TRUE},    /* A and B refuted */
      {2, 0, 4, TRUE},    /* A and C refuted */
      {2, 3, 4, TRUE},    /* all refuted */
      {1, 3, 4, FALSE},   /* lower == d does not refute */
      {NAN, 3, 4, FALSE}, /* an unknown bound refutes nothing */
  };

  ck_assert_int_eq(prop->n_atoms, 3);
  for (guint i = 0; i < G_N_ELEMENTS(rows); i++) {
    double lower[3] = {rows[i].a, rows[i].b, rows[i].c};
    ck_assert_msg(sb_region_proven(prop, 0, lower) == rows[i].proven, "row %u",
                  i);
  }
}
END_TEST

#if defined(__GLIBC__) && defined(MADV_POPULATE_WRITE) &&                      \
    !defined(__SANITIZE_ADDRESS__)
/* The pages wholly inside [p, p + size), and how many of them are
 * resident. */
static size_t whole_pages(const char *p, size_t size) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  return (((uintptr_t)p + size) & ~(page - 1)) / page -
         ((uintptr_t)p + page - 1) / page;
}

static size_t resident_pages(const char *p, size_t size) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t from = ((uintptr_t)p + page - 1) & ~(page - 1);
  size_t n = whole_pages(p, size), count = 0;
  unsigned char *vec = g_malloc(n);
  ck_assert_int_eq(mincore((void *)from, n * page, vec), 0);
  for (size_t i = 0; i < n; i++)
    count += vec[i] & 1;
  g_free(vec);
  return count;
}
#endif

/* The loader maps the heap's free top before parsing (heap_prefault.c): a
 * block cut from a fresh top afterwards is resident before it is touched,
 * where without the call the same fresh pages are not; a top smaller than
 * asked for is grown to the size asked for and mapped whole. */
START_TEST(test_heap_prefault_maps_the_free_top) {
  /* AddressSanitizer's allocator has no glibc heap top to map. */
#if defined(__GLIBC__) && defined(MADV_POPULATE_WRITE) &&                      \
    !defined(__SANITIZE_ADDRESS__)
  const size_t size = (size_t)16 << 20, page = sysconf(_SC_PAGESIZE);
  void *probe = mmap(NULL, page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ck_assert(probe != MAP_FAILED);
  gboolean supported = madvise(probe, page, MADV_POPULATE_WRITE) == 0;
  munmap(probe, page);
  if (!supported)
    return; /* a kernel before Linux 5.14: the helper does nothing */
  /* Large blocks from the heap and kept there, as the CPU backend sets. */
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  char *fresh = malloc(size);
  ck_assert_ptr_nonnull(fresh);
  size_t pages = whole_pages(fresh, size);
  /* Its first pages may be the old top's, touched before. */
  ck_assert_msg(resident_pages(fresh, size) < pages / 2,
                "a fresh heap block is resident before anything touched it "
                "(%zu of %zu pages)",
                resident_pages(fresh, size), pages);
  free(fresh);
  sb_heap_prefault(size);
  char *block = malloc(size);
  ck_assert_ptr_nonnull(block);
  ck_assert_uint_eq(resident_pages(block, size), whole_pages(block, size));
  free(block);
  /* A top smaller than asked for (16 MiB now) is grown first, and the
   * whole of what is asked for is mapped. */
  const size_t more = 3 * size;
  sb_heap_prefault(more);
  char *bigger = malloc(more);
  ck_assert_ptr_nonnull(bigger);
  ck_assert_uint_eq(resident_pages(bigger, more), whole_pages(bigger, more));
  free(bigger);
#endif
}
END_TEST

/* A model's file mapping is mapped in one call before the parse reads it
 * (sb_mapping_prefault): reading a byte of every page afterwards takes no
 * page fault, where the same reading of a fresh mapping takes one per
 * 64 KiB or so. */
START_TEST(test_mapping_prefault_maps_the_whole_file) {
#if defined(__GLIBC__) && defined(MADV_POPULATE_READ)
  const size_t size = (size_t)1 << 20, page = sysconf(_SC_PAGESIZE);
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp("sb-mapping-XXXXXX", &path, NULL);
  ck_assert_int_ge(fd, 0);
  g_autofree char *bytes = g_malloc0(size);
  ck_assert(write(fd, bytes, size) == (ssize_t)size);
  close(fd);
  long faults[2];
  for (int prefault = 0; prefault < 2; prefault++) {
    GMappedFile *file = g_mapped_file_new(path, FALSE, NULL);
    ck_assert_ptr_nonnull(file);
    const volatile char *data = g_mapped_file_get_contents(file);
    if (prefault && madvise((void *)data, page, MADV_POPULATE_READ) != 0) {
      g_mapped_file_unref(file); /* a kernel before Linux 5.14 */
      g_unlink(path);
      return;
    }
    if (prefault)
      sb_mapping_prefault((const void *)data, size);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    for (size_t i = 0; i < size; i += page)
      (void)data[i];
    getrusage(RUSAGE_SELF, &after);
    faults[prefault] = after.ru_minflt - before.ru_minflt;
    g_mapped_file_unref(file);
  }
  g_unlink(path);
  ck_assert_msg(faults[0] > 0, "reading a fresh mapping took no page fault");
  ck_assert_msg(faults[1] == 0,
                "%ld page faults reading a prefaulted mapping (%ld without)",
                faults[1], faults[0]);
#endif
}
END_TEST

static Suite *vnnlib_suite(void) {
  Suite *s = suite_create("vnnlib");
  TCase *files = tcase_create("files");
  TCase *inline_props = tcase_create("inline");
  TCase *bad = tcase_create("bad");
  TCase *proven = tcase_create("proven");

  tcase_set_timeout(files, 30);
  tcase_add_test(files, test_mnist_property_matches_golden);
  tcase_add_test(files, test_bn_resnet_property_matches_golden);
  tcase_add_test(files, test_oval21_property_matches_golden);
  tcase_add_test(files, test_big_property_parses_and_repeated_parse_is_stable);
  tcase_add_test(files, test_truncated_real_file_is_syntax_error);
  tcase_add_test(files, test_load_missing_file_is_io_error);
  tcase_add_test(files, test_load_error_names_the_file);
  suite_add_tcase(s, files);

  tcase_add_test(inline_props, test_conjunction_is_one_disjunct);
  tcase_add_test(inline_props, test_nested_and_or_expands_to_dnf);
  tcase_add_test(inline_props, test_asserts_are_conjoined);
  tcase_add_test(inline_props, test_disjunction_over_input_boxes_gives_regions);
  tcase_add_test(inline_props,
                 test_output_constant_atoms_in_both_operand_orders);
  tcase_add_test(inline_props,
                 test_input_bounds_in_both_operand_orders_and_strict);
  tcase_add_test(inline_props, test_repeated_bounds_intersect);
  tcase_add_test(inline_props,
                 test_one_line_input_bounds_match_the_general_path);
  tcase_add_test(inline_props, test_comments_everywhere);
  tcase_add_test(inline_props, test_declarations_in_any_order);
  tcase_add_test(inline_props, test_scientific_notation_and_signs);
  tcase_add_test(inline_props, test_linear_output_terms);
  tcase_add_test(inline_props, test_empty_disjunct_for_unconstrained_box);
  suite_add_tcase(s, inline_props);

  tcase_add_loop_test(bad, test_bad_input_reports_code_and_position, 0,
                      G_N_ELEMENTS(bad_cases));
  tcase_add_test(bad, test_dnf_blowup_is_refused);
  tcase_add_test(bad, test_deep_nesting_is_refused);
  tcase_add_test(bad, test_million_disjuncts_are_refused);
  tcase_add_test(bad, test_max_bytes_setting_limits_input_boxes);
  tcase_add_test(bad, test_every_prefix_fails_cleanly_or_parses);
  suite_add_tcase(s, bad);

  tcase_add_test(proven, test_region_proven_truth_table);
  suite_add_tcase(s, proven);

  TCase *memory = tcase_create("memory");
  tcase_add_test(memory, test_heap_prefault_maps_the_free_top);
  tcase_add_test(memory, test_mapping_prefault_maps_the_whole_file);
  suite_add_tcase(s, memory);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(vnnlib_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
