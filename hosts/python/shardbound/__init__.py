# SPDX-License-Identifier: MIT
"""shardbound: provable bounds and complete verification of neural networks
on interchangeable backends (cpu, cuda, multi-rank fsdp and tp).

    import shardbound
    shardbound.backends()
    with shardbound.Session(backend="fsdp", ranks=4) as s:
        b = s.bounds("net.onnx", x_lower, x_upper, method="crown")
        r = s.verify("net.onnx", "prop.vnnlib", timeout=60)

`shardbound.lirpa` is a drop-in for auto_LiRPA's BoundedModule."""

import ctypes as _ctypes

from ._library import lib as _lib, LIBRARY_PATH
from .errors import (Error, InvalidArgumentError, BadInputError, UnsupportedError,
                     NoBackendError, BackendError, FileError, OutOfMemoryError)
from .session import (Backend, Bounds, Network, Progress, Property, Session,
                      VerifyResult, backends, setting_names, METHODS)

__version__ = _lib.shardbound_host_version().decode()


def api_version():
    """(major, minor) of the host API of the loaded library."""
    major, minor = _ctypes.c_int(), _ctypes.c_int()
    _lib.shardbound_host_api_version(_ctypes.byref(major), _ctypes.byref(minor))
    return major.value, minor.value


__all__ = ["Backend", "Bounds", "Network", "Progress", "Property", "Session",
           "VerifyResult", "backends", "setting_names", "api_version", "METHODS",
           "LIBRARY_PATH",
           "Error", "InvalidArgumentError", "BadInputError", "UnsupportedError",
           "NoBackendError", "BackendError", "FileError", "OutOfMemoryError"]
