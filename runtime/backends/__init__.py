"""Backend registry: one table row per backend, one module that owns the rest.

Each backend is one module under runtime/backends/ that defines `available()`,
a `Runner` (run an engine, bind weight sets) and a `Builder` (graph -> engine),
with its heavy packages imported lazily, and one `Backend` row in `BACKENDS`
saying what it supports (the ultralytics exporter's `export_formats()` table).
CLIs take their `--backend` / `--precision` choices from the table; the
runtime's "auto" tries backends in the order the bundle's build measured
(compiler/targets.py), then in `priority` order. Adding a backend is one
new module plus one `register(Backend(...))` call
(tests/runtime/backends/test_registry.py registers a toy one).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from runtime.backends.base import BuildOptions, EngineBuilder, Runner
from runtime.errors import EdgeRuntimeError


@dataclass(frozen=True)
class Backend:
    name: str
    module: str  # imported on first use: the module defines available(), Runner and Builder
    precisions: tuple[str, ...]  # engine precisions its builder can produce
    device_kinds: tuple[str, ...]  # "cpu", "cuda": what it runs on
    priority: int  # runtime "auto" after the build's measured order: usable backends with engines, highest first
    suffix: str  # engine file suffix in caches and bundles
    # A new weight set on a loaded engine is cheap (TensorRT: refit in place), so the
    # runtime rebinds an idle warm runner of the same signature instead of loading
    # another engine. ONNX Runtime has no in-place rebind (a weight set is bound at
    # session creation), so it keeps one session per weight set.
    rebinds_in_place: bool = False


BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Adds (or replaces) one row of the table."""
    BACKENDS[backend.name] = backend
    return backend


register(Backend("tensorrt", "runtime.backends.tensorrt", ("fp32", "fp16"), ("cuda",), 20, ".plan", True))
register(Backend("onnxruntime", "runtime.backends.onnxruntime", ("fp32",), ("cpu",), 10, ".onnx"))
# Below ONNX Runtime in the fallback order: at 32x32 ORT is faster here (`python -m benchmarks backends`);
# bundles built with both record the order measured on the build machine instead.
register(Backend("openvino", "runtime.backends.openvino", ("fp32", "bf16"), ("cpu",), 5, ".ov.onnx"))


def names() -> list[str]:
    """Registered backend names, in auto-selection order."""
    return [b.name for b in sorted(BACKENDS.values(), key=lambda b: -b.priority)]


def precisions() -> list[str]:
    """Every precision some backend can build, in a stable order."""
    return sorted({p for b in BACKENDS.values() for p in b.precisions}, key=lambda p: (p != "fp32", p))


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise EdgeRuntimeError(f"unknown backend {name!r}; expected one of {names()}")
    return BACKENDS[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(backend(name).module)


def available(name: str) -> tuple[bool, str]:
    """(usable here, reason) for one backend."""
    return _module(name).available()


def get_runner(name: str) -> type[Runner]:
    return _module(name).Runner


def get_builder(name: str, options: BuildOptions | None = None) -> EngineBuilder:
    return _module(name).Builder(backend(name), options or BuildOptions())


__all__ = [
    "BACKENDS",
    "Backend",
    "BuildOptions",
    "EngineBuilder",
    "Runner",
    "available",
    "backend",
    "get_builder",
    "get_runner",
    "names",
    "precisions",
    "register",
]
