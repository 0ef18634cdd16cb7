# SPDX-License-Identifier: MIT
"""numpy arrays in and out; torch tensors accepted where torch is installed,
and then results come back as torch tensors."""

import ctypes

import numpy as np

from .errors import InvalidArgumentError


def is_torch(value):
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def to_numpy(value, name, dtype=np.float64):
    """A C-contiguous copy (or view) of value as dtype."""
    if is_torch(value):
        value = value.detach().cpu().numpy()
    try:
        array = np.ascontiguousarray(value, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name}: not an array of numbers ({e})") from None
    return array


def flat(value, name, size, dtype=np.float64):
    """value as a flat contiguous array of exactly `size` entries."""
    array = to_numpy(value, name, dtype).reshape(-1)
    if array.size != size:
        raise InvalidArgumentError(
            f"{name}: {array.size} values, but the network takes {size}")
    return array


def pointer(array, ctype=ctypes.c_double):
    return array.ctypes.data_as(ctypes.POINTER(ctype))


def from_c(ptr, count):
    """A numpy copy of `count` entries at a C pointer (NULL -> None)."""
    if not ptr:
        return None
    return np.ctypeslib.as_array(ptr, shape=(count,)).copy()


def like(array, template):
    """array as a torch tensor when template is one, else as it is."""
    if array is not None and is_torch(template):
        import torch
        return torch.from_numpy(array)
    return array
