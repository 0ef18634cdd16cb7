# SPDX-License-Identifier: MIT
"""shardbound.lirpa on every golden network: its bounds equal those of the
`shardbound bounds` command and auto_LiRPA's own (IBP and CROWN within
1e-4, alpha-CROWN at least as tight)."""

import unittest

import sbtest
sbtest.require("torch")
from sbtest import np  # noqa: E402
import torch  # noqa: E402

import shardbound  # noqa: E402
from shardbound.lirpa import BoundedModule, BoundedTensor, PerturbationLpNorm  # noqa: E402

# alpha-CROWN steps on the networks where the default's 50 final and 20
# per-start-node steps take minutes on two cores; the command gets the same.
# With so few steps the reference is auto_LiRPA's CROWN (alpha-CROWN never
# loosens it); check-engine holds the engine's default-step bounds on these
# networks to auto_LiRPA's alpha-CROWN.
ALPHA_ITERATIONS = {"resnet_2b.onnx": 3, "bn_resnet.onnx": 5}


def close_to_golden(test, got, want, what):
    want = np.asarray(want, dtype=float)
    tol = np.maximum(1e-4, 1e-4 * np.abs(want))
    bad = np.abs(got - want) > tol
    test.assertFalse(bad.any(), f"{what}: got {got[bad]}, auto_LiRPA {want[bad]}")


class GoldenCase:
    def __init__(self, golden):
        self.golden = golden
        self.onnx = sbtest.data("onnx", golden["onnx"])
        self.vnnlib = sbtest.data("vnnlib", golden["vnnlib"])
        self.prop = shardbound.Property(self.vnnlib)
        with shardbound.Session("cpu") as s:
            shape = s.load(self.onnx).input_shape
        lo, hi = self.prop.regions[0]
        self.x_L = torch.from_numpy(lo).reshape(1, *shape)
        self.x_U = torch.from_numpy(hi).reshape(1, *shape)
        self.C = torch.tensor(golden["spec_rows"], dtype=torch.float64)[None]

    def model(self, iterations=None):
        opts = {"shardbound": {"backend": "cpu"}}
        if iterations is not None:
            opts["optimize_bound_args"] = {"iteration": iterations}
        return BoundedModule(self.onnx, torch.zeros_like(self.x_L), bound_opts=opts)

    def x(self, dtype=torch.float64):
        ptb = PerturbationLpNorm(x_L=self.x_L.to(dtype), x_U=self.x_U.to(dtype))
        return BoundedTensor(((self.x_L + self.x_U) / 2).to(dtype), ptb)


class TestGoldens(unittest.TestCase):
    def check_ibp_or_crown(self, method, key, cli_method):
        for name, golden in sbtest.goldens():
            with self.subTest(golden=name):
                case = GoldenCase(golden)
                np.testing.assert_allclose(case.prop.spec_rows, case.C[0].numpy())
                model = case.model()
                lb, ub = model.compute_bounds(x=(case.x(),), C=case.C, method=method)
                out_lb, out_ub = model.compute_bounds(x=(case.x(),), method=method)
                self.assertEqual(tuple(lb.shape), (1, case.C.shape[1]))
                self.assertEqual(lb.dtype, torch.float64)
                cli = sbtest.cli_bounds(case.onnx, case.vnnlib, cli_method, "--backend", "cpu")
                for got, k in ((lb, "spec_lower"), (ub, "spec_upper"),
                               (out_lb, "output_lower"), (out_ub, "output_upper")):
                    got = got[0].numpy()
                    np.testing.assert_allclose(got, sbtest.cli_array(cli[k]), rtol=1e-7,
                                               atol=1e-9, err_msg=f"{name} {k} vs the command")
                    close_to_golden(self, got, golden["methods"][key][k], f"{name} {key} {k}")

    def test_ibp_equals_the_command_and_auto_lirpa(self):
        self.check_ibp_or_crown("IBP", "IBP", "ibp")

    def test_crown_equals_the_command_and_auto_lirpa(self):
        self.check_ibp_or_crown("CROWN", "CROWN", "crown")

    def test_alpha_crown_equals_the_command_and_is_at_least_as_tight_as_auto_lirpa(self):
        seen = set()
        for name, golden in sbtest.goldens():
            if golden["onnx"] in seen:  # one property per network: minutes each
                continue
            seen.add(golden["onnx"])
            with self.subTest(golden=name):
                case = GoldenCase(golden)
                iterations = ALPHA_ITERATIONS.get(golden["onnx"])
                extra = [] if iterations is None else [
                    "--iterations", str(iterations), "--final-iterations", str(iterations)]
                lb, ub = case.model(iterations).compute_bounds(
                    x=(case.x(),), C=case.C, method="CROWN-Optimized")
                cli = sbtest.cli_bounds(case.onnx, case.vnnlib, "alpha-crown",
                                        "--backend", "cpu", *extra)
                lb, ub = lb[0].numpy(), ub[0].numpy()
                np.testing.assert_allclose(lb, sbtest.cli_array(cli["spec_lower"]), rtol=1e-7, atol=1e-9)
                np.testing.assert_allclose(ub, sbtest.cli_array(cli["spec_upper"]), rtol=1e-7, atol=1e-9)
                alpha = golden["methods"]["alpha-CROWN" if iterations is None else "CROWN"]
                self.assertTrue(np.all(lb >= np.asarray(alpha["spec_lower"]) - 1e-4),
                                f"{name}: lower {lb} looser than auto_LiRPA {alpha['spec_lower']}")
                self.assertTrue(np.all(ub <= np.asarray(alpha["spec_upper"]) + 1e-4),
                                f"{name}: upper {ub} looser than auto_LiRPA {alpha['spec_upper']}")

    def test_float32_bounds_are_the_float64_ones_rounded_outward(self):
        name, golden = next(sbtest.goldens())
        case = GoldenCase(golden)
        model = case.model()
        lb64, ub64 = model.compute_bounds(x=(case.x(torch.float64),), C=case.C, method="CROWN")
        lb32, ub32 = model.compute_bounds(x=(case.x(torch.float32),), C=case.C.float(), method="CROWN")
        self.assertEqual(lb32.dtype, torch.float32)
        self.assertTrue(torch.all(lb32.double() <= lb64) and torch.all(ub32.double() >= ub64))
        self.assertTrue(torch.allclose(lb32.double(), lb64, rtol=1e-6, atol=1e-6))


if __name__ == "__main__":
    sbtest.main()
