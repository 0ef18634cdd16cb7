/* SPDX-License-Identifier: MIT */
/* VNNLIB parser: the SMT-LIB subset of VNN-COMP, turned into input boxes and
 * an unsafe output region in disjunctive normal form of atoms c.y <= d. */
#include "hosts/engine/vnnlib.h"
#include "hosts/engine/limits.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* Hostile files must not exhaust memory or time: every structure whose size
 * can grow faster than the text (DNF products, dense matrices) is capped. */
#define SB_VNNLIB_MAX_TERMS        100000
#define SB_VNNLIB_MAX_LITERALS     (1 << 24)
#define SB_VNNLIB_MAX_DEPTH        256
#define SB_VNNLIB_MAX_INDEX_DIGITS 9

G_DEFINE_QUARK(sb - vnnlib - error - quark, sb_vnnlib_error)

/* S-expression tree node, one per token; children are linked so the tree
 * is built in one pass without knowing list lengths in advance. */
typedef struct {
  const char *tok; /* where it starts in the text (an atom: its text) */
  int len;         /* atoms: the token's length */
  int first;       /* lists: first child or -1 */
  int next;        /* next sibling or -1 */
  gboolean is_list;
} Node;

typedef struct {
  int var;
  gboolean upper;
  double value;
} XLit;

typedef struct {
  int start, n; /* into Parser.atom_terms */
  double d;
} SparseAtom;

typedef struct {
  int j;
  double c;
} YTerm;

typedef struct {
  gboolean is_y;
  int index;
  double c;
} LinTerm;

typedef struct {
  double k;
  GArray *terms; /* LinTerm */
} LinExpr;

/* A formula in DNF: term t holds literals lits[start[t] .. start[t+1]).
 * Literal v >= 0 is output atom v; v < 0 is input bound xlits[-v - 1]. */
typedef struct {
  GArray *start; /* int */
  GArray *lits;  /* int */
} Dnf;

typedef struct {
  const char *text;    /* the file's text, for positions in messages */
  GArray *nodes;       /* Node; node 0 is the file itself */
  GHashTable *decl[2]; /* index + 1 -> itself, for X and Y */
  int max_index[2];
  GArray *xlits;        /* XLit */
  GArray *atoms;        /* SparseAtom */
  GArray *atom_terms;   /* YTerm */
  GHashTable *atom_ids; /* GBytes key -> atom id + 1 */
  GError **error;
} Parser;

static const char *const var_prefix[2] = {"X", "Y"};

static Node *node_at(Parser *p, int i) {
  return &g_array_index(p->nodes, Node, i);
}

/* Tokens come from untrusted text; quote them printable and short. */
static char *token_repr(const char *tok, int len) {
  GString *out = g_string_new("'");
  int shown = MIN(len, 40);

  for (int i = 0; i < shown; i++) {
    guchar c = tok[i];
    if (c == '\'' || c == '\\')
      g_string_append_printf(out, "\\%c", c);
    else if (c >= 0x20 && c < 0x7f)
      g_string_append_c(out, c);
    else
      g_string_append_printf(out, "\\x%02x", c);
  }
  g_string_append(out, len > shown ? "...'" : "'");
  return g_string_free(out, FALSE);
}

/* Line and column (from 1) of `at` in `text`: worked out for a message
 * only, rather than kept in every node. */
static void text_position(const char *text, const char *at, int *line,
                          int *col) {
  *line = 1;
  *col = 1;
  for (const char *c = text; c < at; c++) {
    if (*c == '\n') {
      (*line)++;
      *col = 1;
    } else
      (*col)++;
  }
}

G_GNUC_PRINTF(4, 5)
static void fail_at(Parser *p, int node, SbVnnlibError code, const char *fmt,
                    ...) {
  va_list ap;
  char *msg;

  if (p->error == NULL || *p->error != NULL)
    return;
  va_start(ap, fmt);
  msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  if (node > 0) {
    int line, col;

    text_position(p->text, node_at(p, node)->tok, &line, &col);
    g_set_error(p->error, SB_VNNLIB_ERROR, code, "line %d, column %d: %s", line,
                col, msg);
  } else
    g_set_error_literal(p->error, SB_VNNLIB_ERROR, code, msg);
  g_free(msg);
}

static gboolean tok_is(const Node *n, const char *s) {
  return !n->is_list && (size_t)n->len == strlen(s) &&
         memcmp(n->tok, s, n->len) == 0;
}

static int n_children(Parser *p, int list) {
  int n = 0;
  for (int c = node_at(p, list)->first; c >= 0; c = node_at(p, c)->next)
    n++;
  return n;
}

/* ---------------------------------------------------------------- reader */

static gboolean run_command(Parser *p, int node, GPtrArray *asserts,
                            GArray *common);

/* Runs the top level's newest child, then drops every node but the
 * file's own. */
static gboolean run_command_at_top(Parser *p, GArray *last, GPtrArray *asserts,
                                   GArray *common) {
  gboolean ok = run_command(p, g_array_index(last, int, 0), asserts, common);
  g_array_set_size(p->nodes, 1);
  node_at(p, 0)->first = -1;
  g_array_index(last, int, 0) = -1;
  return ok;
}

static gboolean is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

static int append_node(Parser *p, GArray *open, GArray *last,
                       const Node *proto) {
  int id = p->nodes->len;
  int parent = g_array_index(open, int, open->len - 1);
  int *prev = &g_array_index(last, int, last->len - 1);

  g_array_append_val(p->nodes, *proto);
  if (*prev < 0)
    node_at(p, parent)->first = id;
  else
    node_at(p, *prev)->next = id;
  *prev = id;
  return id;
}

/* Reads the text and runs each top-level command as soon as it is
 * complete; its nodes are then dropped, so the tree never holds more than
 * one command (with a node per token, a whole file's tree would be most of
 * the memory the parse touches). */
