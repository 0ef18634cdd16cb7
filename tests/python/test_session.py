# SPDX-License-Identifier: MIT
"""The shardbound package over the host API: backends, sessions, bounds,
verification, memory, arrays in and out, and errors as exceptions."""

import os
import unittest

import sbtest
from sbtest import np

import shardbound

NET = os.path.join(sbtest.EXAMPLES, "mnist_fc", "mnist-net_256x2.onnx")
UNSAT = os.path.join(sbtest.EXAMPLES, "mnist_fc", "prop_0_0.03.vnnlib")
SAT = os.path.join(sbtest.EXAMPLES, "mnist_fc", "prop_1_0.03.vnnlib")


class TestBackends(unittest.TestCase):
    def test_backends_lists_cpu_and_the_multirank_backends(self):
        found = {b.name: b for b in shardbound.backends()}
        for name in ("cpu", "fsdp", "tp"):
            self.assertIn(name, found)
            self.assertTrue(found[name].usable, found[name].refusal)
        self.assertIn("multi-rank", found["fsdp"].capabilities)
        self.assertNotIn("multi-rank", found["cpu"].capabilities)

    def test_a_broken_backend_file_is_listed_as_refused_with_the_reason(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "shardbound-backend-broken.so"), "w") as f:
                f.write("not a shared object")
            path = os.environ["SHARDBOUND_BACKEND_PATH"] + ":" + d
            broken = [b for b in shardbound.backends(backend_path=path) if b.name == "broken"]
            self.assertEqual(len(broken), 1)
            self.assertFalse(broken[0].usable)
            self.assertIn("broken", broken[0].refusal)

    def test_api_version_is_1(self):
        self.assertEqual(shardbound.api_version()[0], 1)


class TestSession(unittest.TestCase):
    def setUp(self):
        self.prop = shardbound.Property(UNSAT)
        self.lo, self.hi = self.prop.regions[0]

    def test_bounds_equal_the_bounds_command(self):
        for method in ("ibp", "crown", "alpha-crown"):
            with self.subTest(method=method), shardbound.Session("cpu") as s:
                ours = s.bounds(NET, self.lo, self.hi, C=self.prop.spec_rows, method=method)
                cli = sbtest.cli_bounds(NET, UNSAT, method, "--backend", "cpu")
                np.testing.assert_allclose(ours.spec_lower, sbtest.cli_array(cli["spec_lower"]), rtol=1e-7, atol=1e-9)
                np.testing.assert_allclose(ours.spec_upper, sbtest.cli_array(cli["spec_upper"]), rtol=1e-7, atol=1e-9)
                np.testing.assert_allclose(ours.output_lower, sbtest.cli_array(cli["output_lower"]), rtol=1e-7, atol=1e-9)
                self.assertEqual(self.prop.proven(ours.spec_lower), cli["proven"])

    def test_numpy_in_gives_numpy_out_and_torch_in_gives_torch_out(self):
        with shardbound.Session("cpu") as s:
            b = s.bounds(NET, self.lo, self.hi)
            self.assertIsInstance(b.lower, np.ndarray)
            self.assertEqual(b.lower.shape, (10,))
            self.assertTrue(np.all(b.lower <= b.upper))
            try:
                import torch
            except ImportError:
                return
            t = s.bounds(NET, torch.from_numpy(self.lo), torch.from_numpy(self.hi))
            self.assertIsInstance(t.lower, torch.Tensor)
            np.testing.assert_array_equal(t.lower.numpy(), b.lower)

    def test_bounds_contain_sampled_outputs(self):
        rng = np.random.default_rng(3)
        with shardbound.Session("cpu") as s:
            net = s.load(NET)
            b = net.bounds(self.lo, self.hi, method="crown")
            for _ in range(100):
                y = net.evaluate(rng.uniform(self.lo, self.hi).astype(np.float32))
                self.assertTrue(np.all(b.lower <= y + 1e-6) and np.all(y <= b.upper + 1e-6))

    def test_multirank_sessions_give_the_cpu_bounds(self):
        with shardbound.Session("cpu") as s:
            ref = s.bounds(NET, self.lo, self.hi, C=self.prop.spec_rows)
        for backend in ("fsdp", "tp"):
            for ranks in (2, 4):
                with self.subTest(backend=backend, ranks=ranks), \
                        shardbound.Session(backend, ranks=ranks) as s:
                    self.assertEqual((s.backend, s.ranks), (backend, ranks))
                    b = s.bounds(NET, self.lo, self.hi, C=self.prop.spec_rows)
                    np.testing.assert_allclose(b.lower, ref.lower, rtol=1e-5, atol=1e-6)
                    memory = s.memory()
                    self.assertEqual(len(memory), ranks)
                    self.assertTrue(all(m["peak_bytes"] > 0 for m in memory))

    def test_verify_proves_the_unsat_property(self):
        with shardbound.Session("cpu") as s:
            r = s.verify(NET, UNSAT, timeout=120)
        self.assertEqual(r.answer, "unsat")
        self.assertIsNone(r.counterexample)
        self.assertGreaterEqual(r.domains, 0)
        self.assertGreater(r.seconds, 0)
        self.assertTrue(0 <= r.bab_seconds <= r.seconds)
        self.assertEqual(r.tighten_domains, 0)  # decided without
        self.assertIsNone(r.last_progress)  # at the root
        self.assertEqual(len(r.memory), 1)

    def test_verify_reports_progress_and_how_far_an_undecided_search_got(self):
        reports = []
        with shardbound.Session("cpu") as s:
            r = s.verify(sbtest.data("onnx", "mnist-net_256x4.onnx"),
                         sbtest.data("vnnlib", "prop_2_0.05.vnnlib"),
                         progress=reports.append, bab_domains=64, attack=False)
        self.assertEqual(r.answer, "timeout")
        self.assertTrue(reports)
        self.assertEqual(r.last_progress, reports[-1])
        done = [p.domains_done for p in reports]
        self.assertEqual(done, sorted(done))
        self.assertEqual(r.last_progress.domains_done, r.domains)
        self.assertGreater(r.last_progress.domains_open, 0)
        self.assertLess(r.last_progress.worst_margin, 0)

    def test_the_least_margin_found_lies_above_the_worst_margin(self):
        # One disjunct (Y_9 >= Y_4) of prop_2_0.05: its least margin m over
        # the box is at most the one found at an input, and at least any
        # lower bound that branch-and-bound keeps.
        with open(sbtest.data("vnnlib", "prop_2_0.05.vnnlib")) as f:
            kept = [line for line in f if "X_" in line or "declare-const" in line]
        prop = shardbound.Property(text="".join(kept) + "(assert (>= Y_9 Y_4))\n")
        with shardbound.Session("cpu") as s:
            r = s.load(sbtest.data("onnx", "mnist-net_256x4.onnx")).verify(
                prop, bab_domains=64)
        self.assertEqual(r.answer, "timeout")
        self.assertGreater(r.found_margin, 0)
        self.assertLessEqual(r.last_progress.worst_margin, r.found_margin)

    def test_verify_finds_a_checked_counterexample(self):
        prop = shardbound.Property(SAT)
        with shardbound.Session("fsdp", ranks=2) as s:
            net = s.load(NET)
            r = net.verify(prop, timeout=120)
            self.assertEqual(r.answer, "sat")
            x, y = r.counterexample
            lo, hi = prop.regions[r.region]
            self.assertTrue(np.all(lo <= x) and np.all(x <= hi))
            np.testing.assert_allclose(net.evaluate(x), y)
            # Some disjunct of the unsafe region holds at y: here one atom each.
            self.assertTrue(np.any(prop.spec_rows @ y <= prop.spec_rhs))
            # Its margin is the least one found.
            self.assertAlmostEqual(r.found_margin,
                                   np.min(prop.spec_rows @ y - prop.spec_rhs),
                                   places=12)
            self.assertLessEqual(r.found_margin, 0)

    def test_model_bytes_load_like_the_file(self):
        with open(NET, "rb") as f:
            data = f.read()
        with shardbound.Session("cpu") as s:
            a = s.bounds(data, self.lo, self.hi)
            b = s.bounds(NET, self.lo, self.hi)
            np.testing.assert_array_equal(a.lower, b.lower)

    def test_memory_reset_sets_the_baseline(self):
        with shardbound.Session("cpu") as s:
            net = s.load(NET)
            s.reset_memory()
            m = s.memory()[0]
            self.assertEqual(m["baseline_bytes"], m["current_bytes"])
            self.assertGreater(m["by_category"]["weights"]["current"], 0)
            net.bounds(self.lo, self.hi)


