/* SPDX-License-Identifier: MIT */
/* The VNNLIB parser on arbitrary text: a property whose regions and
 * disjuncts index its own atoms, or an SB_VNNLIB_ERROR. */
#include "config.h"

#include "fuzz/fuzz_common.h"
#include "hosts/engine/vnnlib.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  sb_fuzz_init();
  return 0;
}

static void check_property(const SbProperty *p) {
  if (p->n_regions < 1 || p->n_inputs < 0 || p->n_outputs < 0 || p->n_atoms < 0)
    abort();
  double *spec_lower = g_new0(double, MAX(p->n_atoms, 1));
  for (int r = 0; r < p->n_regions; r++) {
    const SbRegion *region = &p->regions[r];
    for (int i = 0; i < p->n_inputs; i++)
      if (!(region->x_lower[i] <= region->x_upper[i]))
        abort();
    for (int j = 0; j < region->n_disjuncts; j++)
      for (int a = region->disjunct_start[j]; a < region->disjunct_start[j + 1];
           a++)
        if (region->atom_index[a] < 0 || region->atom_index[a] >= p->n_atoms)
          abort();
    sb_region_proven(p, r, spec_lower);
  }
  g_free(spec_lower);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  GError *error = NULL;
  SbProperty *p = sb_vnnlib_parse((const char *)data, size, &error);
  sb_fuzz_expect(p != NULL, error, SB_VNNLIB_ERROR);
  if (p != NULL) {
    check_property(p);
    sb_property_free(p);
  }
  return 0;
}
