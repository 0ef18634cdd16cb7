# SPDX-License-Identifier: MIT
"""Sessions, networks, properties and results over the host API."""

import ctypes
import os
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from . import _arrays, _library
from ._library import call, encode, lib, text, MemoryStats, TREE_BACKEND_PATH
from .errors import InvalidArgumentError

METHODS = {"ibp": 0, "crown": 1, "alpha-crown": 2}


@dataclass
class Backend:
    """One backend file on the search path."""
    name: str
    path: str
    usable: bool
    refusal: Optional[str]
    capabilities: List[str]
    abi: str
    version: Optional[str]
    description: Optional[str]
    default: bool


def _default_backend_path(backend_path):
    if backend_path is None and "SHARDBOUND_BACKEND_PATH" not in os.environ:
        return TREE_BACKEND_PATH
    return backend_path


def backends(backend_path=None, config_file=None):
    """Every backend on the search path, usable and refused."""
    handle = call("shardbound_backend_list_new",
                  encode(_default_backend_path(backend_path)), encode(config_file))
    try:
        default = text(lib.shardbound_backend_list_default(handle))
        found = []
        for i in range(lib.shardbound_backend_list_count(handle)):
            name = text(lib.shardbound_backend_list_name(handle, i))
            refusal = text(lib.shardbound_backend_list_refusal(handle, i))
            caps = text(lib.shardbound_backend_list_capabilities(handle, i))
            found.append(Backend(
                name=name, path=text(lib.shardbound_backend_list_path(handle, i)),
                usable=refusal is None, refusal=refusal,
                capabilities=[c for c in caps.split(",") if c and c != "none"],
                abi=text(lib.shardbound_backend_list_abi(handle, i)),
                version=text(lib.shardbound_backend_list_version(handle, i)),
                description=text(lib.shardbound_backend_list_description(handle, i)),
                default=name == default))
        return found
    finally:
        lib.shardbound_backend_list_free(handle)


def setting_names():
    """The names accepted as bound and verification settings."""
    keys = lib.shardbound_settings_keys()
    names, i = [], 0
    while keys[i] is not None:
        names.append(keys[i].decode())
        i += 1
    return names


class _Settings:
    """A ShardboundSettings built from keyword arguments (names checked by
    the C library, so unknown ones fail with its message)."""

    def __init__(self, values):
        self.handle = lib.shardbound_settings_new()
        try:
            for key, value in values.items():
                if isinstance(value, bool):
                    value = "true" if value else "false"
                call("shardbound_settings_set", self.handle, encode(key), encode(value))
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.handle:
            lib.shardbound_settings_free(self.handle)
            self.handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _finite_or_none(value):
    return value if np.isfinite(value) else None


def _method_number(method):
    number = METHODS.get(str(method).lower())
    if number is None:
        raise InvalidArgumentError(
            f"unknown method '{method}' (expected ibp, crown or alpha-crown)")
    return number


@dataclass
class Bounds:
    """Bounds over one input box. lower/upper are those of the spec rows
    when C was given, else those of the outputs."""
    lower: object
    upper: object
    output_lower: object
    output_upper: object
    spec_lower: object
    spec_upper: object
    unstable_relus: int
    seconds: float  # the C call's own time


@dataclass
class Progress:
    """A progress report of branch-and-bound: domains done and still open,
    the lowest margin among the open ones (a proof needs it above 0), and
    the seconds of that search."""
    domains_done: int
    domains_open: int
    worst_margin: float
    seconds: float


@dataclass
class VerifyResult:
    """A verdict: answer is 'unsat', 'sat', 'unknown' or 'timeout'."""
    answer: str
    counterexample: Optional[tuple]  # (x, y) when sat
    seconds: float
    domains: int
    memory: list
    reason: Optional[str] = None
    region: int = -1
    bab_seconds: float = 0.0  # of seconds, those in branch-and-bound
    # domains of the searches that tightened the root's intermediate bounds
    tighten_domains: int = 0
    # branch-and-bound's last Progress report; None when the root decided.
    # For a timeout or unknown, how far from a proof the search stopped.
    last_progress: Optional[Progress] = None
    # The least margin found at an input checked exactly (the attack's best
    # point, branch-and-bound's minimisers): <= 0 when sat, an upper bound
    # on the property's margin otherwise; None when none was checked.
    found_margin: Optional[float] = None

    @property
    def proven(self):
        return self.answer == "unsat"


