/* SPDX-License-Identifier: MIT */
/* Checks a backend descriptor against ABI v1 before the host relies on it,
 * and words refusals so a user can act on them. */
#include "plugin/validate.h"

#include <gmodule.h>
#include <string.h>

/* Every function of the minor a backend was built for is required; a backend
 * advertises what it can compute through capabilities and SB_ERR_UNSUPPORTED,
 * never through NULL. */
#define REQUIRED(member)                                                       \
  { #member, offsetof(sb_backend_v1, member) }
static const struct {
  const char *name;
  size_t offset;
} required_functions[] = {
    REQUIRED(context_create),
    REQUIRED(context_destroy),
    REQUIRED(last_error),
    REQUIRED(rank_count),
    REQUIRED(tensor_create),
    REQUIRED(tensor_free),
    REQUIRED(tensor_write),
    REQUIRED(tensor_read),
    REQUIRED(tensor_set_unit_rows),
    REQUIRED(layer_create),
    REQUIRED(layer_free),
    REQUIRED(layer_forward),
    REQUIRED(layer_ibp),
    REQUIRED(layer_backward),
    REQUIRED(concretize),
    REQUIRED(memory_mark_baseline),
    REQUIRED(memory_reset_peak),
    REQUIRED(memory_stats),
    /* @since 1.1: required when the declared struct_size holds them. */
    REQUIRED(layer_backward_vjp),
    REQUIRED(concretize_vjp),
    REQUIRED(relu_init_alpha),
    REQUIRED(adam_step),
    REQUIRED(beta_apply),
    REQUIRED(beta_vjp),
    /* @since 1.2 */
    REQUIRED(process_info),
    REQUIRED(broadcast_host),
    REQUIRED(lost_rank),
    /* @since 1.3 */
    REQUIRED(tensor_create_empty),
};
#undef REQUIRED

char *sb_refusal_new(const char *path, gboolean versions_known, guint major,
                     guint minor, const char *problem, const char *remedy) {
  g_autofree char *versions =
      versions_known
          ? g_strdup_printf("backend ABI %u.%u, host ABI %d.%d", major, minor,
                            SB_ABI_MAJOR, SB_ABI_MINOR)
          : g_strdup_printf("host ABI %d.%d", SB_ABI_MAJOR, SB_ABI_MINOR);
  return g_strdup_printf("%s: refused: %s (%s); %s", path, problem, versions,
                         remedy);
}

static char *rebuild_refusal(const char *path, gboolean known, guint major,
                             guint minor, const char *problem) {
  g_autofree char *remedy = g_strdup_printf(
      "rebuild the backend against shardbound ABI %d.x", SB_ABI_MAJOR);
  return sb_refusal_new(path, known, major, minor, problem, remedy);
}

char *sb_descriptor_validate(const sb_backend_v1 *desc, const char *path,
                             const char *file_name, guint *major,
                             guint *minor) {
  *major = 0;
  *minor = 0;
  if (desc == NULL)
    return rebuild_refusal(path, FALSE, 0, 0,
                           SB_ENTRY_SYMBOL_V1 " returned SB_OK but no "
                                              "descriptor");

  /* struct_size is the one member every version has; nothing else may be
   * read before it says the member is there. */
  if (!SB_HAS_MEMBER(desc, sb_backend_v1, abi_minor)) {
    g_autofree char *problem = g_strdup_printf(
        "descriptor declares struct_size %u, too small to hold its ABI "
        "version",
        desc->struct_size);
    return rebuild_refusal(path, FALSE, 0, 0, problem);
  }
  *major = desc->abi_major;
  *minor = desc->abi_minor;

  if (desc->abi_major != SB_ABI_MAJOR) {
    g_autofree char *problem = g_strdup_printf(
        "ABI major %u is not %d, which entry symbol " SB_ENTRY_SYMBOL_V1
        " requires",
        desc->abi_major, SB_ABI_MAJOR);
    return rebuild_refusal(path, TRUE, *major, *minor, problem);
  }

  if (desc->struct_size < SB_BACKEND_V1_0_SIZE) {
    g_autofree char *problem = g_strdup_printf(
        "descriptor struct_size %u is smaller than the %zu bytes of the "
        "ABI %d.0 descriptor",
        desc->struct_size, (size_t)SB_BACKEND_V1_0_SIZE, SB_ABI_MAJOR);
    return rebuild_refusal(path, TRUE, *major, *minor, problem);
  }

  for (gsize i = 0; i < G_N_ELEMENTS(required_functions); i++) {
    void (*fn)(void);
    if (required_functions[i].offset + sizeof fn > desc->struct_size)
      continue; /* appended after the minor this backend was built for */
    memcpy(&fn, (const char *)desc + required_functions[i].offset, sizeof fn);
    if (fn == NULL) {
      g_autofree char *problem = g_strdup_printf("required function %s is NULL",
                                                 required_functions[i].name);
      return sb_refusal_new(
          path, TRUE, *major, *minor, problem,
          "implement it in the backend (return SB_ERR_UNSUPPORTED for "
          "operations it does not support) and rebuild");
    }
  }

  if (desc->name == NULL || desc->name[0] == '\0') {
    g_autofree char *remedy = g_strdup_printf(
        "set the descriptor's name to \"%s\" and rebuild", file_name);
    return sb_refusal_new(path, TRUE, *major, *minor, "descriptor has no name",
                          remedy);
  }
  if (strcmp(desc->name, file_name) != 0) {
    g_autofree char *problem = g_strdup_printf(
        "descriptor name '%s' does not match the file name's '%s'", desc->name,
        file_name);
    g_autofree char *remedy = g_strdup_printf(
        "rename the file to shardbound-backend-%s.%s (or set the "
        "descriptor's name to \"%s\")",
        desc->name, G_MODULE_SUFFIX, file_name);
    return sb_refusal_new(path, TRUE, *major, *minor, problem, remedy);
  }
  return NULL;
}
