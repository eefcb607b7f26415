"""The runtime: a compiled bundle, one active sub-network, swaps between calls.

    rt = runtime.load("bundles/scenes3")           # backend="auto": TensorRT if usable, else ORT
    rt.set_preference([0.6, 0.2, 0.2], c=0.5)      # nearest compiled grid point
    rt.set_budget(4.0)                             # most capable point within 4 ms (needs calibrate)
    outs = rt(frame)                               # {"semseg": (C, H, W), "depth": ..., ...}

Thread safety: the active selection is one immutable record swapped under a
lock; a call pins the record it starts with, so a swap from another thread
takes effect at the next call and never closes an engine under a running one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgecore.family import DEFAULT_FAMILY, get_family
from edgecore.fileio import file_sha256
from edgecore.paths import confine
from edgecore.stats import percentiles
from runtime.backends import Runner, available, get_runner, names
from runtime.errors import EdgeRuntimeError
from runtime.exact import ExactResolver
from runtime.latency import load_table
from runtime.manifest import GridEntry, Manifest, load_manifest
from runtime.pool import PoolItem, WarmPool
from runtime.prefs import validate_preference
from runtime.preprocess import preprocess
from runtime.resolve import Selection, nearest, r_distance, within_budget
from runtime.weights import load_weights, npz_bytes, weights_id

RECENT_CALLS = 10_000  # latency percentiles cover the last this-many calls


@dataclass(frozen=True)
class Active:
    selection: Selection
    item: PoolItem


def choose_backend(manifest: Manifest, backend: str) -> tuple[str, str]:
    """(backend, reason): 'auto' takes the highest-priority backend that is usable here
    and compiled into the bundle (TensorRT before ONNX Runtime)."""
    built = {ref.backend for s in manifest.signatures.values() for ref in s.engines}
    if backend != "auto":
        if backend not in built:
            raise EdgeRuntimeError(
                f"bundle has no {backend} engines (it has {sorted(built)}); rebuild it with "
                f"`compiler build --backend {backend}`"
            )
        ok, why = available(backend)
        if not ok:
            raise EdgeRuntimeError(f"backend {backend} cannot run here: {why}")
        return backend, f"requested; {why}"
    reasons = []
    for name in names():  # the registry's priority order
        ok, why = available(name)
        if ok and name in built:
            return name, f"auto: {why}" + (f" ({'; '.join(reasons)})" if reasons else "")
        reasons.append(f"{name}: {why if not ok else 'no engines in bundle'}")
    raise EdgeRuntimeError(f"no usable backend: {'; '.join(reasons)}")


class Runtime:
    """A loaded bundle with one active sub-network; see the module docstring."""

    def __init__(
        self,
        bundle: str | Path,
        backend: str = "auto",
        pool_mb: float = 256,
        threads: int = 0,
        latency_stat: str = "p90",
    ):
        self.bundle = Path(bundle)
        self.manifest = load_manifest(self.bundle)
        self.backend, self.backend_reason = choose_backend(self.manifest, backend)
        self.threads, self.latency_stat = threads, latency_stat
        self.pool = WarmPool(int(pool_mb * 2**20))
        self.task_names = [t.name for t in self.manifest.tasks]
        self._lock = threading.Lock()
        self._latency: dict[str, float] | None = None
        # The last RECENT_CALLS calls (ring buffers: a camera running for days keeps its memory).
        self.calls = 0
        self.call_ms: deque[float] = deque(maxlen=RECENT_CALLS)  # whole call (preprocess + engine)
        self.engine_ms: deque[float] = deque(maxlen=RECENT_CALLS)
        self.swaps: list[dict] = []
        self.budget_ms: float | None = None
        self._active: Active | None = None
        self.last: Selection | None = None  # the selection whose engine ran the latest call
        self._resolver = None  # ExactResolver, created on the first exact request
        first = self.manifest.grid[0]
        self._swap(Selection(first, 0.0, "first grid point"), "load")

    # -- resolution -------------------------------------------------------------------
    def set_preference(self, r, c: float, exact: bool = False) -> Selection:
        """Switches to the compiled grid point nearest to (r, c) (see runtime.resolve).
        `exact=True` evaluates the bundle's hypernets at (r, c) and, when that tree
        is compiled, binds freshly folded weights to its engine; otherwise it falls
        back to the nearest grid point and says why in the selection's reason."""
        sel, weights = self.resolve(r, c, exact)
        sel = self._swap(sel, "preference", weights)
        self.budget_ms = None  # only once the swap has happened: a failed swap changes nothing
        return sel

    def resolve(self, r, c: float, exact: bool = False) -> tuple[Selection, dict | None]:
        """What `set_preference(r, c, exact)` would select, without switching: the
        selection and, in exact mode, its freshly folded weights (else None)."""
        pref = validate_preference(r, c, len(self.task_names))
        sel = nearest(self.manifest, pref.r, pref.c)
        if exact and sel.distance > 1e-9:
            return self._exact(pref, sel)
        return sel, None

    def _exact(self, pref, fallback: Selection) -> tuple[Selection, dict | None]:
        """(selection, its freshly folded weights) or the fallback with the reason appended."""
        if self.manifest.family != DEFAULT_FAMILY:
            return replace(
                fallback,
                reason=fallback.reason + f"; exact mode supports {DEFAULT_FAMILY} bundles, "
                f"this one is {self.manifest.family}",
            ), None
        if self.manifest.hypernets is None:
            return replace(fallback, reason=fallback.reason + "; exact mode unavailable: bundle has no hypernets"), None
        if self._resolver is None:
            self._resolver = ExactResolver(self.bundle, self.manifest.hypernets)
        tree, deltas = self._resolver(pref.r, pref.c)
        sig = get_family(self.manifest.family).signature(tree)
        if sig not in self.manifest.signatures:
            return replace(
                fallback, reason=fallback.reason + f"; exact tree {sig} is not compiled in this bundle"
            ), None
        weights = self._resolver.weights(tree, deltas)
        name = "exact r=" + ",".join(f"{v:.4g}" for v in pref.r) + f";c={pref.c:.4g}"
        entry = GridEntry(name, pref.r, pref.c, sig, weights_id(weights))
        return Selection(entry, 0.0, "exact: hypernets + numpy BN folding"), weights

    def set_budget(self, latency_ms: float, r=None) -> Selection:
        """Most capable point whose calibrated latency on this device fits `latency_ms`,
        for task weights `r` (default: the current point's). If nothing fits, the
        fastest point is chosen and `selection.fits` is False."""
        if not isinstance(latency_ms, (int, float)) or not np.isfinite(latency_ms) or latency_ms <= 0:
            raise EdgeRuntimeError(f"budget must be a positive number of milliseconds, found {latency_ms!r}")
        r = self.current.entry.r if r is None else validate_preference(r, 0.0, len(self.task_names)).r
        sel = self._swap(within_budget(self.manifest, self.latency_table(), float(latency_ms), r), "budget")
        self.budget_ms = float(latency_ms)
        return sel

    def latency_table(self) -> dict[str, float]:
        """{signature: ms} of this machine's calibrated table (statistic `latency_stat`)."""
        if self._latency is None:
            table = load_table(self.bundle, self.backend, self.device(), self.manifest.signatures)
            self._latency = table.stat(self.latency_stat)
        return self._latency

    def device(self) -> str:
        return next(
            ref.device for s in self.manifest.signatures.values() for ref in s.engines if ref.backend == self.backend
        )

    # -- swapping ---------------------------------------------------------------------
    def open_runner(self, entry: GridEntry, weights: dict | None = None) -> Runner:
        """A fresh, activated runner for `entry` on this runtime's backend, outside the
        warm pool (calibration, benchmarks); the caller closes it."""
        return self._load(entry, weights)[0]

    def _load(self, entry: GridEntry, weights: dict | None = None) -> tuple[Runner, int]:
        sig = self.manifest.signatures[entry.signature]
        ref = next((e for e in sig.engines if e.backend == self.backend), None)
        if ref is None:
            raise EdgeRuntimeError(f"signature {entry.signature} has no {self.backend} engine in this bundle")
        path = confine(self.bundle, ref.path, f"engine of signature {entry.signature}", EdgeRuntimeError)
        if not path.is_file():
            raise EdgeRuntimeError(f"engine {path} is missing: the bundle is incomplete, rebuild it")
        if file_sha256(path) != ref.sha256:
            raise EdgeRuntimeError(f"engine {path} is corrupt (sha256 differs from the manifest): rebuild the bundle")
        if weights is None:
            weights = load_weights(confine(self.bundle, f"weights/{entry.weights}.npz", "weights", EdgeRuntimeError))
        runner = get_runner(self.backend)(path, weights, threads=self.threads).activate()
        return runner, path.stat().st_size + npz_bytes(weights)

    def _swap(self, sel: Selection, why: str, weights: dict | None = None) -> Selection:
        t0 = time.perf_counter()
        key = (sel.entry.signature, sel.entry.weights)
        item, warm = self.pool.get(key, lambda: self._load(sel.entry, weights))  # raises before anything changes
        with self._lock:
            self.pool.pin(item)  # the active runner is never closed by eviction, only once replaced
            old, self._active = self._active, Active(sel, item)
        if old is not None:
            self.pool.unpin(old.item)
        if old is None or old.item is not item or old.selection.entry != sel.entry:
            self.swaps.append(
                {
                    "why": why,
                    "to": sel.entry.name,
                    "signature": sel.entry.signature,
                    "warm": warm,
                    "ms": (time.perf_counter() - t0) * 1e3,
                    "at_call": self.calls,
                }
            )
        return sel

    def prewarm(self, which: str | list[GridEntry] = "all", k: int = 4) -> int:
        """Loads engines into the pool until its memory budget is reached: every grid
        point ("all"), the `k` points nearest to the current one ("neighbours"), or a
        list of entries. Returns how many are warm afterwards."""
        if which == "all":
            entries = list(self.manifest.grid)
        elif which == "neighbours":
            cur = self.current.entry
            entries = sorted(self.manifest.grid, key=lambda e: r_distance(e.r, cur.r) + abs(e.c - cur.c))[: k + 1]
        elif isinstance(which, (list, tuple)):
            entries = list(which)
        else:
            raise EdgeRuntimeError(f"prewarm expects 'all', 'neighbours' or a list of grid entries, found {which!r}")
        for e in entries:
            if self.pool.nbytes >= self.pool.budget:
                break
            self.pool.get((e.signature, e.weights), lambda e=e: self._load(e))
        return len(self.pool.items)

    @property
    def current(self) -> Selection:
        return self._active.selection

    # -- running ----------------------------------------------------------------------
    def __call__(self, frame: np.ndarray, colour_order: str = "RGB") -> dict[str, np.ndarray]:
        """Runs one HxWx3 uint8 frame; returns {task: (C, H, W) float32}."""
        t0 = time.perf_counter()
        return self.infer(preprocess(frame, self.manifest.input, colour_order), t0)[0]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Runs one preprocessed (1, C, H, W) float32 input on the active sub-network."""
        return self.infer(x)[0]

    def infer(self, x: np.ndarray, t0: float | None = None) -> tuple[dict[str, np.ndarray], Selection]:
        """Like `run`, also returning the selection whose engine produced the outputs."""
        t0 = time.perf_counter() if t0 is None else t0
        with self._lock:
            active = self._active
            self.pool.pin(active.item)
        try:
            outs = active.item.runner.run(x)
            engine_ms = active.item.runner.last_latency_ms
        finally:
            self.pool.unpin(active.item)
        call_ms = (time.perf_counter() - t0) * 1e3
        with self._lock:  # calls from several threads: the count is a read-modify-write
            self.calls += 1
            self.engine_ms.append(engine_ms)
            self.call_ms.append(call_ms)
            self.last = active.selection
        return {name: o[0] for name, o in zip(self.task_names, outs)}, active.selection

    def stats(self) -> dict:
        """Latency percentiles (ms) of the last RECENT_CALLS calls and engine runs, swap counts and times."""
        hot = [s["ms"] for s in self.swaps if s["warm"] and s["why"] != "load"]
        cold = [s["ms"] for s in self.swaps if not s["warm"] and s["why"] != "load"]
        return {
            "calls": self.calls,
            "call_ms": percentiles(self.call_ms),
            "engine_ms": percentiles(self.engine_ms),
            "swaps": len(hot) + len(cold),
            "hot_swaps": len(hot),
            "cold_swaps": len(cold),
            "hot_swap_ms": percentiles(hot),
            "cold_swap_ms": percentiles(cold),
            "pool": {
                "hits": self.pool.hits,
                "misses": self.pool.misses,
                "evictions": self.pool.evictions,
                "mb": self.pool.nbytes / 2**20,
            },
        }

    def close(self) -> None:
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def load(bundle: str | Path, backend: str = "auto", **kwargs) -> Runtime:
    """Loads a compiled bundle; `backend` is 'auto' or a registered backend's name."""
    return Runtime(bundle, backend, **kwargs)
