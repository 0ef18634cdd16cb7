# SPDX-License-Identifier: MIT
"""examples/python/cnn_bounds.py, the auto_LiRPA-style script, runs on fsdp
with 4 ranks and reports every method's bounds and the ranks' memory."""

import os
import subprocess
import sys
import unittest

import sbtest
sbtest.require("torch")

SCRIPT = os.path.join(sbtest.EXAMPLES, "python", "cnn_bounds.py")


class TestExample(unittest.TestCase):
    def test_the_cnn_script_runs_on_fsdp_with_4_ranks(self):
        out = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        for method in ("IBP", "CROWN", "alpha-CROWN"):
            self.assertIn(f"Bounding method: {method}" if method != "alpha-CROWN"
                          else "CROWN-Optimized (alpha-CROWN)", out.stdout)
        self.assertEqual(out.stdout.count("robustness"), 3)
        self.assertEqual(sum(line.startswith("rank ") for line in out.stdout.splitlines()), 4)


if __name__ == "__main__":
    sbtest.main()