static gboolean read_commands(Parser *p, const char *text, gsize length,
                              GPtrArray *asserts, GArray *common) {
  Node root = {text, 0, -1, -1, TRUE};
  GArray *open = g_array_new(FALSE, FALSE, sizeof(int));
  GArray *last = g_array_new(FALSE, FALSE, sizeof(int));
  int line = 1, col = 1;
  int zero = 0, minus = -1;
  gboolean ok = TRUE;
  gsize i = 0;

  g_array_append_val(p->nodes, root);
  g_array_append_val(open, zero);
  g_array_append_val(last, minus);

  while (i < length && ok) {
    char c = text[i];

    if (c == '\n') {
      line++;
      col = 1;
      i++;
    } else if (is_space(c)) {
      col++;
      i++;
    } else if (c == ';') {
      while (i < length && text[i] != '\n') {
        i++;
        col++;
      }
    } else if (c == '(') {
      Node n = {text + i, 0, -1, -1, TRUE};
      int id;

      if (open->len > SB_VNNLIB_MAX_DEPTH) {
        g_set_error(p->error, SB_VNNLIB_ERROR, SB_VNNLIB_ERROR_SYNTAX,
                    "line %d, column %d: expressions nested deeper than %d "
                    "levels",
                    line, col, SB_VNNLIB_MAX_DEPTH);
        ok = FALSE;
        break;
      }
      id = append_node(p, open, last, &n);
      g_array_append_val(open, id);
      g_array_append_val(last, minus);
      i++;
      col++;
    } else if (c == ')') {
      if (open->len == 1) {
        g_set_error(p->error, SB_VNNLIB_ERROR, SB_VNNLIB_ERROR_SYNTAX,
                    "line %d, column %d: unmatched ')'", line, col);
        ok = FALSE;
        break;
      }
      g_array_set_size(open, open->len - 1);
      g_array_set_size(last, last->len - 1);
      i++;
      col++;
      if (open->len == 1)
        ok = run_command_at_top(p, last, asserts, common);
    } else {
      Node n = {text + i, 0, -1, -1, FALSE};
      gsize j = i;

      while (j < length && !is_space(text[j]) && text[j] != '(' &&
             text[j] != ')' && text[j] != ';') {
        guchar b = text[j];
        /* Control bytes (a NUL in a binary file) are never part of SMT-LIB
         * text; name them rather than carry them into messages. */
        if (b < 0x20 || b == 0x7f) {
          g_set_error(p->error, SB_VNNLIB_ERROR, SB_VNNLIB_ERROR_SYNTAX,
                      "line %d, column %d: invalid character '\\x%02x'", line,
                      col + (int)(j - i), b);
          ok = FALSE;
          break;
        }
        j++;
      }
      if (!ok)
        break;
      if (j - i > G_MAXINT / 2) {
        g_set_error(p->error, SB_VNNLIB_ERROR, SB_VNNLIB_ERROR_SYNTAX,
                    "line %d, column %d: token too long", line, col);
        ok = FALSE;
        break;
      }
      n.len = (int)(j - i);
      append_node(p, open, last, &n);
      col += n.len;
      i = j;
      if (open->len == 1)
        ok = run_command_at_top(p, last, asserts, common);
    }
  }

  if (ok && open->len > 1) {
    const Node *unclosed = node_at(p, g_array_index(open, int, open->len - 1));
    int open_line, open_col;

    text_position(text, unclosed->tok, &open_line, &open_col);
    g_set_error(p->error, SB_VNNLIB_ERROR, SB_VNNLIB_ERROR_SYNTAX,
                "line %d, column %d: unexpected end of input: '(' at line "
                "%d, column %d is never closed",
                line, col, open_line, open_col);
    ok = FALSE;
  }
  g_array_free(open, TRUE);
  g_array_free(last, TRUE);
  return ok;
}

/* ------------------------------------------------------------ variables */

/* X_<n> / Y_<n> with a canonical decimal index (no leading zeros, so X_01
 * cannot alias X_1). */
static gboolean parse_var_name(const char *tok, int len, int *kind,
                               int *index) {
  int v = 0;

  if (len < 3 || (tok[0] != 'X' && tok[0] != 'Y') || tok[1] != '_')
    return FALSE;
  if (len - 2 > SB_VNNLIB_MAX_INDEX_DIGITS || (tok[2] == '0' && len > 3))
    return FALSE;
  for (int i = 2; i < len; i++) {
    if (tok[i] < '0' || tok[i] > '9')
      return FALSE;
    v = v * 10 + (tok[i] - '0');
  }
  *kind = tok[0] == 'Y';
  *index = v;
  return TRUE;
}

static gboolean looks_numeric(const char *tok, int len) {
  int i = 0;
  if (i < len && (tok[i] == '-' || tok[i] == '+'))
    i++;
  if (i < len && tok[i] == '.')
    i++;
  return i < len && tok[i] >= '0' && tok[i] <= '9';
}

/* Decimal literal: [+-]? (d+ (. d*)? | . d+) ([eE] [+-]? d+)?. Validated here
 * because strtod also accepts hex, inf and nan, which are no VNNLIB. */
static gboolean parse_number(const char *tok, int len, double *out) {
  int i = 0, digits = 0;
  char buf[128];
  char *end;

  if (len >= (int)sizeof buf)
    return FALSE;
  if (i < len && (tok[i] == '-' || tok[i] == '+'))
    i++;
  while (i < len && g_ascii_isdigit(tok[i])) {
    i++;
    digits++;
  }
  if (i < len && tok[i] == '.') {
    i++;
    while (i < len && g_ascii_isdigit(tok[i])) {
      i++;
      digits++;
    }
  }
  if (digits == 0)
    return FALSE;
  if (i < len && (tok[i] == 'e' || tok[i] == 'E')) {
    int exp_digits = 0;
    i++;
    if (i < len && (tok[i] == '-' || tok[i] == '+'))
      i++;
    while (i < len && g_ascii_isdigit(tok[i])) {
      i++;
      exp_digits++;
    }
    if (exp_digits == 0)
      return FALSE;
  }
  if (i != len)
    return FALSE;
  memcpy(buf, tok, len);
  buf[len] = '\0';
  *out = g_ascii_strtod(buf, &end);
  return end == buf + len && isfinite(*out);
}

static gboolean declare(Parser *p, int name, int sort) {
  const Node *nn = node_at(p, name);
  int kind, index;
  char *repr;

  if (nn->is_list || !parse_var_name(nn->tok, nn->len, &kind, &index)) {
    repr = nn->is_list ? g_strdup("a list") : token_repr(nn->tok, nn->len);
    fail_at(p, name, SB_VNNLIB_ERROR_UNSUPPORTED,
            "variable name %s is not supported (expected X_i or Y_j)", repr);
    g_free(repr);
    return FALSE;
  }
  if (!tok_is(node_at(p, sort), "Real")) {
    const Node *sn = node_at(p, sort);
    repr = sn->is_list ? g_strdup("(...)") : token_repr(sn->tok, sn->len);
    fail_at(p, sort, SB_VNNLIB_ERROR_UNSUPPORTED,
            "%s_%d has sort %s; only Real is supported", var_prefix[kind],
            index, repr);
    g_free(repr);
    return FALSE;
  }
  if (g_hash_table_contains(p->decl[kind], GINT_TO_POINTER(index + 1))) {
    fail_at(p, name, SB_VNNLIB_ERROR_INVALID, "%s_%d is declared twice",
            var_prefix[kind], index);
    return FALSE;
  }
  g_hash_table_add(p->decl[kind], GINT_TO_POINTER(index + 1));
  p->max_index[kind] = MAX(p->max_index[kind], index);
  return TRUE;
}

/* ---------------------------------------------------------------- terms */

static LinExpr *lin_new(double k) {
  LinExpr *e = g_new(LinExpr, 1);
  e->k = k;
  e->terms = g_array_new(FALSE, FALSE, sizeof(LinTerm));
  return e;
}

static void lin_free(LinExpr *e) {
  if (e == NULL)
    return;
  g_array_free(e->terms, TRUE);
  g_free(e);
}

/* dst += s * src */
static void lin_axpy(LinExpr *dst, double s, const LinExpr *src) {
  dst->k += s * src->k;
  for (guint i = 0; i < src->terms->len; i++) {
    LinTerm t = g_array_index(src->terms, LinTerm, i);
    t.c *= s;
    g_array_append_val(dst->terms, t);
  }
}

static void lin_scale(LinExpr *e, double s) {
  e->k *= s;
  for (guint i = 0; i < e->terms->len; i++)
    g_array_index(e->terms, LinTerm, i).c *= s;
}

static int lin_term_cmp(gconstpointer a, gconstpointer b) {
  const LinTerm *x = a, *y = b;
  if (x->is_y != y->is_y)
    return x->is_y - y->is_y;
  return (x->index > y->index) - (x->index < y->index);
}

