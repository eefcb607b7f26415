"""The two interfaces every backend implements (Polygraphy style): a `Runner`
that runs one engine, and an `EngineBuilder` that turns a graph into one.

    runner = get_runner("onnxruntime")(engine_path, weights, threads=1)
    with runner:                     # activate(): load the engine, bind weights
        outs = runner.run(x)         # list of arrays, one per graph output
        runner.last_latency_ms       # wall time of that run
        runner.bind(other_weights)   # new weight set, same engine

Runners are not thread-safe: a runtime that swaps between threads keeps one
runner per engine and never calls a runner from two threads at once.

    builder = get_builder("onnxruntime", BuildOptions(workspace_mb=1024))
    builder.check("fp32")  # fails fast, with the reason, when it cannot build here
    builder.identity()     # {"device": ..., "backend_version": ...}: part of the cache key
    builder.build(graph_path, out_path, "fp32", weight_names)
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from runtime.errors import EdgeRuntimeError

if TYPE_CHECKING:
    from runtime.backends import Backend

Weights = Mapping[str, np.ndarray]


class Runner(ABC):
    """Runs one engine; weights are bound at activation and by `bind`. `threads`
    bounds the intra-op thread pool of backends that have one (0: the backend's
    default); the others ignore it."""

    name = "base"

    def __init__(self, engine_path: str | Path, weights: Weights | None = None, threads: int = 0):
        self.engine_path = Path(engine_path)
        self.weights = dict(weights) if weights is not None else None
        self.threads = threads
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


def device_slug(text: str) -> str:
    """A device name as a path component: 'cpu-x86_64', 'nvidia-orin-sm87'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower()


@dataclass(frozen=True)
class BuildOptions:
    """Builder options; a backend reads the ones that mean something to it."""

    workspace_mb: int = 1024  # builder scratch memory (TensorRT)
    timing_cache: Path | None = None  # tactic timing cache shared by builds of one device (TensorRT)


class EngineBuilder(ABC):
    """Turns one exported graph into one engine file of its backend."""

    def __init__(self, info: "Backend", options: BuildOptions):
        self.info, self.options = info, options
        self.name, self.suffix, self.precisions = info.name, info.suffix, info.precisions

    def check(self, precision: str) -> None:
        """Raises EdgeRuntimeError, with the reason, when this build cannot run here."""
        self._check_environment()
        if precision not in self.precisions:
            raise EdgeRuntimeError(
                f"--precision {precision} is not supported by {self.name} (expected one of {list(self.precisions)})"
            )

    def graph_precision(self, precision: str) -> str:
        """Precision of the graph this builder wants for an engine of `precision`."""
        return "fp32"

    @abstractmethod
    def _check_environment(self) -> None: ...

    @abstractmethod
    def identity(self) -> dict: ...

    @abstractmethod
    def build(self, graph: Path, out: Path, precision: str, weight_names: tuple[str, ...]) -> dict: ...
