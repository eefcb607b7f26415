"""The runtime must import on a device without torch (DESIGN.md section 2)."""

import subprocess
import sys

GUARD = """
import builtins, sys
real = builtins.__import__
def guard(name, *args, **kwargs):
    if name.split(".")[0] in ("torch", "trainer", "compiler"):
        raise ImportError("blocked: " + name)
    return real(name, *args, **kwargs)
builtins.__import__ = guard
import runtime
from runtime import fold_conv_bn, tree_signature, validate_preference
import numpy as np
w, b = fold_conv_bn(np.ones((1, 1, 1, 1)), None, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1), 0.0)
assert "torch" not in sys.modules
print(tree_signature([[0, 0], [0, 1]]), float(w.ravel()[0]))
"""


def test_runtime_imports_and_runs_with_torch_blocked():
    out = subprocess.run([sys.executable, "-c", GUARD], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "1.0"
