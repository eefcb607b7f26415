"""Which backends a build compiles for (`--backend`), and the order the runtime's
`auto` follows among them, measured on the build machine.

    --backend auto                    every registered backend usable here (the default)
    --backend onnxruntime             one backend
    --backend onnxruntime,openvino    a list

A backend named explicitly that cannot build here fails the build with its reason;
under `auto` it is skipped and the reason printed. `--precision` applies to the
backends that support it; the others build fp32.

The order: when the bundle holds more than one backend for one device kind (ONNX
Runtime and OpenVINO on a CPU), which is faster depends on the machine and the
network (`python -m benchmarks backends`: at 32x32 ONNX Runtime, at larger inputs
OpenVINO), so the build times them on this machine instead of trusting a fixed
priority: every signature's engine of each backend, bound to its first grid
point's weights, warmed up and then run `calls` times interleaved across backends
on a zero input; a backend's score is the median over signatures of its median
call. GPU backends (measured on their own device, never against the CPU) go first.
"""

from __future__ import annotations

import math
import statistics
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from compiler.errors import CompilerError
from runtime import backends
from runtime.backends import BuildOptions, EngineBuilder, get_runner
from runtime.errors import EdgeRuntimeError
from runtime.latency import machine_id
from runtime.manifest import MEASURED_RULE, PRIORITY_RULE

AUTO = "auto"


@dataclass(frozen=True)
class Target:
    """One backend a build compiles for: its builder, engine precision and device identity."""

    builder: EngineBuilder
    precision: str
    device: dict  # builder.identity(): device slug, backend version, ...

    @property
    def name(self) -> str:
        return self.builder.name

    @property
    def graph_precision(self) -> str:
        return self.builder.graph_precision(self.precision)


def requested(spec: str) -> tuple[list[str], bool]:
    """(backend names, named explicitly) of a `--backend` value."""
    if spec.strip() == AUTO:
        return backends.names(), False
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    unknown = [n for n in names if n not in backends.BACKENDS]
    if not names or unknown:
        raise CompilerError(
            f"--backend {spec!r}: expected {AUTO!r}, a backend or a comma-separated list of {backends.names()}"
        )
    return names, True


def select_targets(spec: str, precision: str, options: Callable[[str], BuildOptions], say=print) -> list[Target]:
    """The targets of `--backend spec` (`options(name)`: a backend's builder options);
    fails fast, before anything heavy is loaded."""
    names, explicit = requested(spec)
    targets, skipped = [], {}
    for name in names:
        try:
            targets.append(_target(name, precision, options(name)))
        except EdgeRuntimeError as exc:
            if explicit:
                raise CompilerError(str(exc)) from None
            skipped[name] = str(exc)
            say(f"--backend auto: skipping {name}: {exc}")
    if not any(t.precision == precision for t in targets):
        raise CompilerError(_no_precision(precision, names, skipped))
    return targets


def _target(name: str, precision: str, options: BuildOptions) -> Target:
    """The backend's builder, checked here, at `precision` if it builds it, else fp32."""
    builder = backends.get_builder(name, options)
    own = precision if precision in builder.precisions else "fp32"
    builder.check(own)
    return Target(builder, own, builder.identity())


def _no_precision(precision: str, names: list[str], skipped: dict[str, str]) -> str:
    usable = [n for n in names if n not in skipped]
    builds = [n for n in backends.names() if precision in backends.backend(n).precisions]
    text = f"--precision {precision} is not supported by {' or '.join(usable) or 'any usable backend'}"
    text += f"; backends that build it: {builds}"
    reasons = [f"{n}: {skipped[n]}" for n in builds if n in skipped]
    return text + (f" (skipped here: {'; '.join(reasons)})" if reasons else "")


def kind(name: str) -> str:
    return backends.backend(name).device_kinds[0]


def auto_order(targets: list[Target], measure) -> dict:
    """The manifest's `build["auto"]`: GPU backends first, then per device kind the
    measured order where that kind has several backends (`measure(names)` -> {name:
    ms}), else the registry priority."""
    by_kind: dict[str, list[str]] = {}
    for t in targets:
        by_kind.setdefault(kind(t.name), []).append(t.name)
    contested = [n for names in by_kind.values() if len(names) > 1 for n in names]
    ms = measure(contested) if contested else {}
    priority = {n: i for i, n in enumerate(backends.names())}
    order = sorted((t.name for t in targets), key=lambda n: (kind(n) == "cpu", ms.get(n, math.inf), priority[n]))
    if not ms:
        rule = PRIORITY_RULE if len(targets) == 1 else "registry priority (one backend per device kind)"
        return {"rule": rule, "order": order}
    return {"rule": MEASURED_RULE, "machine": machine_id(), "ms": {n: round(ms[n], 4) for n in ms}, "order": order}


@dataclass(frozen=True)
class Timing:
    """One signature to time: its engine file per backend and the weights to bind."""

    signature: str
    engines: dict[str, Path]  # backend -> engine
    weights: dict[str, np.ndarray]


def measure_latency(timings: list[Timing], shape: tuple, advance, calls: int = 20, warmup: int = 3) -> dict[str, float]:
    """{backend: median over signatures of its median engine call (ms)}; backends run
    interleaved, so they share the machine's state (clock, caches, neighbours)."""
    per: dict[str, list[float]] = {}
    x = np.zeros((1, *shape), np.float32)
    for t in timings:
        for name, ms in _time_one(t, x, calls, warmup).items():
            per.setdefault(name, []).append(ms)
        advance()
    return {name: statistics.median(v) for name, v in per.items()}


def _time_one(t: Timing, x: np.ndarray, calls: int, warmup: int) -> dict[str, float]:
    with ExitStack() as stack:
        runners = {n: stack.enter_context(get_runner(n)(path, t.weights)) for n, path in t.engines.items()}
        for r in runners.values():
            for _ in range(warmup):
                r.run(x)
        ms: dict[str, list[float]] = {n: [] for n in runners}
        for _ in range(calls):
            for n, r in runners.items():
                r.run(x)
                ms[n].append(r.last_latency_ms)
    return {n: statistics.median(v) for n, v in ms.items()}
