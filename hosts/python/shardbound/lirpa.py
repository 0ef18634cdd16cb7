# SPDX-License-Identifier: MIT
"""A drop-in for the part of auto_LiRPA that verifiers call.

An auto_LiRPA script switches by changing its import:

    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
    from shardbound.lirpa import BoundedModule, BoundedTensor, PerturbationLpNorm

The model is exported in memory with torch.onnx.export and loaded onto a
shardbound backend: bound_opts={'shardbound': {'backend': 'fsdp', 'ranks':
4}} chooses it, else the configuration file and SHARDBOUND_BACKEND do.
Every argument this module does not support raises UnsupportedError naming
it (docs/python.md lists them); none is silently ignored."""

import io
import math
import sys

import numpy as np
import torch

from . import session as _session
from .errors import InvalidArgumentError, UnsupportedError

__all__ = ["BoundedModule", "BoundedTensor", "PerturbationLpNorm"]

# compute_bounds(method=...) as auto_LiRPA spells it -> shardbound's method.
_METHODS = {
    "ibp": "ibp",
    "crown": "crown", "backward": "crown",
    "alpha-crown": "alpha-crown", "crown-optimized": "alpha-crown",
}

# optimize_bound_args keys -> shardbound settings. auto_LiRPA optimises all
# slopes jointly for `iteration` steps; shardbound optimises the slopes of
# each intermediate start node, then the outputs', so both get the count.
_OPTIMIZE_ARGS = {
    "iteration": ("iterations", "final_iterations"),
    "lr_alpha": ("lr",),
    "lr_decay": ("decay",),
    "early_stop_patience": ("patience",),
}

# Host keys of bound_opts['shardbound']; every other key is a backend option.
_HOST_KEYS = ("backend", "ranks", "backend_path", "config_file", "settings")


def _unsupported(where, name, value=None):
    shown = f"'{name}'" if value is None else f"{name}={value!r}"
    return UnsupportedError(f"{where}: {shown} is not supported by "
                            "shardbound.lirpa (see docs/python.md)")


class PerturbationLpNorm:
    """An L-infinity box: x +- eps, or [x_L, x_U]."""

    def __init__(self, eps=0, norm=np.inf, x_L=None, x_U=None, eps_min=0):
        if not (isinstance(norm, (int, float)) and math.isinf(norm) and norm > 0):
            raise _unsupported("PerturbationLpNorm", "norm", norm)
        if eps_min != 0:
            raise _unsupported("PerturbationLpNorm", "eps_min", eps_min)
        if (x_L is None) != (x_U is None):
            raise InvalidArgumentError("PerturbationLpNorm: give both x_L and x_U, or neither")
        self.eps, self.norm, self.x_L, self.x_U = eps, norm, x_L, x_U

    def box(self, x):
        """(lower, upper) as float64 numpy arrays of x's shape."""
        # A plain tensor first: every op on the subclass pays for dispatch.
        x = x.as_subclass(torch.Tensor).detach().cpu().double()
        if self.x_L is not None:
            lo = torch.as_tensor(self.x_L).detach().cpu().double().expand_as(x)
            hi = torch.as_tensor(self.x_U).detach().cpu().double().expand_as(x)
        else:
            eps = torch.as_tensor(self.eps).detach().cpu().double()
            lo, hi = x - eps, x + eps
        return lo.numpy(), hi.numpy()

    def __repr__(self):
        if self.x_L is not None:
            return "PerturbationLpNorm(norm=inf, x_L=..., x_U=...)"
        return f"PerturbationLpNorm(norm=inf, eps={self.eps})"


class BoundedTensor(torch.Tensor):
    """A tensor with a perturbation (ptb), as auto_LiRPA's."""

    @staticmethod
    def __new__(cls, x, ptb=None, *args, **kwargs):
        if not isinstance(x, torch.Tensor):
            raise InvalidArgumentError(f"BoundedTensor: expected a torch.Tensor, got {type(x).__name__}")
        tensor = super().__new__(cls, [], *args, **kwargs)
        tensor.data = x.data
        tensor.requires_grad = x.requires_grad
        return tensor

    def __init__(self, x, ptb=None):
        self.ptb = ptb

    def __repr__(self):
        return f"<BoundedTensor: {self.data}, {getattr(self, 'ptb', None)}>"

    def clone(self, *args, **kwargs):
        return BoundedTensor(super().clone(*args, **kwargs), getattr(self, "ptb", None))


def _float32_outward(lower, upper):
    """Rounds float64 bounds to float32 away from the inside, so that the
    float32 bounds still contain every float64 bound's set."""
    lo, hi = lower.astype(np.float32), upper.astype(np.float32)
    below = lo.astype(np.float64) > lower
    lo[below] = np.nextafter(lo[below], np.float32(-np.inf))
    above = hi.astype(np.float64) < upper
    hi[above] = np.nextafter(hi[above], np.float32(np.inf))
    return lo, hi


