# SPDX-License-Identifier: MIT
"""shardbound.lirpa on torch models built here (Linear, Conv2d, ReLU,
Flatten, BatchNorm2d in eval mode, a residual block): the bounds contain
sampled outputs, have auto_LiRPA's shapes and dtype, and fsdp and tp at
P = 2 and 4 give the cpu backend's answers."""

import json
import unittest

import sbtest
sbtest.require("torch")
import torch  # noqa: E402

from shardbound.lirpa import BoundedModule, BoundedTensor, PerturbationLpNorm  # noqa: E402
import torch_models  # noqa: E402

METHODS = ("IBP", "CROWN", "alpha-CROWN")


def models():
    """The small models of torch_models, by name (inputs 1 x 8 x 8)."""
    return {name: model for name, model, x, _ in torch_models.models() if x.shape[1:] == (1, 8, 8)}


def bounded_input(eps=0.05, batch=2):
    torch.manual_seed(5)
    x = torch.rand(batch, 1, 8, 8)
    return x, BoundedTensor(x, PerturbationLpNorm(norm=float("inf"), eps=eps)), eps


FAST = {"optimize_bound_args": {"iteration": 5}}


def opts(backend="cpu", ranks=0):
    return dict(FAST, shardbound={"backend": backend, "ranks": ranks})


class TestTorchModels(unittest.TestCase):
    def test_bounds_contain_sampled_outputs(self):
        x, bx, eps = bounded_input()
        for name, model in models().items():
            bm = BoundedModule(model, x, bound_opts=opts())
            with torch.no_grad():
                samples = torch.stack([model(x + eps * (2 * torch.rand_like(x) - 1))
                                       for _ in range(200)])
            for method in METHODS:
                with self.subTest(model=name, method=method):
                    lb, ub = bm.compute_bounds(x=(bx,), method=method)
                    self.assertEqual(lb.shape, (2, 10))
                    self.assertEqual(lb.dtype, torch.float32)
                    slack = 1e-5 * (1 + samples.abs())
                    self.assertTrue(torch.all(samples >= lb - slack), f"{name} {method} lower")
                    self.assertTrue(torch.all(samples <= ub + slack), f"{name} {method} upper")
                    self.assertTrue(torch.all(lb <= ub))

    def test_alpha_crown_is_never_looser_than_crown(self):
        x, bx, _ = bounded_input()
        bm = BoundedModule(models()["cnn_bn"], x, bound_opts=opts())
        crown, alpha = (bm.compute_bounds(x=(bx,), method=m) for m in METHODS[1:])
        self.assertTrue(torch.all(alpha[0] >= crown[0] - 1e-5), "alpha-CROWN looser than CROWN")
        self.assertTrue(torch.all(alpha[1] <= crown[1] + 1e-5), "alpha-CROWN looser than CROWN")

    def test_specification_matrix_gives_batch_by_rows_bounds(self):
        x, bx, eps = bounded_input()
        model = models()["residual"]
        bm = BoundedModule(model, x, bound_opts=opts())
        torch.manual_seed(2)
        C = torch.randn(2, 3, 10)
        lb, ub = bm.compute_bounds(x=(bx,), C=C, method="backward")
        self.assertEqual(lb.shape, (2, 3))
        with torch.no_grad():
            for _ in range(100):
                y = model(x + eps * (2 * torch.rand_like(x) - 1))
                cy = torch.einsum("bso,bo->bs", C, y)
                self.assertTrue(torch.all(cy >= lb - 1e-5 * (1 + cy.abs())))
                self.assertTrue(torch.all(cy <= ub + 1e-5 * (1 + cy.abs())))

    def test_one_side_only_when_asked(self):
        x, bx, _ = bounded_input()
        bm = BoundedModule(models()["mlp"], x, bound_opts=opts())
        lb, ub = bm.compute_bounds(x=(bx,), method="CROWN", bound_upper=False)
        self.assertIsNone(ub)
        self.assertEqual(lb.shape, (2, 10))
        lb, ub = bm.compute_bounds(x=(bx,), method="CROWN", bound_lower=False)
        self.assertIsNone(lb)

    def test_box_given_by_x_L_and_x_U_equals_eps(self):
        x, bx, eps = bounded_input()
        bm = BoundedModule(models()["mlp"], x, bound_opts=opts())
        by_eps = bm.compute_bounds(x=(bx,), method="CROWN")
        box = BoundedTensor(x, PerturbationLpNorm(x_L=x - eps, x_U=x + eps))
        by_box = bm.compute_bounds(x=(box,), method="CROWN")
        self.assertTrue(torch.equal(by_eps[0], by_box[0]) and torch.equal(by_eps[1], by_box[1]))

    def test_forward_runs_the_model(self):
        x, bx, _ = bounded_input()
        model = models()["cnn_bn"]
        bm = BoundedModule(model, x, bound_opts=opts())
        with torch.no_grad():
            self.assertTrue(torch.equal(bm(x), model(x)))

    def test_fsdp_and_tp_at_2_and_4_ranks_give_the_cpu_answers(self):
        x, bx, _ = bounded_input(batch=1)
        for name, model in models().items():
            reference = BoundedModule(model, x, bound_opts=opts())
            want = {m: reference.compute_bounds(x=(bx,), method=m) for m in METHODS}
            for backend in ("fsdp", "tp"):
                for ranks in (2, 4):
                    bm = BoundedModule(model, x, bound_opts=opts(backend, ranks))
                    self.assertEqual((bm.backend, bm.ranks), (backend, ranks))
                    for method in METHODS:
                        with self.subTest(model=name, backend=backend, ranks=ranks, method=method):
                            lb, ub = bm.compute_bounds(x=(bx,), method=method)
                            torch.testing.assert_close(lb, want[method][0], rtol=1e-5, atol=1e-5)
                            torch.testing.assert_close(ub, want[method][1], rtol=1e-5, atol=1e-5)