class TestErrors(unittest.TestCase):
    def test_unknown_backend_names_it(self):
        with self.assertRaisesRegex(shardbound.NoBackendError, "nosuch"):
            shardbound.Session("nosuch")

    def test_unknown_backend_option_names_it(self):
        with self.assertRaisesRegex(shardbound.Error, "frobnicate"):
            shardbound.Session("cpu", frobnicate=1)

    def test_ranks_on_a_single_rank_backend_is_refused(self):
        with self.assertRaisesRegex(shardbound.InvalidArgumentError, "single rank"):
            shardbound.Session("cpu", ranks=2)

    def test_unknown_setting_names_it(self):
        with shardbound.Session("cpu") as s:
            with self.assertRaisesRegex(shardbound.InvalidArgumentError, "unknown setting 'iteratoins'"):
                s.bounds(NET, np.zeros(784), np.ones(784), iteratoins=3)
            with self.assertRaisesRegex(shardbound.InvalidArgumentError, "'lr'"):
                s.bounds(NET, np.zeros(784), np.ones(784), lr="fast")

    def test_wrong_box_size_names_the_argument(self):
        with shardbound.Session("cpu") as s:
            with self.assertRaisesRegex(shardbound.InvalidArgumentError, "x_lower: 783 values"):
                s.bounds(NET, np.zeros(783), np.ones(784))
            with self.assertRaisesRegex(ValueError, "lower .* > upper"):
                s.bounds(NET, np.ones(784), np.zeros(784))

    def test_malformed_model_is_bad_input_and_missing_file_is_a_file_error(self):
        with shardbound.Session("cpu") as s:
            with self.assertRaises(shardbound.BadInputError):
                s.load(b"\x08\x07garbage that is no ModelProto")
            with self.assertRaisesRegex(shardbound.FileError, "no-such.onnx"):
                s.load("/nonexistent/no-such.onnx")

    def test_malformed_property_names_the_line(self):
        with self.assertRaisesRegex(shardbound.BadInputError, "line"):
            shardbound.Property(text="(declare-const X_0 Real)\n(assert (<= X_0")

    def test_property_of_another_network_is_refused(self):
        prop = shardbound.Property(text="(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                                        "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 0))\n")
        with shardbound.Session("cpu") as s:
            with self.assertRaisesRegex(shardbound.BadInputError, "1 inputs"):
                s.verify(NET, prop)


if __name__ == "__main__":
    sbtest.main()