/* Merge repeated variables and drop cancelled ones, so that the atom key
 * is canonical and (- Y_0 Y_0) is seen to have no variable. */
static void lin_canonicalize(LinExpr *e) {
  guint out = 0;

  g_array_sort(e->terms, lin_term_cmp);
  for (guint i = 0; i < e->terms->len; i++) {
    LinTerm t = g_array_index(e->terms, LinTerm, i);
    if (out > 0 &&
        lin_term_cmp(&g_array_index(e->terms, LinTerm, out - 1), &t) == 0)
      g_array_index(e->terms, LinTerm, out - 1).c += t.c;
    else
      g_array_index(e->terms, LinTerm, out++) = t;
  }
  g_array_set_size(e->terms, out);
  out = 0;
  for (guint i = 0; i < e->terms->len; i++) {
    LinTerm t = g_array_index(e->terms, LinTerm, i);
    if (t.c != 0.0)
      g_array_index(e->terms, LinTerm, out++) = t;
  }
  g_array_set_size(e->terms, out);
}

static gboolean lin_is_finite(const LinExpr *e) {
  if (!isfinite(e->k))
    return FALSE;
  for (guint i = 0; i < e->terms->len; i++)
    if (!isfinite(g_array_index(e->terms, LinTerm, i).c))
      return FALSE;
  return TRUE;
}

static LinExpr *eval_term(Parser *p, int node);

static LinExpr *eval_atom_term(Parser *p, int node) {
  const Node *n = node_at(p, node);
  LinExpr *e;
  LinTerm t;
  double v;
  int kind, index;
  char *repr;

  if (looks_numeric(n->tok, n->len)) {
    if (parse_number(n->tok, n->len, &v))
      return lin_new(v);
    repr = token_repr(n->tok, n->len);
    fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX, "malformed number %s", repr);
    g_free(repr);
    return NULL;
  }
  if (!parse_var_name(n->tok, n->len, &kind, &index) ||
      !g_hash_table_contains(p->decl[kind], GINT_TO_POINTER(index + 1))) {
    repr = token_repr(n->tok, n->len);
    fail_at(p, node, SB_VNNLIB_ERROR_INVALID, "undeclared variable %s", repr);
    g_free(repr);
    return NULL;
  }
  e = lin_new(0.0);
  t.is_y = kind;
  t.index = index;
  t.c = 1.0;
  g_array_append_val(e->terms, t);
  return e;
}

static LinExpr *eval_list_term(Parser *p, int node) {
  const Node *n = node_at(p, node);
  int head = n->first;
  int nargs = n_children(p, node) - 1;
  const Node *h;
  LinExpr *acc = NULL;
  LinExpr *varying = NULL;
  double scale = 1.0;

  if (head < 0) {
    fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX, "empty expression '()'");
    return NULL;
  }
  h = node_at(p, head);
  if (h->is_list) {
    fail_at(p, head, SB_VNNLIB_ERROR_SYNTAX, "expected an operator, found '('");
    return NULL;
  }
  if (tok_is(h, "+") || tok_is(h, "-")) {
    gboolean minus = tok_is(h, "-");
    int i = 0;

    if (nargs < 1) {
      fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX, "'%c' needs an argument",
              minus ? '-' : '+');
      return NULL;
    }
    acc = lin_new(0.0);
    for (int c = h->next; c >= 0; c = node_at(p, c)->next, i++) {
      LinExpr *arg = eval_term(p, c);
      if (arg == NULL) {
        lin_free(acc);
        return NULL;
      }
      /* (- a) negates; (- a b c) is a - b - c. */
      lin_axpy(acc, minus && (i > 0 || nargs == 1) ? -1.0 : 1.0, arg);
      lin_free(arg);
    }
  } else if (tok_is(h, "*")) {
    if (nargs < 1) {
      fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX, "'*' needs an argument");
      return NULL;
    }
    for (int c = h->next; c >= 0; c = node_at(p, c)->next) {
      LinExpr *arg = eval_term(p, c);
      if (arg == NULL) {
        lin_free(varying);
        return NULL;
      }
      if (arg->terms->len == 0) {
        scale *= arg->k;
        lin_free(arg);
      } else if (varying == NULL) {
        varying = arg;
      } else {
        lin_free(arg);
        lin_free(varying);
        fail_at(p, node, SB_VNNLIB_ERROR_UNSUPPORTED,
                "product of variables is not linear");
        return NULL;
      }
    }
    acc = varying != NULL ? varying : lin_new(1.0);
    lin_scale(acc, scale);
  } else if (tok_is(h, "/")) {
    LinExpr *den;
    if (nargs != 2) {
      fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX,
              "'/' takes 2 arguments, found %d", nargs);
      return NULL;
    }
    acc = eval_term(p, h->next);
    if (acc == NULL)
      return NULL;
    den = eval_term(p, node_at(p, h->next)->next);
    if (den == NULL) {
      lin_free(acc);
      return NULL;
    }
    if (den->terms->len != 0 || den->k == 0.0) {
      fail_at(p, node, SB_VNNLIB_ERROR_UNSUPPORTED,
              "'/' needs a nonzero constant divisor");
      lin_free(acc);
      lin_free(den);
      return NULL;
    }
    lin_scale(acc, 1.0 / den->k);
    lin_free(den);
  } else {
    char *repr = token_repr(h->tok, h->len);
    fail_at(p, head, SB_VNNLIB_ERROR_UNSUPPORTED,
            "unknown operator %s in a term", repr);
    g_free(repr);
    return NULL;
  }
  if (!lin_is_finite(acc)) {
    fail_at(p, node, SB_VNNLIB_ERROR_INVALID,
            "arithmetic overflow in a coefficient");
    lin_free(acc);
    return NULL;
  }
  return acc;
}

static LinExpr *eval_term(Parser *p, int node) {
  return node_at(p, node)->is_list ? eval_list_term(p, node)
                                   : eval_atom_term(p, node);
}

/* ------------------------------------------------------------------ DNF */

static Dnf *dnf_new(void) {
  Dnf *d = g_new(Dnf, 1);
  int zero = 0;
  d->start = g_array_new(FALSE, FALSE, sizeof(int));
  d->lits = g_array_new(FALSE, FALSE, sizeof(int));
  g_array_append_val(d->start, zero);
  return d;
}

static void dnf_free(Dnf *d) {
  if (d == NULL)
    return;
  g_array_free(d->start, TRUE);
  g_array_free(d->lits, TRUE);
  g_free(d);
}

static int dnf_terms(const Dnf *d) { return (int)d->start->len - 1; }

static int dnf_term_len(const Dnf *d, int t) {
  return g_array_index(d->start, int, t + 1) - g_array_index(d->start, int, t);
}

static const int *dnf_term(const Dnf *d, int t) {
  /* An empty GArray has no storage: indexing its NULL data, even by zero,
   * is undefined behaviour. */
  if (d->lits->len == 0)
    return NULL;
  return &g_array_index(d->lits, int, g_array_index(d->start, int, t));
}

static void dnf_close_term(Dnf *d) {
  int end = d->lits->len;
  g_array_append_val(d->start, end);
}