def _export(model, example):
    """The ONNX bytes of a torch module, exported in memory in eval mode
    (torch.onnx.export needs no `onnx` package for this)."""
    buffer = io.BytesIO()
    try:
        torch.onnx.export(model, (example,), buffer, opset_version=13,
                          do_constant_folding=True,
                          training=torch.onnx.TrainingMode.EVAL,
                          input_names=["input"], output_names=["output"])
    except Exception as e:  # torch raises many types; the reason is kept
        raise UnsupportedError(f"BoundedModule: torch.onnx.export of the model failed: {e}") from e
    return buffer.getvalue()


class BoundedModule(torch.nn.Module):
    """auto_LiRPA's BoundedModule on a shardbound backend.

    model: a torch.nn.Module (exported with torch.onnx.export in memory)
    or the path of an ONNX file. global_input: an example input with its
    batch dimension. bound_opts: 'shardbound' (backend, ranks,
    backend_path, config_file, settings, and backend options),
    'optimize_bound_args' (iteration, lr_alpha, lr_decay,
    early_stop_patience, enable_alpha_crown), 'conv_mode' and 'relu' at
    their values that do not change bounds. device: where returned tensors
    are put."""

    def __init__(self, model, global_input, bound_opts=None, device="auto",
                 verbose=False, custom_ops=None):
        super().__init__()
        if custom_ops:
            raise _unsupported("BoundedModule", "custom_ops")
        example = global_input
        if isinstance(example, (tuple, list)):
            if len(example) != 1:
                raise _unsupported("BoundedModule", f"{len(example)} model inputs (one is supported)")
            example = example[0]
        if not isinstance(example, torch.Tensor):
            raise InvalidArgumentError("BoundedModule: global_input must be a torch.Tensor")
        self.verbose = bool(verbose)
        self.device = example.device if device == "auto" else torch.device(device)
        host, backend_options, self._settings = self._read_bound_opts(bound_opts or {})

        if isinstance(model, torch.nn.Module):
            self._torch_model = model
            onnx_source = _export(model, example[:1].detach().cpu().float())
            with torch.no_grad():
                self._output_shape = tuple(model(example[:1]).shape[1:])
        elif isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            self._torch_model = None
            onnx_source = model
            self._output_shape = None
        else:
            raise InvalidArgumentError(
                f"BoundedModule: model must be a torch.nn.Module or an ONNX path, not {type(model).__name__}")

        self._session = _session.Session(
            backend=host.get("backend"), ranks=host.get("ranks", 0),
            backend_path=host.get("backend_path"), config_file=host.get("config_file"),
            **backend_options)
        self._network = self._session.load(onnx_source)
        self.input_shape = self._network.input_shape
        if self._output_shape is None:
            self._output_shape = (self._network.output_size,)
        in_shape = tuple(example.shape[1:])
        if int(np.prod(in_shape)) != self._network.input_size:
            raise InvalidArgumentError(
                f"BoundedModule: global_input of shape {tuple(example.shape)} does not fit the "
                f"model's input {self.input_shape}")
        self._input_shape_torch = in_shape
        self._last_x = None
        self.last_seconds = 0.0  # the C API's own time in the last compute_bounds
        if self.verbose:
            print(f"shardbound.lirpa: {self._session.backend} with {self._session.ranks} rank(s), "
                  f"input {in_shape}, output {self._output_shape}", file=sys.stderr)

    @staticmethod
    def _read_bound_opts(bound_opts):
        if not isinstance(bound_opts, dict):
            raise InvalidArgumentError("BoundedModule: bound_opts must be a dict")
        host, backend_options, settings = {}, {}, {}
        for key, value in bound_opts.items():
            if key == "shardbound":
                if not isinstance(value, dict):
                    raise InvalidArgumentError("bound_opts['shardbound'] must be a dict")
                for k, v in value.items():
                    if k == "settings":
                        settings.update(v)
                    elif k in _HOST_KEYS:
                        host[k] = v
                    else:
                        backend_options[k] = v
            elif key == "optimize_bound_args":
                for k, v in value.items():
                    if k in _OPTIMIZE_ARGS:
                        for name in _OPTIMIZE_ARGS[k]:
                            settings[name] = v
                    elif k == "enable_alpha_crown" and v:
                        pass  # alpha-CROWN's slopes are what it optimises
                    else:
                        raise _unsupported("bound_opts['optimize_bound_args']", k, v)
            elif key == "conv_mode" and value in ("patches", "matrix"):
                pass  # a layout choice of auto_LiRPA; bounds are the same
            elif key == "relu" and value == "adaptive":
                pass  # shardbound's ReLU lower relaxation is the adaptive one
            else:
                raise _unsupported("bound_opts", key, value)
        # Check the names now, not at the first compute_bounds.
        known = set(_session.setting_names())
        for name in settings:
            if name not in known:
                raise InvalidArgumentError(f"bound_opts: unknown setting '{name}' "
                                           f"(known: {', '.join(sorted(known))})")
        return host, backend_options, settings

    @property
    def backend(self):
        return self._session.backend

    @property
    def ranks(self):
        return self._session.ranks

    def memory(self):
        """Per-rank memory statistics of the backend (see Session.memory)."""
        return self._session.memory()

    def forward(self, *x):
        if len(x) != 1:
            raise _unsupported("BoundedModule.forward", f"{len(x)} inputs")
        x = x[0]
        if self._torch_model is not None:
            return self._torch_model(x.as_subclass(torch.Tensor) if isinstance(x, BoundedTensor) else x)
        flat = x.detach().cpu().float().reshape(x.shape[0], -1).numpy()
        ys = [self._network.evaluate(row) for row in flat]
        return torch.tensor(np.stack(ys), dtype=x.dtype, device=x.device).reshape(
            (x.shape[0],) + self._output_shape)

    def _input(self, x):
        if x is None:
            if self._last_x is None:
                raise InvalidArgumentError("compute_bounds: no x given and none given before")
            return self._last_x
        if isinstance(x, (tuple, list)):
            if len(x) != 1:
                raise _unsupported("compute_bounds", f"x with {len(x)} inputs (one is supported)")
            x = x[0]
        if not isinstance(x, torch.Tensor):
            raise InvalidArgumentError("compute_bounds: x must hold a BoundedTensor")
        ptb = getattr(x, "ptb", None)
        if not isinstance(ptb, PerturbationLpNorm):
            raise InvalidArgumentError(
                "compute_bounds: x must be a BoundedTensor with a PerturbationLpNorm")
        if tuple(x.shape[1:]) != self._input_shape_torch:
            raise InvalidArgumentError(
                f"compute_bounds: x of shape {tuple(x.shape)} does not match the model's "
                f"input (B, {', '.join(map(str, self._input_shape_torch))})")
        self._last_x = x
        return x

    def compute_bounds(self, x=None, aux=None, C=None, method="backward", IBP=False,
                       forward=False, bound_lower=True, bound_upper=True, reuse_ibp=False,
                       return_A=False, final_node_name=None, **unsupported):
        """(lb, ub) as auto_LiRPA returns them: [B, *output shape] without C,
        [B, S] with C [B, S, outputs]; None for a side not asked for."""
        for name, value in unsupported.items():
            raise _unsupported("compute_bounds", name, value)
        for name, value, default in (("aux", aux, None), ("IBP", IBP, False),
                                     ("forward", forward, False), ("reuse_ibp", reuse_ibp, False),
                                     ("return_A", return_A, False),
                                     ("final_node_name", final_node_name, None)):
            if value is not default and value != default:
                raise _unsupported("compute_bounds", name, value)
        if not (bound_lower or bound_upper):
            raise InvalidArgumentError("compute_bounds: bound_lower and bound_upper are both False")
        ours = _METHODS.get(str(method).lower())
        if ours is None:
            raise _unsupported("compute_bounds", "method", method)
        x = self._input(x)
        batch = x.shape[0]
        n_out = self._network.output_size
        rows = None
        if C is not None:
            rows = torch.as_tensor(C).detach().cpu().double()
            if rows.dim() != 3 or rows.shape[0] != batch or rows.shape[2] != n_out:
                raise InvalidArgumentError(
                    f"compute_bounds: C of shape {tuple(rows.shape)}, expected "
                    f"({batch}, S, {n_out})")
            rows = rows.numpy()
        lo_box, hi_box = x.ptb.box(x)
        lowers, uppers = [], []
        seconds = 0.0
        for b in range(batch):
            r = self._network.bounds(lo_box[b], hi_box[b], C=None if rows is None else rows[b],
                                     method=ours, **self._settings)
            lowers.append(r.lower)
            uppers.append(r.upper)
            seconds += r.seconds
        self.last_seconds = seconds
        lower, upper = np.stack(lowers), np.stack(uppers)
        shape = (batch,) + (self._output_shape if rows is None else (rows.shape[1],))
        dtype = x.dtype if x.dtype.is_floating_point else torch.float32
        if dtype == torch.float64:
            lb, ub = torch.from_numpy(lower), torch.from_numpy(upper)
        elif dtype == torch.float32:
            lo32, hi32 = _float32_outward(lower, upper)
            lb, ub = torch.from_numpy(lo32), torch.from_numpy(hi32)
        else:
            raise _unsupported("compute_bounds", f"input dtype {dtype}")
        lb = lb.reshape(shape).to(x.device) if bound_lower else None
        ub = ub.reshape(shape).to(x.device) if bound_upper else None
        return lb, ub
