/* SPDX-License-Identifier: MIT */
/* VNNLIB properties: input boxes and the atoms of the unsafe region. */
#include "config.h"

#include "host-private.h"
#include "hosts/engine/problem.h"

static ShardboundProperty *property_new(SbProperty *prop, GError *e,
                                        GError **error) {
  if (prop == NULL) {
    sb_host_propagate_error(error, e);
    return NULL;
  }
  ShardboundProperty *p = g_new0(ShardboundProperty, 1);
  p->prop = prop;
  p->atom_rows = sb_property_spec_rows(prop);
  p->atom_rhs = g_new0(double, MAX(prop->n_atoms, 1));
  for (int k = 0; k < prop->n_atoms; k++)
    p->atom_rhs[k] = prop->atoms[k].d;
  return p;
}

ShardboundProperty *shardbound_property_load(const char *vnnlib_path,
                                             GError **error) {
  g_return_val_if_fail(vnnlib_path != NULL, NULL);
  GError *e = NULL;
  SbProperty *prop = sb_vnnlib_load(vnnlib_path, &e);
  return property_new(prop, e, error);
}

ShardboundProperty *shardbound_property_parse(const char *text, size_t length,
                                              GError **error) {
  g_return_val_if_fail(text != NULL || length == 0, NULL);
  GError *e = NULL;
  SbProperty *prop = sb_vnnlib_parse(text != NULL ? text : "", length, &e);
  return property_new(prop, e, error);
}

void shardbound_property_free(ShardboundProperty *p) {
  if (p == NULL)
    return;
  sb_property_free(p->prop);
  g_free(p->atom_rows);
  g_free(p->atom_rhs);
  g_free(p);
}

int shardbound_property_input_count(const ShardboundProperty *p) {
  return p->prop->n_inputs;
}

int shardbound_property_output_count(const ShardboundProperty *p) {
  return p->prop->n_outputs;
}

int shardbound_property_region_count(const ShardboundProperty *p) {
  return p->prop->n_regions;
}

const double *shardbound_property_region_lower(const ShardboundProperty *p,
                                               int region) {
  if (region < 0 || region >= p->prop->n_regions)
    return NULL;
  return p->prop->regions[region].x_lower;
}

const double *shardbound_property_region_upper(const ShardboundProperty *p,
                                               int region) {
  if (region < 0 || region >= p->prop->n_regions)
    return NULL;
  return p->prop->regions[region].x_upper;
}

int shardbound_property_atom_count(const ShardboundProperty *p) {
  return p->prop->n_atoms;
}

const double *shardbound_property_atom_rows(const ShardboundProperty *p) {
  return p->atom_rows;
}

const double *shardbound_property_atom_rhs(const ShardboundProperty *p) {
  return p->atom_rhs;
}

gboolean shardbound_property_proven(const ShardboundProperty *p, int region,
                                    const double *atom_lower) {
  if (region < 0 || region >= p->prop->n_regions || atom_lower == NULL)
    return FALSE;
  return sb_region_proven(p->prop, region, atom_lower);
}

gboolean shardbound_property_check_network(const ShardboundProperty *p,
                                           const ShardboundNetwork *network,
                                           GError **error) {
  GError *local = NULL;
  if (sb_problem_check(network->graph, p->prop, "the network", "the property",
                       &local))
    return TRUE;
  g_set_error_literal(error, SHARDBOUND_HOST_ERROR,
                      SHARDBOUND_HOST_ERROR_BAD_INPUT, local->message);
  g_error_free(local);
  return FALSE;
}
