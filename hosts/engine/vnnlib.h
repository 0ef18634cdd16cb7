/* SPDX-License-Identifier: MIT */
/* VNNLIB properties: an input box and the UNSAFE output region. */
#ifndef SB_VNNLIB_H
#define SB_VNNLIB_H

#include <glib.h>

G_BEGIN_DECLS

#define SB_VNNLIB_ERROR (sb_vnnlib_error_quark())
GQuark sb_vnnlib_error_quark(void);
typedef enum {
  SB_VNNLIB_ERROR_IO,
  SB_VNNLIB_ERROR_SYNTAX,      /* message carries "line L, column C" */
  SB_VNNLIB_ERROR_UNSUPPORTED, /* a construct we do not handle */
  SB_VNNLIB_ERROR_INVALID      /* undeclared variable, empty box, ... */
} SbVnnlibError;

/* One atom of the unsafe region, normalised to  c . y <= d. */
typedef struct {
  double *c; /* [n_outputs] */
  double d;
} SbAtom;

/* One input region with the unsafe output region that applies to it:
 * unsafe  <=>  OR over disjuncts ( AND over the disjunct's atoms ). */
typedef struct {
  double *x_lower; /* [n_inputs] */
  double *x_upper; /* [n_inputs] */
  int n_disjuncts;
  int *
      disjunct_start; /* [n_disjuncts + 1]: atoms of disjunct j are
                         atom_index[disjunct_start[j] .. disjunct_start[j+1]) */
  int *atom_index;    /* indices into SbProperty.atoms */
} SbRegion;

typedef struct {
  int n_inputs;  /* number of declared X_i */
  int n_outputs; /* number of declared Y_j */
  int n_atoms;   /* distinct atoms, in file order */
  SbAtom *atoms;
  int n_regions; /* 1 unless the file has a disjunction over input boxes */
  SbRegion *regions;
} SbProperty;

/* Parse a VNNLIB file. The asserted formula is put in disjunctive normal
 * form; input constraints (X bounds) of each DNF term select its region.
 * Returns NULL and sets error on failure. */
SbProperty *sb_vnnlib_load(const char *path, GError **error);
SbProperty *sb_vnnlib_parse(const char *text, gsize length, GError **error);
void sb_property_free(SbProperty *property);

/* Property holds for region r iff every disjunct has an atom whose
 * lower bound of c.y exceeds d. spec_lower[k] is the lower bound of atom k. */
gboolean sb_region_proven(const SbProperty *property, int region,
                          const double *spec_lower);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SbProperty, sb_property_free)

G_END_DECLS

#endif
