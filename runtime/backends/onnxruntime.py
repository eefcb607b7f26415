"""ONNX Runtime (CPU): its builder and its runner, and the external-weights
protocol they share.

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

import platform
from pathlib import Path

import numpy as np

from runtime.backends import base
from runtime.backends.base import check_input, device_slug
from runtime.errors import EdgeRuntimeError

LOAD_LEVEL = "ORT_ENABLE_ALL"  # weights are bound before optimisation: the full optimiser is safe
BUILD_LEVEL = "ORT_ENABLE_EXTENDED"  # no CPU-specific layout in the saved engine: one engine per architecture
WEIGHTS_LOCATION = "bound-at-load-time"  # the external-data location written into engines; no such file exists


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


class Runner(base.Runner):
    name = "onnxruntime"

    def __init__(self, engine_path, weights=None, threads: int = 0):
        super().__init__(engine_path, weights, threads)
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


class Builder(base.EngineBuilder):
    """The engine is the graph as ONNX Runtime optimises it at level EXTENDED
    (constant folding, Conv+activation fusion), saved so loading skips that work,
    with every weight tensor turned into external data that is never written:
    the runner binds a weight set with `add_external_initializers` and ORT runs
    its hardware-specific passes (NCHWc) on those weights at load time (see the
    module docstring for why not initializer override). fp32 only: ORT's CPU
    kernels have no fast fp16 path (use tensorrt for fp16)."""

    def _check_environment(self) -> None:
        ok, why = available()
        if not ok:
            raise EdgeRuntimeError(f"--backend onnxruntime cannot build here: {why}")

    def identity(self) -> dict:
        import onnxruntime

        # EXTENDED-level graphs hold no CPU-specific layout, so the architecture is the device.
        return {"device": device_slug(f"cpu-{platform.machine()}"), "backend_version": onnxruntime.__version__}

    def build(self, graph: Path, out: Path, precision: str, weight_names: tuple[str, ...]) -> dict:
        import onnx
        import onnxruntime as ort

        so = session_options(level=BUILD_LEVEL)
        so.optimized_model_filepath = str(out)
        # ConstantSharing merges initializers of equal value (two zero biases of an
        # untrained BatchNorm set): right for these values, wrong for the weights bound
        # at load time, which differ per weight set.
        ort.InferenceSession(
            str(graph), so, providers=["CPUExecutionProvider"], disabled_optimizers=["ConstantSharing"]
        )
        model = onnx.load(str(out))
        missing = externalise(model, set(weight_names))
        if missing:
            raise EdgeRuntimeError(
                f"onnxruntime's optimiser renamed or folded weights {sorted(missing)[:3]}: "
                f"they could not be bound at load time"
            )
        onnx.save(model, str(out))
        return {"optimization_level": BUILD_LEVEL, "weights": "external, bound at load time"}


def externalise(model, wanted: set[str]) -> set[str]:
    """Marks the initializers named in `wanted` as external data at WEIGHTS_LOCATION and
    drops their values; returns the names that were not found."""
    import onnx
    from onnx.external_data_helper import set_external_data

    for tensor in model.graph.initializer:
        if tensor.name in wanted:
            nbytes = int(np.prod(tensor.dims)) * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            set_external_data(tensor, location=WEIGHTS_LOCATION, offset=0, length=nbytes)
            for field in ("raw_data", "float_data", "double_data", "int32_data", "int64_data"):
                tensor.ClearField(field)
            tensor.data_location = onnx.TensorProto.EXTERNAL
    return wanted - {t.name for t in model.graph.initializer}
