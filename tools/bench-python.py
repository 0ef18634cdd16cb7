#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""How much the Python layer adds over the C API: CROWN (and IBP) on the
bundled mnist 256x2 network, cpu backend, one box, median of N calls of
- the C API call alone (shardbound_bounds_seconds, measured inside it),
- shardbound's Network.bounds (ctypes, conversions, result object),
- shardbound.lirpa's compute_bounds (torch in and out, float32 rounding).
Run from the source tree: PYTHONPATH=$PWD/hosts/python python3 tools/bench-python.py"""

import argparse
import os
import statistics
import time

import numpy as np

import shardbound

HERE = os.path.dirname(os.path.abspath(__file__))
NET = os.path.join(HERE, "..", "examples", "mnist_fc", "mnist-net_256x2.onnx")
PROP = os.path.join(HERE, "..", "examples", "mnist_fc", "prop_0_0.03.vnnlib")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--backend", default="cpu")
    args = parser.parse_args()
    prop = shardbound.Property(PROP)
    lo, hi = prop.regions[0]
    C = prop.spec_rows
    print(f"mnist 256x2, backend {args.backend}, one box, {len(C)} spec rows, "
          f"median of {args.repeat}")
    print("added: median over calls of (Python time - the C call's own time in it);\n"
          "ratio: (median C time + added) / median C time. Per-call differences\n"
          "keep the figures stable on a loaded machine, where ratios of medians are not.")
    print(f"{'method':8} {'C API ms':>9} {'Network.bounds ms':>18} {'added':>7} {'ratio':>6} "
          f"{'lirpa ms':>9} {'added':>7} {'ratio':>6}")
    with shardbound.Session(args.backend) as s:
        net = s.load(NET)
        try:
            import torch
            from shardbound.lirpa import BoundedModule, BoundedTensor, PerturbationLpNorm
            bm = BoundedModule(NET, torch.zeros(1, *net.input_shape),
                               bound_opts={"shardbound": {"backend": args.backend}})
            x_L = torch.from_numpy(lo).float().reshape(1, *net.input_shape)
            x_U = torch.from_numpy(hi).float().reshape(1, *net.input_shape)
            bx = BoundedTensor((x_L + x_U) / 2, PerturbationLpNorm(x_L=x_L, x_U=x_U))
            Ct = torch.from_numpy(C).float()[None]
        except ImportError:
            bm = None
        for method, lirpa_method in (("ibp", "IBP"), ("crown", "CROWN")):
            c_times, py_times, lirpa_times, py_added, lirpa_added = [], [], [], [], []
            for i in range(args.repeat + 2):
                t0 = time.perf_counter()
                b = net.bounds(lo, hi, C=C, method=method)
                t1 = time.perf_counter()
                lirpa_c = float("nan")
                if bm is not None:
                    bm.compute_bounds(x=(bx,), C=Ct, method=lirpa_method)
                    lirpa_c = bm.last_seconds
                t2 = time.perf_counter()
                if i >= 2:  # warm-up
                    c_times.append(b.seconds)
                    py_times.append(t1 - t0)
                    lirpa_times.append(t2 - t1)
                    py_added.append(t1 - t0 - b.seconds)
                    lirpa_added.append(t2 - t1 - lirpa_c)
            c, py = statistics.median(c_times), statistics.median(py_times)
            lirpa = statistics.median(lirpa_times) if bm is not None else float("nan")
            med = statistics.median
            added, lirpa_add = med(py_added), med(lirpa_added)
            print(f"{method:8} {c * 1e3:9.3f} {py * 1e3:18.3f} {added * 1e3:7.3f} "
                  f"{(c + added) / c:6.3f} {lirpa * 1e3:9.3f} {lirpa_add * 1e3:7.3f} "
                  f"{(c + lirpa_add) / c:6.3f}")


if __name__ == "__main__":
    main()
