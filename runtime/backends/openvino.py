"""OpenVINO (CPU): its builder and its runner, fp32 and bf16.

The engine (format 2, bundle format 3) is the exported ONNX graph in which every
weight is a graph input instead of an initializer: input 0 is the image, the
weights follow, each with its initializer's name, element type and shape (other
initializers, if any, stay). The precision is in the model's metadata
(`PRECISION_KEY`), and so is the engine format (`FORMAT_KEY`). Why inputs: a
runtime binds weights through OpenVINO's own graph API, with no ONNX or protobuf
library, so the C++ runtime does exactly what this runner does: read the model
once, and per weight set clone it, replace each weight Parameter by a Constant
holding that weight, and compile for the CPU plugin, which then folds and
reorders the real weights (format 1 filled external initializers in memory
through the onnx package, which C++ cannot do). Binding another set is one
compile (~0.1 s for scenes3's graphs).

bf16 runs where the CPU executes bf16 (AVX512_BF16 / AMX: `OPTIMIZATION_CAPABILITIES`
lists BF16), with the compiler's reduced-precision parity budget; fp32 pins
OpenVINO's inference precision to f32 (its default on such CPUs is bf16).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import numpy as np

from runtime.backends import base
from runtime.backends.base import check_input, device_slug
from runtime.errors import EdgeRuntimeError

PRECISION_KEY = "edgemtl.openvino.precision"
FORMAT_KEY = "edgemtl.openvino.engine_format"
ENGINE_FORMAT = 2  # 1: weights as never-written external initializers; 2: weights as graph inputs
HINT = {"fp32": "f32", "bf16": "bf16"}


def available() -> tuple[bool, str]:
    try:
        import openvino
    except ImportError as exc:
        return False, f"the openvino backend needs the openvino Python package ({exc})"
    return True, f"openvino {openvino.__version__} (CPU)"


@functools.cache  # a property of the CPU: asked once per process, not per build step
def cpu_has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def weights_as_inputs(model, weight_names: set[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Turns the ONNX model's initializers named in `weight_names` into graph inputs
    appended after the existing ones (the image stays input 0), in place; returns
    {name: (shape, dtype)} of the weights it moved."""
    import onnx

    keep, moved = [], {}
    for t in model.graph.initializer:
        if t.name in weight_names:
            model.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            moved[t.name] = (tuple(t.dims), onnx.helper.tensor_dtype_to_np_dtype(t.data_type))
        else:
            keep.append(t)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return moved


def _metadata(model, key: str) -> str | None:
    """An ONNX metadata property as OpenVINO's ONNX reader exposes it (rt_info "framework")."""
    return model.get_rt_info(["framework", key]).astype(str) if model.has_rt_info(["framework", key]) else None


def _names(param) -> set[str]:
    return {param.get_friendly_name(), *param.output(0).get_names()}


def bind_weights(model, weights: dict, engine: Path):
    """A clone of `model` with every weight Parameter (all but input 0, the image)
    replaced by a Constant holding that weight: what the CPU plugin compiles."""
    import openvino as ov

    clone = model.clone()
    missing = []
    for param in clone.get_parameters()[1:]:
        name = next((n for n in sorted(_names(param)) if n in weights), None)
        if name is None:
            missing.append(param.get_friendly_name())
            continue
        expected = tuple(param.get_partial_shape().to_shape())
        value = np.ascontiguousarray(weights[name], dtype=param.get_element_type().to_dtype())
        if tuple(value.shape) != expected:
            raise EdgeRuntimeError(f"openvino: weight {name} has shape {value.shape}, expected {expected}")
        param.output(0).replace(ov.op.Constant(value).output(0))
        clone.remove_parameter(param)
    if missing:
        raise EdgeRuntimeError(f"openvino: the weight set lacks {sorted(missing)[:3]} (engine {engine.name})")
    clone.validate_nodes_and_infer_types()
    return clone


class Runner(base.Runner):
    name = "openvino"

    def __init__(self, engine_path, weights=None, threads: int = 0):
        super().__init__(engine_path, weights, threads)
        self.core = self.model = self.request = None

    def _read(self) -> None:
        """Reads the engine once; every weight set binds to a clone of it."""
        import openvino as ov

        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(self.engine_path))
        except RuntimeError as exc:  # not an ONNX graph, or format 1's never-written external weights
            raise EdgeRuntimeError(
                f"openvino: cannot load engine {self.engine_path} (an engine of a bundle older than format 3 "
                f"needs a rebuild with compiler >= 0.3.0): {exc}"
            ) from None
        found = _metadata(self.model, FORMAT_KEY)
        if found != str(ENGINE_FORMAT):
            raise EdgeRuntimeError(
                f"openvino: cannot load engine {self.engine_path}: engine format {found or 1}, this runtime "
                f"reads {ENGINE_FORMAT}; rebuild the bundle with compiler >= 0.3.0"
            )
        self.precision = _metadata(self.model, PRECISION_KEY) or "fp32"
        if self.precision not in HINT:
            raise EdgeRuntimeError(f"openvino: engine {self.engine_path} has unknown precision {self.precision!r}")

    def _compile(self, weights: dict | None) -> None:
        if weights is None:
            raise EdgeRuntimeError("openvino: this engine's weights are bound at load time: pass a weight set")
        config = {"INFERENCE_PRECISION_HINT": HINT[self.precision], "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        bound = bind_weights(self.model, weights, self.engine_path)
        try:
            compiled = self.core.compile_model(bound, "CPU", config)
        except RuntimeError as exc:
            raise EdgeRuntimeError(f"openvino: cannot compile engine {self.engine_path}: {exc}") from None
        self.request = compiled.create_infer_request()  # the old request stays if anything above raised
        self.shape, self.n_out = tuple(compiled.input(0).get_shape()), len(compiled.outputs)

    def _activate(self) -> None:
        self._read()
        self._compile(self.weights)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        self.request.infer({0: check_input(x, self.shape, np.float32, self.name)})
        return [self.request.get_output_tensor(i).data.copy() for i in range(self.n_out)]

    def _bind(self, weights: dict) -> None:
        self._compile(weights)

    def _close(self) -> None:
        self.core = self.model = self.request = None


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
        return {
            "device": device_slug(f"cpu-{platform.machine()}{bf16}"),
            "backend_version": ov.__version__,
            "engine_format": ENGINE_FORMAT,  # in the cache key: a new format never reuses an old engine
        }

    def build(self, graph: Path, out: Path, precision: str, weight_names: tuple[str, ...]) -> dict:
        """The graph with its weights as inputs and its precision recorded, checked by
        OpenVINO: read, bound to zero weights, compiled and run once."""
        import onnx

        model = onnx.load(str(graph), load_external_data=False)
        moved = weights_as_inputs(model, set(weight_names))
        missing = set(weight_names) - set(moved)
        if missing:
            raise EdgeRuntimeError(f"openvino: the graph has no weights {sorted(missing)[:3]}")
        onnx.helper.set_model_props(model, {PRECISION_KEY: precision, FORMAT_KEY: str(ENGINE_FORMAT)})
        onnx.save(model, str(out))
        zeros = {name: np.zeros(shape, dtype) for name, (shape, dtype) in moved.items()}
        with Runner(out, zeros) as runner:
            runner.run(np.zeros(runner.shape, np.float32))
        return {"precision": precision, "weights": "graph inputs, bound at load time", "engine_format": ENGINE_FORMAT}
