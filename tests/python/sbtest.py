# SPDX-License-Identifier: MIT
"""What the Python tests share: skipping (exit 77) where numpy or torch is
truly absent, the test data, the `shardbound` command, and sampling."""

import json
import os
import subprocess
import sys

SKIP = 77


def require(*modules):
    """Exits 77 (automake's skip) when a module cannot be imported."""
    for name in modules:
        try:
            __import__(name)
        except ImportError as e:
            print(f"SKIP: {name} is not installed for {sys.executable} ({e})")
            sys.exit(SKIP)


require("numpy")
import numpy as np  # noqa: E402

DATA = os.environ.get("SHARDBOUND_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "data"))
EXAMPLES = os.environ.get("SHARDBOUND_EXAMPLES", os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
CLI = os.environ.get("SHARDBOUND_CLI")


def data(*parts):
    return os.path.join(DATA, *parts)


def goldens():
    """(name, golden dict) of every auto_LiRPA golden file, sorted."""
    directory = data("goldens")
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            with open(os.path.join(directory, name)) as f:
                yield name[:-5], json.load(f)


def cli_bounds(onnx, vnnlib, method, *extra):
    """The `shardbound bounds --json` object for a model and property."""
    if CLI is None:
        raise RuntimeError("SHARDBOUND_CLI is not set: run through make check")
    out = subprocess.run([CLI, "bounds", onnx, vnnlib, "--method", method, "--json", *extra],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def cli_array(values):
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def main():
    import unittest
    unittest.main(module="__main__", verbosity=2)