class Property:
    """A VNNLIB property: input boxes and the atoms c.y <= d of the unsafe
    region."""

    def __init__(self, path=None, text=None):
        self._handle = None
        if (path is None) == (text is None):
            raise InvalidArgumentError("Property: give a path or text, not both")
        if path is not None:
            self._handle = call("shardbound_property_load", encode(path))
        else:
            data = text.encode() if isinstance(text, str) else bytes(text)
            self._handle = call("shardbound_property_parse", data, len(data))
        h = self._handle
        n_in = lib.shardbound_property_input_count(h)
        n_out = lib.shardbound_property_output_count(h)
        n_atoms = lib.shardbound_property_atom_count(h)
        self.regions = [
            (_arrays.from_c(lib.shardbound_property_region_lower(h, r), n_in),
             _arrays.from_c(lib.shardbound_property_region_upper(h, r), n_in))
            for r in range(lib.shardbound_property_region_count(h))]
        self.spec_rows = _arrays.from_c(lib.shardbound_property_atom_rows(h),
                                        n_atoms * n_out).reshape(n_atoms, n_out)
        self.spec_rhs = _arrays.from_c(lib.shardbound_property_atom_rhs(h), n_atoms)

    def proven(self, spec_lower, region=0):
        """True when lower bounds of the atoms prove the region safe."""
        lower = _arrays.flat(spec_lower, "spec_lower", len(self.spec_rhs))
        return bool(lib.shardbound_property_proven(self._handle, region,
                                                   _arrays.pointer(lower)))

    def __del__(self):
        if getattr(self, "_handle", None):
            lib.shardbound_property_free(self._handle)
            self._handle = None


class Network:
    """A model loaded onto a session's backend (from Session.load)."""

    def __init__(self, session, source):
        self._handle = None
        self.session = session  # a network borrows its session: keep it alive
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            self._handle = call("shardbound_network_load_bytes", session._handle, data, len(data))
        else:
            self._handle = call("shardbound_network_load", session._handle, encode(source))
        self.input_size = lib.shardbound_network_input_size(self._handle)
        self.output_size = lib.shardbound_network_output_size(self._handle)
        dims = (ctypes.c_int64 * 3)()
        ndim = lib.shardbound_network_input_shape(self._handle, dims)
        self.input_shape = tuple(dims[:ndim])

    def close(self):
        if getattr(self, "_handle", None):
            lib.shardbound_network_free(self._handle)
            self._handle = None

    def __del__(self):
        self.close()

    def _live(self):
        if not self._handle:
            raise InvalidArgumentError("the network was closed")
        return self._handle

    def bounds(self, x_lower, x_upper, C=None, method="crown", **settings):
        """Bounds over the box [x_lower, x_upper] (any shape with input_size
        entries), of the outputs and, when C [S, output_size] is given, of
        every row c.y. Keyword arguments are settings (iterations, lr, ...)."""
        handle = self._live()
        lo = _arrays.flat(x_lower, "x_lower", self.input_size)
        hi = _arrays.flat(x_upper, "x_upper", self.input_size)
        n_specs, rows = 0, None
        if C is not None:
            rows = _arrays.to_numpy(C, "C")
            if rows.ndim != 2 or rows.shape[1] != self.output_size:
                raise InvalidArgumentError(
                    f"C: shape {rows.shape}, expected (S, {self.output_size})")
            n_specs = rows.shape[0]
        number = _method_number(method)
        with _Settings(settings) as s:
            result = call("shardbound_network_bounds", handle, number, s.handle,
                          _arrays.pointer(lo), _arrays.pointer(hi), n_specs,
                          _arrays.pointer(rows) if rows is not None else None)
        try:
            n_out = lib.shardbound_bounds_output_count(result)
            n_spec = lib.shardbound_bounds_spec_count(result)
            out_lo = _arrays.from_c(lib.shardbound_bounds_output_lower(result), n_out)
            out_hi = _arrays.from_c(lib.shardbound_bounds_output_upper(result), n_out)
            spec_lo = _arrays.from_c(lib.shardbound_bounds_spec_lower(result), n_spec) if n_spec else None
            spec_hi = _arrays.from_c(lib.shardbound_bounds_spec_upper(result), n_spec) if n_spec else None
            unstable = lib.shardbound_bounds_unstable_relus(result)
            seconds = lib.shardbound_bounds_seconds(result)
        finally:
            lib.shardbound_bounds_free(result)
        template = x_lower
        wrap = lambda a: _arrays.like(a, template)  # noqa: E731
        use_spec = C is not None
        return Bounds(lower=wrap(spec_lo if use_spec else out_lo),
                      upper=wrap(spec_hi if use_spec else out_hi),
                      output_lower=wrap(out_lo), output_upper=wrap(out_hi),
                      spec_lower=wrap(spec_lo), spec_upper=wrap(spec_hi),
                      unstable_relus=unstable, seconds=seconds)

    def evaluate(self, x):
        """The network's output at one input x (float64, on the host)."""
        handle = self._live()
        xs = _arrays.flat(x, "x", self.input_size, np.float32)
        y = np.empty(self.output_size)
        lib.shardbound_network_evaluate(handle, _arrays.pointer(xs, ctypes.c_float),
                                        _arrays.pointer(y))
        return _arrays.like(y, x)

    def verify(self, prop, timeout=None, progress=None, **settings):
        """Decides a Property (or a VNNLIB path) on this network. progress,
        if given, is called with each Progress report of branch-and-bound,
        on the calling thread; what it raises is printed and ignored (ctypes
        cannot pass it through the C library)."""
        handle = self._live()
        if not isinstance(prop, Property):
            prop = Property(prop)
        if timeout is not None:
            settings["timeout"] = timeout
        last = []

        def report(user, done, left, worst, seconds):
            last[:] = [Progress(done, left, worst, seconds)]
            if progress is not None:
                progress(last[0])

        on_progress = _library.PROGRESS_FUNC(report)
        with _Settings(settings) as s:
            lib.shardbound_settings_set_progress(s.handle, on_progress, None)
            verdict = call("shardbound_verify", handle, prop._handle, s.handle)
        try:
            answer = text(lib.shardbound_answer_name(lib.shardbound_verdict_answer(verdict)))
            x = _arrays.from_c(lib.shardbound_verdict_input(verdict), self.input_size)
            y = _arrays.from_c(lib.shardbound_verdict_output(verdict), self.output_size)
            return VerifyResult(
                answer=answer, counterexample=(x, y) if x is not None else None,
                seconds=lib.shardbound_verdict_seconds(verdict),
                domains=lib.shardbound_verdict_domains(verdict),
                memory=self.session.memory(),
                reason=text(lib.shardbound_verdict_reason(verdict)),
                region=lib.shardbound_verdict_region(verdict),
                bab_seconds=lib.shardbound_verdict_bab_seconds(verdict),
                tighten_domains=lib.shardbound_verdict_tighten_domains(
                    verdict),
                last_progress=last[0] if last else None,
                found_margin=_finite_or_none(
                    lib.shardbound_verdict_found_margin(verdict)))
        finally:
            lib.shardbound_verdict_free(verdict)


