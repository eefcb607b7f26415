"""Backend registry: one runner class per backend, imported on first use.

`get_runner("onnxruntime")` returns the runner class; `available(name)` says
whether the backend can run here and, if not, why (a missing package, no GPU).
"""

from __future__ import annotations

import importlib

from runtime.backends.base import Runner
from runtime.errors import EdgeRuntimeError

# name -> (module, runner class); modules import their heavy packages lazily.
BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("runtime.backends.onnxruntime", "OnnxRuntimeRunner"),
    "tensorrt": ("runtime.backends.tensorrt", "TensorRTRunner"),
}


def _module(name: str):
    if name not in BACKENDS:
        raise EdgeRuntimeError(f"unknown backend {name!r}; expected one of {sorted(BACKENDS)}")
    return importlib.import_module(BACKENDS[name][0])


def get_runner(name: str) -> type[Runner]:
    return getattr(_module(name), BACKENDS[name][1])


def available(name: str) -> tuple[bool, str]:
    """(usable here, reason) for one backend."""
    return _module(name).available()


__all__ = ["BACKENDS", "Runner", "available", "get_runner"]