static gboolean dnf_check_size(Parser *p, int node, double terms, double lits) {
  if (terms > SB_VNNLIB_MAX_TERMS) {
    fail_at(p, node, SB_VNNLIB_ERROR_UNSUPPORTED,
            "formula has more than %d disjuncts in disjunctive normal form",
            SB_VNNLIB_MAX_TERMS);
    return FALSE;
  }
  if (lits > SB_VNNLIB_MAX_LITERALS) {
    fail_at(p, node, SB_VNNLIB_ERROR_UNSUPPORTED,
            "formula has more than %d literals in disjunctive normal form",
            SB_VNNLIB_MAX_LITERALS);
    return FALSE;
  }
  return TRUE;
}

static Dnf *dnf_product(Parser *p, int node, const Dnf *a, const Dnf *b) {
  int na = dnf_terms(a), nb = dnf_terms(b);
  Dnf *r;

  if (!dnf_check_size(p, node, (double)na * nb,
                      (double)a->lits->len * nb + (double)b->lits->len * na))
    return NULL;
  r = dnf_new();
  for (int i = 0; i < na; i++)
    for (int j = 0; j < nb; j++) {
      g_array_append_vals(r->lits, dnf_term(a, i), dnf_term_len(a, i));
      g_array_append_vals(r->lits, dnf_term(b, j), dnf_term_len(b, j));
      dnf_close_term(r);
    }
  return r;
}

/* Conjunction of parts. Single-term parts (the thousands of input bounds)
 * are gathered into *common instead of being copied through every product
 * step, which would be quadratic; the rest multiply out pairwise. Takes
 * ownership of parts' elements. */
static Dnf *dnf_and_split(Parser *p, int node, GPtrArray *parts,
                          GArray *common) {
  Dnf *acc = dnf_new();

  dnf_close_term(acc); /* the empty conjunction: one empty term */
  for (guint i = 0; i < parts->len; i++) {
    Dnf *d = g_ptr_array_index(parts, i);
    if (dnf_terms(d) == 1) {
      if (!dnf_check_size(p, node, 1, (double)common->len + d->lits->len))
        goto fail;
      g_array_append_vals(common, d->lits->data, d->lits->len);
    } else {
      Dnf *next = dnf_product(p, node, acc, d);
      if (next == NULL)
        goto fail;
      dnf_free(acc);
      acc = next;
    }
  }
  return acc;
fail:
  dnf_free(acc);
  return NULL;
}

static Dnf *dnf_and(Parser *p, int node, GPtrArray *parts) {
  GArray *common = g_array_new(FALSE, FALSE, sizeof(int));
  Dnf *acc = dnf_and_split(p, node, parts, common);
  Dnf *r = NULL;
  int n;

  if (acc == NULL)
    goto out;
  n = dnf_terms(acc);
  if (!dnf_check_size(p, node, n,
                      (double)acc->lits->len + (double)n * common->len))
    goto out;
  r = dnf_new();
  for (int t = 0; t < n; t++) {
    g_array_append_vals(r->lits, common->data, common->len);
    g_array_append_vals(r->lits, dnf_term(acc, t), dnf_term_len(acc, t));
    dnf_close_term(r);
  }
out:
  dnf_free(acc);
  g_array_free(common, TRUE);
  return r;
}

static Dnf *dnf_or(Parser *p, int node, GPtrArray *parts) {
  double terms = 0, lits = 0;
  Dnf *r;

  for (guint i = 0; i < parts->len; i++) {
    const Dnf *d = g_ptr_array_index(parts, i);
    terms += dnf_terms(d);
    lits += d->lits->len;
  }
  if (!dnf_check_size(p, node, terms, lits))
    return NULL;
  r = dnf_new();
  for (guint i = 0; i < parts->len; i++) {
    const Dnf *d = g_ptr_array_index(parts, i);
    for (int t = 0; t < dnf_terms(d); t++) {
      g_array_append_vals(r->lits, dnf_term(d, t), dnf_term_len(d, t));
      dnf_close_term(r);
    }
  }
  return r;
}

/* ------------------------------------------------------------- formulas */

static int intern_atom(Parser *p, const LinExpr *e) {
  GByteArray *key = g_byte_array_new();
  GBytes *bytes;
  SparseAtom a;
  gpointer found;
  /* +0.0 turns -0.0 into 0.0 so equal atoms have equal keys. */
  double d = -e->k + 0.0;
  int n = e->terms->len;

  g_byte_array_append(key, (const guint8 *)&n, sizeof n);
  for (int i = 0; i < n; i++) {
    const LinTerm *t = &g_array_index(e->terms, LinTerm, i);
    double c = t->c + 0.0;
    g_byte_array_append(key, (const guint8 *)&t->index, sizeof t->index);
    g_byte_array_append(key, (const guint8 *)&c, sizeof c);
  }
  g_byte_array_append(key, (const guint8 *)&d, sizeof d);
  bytes = g_byte_array_free_to_bytes(key);
  found = g_hash_table_lookup(p->atom_ids, bytes);
  if (found != NULL) {
    g_bytes_unref(bytes);
    return GPOINTER_TO_INT(found) - 1;
  }
  a.start = p->atom_terms->len;
  a.n = n;
  a.d = d;
  for (int i = 0; i < n; i++) {
    const LinTerm *t = &g_array_index(e->terms, LinTerm, i);
    YTerm y = {t->index, t->c + 0.0};
    g_array_append_val(p->atom_terms, y);
  }
  g_array_append_val(p->atoms, a);
  g_hash_table_insert(p->atom_ids, bytes, GINT_TO_POINTER(p->atoms->len));
  return p->atoms->len - 1;
}

/* Adds the literal for  lhs - rhs <= 0  to the open term of out. */
static gboolean add_le(Parser *p, int node, const LinExpr *lhs,
                       const LinExpr *rhs, Dnf *out) {
  LinExpr *e = lin_new(0.0);
  gboolean has_x = FALSE, has_y = FALSE;
  gboolean ok = FALSE;
  int lit;

  lin_axpy(e, 1.0, lhs);
  lin_axpy(e, -1.0, rhs);
  lin_canonicalize(e);
  if (!lin_is_finite(e)) {
    fail_at(p, node, SB_VNNLIB_ERROR_INVALID,
            "arithmetic overflow in a comparison");
    goto out;
  }
  for (guint i = 0; i < e->terms->len; i++) {
    if (g_array_index(e->terms, LinTerm, i).is_y)
      has_y = TRUE;
    else
      has_x = TRUE;
  }
  if (!has_x && !has_y) {
    fail_at(p, node, SB_VNNLIB_ERROR_UNSUPPORTED, "comparison has no variable");
    goto out;
  }
  if (has_x && has_y) {
    fail_at(p, node, SB_VNNLIB_ERROR_UNSUPPORTED,
            "comparison mixes inputs (X_i) and outputs (Y_j); only bounds "
            "on X_i and constraints on Y_j are supported");
    goto out;
  }
  if (has_x) {
    const LinTerm *t = &g_array_index(e->terms, LinTerm, 0);
    XLit x;

    if (e->terms->len > 1) {
      fail_at(p, node, SB_VNNLIB_ERROR_UNSUPPORTED,
              "linear constraint over several inputs (X_%d, X_%d, ...); "
              "only bounds on one X_i are supported",
              t[0].index, t[1].index);
      goto out;
    }
    /* c x + k <= 0 */
    x.var = t->index;
    x.upper = t->c > 0;
    x.value = -e->k / t->c;
    if (!isfinite(x.value)) {
      fail_at(p, node, SB_VNNLIB_ERROR_INVALID, "bound on X_%d overflows",
              x.var);
      goto out;
    }
    g_array_append_val(p->xlits, x);
    lit = -(int)p->xlits->len;
  } else {
    lit = intern_atom(p, e);
  }
  g_array_append_val(out->lits, lit);
  ok = TRUE;
out:
  lin_free(e);
  return ok;
}

