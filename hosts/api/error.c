/* SPDX-License-Identifier: MIT */
/* The host API's error domain: engine and plugin errors are re-coded here
 * so that callers see one domain whose codes are part of the API. */
#include "config.h"

#include "host-private.h"
#include "hosts/engine/onnx_import.h"
#include "hosts/engine/vnnlib.h"

G_DEFINE_QUARK(shardbound - host - error - quark, shardbound_host_error)

static ShardboundHostError host_code(const GError *e) {
  if (e->domain == SB_ONNX_ERROR || e->domain == SB_VNNLIB_ERROR) {
    /* Both domains order their codes IO, malformed/syntax, unsupported,
     * invalid. */
    switch (e->code) {
    case SB_ONNX_ERROR_IO:
      return SHARDBOUND_HOST_ERROR_IO;
    case SB_ONNX_ERROR_UNSUPPORTED:
      return SHARDBOUND_HOST_ERROR_UNSUPPORTED;
    default:
      return SHARDBOUND_HOST_ERROR_BAD_INPUT;
    }
  }
  if (e->domain == SB_PLUGIN_ERROR) {
    switch (e->code) {
    case SB_PLUGIN_ERROR_NOT_FOUND:
    case SB_PLUGIN_ERROR_REFUSED:
      return SHARDBOUND_HOST_ERROR_NO_BACKEND;
    case SB_PLUGIN_ERROR_CONFIG:
      return SHARDBOUND_HOST_ERROR_INVALID_ARGUMENT;
    default:
      return SHARDBOUND_HOST_ERROR_BACKEND;
    }
  }
  if (e->domain == SB_ENGINE_ERROR) {
    switch (e->code) {
    case SB_ENGINE_ERROR_INVALID_INPUT:
      return SHARDBOUND_HOST_ERROR_BAD_INPUT;
    case SB_ENGINE_ERROR_UNSUPPORTED:
      return SHARDBOUND_HOST_ERROR_UNSUPPORTED;
    case SB_ENGINE_ERROR_NO_MEMORY:
      return SHARDBOUND_HOST_ERROR_NO_MEMORY;
    default:
      return SHARDBOUND_HOST_ERROR_BACKEND;
    }
  }
  if (e->domain == G_FILE_ERROR)
    return SHARDBOUND_HOST_ERROR_IO;
  if (e->domain == SHARDBOUND_HOST_ERROR)
    return (ShardboundHostError)e->code;
  /* Anything else comes from a call into the backend. */
  return SHARDBOUND_HOST_ERROR_BACKEND;
}

void sb_host_propagate_error(GError **error, GError *engine_error) {
  if (engine_error == NULL) {
    g_set_error_literal(error, SHARDBOUND_HOST_ERROR,
                        SHARDBOUND_HOST_ERROR_BACKEND,
                        "failed without a reason (a bug: please report it)");
    return;
  }
  ShardboundHostError code = host_code(engine_error);
  engine_error->domain = SHARDBOUND_HOST_ERROR;
  engine_error->code = code;
  g_propagate_error(error, engine_error);
}
