# SPDX-License-Identifier: MIT
"""shardbound.lirpa on torch models built here (Linear, Conv2d, ReLU,
Flatten, BatchNorm2d in eval mode, a residual block): the bounds contain
sampled outputs, have auto_LiRPA's shapes and dtype, and fsdp and tp at
P = 2 and 4 give the cpu backend's answers."""

import unittest

import sbtest
sbtest.require("torch")
import torch  # noqa: E402

from shardbound.lirpa import BoundedModule, BoundedTensor, PerturbationLpNorm  # noqa: E402

METHODS = ("IBP", "CROWN", "alpha-CROWN")


class Residual(torch.nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(channels)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return torch.relu(x + self.conv2(torch.relu(self.bn(self.conv1(x)))))


def randomise_batchnorm(model):
    """Running statistics away from 0/1, so that eval-mode BN matters."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def models():
    torch.manual_seed(11)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                              torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.Conv2d(4, 8, 3, stride=2, padding=1),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 16),
                              torch.nn.ReLU(), torch.nn.Linear(16, 10))
    resnet = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2, padding=1), torch.nn.ReLU(),
                                 Residual(4), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 10))
    return {"mlp": randomise_batchnorm(mlp), "cnn": randomise_batchnorm(cnn),
            "residual": randomise_batchnorm(resnet)}


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
        bm = BoundedModule(models()["cnn"], x, bound_opts=opts())
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
        model = models()["cnn"]
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


if __name__ == "__main__":
    sbtest.main()
