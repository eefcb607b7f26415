"""ONNX Runtime (CPU) runner: the engine is the graph ONNX Runtime optimised at
build time (level EXTENDED: fused Conv+ReLU etc., initializer names kept).

Weights are bound with `SessionOptions.add_initializer` at session creation,
with graph optimisation off at load time. That is the level combination that
honours the override: loading with ORT_ENABLE_ALL lets the NCHWc layout pass
copy the graph's own initializers into reordered ones, silently ignoring the
override (tests/runtime/backends/test_onnxruntime.py shows both). Binding a new
weight set therefore costs one session creation (milliseconds for our nets).
"""

from __future__ import annotations

import numpy as np

from runtime.backends.base import Runner, check_input
from runtime.errors import EdgeRuntimeError

LOAD_LEVEL = "ORT_DISABLE_ALL"  # the engine is already optimised; see the module docstring


def available() -> tuple[bool, str]:
    try:
        import onnxruntime
    except ImportError as exc:
        return False, f"onnxruntime is not installed ({exc})"
    return True, f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"


def session_options(threads: int = 0, level: str = LOAD_LEVEL):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.intra_op_num_threads = threads
    so.log_severity_level = 3  # warnings about unused initializers are expected noise
    return so


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(self, engine_path, weights=None, threads: int = 0):
        super().__init__(engine_path, weights)
        self.threads = threads
        self.session = None
        self._values: list = []  # OrtValues must outlive the session that uses them

    def _make_session(self, weights: dict | None):
        import onnxruntime as ort
        so = session_options(self.threads)
        values = []
        for name, arr in (weights or {}).items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr))
            so.add_initializer(name, value)
            values.append(value)
        try:
            session = ort.InferenceSession(str(self.engine_path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise EdgeRuntimeError(f"onnxruntime: cannot load engine {self.engine_path}: {exc}") from None
        return session, values

    def _activate(self) -> None:
        self.session, self._values = self._make_session(self.weights)
        inp = self.session.get_inputs()[0]
        self.input_name, self.input_shape = inp.name, tuple(inp.shape)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _bind(self, weights: dict) -> None:
        session, values = self._make_session(weights)  # old session stays if this raises
        self.session, self._values = session, values

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        x = check_input(x, self.input_shape, np.dtype(np.float32), self.name)
        return self.session.run(self.output_names, {self.input_name: x})

    def _close(self) -> None:
        self.session, self._values = None, []