static Dnf *eval_formula(Parser *p, int node);

static Dnf *eval_comparison(Parser *p, int node, const Node *h, int nargs) {
  gboolean le = tok_is(h, "<=") || tok_is(h, "<");
  gboolean eq = tok_is(h, "=");
  GPtrArray *args = g_ptr_array_new_with_free_func((GDestroyNotify)lin_free);
  Dnf *r = NULL;

  if (nargs < 2) {
    fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX,
            "comparison needs at least 2 arguments, found %d", nargs);
    goto out;
  }
  for (int c = h->next; c >= 0; c = node_at(p, c)->next) {
    LinExpr *e = eval_term(p, c);
    if (e == NULL)
      goto out;
    g_ptr_array_add(args, e);
  }
  r = dnf_new();
  /* SMT-LIB comparisons chain: (<= a b c) is a <= b and b <= c. */
  for (guint i = 0; i + 1 < args->len; i++) {
    const LinExpr *a = g_ptr_array_index(args, i);
    const LinExpr *b = g_ptr_array_index(args, i + 1);
    gboolean ok;

    if (eq)
      ok = add_le(p, node, a, b, r) && add_le(p, node, b, a, r);
    else
      ok = le ? add_le(p, node, a, b, r) : add_le(p, node, b, a, r);
    if (!ok) {
      dnf_free(r);
      r = NULL;
      goto out;
    }
  }
  dnf_close_term(r);
out:
  g_ptr_array_unref(args);
  return r;
}

static Dnf *eval_formula(Parser *p, int node) {
  const Node *n = node_at(p, node);
  const Node *h;
  int nargs;

  if (!n->is_list) {
    char *repr = token_repr(n->tok, n->len);
    fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX,
            "expected a comparison, and or or, found %s", repr);
    g_free(repr);
    return NULL;
  }
  if (n->first < 0) {
    fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX, "empty formula '()'");
    return NULL;
  }
  h = node_at(p, n->first);
  if (h->is_list) {
    fail_at(p, n->first, SB_VNNLIB_ERROR_SYNTAX,
            "expected an operator, found '('");
    return NULL;
  }
  nargs = n_children(p, node) - 1;
  if (tok_is(h, "and") || tok_is(h, "or")) {
    gboolean is_and = tok_is(h, "and");
    GPtrArray *parts = g_ptr_array_new_with_free_func((GDestroyNotify)dnf_free);
    Dnf *r = NULL;

    if (nargs < 1) {
      fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX,
              "'%s' needs at least one argument", is_and ? "and" : "or");
      g_ptr_array_unref(parts);
      return NULL;
    }
    for (int c = h->next; c >= 0; c = node_at(p, c)->next) {
      Dnf *d = eval_formula(p, c);
      if (d == NULL) {
        g_ptr_array_unref(parts);
        return NULL;
      }
      g_ptr_array_add(parts, d);
    }
    r = is_and ? dnf_and(p, node, parts) : dnf_or(p, node, parts);
    g_ptr_array_unref(parts);
    return r;
  }
  if (tok_is(h, "<=") || tok_is(h, ">=") || tok_is(h, "<") || tok_is(h, ">") ||
      tok_is(h, "="))
    return eval_comparison(p, node, h, nargs);
  {
    char *repr = token_repr(h->tok, h->len);
    fail_at(p, n->first, SB_VNNLIB_ERROR_UNSUPPORTED,
            "unknown operator %s in a formula", repr);
    g_free(repr);
  }
  return NULL;
}

/* ----------------------------------------------------- input bounds */

/* The literal of an input bound written as one comparison of a declared
 * X_i with a number, (<= X_3 0.5) or (> 0.1 X_3), the form nearly every
 * line of a VNN-COMP property takes: the same literal add_le makes (the
 * same arithmetic, so the same value to the bit, -0.0 included), without
 * the terms and formula that the general path allocates for each line
 * (a CIFAR property's 6,144 bounds took 3.6 ms to parse that way). FALSE
 * for anything else, errors included, which the general path takes. */
static gboolean input_bound_literal(Parser *p, int formula, int *lit) {
  const Node *n = node_at(p, formula);
  if (!n->is_list || n->first < 0)
    return FALSE;
  const Node *h = node_at(p, n->first);
  const gboolean le = tok_is(h, "<=") || tok_is(h, "<");
  if (!le && !tok_is(h, ">=") && !tok_is(h, ">"))
    return FALSE;
  if (h->next < 0 || node_at(p, h->next)->next < 0 ||
      node_at(p, node_at(p, h->next)->next)->next >= 0)
    return FALSE; /* not exactly two arguments */
  const Node *a = node_at(p, h->next), *b = node_at(p, a->next);
  if (a->is_list || b->is_list)
    return FALSE;
  /* add_le(lhs, rhs) makes lhs - rhs <= 0, the operands in `le` order. */
  const Node *lhs = le ? a : b, *rhs = le ? b : a;
  const gboolean var_left = !looks_numeric(lhs->tok, lhs->len);
  const Node *var = var_left ? lhs : rhs, *num = var_left ? rhs : lhs;
  int kind, index;
  double v;
  if (looks_numeric(var->tok, var->len) || !looks_numeric(num->tok, num->len) ||
      !parse_number(num->tok, num->len, &v) ||
      !parse_var_name(var->tok, var->len, &kind, &index) || kind != 0 ||
      !g_hash_table_contains(p->decl[0], GINT_TO_POINTER(index + 1)))
    return FALSE;
  /* lin_axpy's constant: 0 + 1 * lhs.k - 1 * rhs.k. */
  const double k =
      (0.0 + 1.0 * (var_left ? 0.0 : v)) + -1.0 * (var_left ? v : 0.0);
  const double c = var_left ? 1.0 : -1.0;
  XLit x = {index, c > 0, -k / c};
  g_array_append_val(p->xlits, x);
  *lit = -(int)p->xlits->len;
  return TRUE;
}

/* ------------------------------------------------------------- commands */

/* Runs one top-level command. An assert that is a conjunction adds its
 * literals to `common` at once (as dnf_and_split would at the end), so
 * that a property of input bounds keeps no formula per assert; the others
 * go to `asserts`, in order. */
