"""The runtime must import on a device without torch (docs/design.md section 2)."""

import subprocess
import sys

GUARD = """
import builtins, sys
real = builtins.__import__
def guard(name, *args, **kwargs):
    if name.split(".")[0] in ("torch", "trainer", "compiler", "onnx"):
        raise ImportError("blocked: " + name)
    return real(name, *args, **kwargs)
builtins.__import__ = guard
import runtime
from runtime import fold_conv_bn, tree_signature, validate_preference
import numpy as np
w, b = fold_conv_bn(np.ones((1, 1, 1, 1)), None, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1), 0.0)
from runtime.backends import get_runner
from runtime.manifest import load_manifest
from runtime.weights import WeightStore
bundle = sys.argv[1]
m = load_manifest(bundle)
e = m.grid[0]
with get_runner("onnxruntime")(f"{bundle}/{m.signatures[e.signature].engines[0].path}",
                               WeightStore(bundle, m).entry_weights(e)) as runner:
    outs = runner.run(np.zeros((1, *m.input.shape), np.float32))
assert "torch" not in sys.modules and "onnx" not in sys.modules
print(tree_signature([[0, 0], [0, 1]]), float(w.ravel()[0]), len(outs))
"""


def test_runtime_imports_and_runs_a_bundle_with_torch_blocked(tiny_bundle):
    out = subprocess.run(
        [sys.executable, "-c", GUARD, str(tiny_bundle[0])], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1:] == ["1.0", "3"]
