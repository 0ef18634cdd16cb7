/* SPDX-License-Identifier: MIT */
/* Settings of bounds and verification, set by name from text: one table,
 * so that every binding and the command reject the same unknown names with
 * the same message. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "host-private.h"

typedef enum { KIND_INT, KIND_DOUBLE, KIND_BOOL, KIND_BRANCHING } Kind;

typedef struct {
  const char *key;
  Kind kind;
  size_t offset;  /* into ShardboundSettings */
  double minimum; /* numbers: smallest accepted value */
} Setting;

#define AT(member) offsetof(ShardboundSettings, member)

static const Setting settings_table[] = {
    {"iterations", KIND_INT, AT(bounds.alpha.iterations), 0},
    {"final_iterations", KIND_INT, AT(bounds.alpha.final_iterations), 0},
    {"lr", KIND_DOUBLE, AT(bounds.alpha.learning_rate), 0},
    {"decay", KIND_DOUBLE, AT(bounds.alpha.decay), 0},
    {"patience", KIND_INT, AT(bounds.alpha.patience), 1},
    {"optimize_intermediate", KIND_BOOL, AT(bounds.alpha.optimize_intermediate),
     0},
    {"intersect_ibp", KIND_BOOL, AT(bounds.intersect_ibp), 0},
    {"timeout", KIND_DOUBLE, AT(verify.timeout), 0},
    {"bab_time", KIND_DOUBLE, AT(verify.bab_time), 0},
    {"bab_domains", KIND_INT, AT(verify.bab_domains), 0},
    {"batch", KIND_INT, AT(verify.batch), 1},
    {"max_domains", KIND_INT, AT(verify.max_domains), 1},
    {"max_memory_mib", KIND_DOUBLE, AT(verify.max_memory_mib), 0},
    {"branching", KIND_BRANCHING, AT(verify.branching), 0},
    {"bab_iterations", KIND_INT, AT(verify.bab_iterations), 1},
    {"bab_lr_alpha", KIND_DOUBLE, AT(verify.bab_lr_alpha), 0},
    {"bab_lr_beta", KIND_DOUBLE, AT(verify.bab_lr_beta), 0},
    {"fsb_candidates", KIND_INT, AT(verify.fsb_candidates), 1},
    {"tighten_layers", KIND_INT, AT(verify.tighten_layers), 0},
    {"tighten_domains", KIND_INT, AT(verify.tighten_domains), 1},
    {"tighten_after", KIND_INT, AT(verify.tighten_after), 0},
    {"tighten_min_gain", KIND_DOUBLE, AT(verify.tighten_min_gain), 0},
    {"refine_intermediate", KIND_BOOL, AT(verify.refine_intermediate), 0},
    {"warm_betas", KIND_BOOL, AT(verify.warm_betas), 0},
    {"attack", KIND_BOOL, AT(verify.attack), 0},
    {"attack_restarts", KIND_INT, AT(verify.attack_params.restarts), 1},
    {"attack_steps", KIND_INT, AT(verify.attack_params.steps), 0},
};

ShardboundSettings *shardbound_settings_new(void) {
  ShardboundSettings *s = g_new0(ShardboundSettings, 1);
  sb_bounds_options_init(&s->bounds);
  sb_verify_params_init(&s->verify);
  return s;
}

ShardboundSettings *
shardbound_settings_copy(const ShardboundSettings *settings) {
  return g_memdup2(settings, sizeof *settings);
}

void shardbound_settings_free(ShardboundSettings *settings) {
  g_free(settings);
}

const char *const *shardbound_settings_keys(void) {
  static const char *keys[G_N_ELEMENTS(settings_table) + 1];
  if (keys[0] == NULL)
    for (gsize i = 0; i < G_N_ELEMENTS(settings_table); i++)
      keys[i] = settings_table[i].key;
  return keys;
}

static const Setting *find_setting(const char *key, GError **error) {
  for (gsize i = 0; i < G_N_ELEMENTS(settings_table); i++)
    if (key != NULL && strcmp(key, settings_table[i].key) == 0)
      return &settings_table[i];
  g_autofree char *known =
      g_strjoinv(", ", (char **)shardbound_settings_keys());
  g_set_error(error, SHARDBOUND_HOST_ERROR,
              SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
              "unknown setting '%s' (known: %s)", key ? key : "(null)", known);
  return NULL;
}

char *shardbound_settings_get(const ShardboundSettings *settings,
                              const char *key, GError **error) {
  const Setting *s = find_setting(key, error);
  if (s == NULL)
    return NULL;
  const char *field = (const char *)settings + s->offset;
  switch (s->kind) {
  case KIND_INT:
    return g_strdup_printf("%d", *(const int *)field);
  case KIND_DOUBLE: {
    char text[G_ASCII_DTOSTR_BUF_SIZE];
    return g_strdup(g_ascii_dtostr(text, sizeof text, *(const double *)field));
  }
  case KIND_BOOL:
    return g_strdup(*(const gboolean *)field ? "true" : "false");
  case KIND_BRANCHING:
    return g_strdup(*(const SbBranching *)field == SB_BRANCH_FSB ? "fsb"
                                                                 : "babsr");
  }
  g_assert_not_reached();
}

static gboolean invalid(GError **error, const char *key, const char *value,
                        const char *expected) {
  g_set_error(error, SHARDBOUND_HOST_ERROR,
              SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT,
              "setting '%s': '%s' is not %s", key, value, expected);
  return FALSE;
}

gboolean shardbound_settings_set(ShardboundSettings *settings, const char *key,
                                 const char *value, GError **error) {
  const Setting *s = find_setting(key, error);
  if (s == NULL)
    return FALSE;
  if (value == NULL)
    value = "";
  char *field = (char *)settings + s->offset;
  char *end = NULL;
  switch (s->kind) {
  case KIND_INT: {
    errno = 0;
    long v = strtol(value, &end, 10);
    if (end == value || *end != '\0' || errno != 0 || v < s->minimum ||
        v > G_MAXINT) {
      g_autofree char *what = g_strdup_printf("an integer >= %g", s->minimum);
      return invalid(error, key, value, what);
    }
    *(int *)field = (int)v;
    return TRUE;
  }
  case KIND_DOUBLE: {
    double v = g_ascii_strtod(value, &end);
    if (end == value || *end != '\0' || !isfinite(v) || v < s->minimum) {
      g_autofree char *what =
          g_strdup_printf("a finite number >= %g", s->minimum);
      return invalid(error, key, value, what);
    }
    *(double *)field = v;
    return TRUE;
  }
  case KIND_BOOL:
    if (g_ascii_strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0)
      *(gboolean *)field = TRUE;
    else if (g_ascii_strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0)
      *(gboolean *)field = FALSE;
    else
      return invalid(error, key, value, "true, false, 1 or 0");
    return TRUE;
  case KIND_BRANCHING:
    if (strcmp(value, "babsr") == 0)
      *(SbBranching *)field = SB_BRANCH_BABSR;
    else if (strcmp(value, "fsb") == 0)
      *(SbBranching *)field = SB_BRANCH_FSB;
    else
      return invalid(error, key, value, "babsr or fsb");
    return TRUE;
  }
  g_assert_not_reached();
}

void shardbound_settings_set_progress(ShardboundSettings *settings,
                                      ShardboundProgressFunc func, void *user) {
  settings->verify.progress = func;
  settings->verify.progress_user = user;
}