static gboolean run_command(Parser *p, int node, GPtrArray *asserts,
                            GArray *common) {
  const Node *n = node_at(p, node);
  const Node *h;
  int nargs;
  int a1, a2;

  if (!n->is_list) {
    char *repr = token_repr(n->tok, n->len);
    fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX,
            "expected '(' at top level, found %s", repr);
    g_free(repr);
    return FALSE;
  }
  if (n->first < 0 || node_at(p, n->first)->is_list) {
    fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX, "expected a command name");
    return FALSE;
  }
  h = node_at(p, n->first);
  nargs = n_children(p, node) - 1;
  a1 = h->next;
  a2 = a1 >= 0 ? node_at(p, a1)->next : -1;

  if (tok_is(h, "declare-const")) {
    if (nargs != 2) {
      fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX,
              "declare-const takes a name and a sort, found %d arguments",
              nargs);
      return FALSE;
    }
    return declare(p, a1, a2);
  }
  if (tok_is(h, "declare-fun")) {
    const Node *params = nargs == 3 ? node_at(p, a2) : NULL;
    if (params == NULL || !params->is_list) {
      fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX,
              "declare-fun takes a name, '()' and a sort");
      return FALSE;
    }
    if (params->first >= 0) {
      fail_at(p, a2, SB_VNNLIB_ERROR_UNSUPPORTED,
              "functions with arguments are not supported");
      return FALSE;
    }
    return declare(p, a1, node_at(p, a2)->next);
  }
  if (tok_is(h, "assert")) {
    Dnf *d;
    int lit;
    if (nargs != 1) {
      fail_at(p, node, SB_VNNLIB_ERROR_SYNTAX,
              "assert takes one formula, found %d", nargs);
      return FALSE;
    }
    if (input_bound_literal(p, a1, &lit)) {
      if (!dnf_check_size(p, -1, 1, (double)common->len + 1))
        return FALSE;
      g_array_append_val(common, lit);
      return TRUE;
    }
    d = eval_formula(p, a1);
    if (d == NULL)
      return FALSE;
    if (dnf_terms(d) != 1) {
      g_ptr_array_add(asserts, d);
      return TRUE;
    }
    gboolean fits =
        dnf_check_size(p, -1, 1, (double)common->len + d->lits->len);
    if (fits)
      g_array_append_vals(common, d->lits->data, d->lits->len);
    dnf_free(d);
    return fits;
  }
  /* Commands that only matter to an SMT solver session. */
  if (tok_is(h, "set-logic") || tok_is(h, "set-info") ||
      tok_is(h, "set-option") || tok_is(h, "check-sat") ||
      tok_is(h, "get-model") || tok_is(h, "exit"))
    return TRUE;
  {
    char *repr = token_repr(h->tok, h->len);
    fail_at(p, n->first, SB_VNNLIB_ERROR_UNSUPPORTED, "unknown command %s",
            repr);
    g_free(repr);
  }
  return FALSE;
}

/* ------------------------------------------------------------- assembly */

static gboolean check_declarations(Parser *p, int kind, int *count) {
  guint n = g_hash_table_size(p->decl[kind]);

  *count = n;
  if (n == 0) {
    fail_at(p, -1, SB_VNNLIB_ERROR_INVALID,
            "no %s variables declared (expected %s_0, %s_1, ...)",
            kind ? "output" : "input", var_prefix[kind], var_prefix[kind]);
    return FALSE;
  }
  if ((guint)p->max_index[kind] + 1 != n) {
    /* Among indices 0..n at least one is missing: the scan is bounded. */
    int missing = 0;
    while (g_hash_table_contains(p->decl[kind], GINT_TO_POINTER(missing + 1)))
      missing++;
    fail_at(p, -1, SB_VNNLIB_ERROR_INVALID,
            "%s variables are not contiguous: %s_%d is declared but %s_%d "
            "is not",
            kind ? "output" : "input", var_prefix[kind], p->max_index[kind],
            var_prefix[kind], missing);
    return FALSE;
  }
  return TRUE;
}

typedef struct {
  GArray *disjunct_start; /* int */
  GArray *atom_index;     /* int */
  double *x_lower, *x_upper;
} RegionBuild;

static int int_cmp(gconstpointer a, gconstpointer b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static int xlit_var_cmp(gconstpointer a, gconstpointer b) {
  const XLit *x = a, *y = b;
  return (x->var > y->var) - (x->var < y->var);
}

static void fail_box(Parser *p, int var, double lo, double hi) {
  if (lo > hi)
    fail_at(p, -1, SB_VNNLIB_ERROR_INVALID,
            "X_%d has lower bound %.17g above its upper bound %.17g", var, lo,
            hi);
  else
    fail_at(p, -1, SB_VNNLIB_ERROR_INVALID, "X_%d has no %s bound", var,
            isinf(lo) && isinf(hi) ? "lower or upper"
            : isinf(lo)            ? "lower"
                                   : "upper");
}

/* The regions being built from  common AND (OR of terms). */
typedef struct {
  Parser *p;
  int n_in, n_out;
  double *lo, *hi;     /* the common box */
  int n_open;          /* vars unbounded on some side in the common box */
  GArray *common_y;    /* int: the atoms every term shares */
  GArray *term_x;      /* XLit: the current term's input literals */
  GArray *term_y;      /* int: the current term's atoms */
  GByteArray *key;     /* scratch for hash keys */
  GHashTable *box_ids; /* box key -> region + 1 */
  GHashTable *seen;    /* (region, atoms) keys of the disjuncts kept */
  GArray *regions;     /* RegionBuild */
  double total_atoms;
  gboolean any_y;
} Assembly;

static void assembly_init(Assembly *a, Parser *p) {
  memset(a, 0, sizeof *a);
  a->p = p;
  a->common_y = g_array_new(FALSE, FALSE, sizeof(int));
  a->term_x = g_array_new(FALSE, FALSE, sizeof(XLit));
  a->term_y = g_array_new(FALSE, FALSE, sizeof(int));
  a->key = g_byte_array_new();
  a->box_ids = g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
                                     (GDestroyNotify)g_bytes_unref, NULL);
  a->seen = g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
                                  (GDestroyNotify)g_bytes_unref, NULL);
  a->regions = g_array_new(FALSE, TRUE, sizeof(RegionBuild));
}

static void assembly_clear(Assembly *a) {
  for (guint r = 0; r < a->regions->len; r++) {
    RegionBuild *rb = &g_array_index(a->regions, RegionBuild, r);
    if (rb->disjunct_start != NULL)
      g_array_free(rb->disjunct_start, TRUE);
    if (rb->atom_index != NULL)
      g_array_free(rb->atom_index, TRUE);
    g_free(rb->x_lower);
    g_free(rb->x_upper);
  }
  g_array_free(a->regions, TRUE);
  g_hash_table_unref(a->seen);
  g_hash_table_unref(a->box_ids);
  g_byte_array_unref(a->key);
  g_array_free(a->term_y, TRUE);
  g_array_free(a->term_x, TRUE);
  g_array_free(a->common_y, TRUE);
  g_free(a->lo);
  g_free(a->hi);
}

/* The declared sizes and the common box: the input bounds every term
 * shares; its atoms go to common_y. */
