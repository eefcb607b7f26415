"""ONNX Runtime (CPU) runner.

The engine is the graph ONNX Runtime optimised at build time (level EXTENDED:
Conv+activation fusion and friends), with every weight tensor marked as
external data that is never written: the file holds the structure only, and a
weight set is bound at session creation with `add_external_initializers`.
ORT then runs its remaining optimisations (level ALL, including the NCHWc
layout pass) on the bound weights: correct for any weight set and, on our nets,
2x faster per call than binding with `add_initializer` (see below).

Why not `add_initializer` (initializer override)? It is honoured only when the
session loads with optimisations off or BASIC; at ENABLE_ALL the NCHWc pass
copies the graph's own weights into reordered initializers and the override is
silently ignored (tests/runtime/backends/test_onnxruntime.py shows it). With
optimisations off the same engine runs about 2x slower. External initializers
are supplied before optimisation, so they get the fast layout and stay correct.
Binding a new weight set costs one session creation (~10 ms for our nets).
"""

from __future__ import annotations

import numpy as np

from runtime.backends.base import Runner, check_input
from runtime.errors import EdgeRuntimeError

LOAD_LEVEL = "ORT_ENABLE_ALL"  # weights are bound before optimisation: the full optimiser is safe


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
        names = list(weights or {})
        values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(weights[k])) for k in names]
        if names:
            so.add_external_initializers(names, values)
        try:
            session = ort.InferenceSession(str(self.engine_path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            hint = "" if names else " (this engine's weights are bound at load time: pass a weight set)"
            raise EdgeRuntimeError(f"onnxruntime: cannot load engine {self.engine_path}{hint}: {exc}") from None
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
