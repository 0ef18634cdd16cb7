# SPDX-License-Identifier: MIT
"""Loads libshardbound-host with ctypes and declares its functions.

Which library: $SHARDBOUND_HOST_LIBRARY when set; else, when this package
sits in a shardbound build tree (hosts/python/shardbound), the tree's
hosts/api/.libs copy; else the one installed in the libdir recorded at
install time; else whatever the dynamic loader finds."""

import ctypes
import os

from . import errors

SONAME = "libshardbound-host.so.0"
_HERE = os.path.dirname(os.path.abspath(__file__))
_TREE = os.path.normpath(os.path.join(_HERE, "..", "..", ".."))


def _tree_file(*parts):
    path = os.path.join(_TREE, *parts)
    return path if os.path.exists(path) else None


def _candidates():
    explicit = os.environ.get("SHARDBOUND_HOST_LIBRARY")
    if explicit:
        yield explicit
        return
    in_tree = _tree_file("hosts", "api", ".libs", SONAME)
    if in_tree:
        yield in_tree
    try:
        from . import _installed
        yield os.path.join(_installed.LIBDIR, SONAME)
    except ImportError:
        pass
    yield SONAME


def _load():
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"{path}: {e}")
    raise ImportError("shardbound: cannot load the host library ("
                      + "; ".join(tried) + "). Build shardbound, then set "
                      "PYTHONPATH to its hosts/python folder, or install it "
                      "with `make install`.")


lib, LIBRARY_PATH = _load()

# The build tree's backends, used when this package runs from the tree and
# the environment names none (see docs/python.md).
TREE_BACKEND_PATH = (_tree_file("backends", ".libs")
                     if LIBRARY_PATH.startswith(_TREE + os.sep) else None)

_glib = ctypes.CDLL("libglib-2.0.so.0")


class GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int),
                ("message", ctypes.c_char_p)]


_glib.g_error_free.argtypes = [ctypes.POINTER(GError)]
_glib.g_error_free.restype = None


class MemoryStats(ctypes.Structure):
    """ShardboundMemoryStats (its layout is part of the API)."""
    _fields_ = [("struct_size", ctypes.c_size_t),
                ("baseline_bytes", ctypes.c_uint64),
                ("current_bytes", ctypes.c_uint64),
                ("peak_bytes", ctypes.c_uint64),
                ("device_used_bytes", ctypes.c_int64),
                ("current_by_category", ctypes.c_uint64 * 7),
                ("peak_by_category", ctypes.c_uint64 * 7),
                ("peak_rss_bytes", ctypes.c_int64)]


_P = ctypes.c_void_p
_S = ctypes.c_char_p
_I = ctypes.c_int
_I64 = ctypes.c_int64
_D = ctypes.c_double
_PD = ctypes.POINTER(ctypes.c_double)
_PF = ctypes.POINTER(ctypes.c_float)
_E = ctypes.POINTER(ctypes.POINTER(GError))
_B = ctypes.c_int  # gboolean
# ShardboundProgressFunc(user, done, left, worst_margin, seconds)
PROGRESS_FUNC = ctypes.CFUNCTYPE(None, _P, _I64, _I64, _D, _D)

