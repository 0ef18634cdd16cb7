#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""One script, two libraries: bounds of torch models (an MLP, a CNN with
batch norm, a residual block, the CNN of examples/python) by auto_LiRPA and
by shardbound.lirpa, the code identical apart from the module imported.

    compare-auto-lirpa.py --lib auto_LiRPA > a.json        # needs auto_LiRPA
    compare-auto-lirpa.py --lib shardbound.lirpa [--backend fsdp --ranks 4] > s.json
    compare-auto-lirpa.py --compare a.json s.json

auto_LiRPA is not packaged anywhere CI can reach (/work/shared/tools/README.md
says how to run it as an oracle), so this is a tool, not a test; its last
results are in docs/python.md."""

import argparse
import importlib
import json
import sys

import os

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from torch_models import models, parameter_checksum  # noqa: E402

METHODS = ("IBP", "CROWN", "CROWN-Optimized")


def run(lib, shardbound_opts):
    lirpa = importlib.import_module(lib)  # the one line that differs
    BoundedModule, BoundedTensor = lirpa.BoundedModule, lirpa.BoundedTensor
    PerturbationLpNorm = lirpa.PerturbationLpNorm
    results = {"torch": torch.__version__}
    for name, model, x, eps in models():
        bound_opts = {"optimize_bound_args": {"iteration": 20, "lr_alpha": 0.5},
                      "shardbound": shardbound_opts}
        bm = BoundedModule(model, torch.empty_like(x), bound_opts=bound_opts, device="cpu")
        bx = BoundedTensor(x, PerturbationLpNorm(norm=float("inf"), eps=eps))
        results[name] = {"parameter_checksum": parameter_checksum(model)}
        for method in METHODS:
            lb, ub = bm.compute_bounds(x=(bx,), method=method)
            results[name][method] = {"lower": lb.detach().double().tolist(),
                                     "upper": ub.detach().double().tolist()}
    return results


def compare(a_path, s_path):
    with open(a_path) as f:
        a = json.load(f)
    with open(s_path) as f:
        s = json.load(f)
    ok = True
    print(f"{'model':10} {'method':16} {'max |diff| lower':>17} {'max |diff| upper':>17} "
          f"{'tighter (mean width ratio)':>27}")
    for name in a:
        if name == "torch":
            continue
        for method in METHODS:
            al, au = np.array(a[name][method]["lower"]), np.array(a[name][method]["upper"])
            sl, su = np.array(s[name][method]["lower"]), np.array(s[name][method]["upper"])
            dl, du = np.abs(sl - al).max(), np.abs(su - au).max()
            ratio = np.mean((su - sl) / (au - al))
            if method == "CROWN-Optimized":
                good = np.all(sl >= al - 1e-4) and np.all(su <= au + 1e-4)
            else:
                good = np.all(np.abs(sl - al) <= np.maximum(1e-4, 1e-4 * np.abs(al))) and \
                    np.all(np.abs(su - au) <= np.maximum(1e-4, 1e-4 * np.abs(au)))
            ok &= bool(good)
            print(f"{name:10} {method:16} {dl:17.2e} {du:17.2e} {ratio:27.4f}"
                  f"{'' if good else '  FAIL'}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lib", default="shardbound.lirpa")
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--ranks", type=int, default=0)
    parser.add_argument("--compare", nargs=2, metavar=("AUTO_LIRPA_JSON", "SHARDBOUND_JSON"))
    args = parser.parse_args()
    if args.compare:
        sys.exit(0 if compare(*args.compare) else 1)
    json.dump(run(args.lib, {"backend": args.backend, "ranks": args.ranks}), sys.stdout)


if __name__ == "__main__":
    main()
