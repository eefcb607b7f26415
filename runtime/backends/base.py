"""The one runner interface every backend implements (Polygraphy style).

    runner = get_runner("onnxruntime")(engine_path, weights)
    with runner:                     # activate(): load the engine, bind weights
        outs = runner.run(x)         # list of arrays, one per graph output
        runner.last_latency_ms       # wall time of that run
        runner.bind(other_weights)   # new weight set, same engine

Runners are not thread-safe: a runtime that swaps between threads keeps one
runner per engine and never calls a runner from two threads at once.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Mapping

import numpy as np

from runtime.errors import EdgeRuntimeError

Weights = Mapping[str, np.ndarray]


class Runner(ABC):
    """Runs one engine; weights are bound at activation and by `bind`."""

    name = "base"

    def __init__(self, engine_path: str | Path, weights: Weights | None = None):
        self.engine_path = Path(engine_path)
        self.weights = dict(weights) if weights is not None else None
        self.last_latency_ms = float("nan")
        self.active = False

    def activate(self) -> "Runner":
        if not self.active:
            if not self.engine_path.is_file():
                raise EdgeRuntimeError(f"{self.name}: engine {self.engine_path} is missing")
            self._activate()
            self.active = True
        return self

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Runs one input batch; raises EdgeRuntimeError on a wrong shape/dtype."""
        if not self.active:
            raise EdgeRuntimeError(f"{self.name}: runner is not active (call activate() first)")
        t0 = time.perf_counter()
        outs = self._run(x)
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        return outs

    def bind(self, weights: Weights) -> None:
        """Binds another weight set; the old one stays bound if this fails."""
        if self.active:
            self._bind(dict(weights))
        self.weights = dict(weights)

    def close(self) -> None:
        if self.active:
            self._close()
            self.active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _run(self, x: np.ndarray) -> list[np.ndarray]: ...

    @abstractmethod
    def _bind(self, weights: dict) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...


def check_input(x: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, who: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise EdgeRuntimeError(f"{who}: input must be a numpy array, found {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise EdgeRuntimeError(f"{who}: input must have shape {tuple(shape)}, found {tuple(x.shape)}")
    if x.dtype != dtype:
        raise EdgeRuntimeError(f"{who}: input must be {np.dtype(dtype).name}, found {x.dtype.name}")
    return np.ascontiguousarray(x)
