#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""An auto_LiRPA-style script: bounds of a torch CNN's outputs under an
L-infinity perturbation of its input, by IBP, CROWN and alpha-CROWN.

It runs on shardbound's fsdp backend with 4 ranks (thread ranks, each
holding a quarter of the weights). The only change from the auto_LiRPA
script is the import line:

    -from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
    +from shardbound.lirpa import BoundedModule, BoundedTensor, PerturbationLpNorm

The 'shardbound' entry of bound_opts chooses the backend; auto_LiRPA ignores
it, so the script still runs with the auto_LiRPA import.

From the build tree:
    PYTHONPATH=$PWD/hosts/python python3 examples/python/cnn_bounds.py"""

import argparse

import torch

from shardbound.lirpa import BoundedModule, BoundedTensor, PerturbationLpNorm


def cnn():
    """A small CIFAR-shaped CNN with batch norm; weights from a fixed seed
    (the bounds, not the accuracy, are the point here)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 4, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 4, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 8 * 8, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 10))
    return model.eval()


def main():
    parser = argparse.ArgumentParser(description="Bounds of a CNN on shardbound.")
    parser.add_argument("--backend", default="fsdp")
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--eps", type=float, default=2 / 255)
    args = parser.parse_args()

    model = cnn()
    torch.manual_seed(1)
    image = torch.rand(1, 3, 32, 32)
    pred = model(image).argmax(dim=1)
    print(f"predicted class {pred.item()}")

    bounded_model = BoundedModule(
        model, torch.empty_like(image), device=image.device,
        bound_opts={"shardbound": {"backend": args.backend, "ranks": args.ranks},
                    "optimize_bound_args": {"iteration": 20, "lr_alpha": 0.1}})
    ptb = PerturbationLpNorm(norm=float("inf"), eps=args.eps)
    x = BoundedTensor(image, ptb)
    print("Model prediction:", bounded_model(x))

    # Margins of the predicted class over every other: C [batch, 9, 10].
    n = 10
    others = [c for c in range(n) if c != pred.item()]
    C = torch.zeros(1, n - 1, n)
    for row, c in enumerate(others):
        C[0, row, pred.item()] = 1
        C[0, row, c] = -1

    for method in ["IBP", "CROWN", "CROWN-Optimized (alpha-CROWN)"]:
        print(f"Bounding method: {method}")
        lb, ub = bounded_model.compute_bounds(x=(x,), method=method.split()[0])
        for j in range(n):
            print(f"f_{j}(x_0): {lb[0][j].item():8.3f} <= f_{j}(x_0+delta) <= {ub[0][j].item():8.3f}"
                  + ("  (ground-truth)" if j == pred.item() else ""))
        lb, _ = bounded_model.compute_bounds(x=(x,), C=C, method=method.split()[0],
                                             bound_upper=False)
        verified = bool((lb > 0).all())
        print(f"margins >= {lb.min().item():.4f}: robustness "
              f"{'verified' if verified else 'not verified'} at eps {args.eps:.5f}\n")
    if hasattr(bounded_model, "memory"):  # shardbound: the backend's bytes per rank
        for r in bounded_model.memory():
            print(f"rank {r['rank']}: weights {r['by_category']['weights']['current'] / 2**20:.2f} MiB, "
                  f"peak {r['peak_bytes'] / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