class Session:
    """One backend context. Session(backend='fsdp', ranks=4, device=0) opens
    fsdp with 4 ranks and the backend option device=0; backend=None takes
    the configured backend (SHARDBOUND_BACKEND, the configuration file),
    else the default."""

    def __init__(self, backend=None, ranks=0, backend_path=None, config_file=None,
                 **options):
        self._handle = None
        self._networks = {}
        if not isinstance(ranks, int) or isinstance(ranks, bool) or ranks < 0:
            raise InvalidArgumentError(f"ranks: {ranks!r} is not a non-negative integer")
        pairs = [f"{k}={'true' if v is True else 'false' if v is False else v}".encode()
                 for k, v in options.items()]
        array = (ctypes.c_char_p * (len(pairs) + 1))(*pairs, None)
        self._handle = call("shardbound_session_open", encode(backend), ranks, array,
                            encode(_default_backend_path(backend_path)),
                            encode(config_file))
        self.backend = text(lib.shardbound_session_backend(self._handle))
        self.ranks = lib.shardbound_session_rank_count(self._handle)
        # With comm=mpi under mpirun: this process's index and the count.
        self.process_index = lib.shardbound_session_process_index(self._handle)
        self.process_count = lib.shardbound_session_process_count(self._handle)

    def close(self):
        """Closes the backend context; networks loaded from it go first."""
        for net in self._networks.values():
            net.close()
        self._networks.clear()
        if getattr(self, "_handle", None):
            lib.shardbound_session_close(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def load(self, onnx):
        """A Network from an ONNX path or the bytes of a model."""
        if not getattr(self, "_handle", None):
            raise InvalidArgumentError("the session was closed")
        net = Network(self, onnx)
        self._networks[id(net)] = net
        return net

    def _network(self, onnx):
        if isinstance(onnx, Network):
            return onnx
        key = ("path", os.fspath(onnx)) if isinstance(onnx, (str, os.PathLike)) else None
        if key is None:
            return self.load(onnx)
        if key not in self._networks:
            self._networks[key] = self.load(onnx)
        return self._networks[key]

    def bounds(self, onnx, x_lower, x_upper, C=None, method="crown", **settings):
        """Network.bounds on a Network, an ONNX path (loaded once) or bytes."""
        return self._network(onnx).bounds(x_lower, x_upper, C=C, method=method, **settings)

    def verify(self, onnx, vnnlib, timeout=None, progress=None, **settings):
        """Decides a VNNLIB property (path or Property) on a model."""
        return self._network(onnx).verify(vnnlib, timeout=timeout, progress=progress,
                                          **settings)

    def reset_memory(self):
        """Makes the current memory every rank's baseline; restarts peaks."""
        call("shardbound_session_memory_reset", self._handle)

    def memory(self):
        """Per rank: baseline, current and peak bytes, by category too."""
        names = [text(lib.shardbound_memory_category_name(c)) for c in range(7)]
        ranks = []
        for r in range(self.ranks):
            st = MemoryStats(struct_size=ctypes.sizeof(MemoryStats))
            call("shardbound_session_memory_stats", self._handle, r, ctypes.byref(st))
            ranks.append({
                "rank": r, "baseline_bytes": st.baseline_bytes,
                "current_bytes": st.current_bytes, "peak_bytes": st.peak_bytes,
                "device_used_bytes": st.device_used_bytes,
                "peak_rss_bytes": st.peak_rss_bytes,
                "by_category": {names[c]: {"current": st.current_by_category[c],
                                           "peak": st.peak_by_category[c]}
                                for c in range(7)}})
        return ranks
