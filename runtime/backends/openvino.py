"""OpenVINO (CPU): its builder and its runner, fp32 and bf16.

The engine is the exported graph, checked by OpenVINO at build time, with every
weight tensor marked as external data that is never written (the ONNX Runtime
backend's protocol, `externalise`) and the precision recorded in the model's
metadata. A weight set is bound by filling the initializers in memory and
compiling for the CPU plugin, so OpenVINO folds and reorders the real weights;
binding another set is one compile. bf16 runs where the CPU executes bf16
(AVX512_BF16 / AMX: `OPTIMIZATION_CAPABILITIES` lists BF16), with the compiler's
reduced-precision parity budget; fp32 pins OpenVINO's inference precision to
f32 (its default on such CPUs is bf16).
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from runtime.backends import base
from runtime.backends.base import check_input, device_slug
from runtime.backends.onnxruntime import externalise
from runtime.errors import EdgeRuntimeError

PRECISION_KEY = "edgemtl.openvino.precision"
HINT = {"fp32": "f32", "bf16": "bf16"}


def available() -> tuple[bool, str]:
    try:
        import openvino
    except ImportError as exc:
        return False, f"the openvino backend needs the openvino Python package ({exc})"
    return True, f"openvino {openvino.__version__} (CPU)"


def cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _filled(engine: Path, weights: dict) -> tuple[bytes, str]:
    """The engine's graph with `weights` in its external initializers, and its precision."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(engine), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own decode errors
        raise EdgeRuntimeError(f"openvino: cannot load engine {engine}: not an ONNX graph ({exc})") from None
    missing = []
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        if tensor.name not in weights:
            missing.append(tensor.name)
            continue
        value = np.ascontiguousarray(weights[tensor.name], dtype=onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        if tuple(value.shape) != tuple(tensor.dims):
            raise EdgeRuntimeError(
                f"openvino: weight {tensor.name} has shape {value.shape}, expected {tuple(tensor.dims)}"
            )
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, tensor.name))
    if missing:
        raise EdgeRuntimeError(f"openvino: the weight set lacks {sorted(missing)[:3]} (engine {engine.name})")
    meta = {p.key: p.value for p in model.metadata_props}
    return model.SerializeToString(), meta.get(PRECISION_KEY, "fp32")


class Runner(base.Runner):
    name = "openvino"

    def __init__(self, engine_path, weights=None, threads: int = 0):
        super().__init__(engine_path, weights, threads)
        self.request = None

    def _compile(self, weights: dict | None) -> None:
        import openvino as ov

        if weights is None:
            raise EdgeRuntimeError("openvino: this engine's weights are bound at load time: pass a weight set")
        data, precision = _filled(self.engine_path, weights)
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": HINT[precision], "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        try:
            compiled = core.compile_model(core.read_model(data, b""), "CPU", config)
        except RuntimeError as exc:
            raise EdgeRuntimeError(f"openvino: cannot load engine {self.engine_path}: {exc}") from None
        self.request, self.precision = compiled.create_infer_request(), precision
        port = compiled.input(0)
        self.shape, self.n_out = tuple(port.get_shape()), len(compiled.outputs)

    def _activate(self) -> None:
        self._compile(self.weights)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        self.request.infer({0: check_input(x, self.shape, np.float32, self.name)})
        return [self.request.get_output_tensor(i).data.copy() for i in range(self.n_out)]

    def _bind(self, weights: dict) -> None:
        self._compile(weights)

    def _close(self) -> None:
        self.request = None


class Builder(base.EngineBuilder):
    def _check_environment(self) -> None:
        ok, reason = available()
        if not ok:
            raise EdgeRuntimeError(reason)

    def check(self, precision: str) -> None:
        super().check(precision)
        if precision == "bf16" and not cpu_has_bf16():
            raise EdgeRuntimeError(
                "--precision bf16: this CPU does not execute bf16 (no BF16 in OpenVINO's CPU capabilities)"
            )

    def identity(self) -> dict:
        import openvino as ov

        bf16 = "-bf16" if cpu_has_bf16() else ""  # bf16 kernels exist only on such CPUs
        return {"device": device_slug(f"cpu-{platform.machine()}{bf16}"), "backend_version": ov.__version__}

    def build(self, graph: Path, out: Path, precision: str, weight_names: tuple[str, ...]) -> dict:
        """The graph checked by OpenVINO (converted and compiled with zero weights), saved
        with its weights external and its precision recorded."""
        import onnx

        model = onnx.load(str(graph), load_external_data=False)
        missing = externalise(model, set(weight_names))
        if missing:
            raise EdgeRuntimeError(f"openvino: the graph has no weights {sorted(missing)[:3]}")
        onnx.helper.set_model_props(model, {PRECISION_KEY: precision})
        onnx.save(model, str(out))
        zeros = {t.name: np.zeros(tuple(t.dims), onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
                 for t in model.graph.initializer if t.name in set(weight_names)}  # fmt: skip
        with Runner(out, zeros):
            pass
        return {"precision": precision, "weights": "external, bound at load time"}