_SIGNATURES = {
    "shardbound_host_version": (_S, []),
    "shardbound_host_api_version": (None, [ctypes.POINTER(_I), ctypes.POINTER(_I)]),
    "shardbound_backend_list_new": (_P, [_S, _S, _E]),
    "shardbound_backend_list_free": (None, [_P]),
    "shardbound_backend_list_count": (_I, [_P]),
    "shardbound_backend_list_name": (_S, [_P, _I]),
    "shardbound_backend_list_path": (_S, [_P, _I]),
    "shardbound_backend_list_refusal": (_S, [_P, _I]),
    "shardbound_backend_list_capabilities": (_S, [_P, _I]),
    "shardbound_backend_list_abi": (_S, [_P, _I]),
    "shardbound_backend_list_version": (_S, [_P, _I]),
    "shardbound_backend_list_description": (_S, [_P, _I]),
    "shardbound_backend_list_default": (_S, [_P]),
    "shardbound_session_open": (_P, [_S, _I, ctypes.POINTER(_S), _S, _S, _E]),
    "shardbound_session_close": (None, [_P]),
    "shardbound_session_backend": (_S, [_P]),
    "shardbound_session_rank_count": (_I, [_P]),
    "shardbound_session_process_index": (_I, [_P]),
    "shardbound_session_process_count": (_I, [_P]),
    "shardbound_memory_category_name": (_S, [_I]),
    "shardbound_session_memory_reset": (_B, [_P, _E]),
    "shardbound_session_memory_stats": (_B, [_P, _I, ctypes.POINTER(MemoryStats), _E]),
    "shardbound_settings_new": (_P, []),
    "shardbound_settings_free": (None, [_P]),
    "shardbound_settings_set": (_B, [_P, _S, _S, _E]),
    "shardbound_settings_set_progress": (None, [_P, PROGRESS_FUNC, _P]),
    "shardbound_settings_keys": (ctypes.POINTER(_S), []),
    "shardbound_network_load": (_P, [_P, _S, _E]),
    "shardbound_network_load_bytes": (_P, [_P, ctypes.c_char_p, ctypes.c_size_t, _E]),
    "shardbound_network_free": (None, [_P]),
    "shardbound_network_input_size": (_I64, [_P]),
    "shardbound_network_output_size": (_I64, [_P]),
    "shardbound_network_input_shape": (_I, [_P, ctypes.POINTER(_I64)]),
    "shardbound_network_evaluate": (None, [_P, _PF, _PD]),
    "shardbound_method_parse": (_B, [_S, ctypes.POINTER(_I), _E]),
    "shardbound_network_bounds": (_P, [_P, _I, _P, _PD, _PD, _I, _PD, _E]),
    "shardbound_bounds_free": (None, [_P]),
    "shardbound_bounds_output_count": (_I, [_P]),
    "shardbound_bounds_output_lower": (_PD, [_P]),
    "shardbound_bounds_output_upper": (_PD, [_P]),
    "shardbound_bounds_spec_count": (_I, [_P]),
    "shardbound_bounds_spec_lower": (_PD, [_P]),
    "shardbound_bounds_spec_upper": (_PD, [_P]),
    "shardbound_bounds_unstable_relus": (_I, [_P]),
    "shardbound_bounds_seconds": (_D, [_P]),
    "shardbound_property_load": (_P, [_S, _E]),
    "shardbound_property_parse": (_P, [ctypes.c_char_p, ctypes.c_size_t, _E]),
    "shardbound_property_free": (None, [_P]),
    "shardbound_property_input_count": (_I, [_P]),
    "shardbound_property_output_count": (_I, [_P]),
    "shardbound_property_region_count": (_I, [_P]),
    "shardbound_property_region_lower": (_PD, [_P, _I]),
    "shardbound_property_region_upper": (_PD, [_P, _I]),
    "shardbound_property_atom_count": (_I, [_P]),
    "shardbound_property_atom_rows": (_PD, [_P]),
    "shardbound_property_atom_rhs": (_PD, [_P]),
    "shardbound_property_proven": (_B, [_P, _I, _PD]),
    "shardbound_verify": (_P, [_P, _P, _P, _E]),
    "shardbound_verdict_free": (None, [_P]),
    "shardbound_verdict_answer": (_I, [_P]),
    "shardbound_answer_name": (_S, [_I]),
    "shardbound_verdict_input": (_PF, [_P]),
    "shardbound_verdict_output": (_PD, [_P]),
    "shardbound_verdict_region": (_I, [_P]),
    "shardbound_verdict_reason": (_S, [_P]),
    "shardbound_verdict_domains": (_I64, [_P]),
    "shardbound_verdict_seconds": (_D, [_P]),
    "shardbound_verdict_bab_seconds": (_D, [_P]),
    "shardbound_verdict_tighten_domains": (_I64, [_P]),
    "shardbound_verdict_found_margin": (_D, [_P]),
}

for _name, (_restype, _argtypes) in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.restype = _restype
    _f.argtypes = _argtypes


def call(function, *args):
    """Calls a function whose last argument is GError **error; raises the
    exception of its code when it fails (NULL or FALSE)."""
    err = ctypes.POINTER(GError)()
    result = getattr(lib, function)(*args, ctypes.byref(err))
    if err:
        code, message = err.contents.code, err.contents.message.decode(errors="replace")
        _glib.g_error_free(err)
        raise errors.BY_CODE[code](message) if 0 <= code < len(errors.BY_CODE) \
            else errors.Error(message)
    if not result:
        raise errors.Error(f"{function} failed without a reason")
    return result


def text(value):
    return None if value is None else value.decode(errors="replace")


def encode(value):
    return None if value is None else os.fsencode(value) if isinstance(value, os.PathLike) \
        else str(value).encode()