static gboolean assembly_common_box(Assembly *a, const GArray *common) {
  Parser *p = a->p;
  if (!check_declarations(p, 1, &a->n_out) ||
      !check_declarations(p, 0, &a->n_in))
    return FALSE;
  if (!sb_limit_fits((double)p->atoms->len * a->n_out)) {
    fail_at(p, -1, SB_VNNLIB_ERROR_UNSUPPORTED,
            "%u output atoms over %d outputs need more than the limit of "
            "%" G_GINT64_FORMAT " bytes (" SB_MAX_BYTES_ENV " sets it)",
            p->atoms->len, a->n_out, sb_max_bytes());
    return FALSE;
  }
  a->lo = g_new(double, a->n_in);
  a->hi = g_new(double, a->n_in);
  for (int i = 0; i < a->n_in; i++) {
    a->lo[i] = -INFINITY;
    a->hi[i] = INFINITY;
  }
  for (guint i = 0; i < common->len; i++) {
    int lit = g_array_index(common, int, i);
    if (lit >= 0) {
      g_array_append_val(a->common_y, lit);
    } else {
      const XLit *x = &g_array_index(p->xlits, XLit, -lit - 1);
      if (x->upper)
        a->hi[x->var] = MIN(a->hi[x->var], x->value);
      else
        a->lo[x->var] = MAX(a->lo[x->var], x->value);
    }
  }
  for (int i = 0; i < a->n_in; i++) {
    if (a->lo[i] > a->hi[i]) {
      fail_box(p, i, a->lo[i], a->hi[i]);
      return FALSE;
    }
    if (isinf(a->lo[i]) || isinf(a->hi[i]))
      a->n_open++;
  }
  return TRUE;
}

/* Error path only: names the first input the current term leaves
 * unbounded. */
static void assembly_fail_open_input(Assembly *a) {
  for (int v = 0; v < a->n_in; v++) {
    double l = a->lo[v], h = a->hi[v];
    for (guint i = 0; i < a->term_x->len; i++) {
      const XLit *x = &g_array_index(a->term_x, XLit, i);
      if (x->var != v)
        continue;
      if (x->upper)
        h = MIN(h, x->value);
      else
        l = MAX(l, x->value);
    }
    if (isinf(l) || isinf(h)) {
      fail_box(a->p, v, l, h);
      return;
    }
  }
}

/* The current term's box, as its key in a->key: runs of one variable
 * refine the common bounds, and the key lists (var, lower, upper) where
 * they differ from the common box. Fails when the box is empty or open. */
static gboolean assembly_term_box_key(Assembly *a) {
  GArray *term_x = a->term_x;
  int closed = 0;
  g_array_sort(term_x, xlit_var_cmp);
  g_byte_array_set_size(a->key, 0);
  for (guint i = 0; i < term_x->len;) {
    int var = g_array_index(term_x, XLit, i).var;
    double l = a->lo[var], h = a->hi[var];
    for (; i < term_x->len && g_array_index(term_x, XLit, i).var == var; i++) {
      const XLit *x = &g_array_index(term_x, XLit, i);
      if (x->upper)
        h = MIN(h, x->value);
      else
        l = MAX(l, x->value);
    }
    if (l > h) {
      fail_box(a->p, var, l, h);
      return FALSE;
    }
    if ((isinf(a->lo[var]) || isinf(a->hi[var])) && !isinf(l) && !isinf(h))
      closed++;
    if (l != a->lo[var] || h != a->hi[var]) {
      /* +0.0 makes -0.0 and 0.0 one key. */
      l += 0.0;
      h += 0.0;
      g_byte_array_append(a->key, (const guint8 *)&var, sizeof var);
      g_byte_array_append(a->key, (const guint8 *)&l, sizeof l);
      g_byte_array_append(a->key, (const guint8 *)&h, sizeof h);
    }
  }
  if (closed < a->n_open) {
    assembly_fail_open_input(a);
    return FALSE;
  }
  return TRUE;
}

/* The region of the box keyed by a->key: an existing one with the same
 * box, or a new one. */
static gboolean assembly_region_of_key(Assembly *a, int *region) {
  GBytes *bytes = g_bytes_new(a->key->data, a->key->len);
  gpointer found = g_hash_table_lookup(a->box_ids, bytes);
  RegionBuild nb = {0};
  const guint8 *k = a->key->data;
  int zero = 0;

  if (found != NULL) {
    *region = GPOINTER_TO_INT(found) - 1;
    g_bytes_unref(bytes);
    return TRUE;
  }
  if (!sb_limit_fits((double)(a->regions->len + 1) * a->n_in * 2)) {
    g_bytes_unref(bytes);
    fail_at(a->p, -1, SB_VNNLIB_ERROR_UNSUPPORTED,
            "more than %u distinct input boxes of %d inputs need more than "
            "the limit of %" G_GINT64_FORMAT " bytes (" SB_MAX_BYTES_ENV
            " sets it)",
            a->regions->len, a->n_in, sb_max_bytes());
    return FALSE;
  }
  *region = a->regions->len;
  nb.disjunct_start = g_array_new(FALSE, FALSE, sizeof(int));
  nb.atom_index = g_array_new(FALSE, FALSE, sizeof(int));
  nb.x_lower = g_memdup2(a->lo, sizeof(double) * a->n_in);
  nb.x_upper = g_memdup2(a->hi, sizeof(double) * a->n_in);
  for (guint off = 0; off < a->key->len;
       off += sizeof(int) + 2 * sizeof(double)) {
    int var;
    memcpy(&var, k + off, sizeof var);
    memcpy(&nb.x_lower[var], k + off + sizeof var, sizeof(double));
    memcpy(&nb.x_upper[var], k + off + sizeof var + sizeof(double),
           sizeof(double));
  }
  g_array_append_val(nb.disjunct_start, zero);
  g_array_append_val(a->regions, nb);
  g_hash_table_insert(a->box_ids, bytes, GINT_TO_POINTER(*region + 1));
  return TRUE;
}

/* Adds the current term's atoms as a disjunct of the region, unless the
 * region already has that disjunct. */
static gboolean assembly_add_disjunct(Assembly *a, int region) {
  GArray *term_y = a->term_y;
  guint out_n = 0;
  RegionBuild *rb;
  GBytes *bytes;
  int end;

  /* Atom ids are in file order, so sorting lists a disjunct's atoms in
   * file order; equal disjuncts of one region are kept once. */
  g_array_sort(term_y, int_cmp);
  for (guint i = 0; i < term_y->len; i++)
    if (out_n == 0 ||
        g_array_index(term_y, int, out_n - 1) != g_array_index(term_y, int, i))
      g_array_index(term_y, int, out_n++) = g_array_index(term_y, int, i);
  g_array_set_size(term_y, out_n);
  g_byte_array_set_size(a->key, 0);
  g_byte_array_append(a->key, (const guint8 *)&region, sizeof region);
  g_byte_array_append(a->key, (const guint8 *)term_y->data,
                      term_y->len * sizeof(int));
  bytes = g_bytes_new(a->key->data, a->key->len);
  if (!g_hash_table_add(a->seen, bytes))
    return TRUE;
  a->total_atoms += term_y->len;
  if (a->total_atoms > SB_VNNLIB_MAX_LITERALS) {
    fail_at(a->p, -1, SB_VNNLIB_ERROR_UNSUPPORTED,
            "the unsafe region has more than %d atoms over all disjuncts",
            SB_VNNLIB_MAX_LITERALS);
    return FALSE;
  }
  rb = &g_array_index(a->regions, RegionBuild, region);
  g_array_append_vals(rb->atom_index, term_y->data, term_y->len);
  end = rb->atom_index->len;
  g_array_append_val(rb->disjunct_start, end);
  return TRUE;
}

/* One term of the DNF: its box refines the common box (terms whose final
 * boxes are equal share a region) and its atoms, with the common ones,
 * form one disjunct of that region. */
