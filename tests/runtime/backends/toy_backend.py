"""A toy backend, registered only by the tests: ONNX's own reference evaluator
(numpy, no optimiser) behind the same Builder/Runner interface. It proves that
a backend is one module plus one table row, and it is a slow but independent
reference for parity."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from runtime.backends import base
from runtime.errors import EdgeRuntimeError


def available() -> tuple[bool, str]:
    try:
        import onnx
    except ImportError as exc:
        return False, f"onnx is not installed ({exc})"
    return True, f"onnx {onnx.__version__} reference evaluator"


class Builder(base.EngineBuilder):
    """The engine is the exported graph itself; weights are replaced at load time."""

    def _check_environment(self) -> None:
        ok, why = available()
        if not ok:
            raise EdgeRuntimeError(why)

    def identity(self) -> dict:
        import onnx

        return {"device": "numpy", "backend_version": onnx.__version__}

    def build(self, graph: Path, out: Path, precision: str, weight_names: tuple[str, ...]) -> dict:
        shutil.copyfile(graph, out)
        return {"engine": "the graph, evaluated by onnx.reference"}


class Runner(base.Runner):
    name = "toy"

    def _activate(self) -> None:
        import onnx

        try:
            self.model = onnx.load(str(self.engine_path))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupt engine
            raise EdgeRuntimeError(f"toy: cannot load engine {self.engine_path}: {exc}") from None
        self.input_shape = tuple(d.dim_value for d in self.model.graph.input[0].type.tensor_type.shape.dim)
        self._bind(self.weights or {})

    def _bind(self, weights: dict) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        inits = {t.name: t for t in self.model.graph.initializer}
        unknown = sorted(set(weights) - set(inits))
        if unknown:
            raise EdgeRuntimeError(f"toy: engine has no weights named {unknown[:3]}")
        for name, value in weights.items():
            inits[name].CopyFrom(onnx.numpy_helper.from_array(np.asarray(value, np.float32), name))
        self.session = ReferenceEvaluator(self.model)

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        x = base.check_input(x, self.input_shape, np.dtype(np.float32), self.name)
        return [np.asarray(o) for o in self.session.run(None, {self.model.graph.input[0].name: x})]

    def _close(self) -> None:
        self.session = None