class TestAgainstAutoLirpa(unittest.TestCase):
    def test_bounds_equal_auto_lirpa_and_alpha_crown_is_at_least_as_tight(self):
        """auto_LiRPA's own bounds of these models (tests/data/goldens-torch):
        IBP and CROWN within 1e-4, alpha-CROWN never looser, on cpu and on
        fsdp with 2 ranks."""
        with open(sbtest.data("goldens-torch", "auto_lirpa.json")) as f:
            golden = json.load(f)
        args = golden["optimize_bound_args"]
        for name, model, x, eps in torch_models.models():
            want = golden["models"][name]
            if abs(torch_models.parameter_checksum(model) - want["parameter_checksum"]) > 1e-6:
                self.skipTest(f"this torch ({torch.__version__}) builds other weights for {name} "
                              f"than the goldens' ({golden['oracle']})")
            bx = BoundedTensor(x, PerturbationLpNorm(eps=eps))
            for backend, ranks in (("cpu", 0), ("fsdp", 2)):
                bm = BoundedModule(model, x, bound_opts={
                    "optimize_bound_args": args,
                    "shardbound": {"backend": backend, "ranks": ranks}})
                for method, w in want.items():
                    if method == "parameter_checksum":
                        continue
                    with self.subTest(model=name, backend=backend, method=method):
                        lb, ub = (t.double() for t in bm.compute_bounds(x=(bx,), method=method))
                        wl = torch.tensor(w["lower"], dtype=torch.float64)
                        wu = torch.tensor(w["upper"], dtype=torch.float64)
                        if method == "CROWN-Optimized":
                            self.assertTrue(torch.all(lb >= wl - 1e-4), f"{name} lower looser")
                            self.assertTrue(torch.all(ub <= wu + 1e-4), f"{name} upper looser")
                        else:
                            torch.testing.assert_close(lb, wl, rtol=1e-4, atol=1e-4)
                            torch.testing.assert_close(ub, wu, rtol=1e-4, atol=1e-4)


if __name__ == "__main__":
    sbtest.main()
