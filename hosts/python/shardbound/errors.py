# SPDX-License-Identifier: MIT
"""Exceptions raised for the host API's error codes (shardbound-host.h).

Each one is also the built-in exception a Python caller would expect for
that kind of failure, so ``except ValueError`` catches a bad shape."""


class Error(Exception):
    """Any failure reported by shardbound; the message says what and why."""


class InvalidArgumentError(Error, ValueError):
    """A bad argument, option or setting; the message names it."""


class BadInputError(Error, ValueError):
    """Malformed ONNX or VNNLIB, or shapes that do not agree."""


class UnsupportedError(Error, NotImplementedError):
    """An operator, layer or argument that shardbound does not handle."""


class NoBackendError(Error, LookupError):
    """No backend of that name on the search path, or it was refused."""


class BackendError(Error, RuntimeError):
    """The backend failed (device error, out of memory)."""


class FileError(Error, OSError):
    """A file could not be read."""


class OutOfMemoryError(BackendError, MemoryError):
    """The backend ran out of memory."""


# In the order of ShardboundHostError.
BY_CODE = (InvalidArgumentError, BadInputError, UnsupportedError,
           NoBackendError, BackendError, FileError, OutOfMemoryError)