static gboolean assembly_add_term(Assembly *a, const int *lits, int len) {
  int region;
  g_array_set_size(a->term_x, 0);
  g_array_set_size(a->term_y, 0);
  g_array_append_vals(a->term_y, a->common_y->data, a->common_y->len);
  for (int i = 0; i < len; i++) {
    if (lits[i] >= 0)
      g_array_append_val(a->term_y, lits[i]);
    else
      g_array_append_val(a->term_x,
                         g_array_index(a->p->xlits, XLit, -lits[i] - 1));
  }
  if (a->term_y->len > 0)
    a->any_y = TRUE;
  return assembly_term_box_key(a) && assembly_region_of_key(a, &region) &&
         assembly_add_disjunct(a, region);
}

/* The property: dense atoms and the regions, moved out of the assembly. */
static SbProperty *assembly_steal_property(Assembly *a) {
  Parser *p = a->p;
  int n_out = a->n_out;
  SbProperty *prop = g_new0(SbProperty, 1);
  prop->n_inputs = a->n_in;
  prop->n_outputs = n_out;
  prop->n_atoms = p->atoms->len;
  prop->atoms = g_new0(SbAtom, p->atoms->len);
  for (guint k = 0; k < p->atoms->len; k++) {
    const SparseAtom *s = &g_array_index(p->atoms, SparseAtom, k);
    prop->atoms[k].c = g_new0(double, n_out);
    prop->atoms[k].d = s->d;
    for (int i = 0; i < s->n; i++) {
      const YTerm *y = &g_array_index(p->atom_terms, YTerm, s->start + i);
      prop->atoms[k].c[y->j] = y->c;
    }
  }
  prop->n_regions = a->regions->len;
  prop->regions = g_new0(SbRegion, a->regions->len);
  for (guint r = 0; r < a->regions->len; r++) {
    RegionBuild *rb = &g_array_index(a->regions, RegionBuild, r);
    SbRegion *sr = &prop->regions[r];
    sr->x_lower = rb->x_lower;
    sr->x_upper = rb->x_upper;
    rb->x_lower = rb->x_upper = NULL;
    sr->n_disjuncts = rb->disjunct_start->len - 1;
    sr->disjunct_start = (int *)(void *)g_array_free(rb->disjunct_start, FALSE);
    sr->atom_index = (int *)(void *)g_array_free(rb->atom_index, FALSE);
    rb->disjunct_start = rb->atom_index = NULL;
  }
  return prop;
}

/* Builds regions from  common AND (OR of terms): each term's input
 * literals refine the common box; terms whose final boxes are equal share a
 * region. A box is keyed by how it differs from the common box, so a term
 * costs its own size, not n_inputs. */
static SbProperty *assemble(Parser *p, const GArray *common, const Dnf *terms) {
  SbProperty *prop = NULL;
  Assembly a;
  gboolean ok;

  assembly_init(&a, p);
  ok = assembly_common_box(&a, common);
  for (int t = 0; ok && t < dnf_terms(terms); t++)
    ok = assembly_add_term(&a, dnf_term(terms, t), dnf_term_len(terms, t));
  if (ok && !a.any_y)
    fail_at(p, -1, SB_VNNLIB_ERROR_INVALID,
            "no assertion constrains the outputs (Y_j)");
  else if (ok)
    prop = assembly_steal_property(&a);
  assembly_clear(&a);
  return prop;
}

/* ---------------------------------------------------------------- entry */

SbProperty *sb_vnnlib_parse(const char *text, gsize length, GError **error) {
  Parser p = {0};
  GError *local = NULL;
  GPtrArray *asserts = g_ptr_array_new_with_free_func((GDestroyNotify)dnf_free);
  GArray *common = g_array_new(FALSE, FALSE, sizeof(int));
  Dnf *terms = NULL;
  SbProperty *prop = NULL;

  g_return_val_if_fail(text != NULL || length == 0, NULL);
  g_return_val_if_fail(error == NULL || *error == NULL, NULL);

  p.error = &local;
  p.text = text;
  p.nodes = g_array_new(FALSE, FALSE, sizeof(Node));
  for (int k = 0; k < 2; k++) {
    p.decl[k] = g_hash_table_new(g_direct_hash, g_direct_equal);
    p.max_index[k] = -1;
  }
  p.xlits = g_array_new(FALSE, FALSE, sizeof(XLit));
  p.atoms = g_array_new(FALSE, FALSE, sizeof(SparseAtom));
  p.atom_terms = g_array_new(FALSE, FALSE, sizeof(YTerm));
  p.atom_ids = g_hash_table_new_full(g_bytes_hash, g_bytes_equal,
                                     (GDestroyNotify)g_bytes_unref, NULL);

  if (!read_commands(&p, text, length, asserts, common))
    goto out;
  /* The file is the conjunction of its asserts. */
  terms = dnf_and_split(&p, -1, asserts, common);
  if (terms == NULL)
    goto out;
  prop = assemble(&p, common, terms);

out:
  if (local != NULL)
    g_propagate_error(error, local);
  dnf_free(terms);
  g_array_free(common, TRUE);
  g_ptr_array_unref(asserts);
  g_hash_table_unref(p.atom_ids);
  g_array_free(p.atom_terms, TRUE);
  g_array_free(p.atoms, TRUE);
  g_array_free(p.xlits, TRUE);
  for (int k = 0; k < 2; k++)
    g_hash_table_unref(p.decl[k]);
  g_array_free(p.nodes, TRUE);
  return prop;
}

SbProperty *sb_vnnlib_load(const char *path, GError **error) {
  char *text = NULL;
  gsize length = 0;
  GError *local = NULL;
  SbProperty *prop;

  g_return_val_if_fail(path != NULL, NULL);

  if (!g_file_get_contents(path, &text, &length, &local)) {
    g_set_error(error, SB_VNNLIB_ERROR, SB_VNNLIB_ERROR_IO, "%s",
                local->message);
    g_error_free(local);
    return NULL;
  }
  prop = sb_vnnlib_parse(text, length, &local);
  g_free(text);
  if (prop == NULL) {
    g_propagate_prefixed_error(error, local, "%s: ", path);
    return NULL;
  }
  return prop;
}

void sb_property_free(SbProperty *property) {
  if (property == NULL)
    return;
  for (int a = 0; a < property->n_atoms; a++)
    g_free(property->atoms[a].c);
  g_free(property->atoms);
  for (int r = 0; r < property->n_regions; r++) {
    g_free(property->regions[r].x_lower);
    g_free(property->regions[r].x_upper);
    g_free(property->regions[r].disjunct_start);
    g_free(property->regions[r].atom_index);
  }
  g_free(property->regions);
  g_free(property);
}

gboolean sb_region_proven(const SbProperty *property, int region,
                          const double *spec_lower) {
  const SbRegion *r;

  g_return_val_if_fail(property != NULL, FALSE);
  g_return_val_if_fail(region >= 0 && region < property->n_regions, FALSE);
  g_return_val_if_fail(spec_lower != NULL, FALSE);

  r = &property->regions[region];
  for (int j = 0; j < r->n_disjuncts; j++) {
    gboolean refuted = FALSE;
    for (int k = r->disjunct_start[j]; k < r->disjunct_start[j + 1]; k++) {
      int a = r->atom_index[k];
      /* NaN compares false: an unknown bound never proves anything. */
      if (spec_lower[a] > property->atoms[a].d) {
        refuted = TRUE;
        break;
      }
    }
    if (!refuted)
      return FALSE;
  }
  return TRUE;
}
