# SPDX-License-Identifier: MIT
"""Bad input to shardbound.lirpa: an unsupported layer, a wrong shape or an
unknown option raises a Python exception that gives the reason, and the
interpreter carries on."""

import subprocess
import sys
import unittest

import sbtest
sbtest.require("torch")
import torch  # noqa: E402

import shardbound  # noqa: E402
from shardbound.lirpa import BoundedModule, BoundedTensor, PerturbationLpNorm  # noqa: E402


def mlp():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 3)).eval()


X = torch.rand(1, 1, 4, 4)
CPU = {"shardbound": {"backend": "cpu"}}


class TestUnsupported(unittest.TestCase):
    def test_unsupported_layer_names_the_operator(self):
        for layer, op in ((torch.nn.Sigmoid(), "Sigmoid"), (torch.nn.MaxPool2d(2), "MaxPool"),
                          (torch.nn.Tanh(), "Tanh")):
            with self.subTest(op=op):
                model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), layer,
                                            torch.nn.Flatten()).eval()
                with self.assertRaisesRegex(shardbound.UnsupportedError, op):
                    BoundedModule(model, X, bound_opts=CPU)

    def test_unsupported_arguments_are_named(self):
        bm = BoundedModule(mlp(), X, bound_opts=CPU)
        bx = BoundedTensor(X, PerturbationLpNorm(eps=0.1))
        cases = [
            ({"method": "forward"}, "method='forward'"),
            ({"method": "CROWN-IBP"}, "method='CROWN-IBP'"),
            ({"IBP": True}, "IBP=True"),
            ({"return_A": True}, "return_A=True"),
            ({"needed_A_dict": {}}, "needed_A_dict"),
            ({"final_node_name": "/x"}, "final_node_name"),
        ]
        for kwargs, named in cases:
            with self.subTest(kwargs=kwargs):
                with self.assertRaisesRegex(NotImplementedError, named.replace("(", r"\(")):
                    bm.compute_bounds(x=(bx,), **kwargs)

    def test_unsupported_norm_is_named(self):
        with self.assertRaisesRegex(shardbound.UnsupportedError, "norm=2"):
            PerturbationLpNorm(eps=0.1, norm=2)


class TestOptions(unittest.TestCase):
    def test_unknown_bound_opts_key_is_named(self):
        with self.assertRaisesRegex(shardbound.UnsupportedError, "sparse_intermediate_bounds"):
            BoundedModule(mlp(), X, bound_opts={"sparse_intermediate_bounds": True})

    def test_unknown_optimize_bound_args_key_is_named(self):
        with self.assertRaisesRegex(shardbound.UnsupportedError, "lr_beta"):
            BoundedModule(mlp(), X, bound_opts={"optimize_bound_args": {"lr_beta": 0.1}})

    def test_unknown_backend_option_is_named(self):
        with self.assertRaisesRegex(shardbound.Error, "frobnicate"):
            BoundedModule(mlp(), X, bound_opts={"shardbound": {"backend": "cpu", "frobnicate": 3}})

    def test_unknown_setting_is_named(self):
        with self.assertRaisesRegex(shardbound.InvalidArgumentError, "iteratoins"):
            BoundedModule(mlp(), X, bound_opts={"shardbound": {"settings": {"iteratoins": 3}}})

    def test_unknown_backend_is_named(self):
        with self.assertRaisesRegex(shardbound.NoBackendError, "nosuch"):
            BoundedModule(mlp(), X, bound_opts={"shardbound": {"backend": "nosuch"}})

    def test_backend_from_the_environment(self):
        code = ("import torch; from shardbound.lirpa import BoundedModule; "
                "m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2)); "
                "print(BoundedModule(m, torch.zeros(1, 4)).backend)")
        env = dict(__import__("os").environ, SHARDBOUND_BACKEND="fsdp")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), "fsdp")


class TestShapes(unittest.TestCase):
    def test_wrong_input_shape_gives_both_shapes(self):
        bm = BoundedModule(mlp(), X, bound_opts=CPU)
        bad = BoundedTensor(torch.rand(1, 1, 4, 5), PerturbationLpNorm(eps=0.1))
        with self.assertRaisesRegex(ValueError, r"\(1, 1, 4, 5\).*\(B, 1, 4, 4\)"):
            bm.compute_bounds(x=(bad,))

    def test_wrong_specification_shape_is_reported(self):
        bm = BoundedModule(mlp(), X, bound_opts=CPU)
        bx = BoundedTensor(X, PerturbationLpNorm(eps=0.1))
        with self.assertRaisesRegex(ValueError, r"C of shape \(1, 2, 4\), expected \(1, S, 3\)"):
            bm.compute_bounds(x=(bx,), C=torch.zeros(1, 2, 4))

    def test_plain_tensor_without_perturbation_is_reported(self):
        bm = BoundedModule(mlp(), X, bound_opts=CPU)
        with self.assertRaisesRegex(ValueError, "PerturbationLpNorm"):
            bm.compute_bounds(x=(X,))

    def test_a_box_with_lower_above_upper_is_reported(self):
        bm = BoundedModule(mlp(), X, bound_opts=CPU)
        bad = BoundedTensor(X, PerturbationLpNorm(x_L=X + 1, x_U=X))
        with self.assertRaisesRegex(ValueError, "lower .* > upper"):
            bm.compute_bounds(x=(bad,))


class TestSurvival(unittest.TestCase):
    def test_the_module_works_after_errors(self):
        bm = BoundedModule(mlp(), X, bound_opts=CPU)
        bx = BoundedTensor(X, PerturbationLpNorm(eps=0.1))
        for bad in ({"C": torch.zeros(1, 2, 4)}, {"method": "forward"}, {"x": (X,)}):
            with self.assertRaises(Exception):
                bm.compute_bounds(**dict({"x": (bx,)}, **bad))
        lb, ub = bm.compute_bounds(x=(bx,), method="CROWN")
        self.assertTrue(torch.all(lb <= ub))

    def test_a_script_that_hits_every_error_exits_normally(self):
        code = """
import torch, shardbound
from shardbound.lirpa import BoundedModule, BoundedTensor, PerturbationLpNorm
caught = 0
for make in (lambda: BoundedModule(torch.nn.Sequential(torch.nn.Sigmoid()), torch.zeros(1, 4)),
             lambda: BoundedModule(torch.nn.Linear(4, 2), torch.zeros(1, 4), bound_opts={'x': 1}),
             lambda: BoundedModule(torch.nn.Linear(4, 2), torch.zeros(1, 4)).compute_bounds(
                 x=(BoundedTensor(torch.zeros(1, 5), PerturbationLpNorm(eps=1)),))):
    try:
        make()
    except shardbound.Error as e:
        caught += 1
print('alive', caught)
"""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.split(), ["alive", "3"])


if __name__ == "__main__":
    sbtest.main()
