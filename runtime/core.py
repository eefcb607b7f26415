"""The runtime: a compiled bundle, one active sub-network, swaps between calls.

    rt = runtime.load("bundles/scenes3")           # backend="auto": the build's measured order
    rt.set_preference([0.6, 0.2, 0.2], c=0.5)      # nearest compiled grid point (blocks until active)
    swap = rt.set_preference(r, c, wait=False)     # returns at once; loads on a background thread
    outs = rt(frame)                               # runs on the current sub-network meanwhile
    swap.wait()                                    # the selection, once it is active
    rt.set_budget(4.0)                             # most capable point within 4 ms (needs calibrate)
    outs = rt(frame)                               # {"semseg": (C, H, W), "depth": ..., ...}

Thread safety: the active selection is one immutable record swapped under a
lock; a call pins the record it starts with, so a swap (from a background load
or another thread) takes effect at the next call and never closes an engine
under a running one. Requests are numbered: a load that finishes after a newer
request was made is kept warm but never installed (`Swap.state` "superseded").
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgecore.arrays import arrays_id, nbytes
from edgecore.family import DEFAULT_FAMILY, get_family
from edgecore.fileio import file_sha256
from edgecore.paths import confine
from edgecore.stats import percentiles
from runtime.backends import BACKENDS, Runner, available, backend, get_runner, names
from runtime.errors import EdgeRuntimeError
from runtime.exact import ExactResolver
from runtime.latency import load_table
from runtime.manifest import GridEntry, Manifest, load_manifest, recorded_auto
from runtime.memory import Growth
from runtime.pool import PoolItem, WarmPool
from runtime.prefs import validate_preference
from runtime.preprocess import preprocess
from runtime.resolve import Selection, nearest, r_distance, within_budget
from runtime.weights import WeightStore

RECENT_CALLS = 10_000  # latency percentiles cover the last this-many calls


@dataclass(frozen=True)
class Active:
    selection: Selection
    item: PoolItem


class Swap:
    """A requested switch to `selection`. `wait()` blocks until it took effect (state
    "active"), was overtaken by a newer request ("superseded") or failed (raises),
    and returns the selection. `at_call`: how many calls had started when it took
    effect (the next call to start is the first on the new sub-network; one already
    running when it took effect finishes on the old one)."""

    def __init__(self, selection: Selection, why: str, adaptation: dict | None, generation: int, budget=None):
        self.selection, self.why, self.adaptation, self.generation = selection, why, adaptation, generation
        self.budget = budget  # the latency budget this swap installs (None: a preference swap)
        self.state, self.error, self.at_call, self.ms, self.warm = "pending", None, None, None, None
        self.switched = False  # it replaced another sub-network (not a request for the running one)
        self.t0 = time.perf_counter()
        self._done = threading.Event()

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> Selection:
        if not self._done.wait(timeout):
            raise TimeoutError(f"swap to {self.selection.entry.name!r} still loading after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.selection

    def finish(self, state: str, error: BaseException | None = None) -> None:
        self.state, self.error, self.ms = state, error, (time.perf_counter() - self.t0) * 1e3
        self._done.set()


def choose_backend(manifest: Manifest, backend: str) -> tuple[str, str]:
    """(backend, reason): 'auto' takes the first backend that is usable here and compiled
    into the bundle, in the order the build recorded (`build["auto"]["order"]`: GPU
    backends first, then the CPU backends fastest first as measured on the build
    machine), then in the registry's priority order (TensorRT before ONNX Runtime)."""
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
    auto = recorded_auto(manifest.build)
    recorded = [n for n in auto.get("order", []) if n in BACKENDS]  # unknown names: ignored
    reasons = []
    for name in recorded + [n for n in names() if n not in recorded]:
        ok, why = available(name)
        if ok and name in built:
            rule = _recorded_rule(auto, recorded) if name in recorded else "registry priority"
            return name, f"auto: {rule}; {why}" + (f" ({'; '.join(reasons)})" if reasons else "")
        reasons.append(f"{name}: {why if not ok else 'no engines in bundle'}")
    raise EdgeRuntimeError(f"no usable backend: {'; '.join(reasons)}")


def _recorded_rule(auto: dict, recorded: list[str]) -> str:
    """How the build ordered its backends: the measured latencies, or its rule's name."""
    ms = auto.get("ms", {})
    timed = [n for n in recorded if n in ms]
    if len(timed) > 1:
        where = auto.get("machine", "the build machine")
        fastest_first = " < ".join(f"{n} {ms[n]:.3g} ms" for n in sorted(timed, key=ms.get))
        return f"measured at build time on {where}: {fastest_first}"
    return auto.get("rule", "the build's recorded order")


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
        self.weights = WeightStore(self.bundle, self.manifest)
        self.task_names = [t.name for t in self.manifest.tasks]
        self._lock = threading.Lock()
        self._latency: dict[str, float] | None = None
        # The last RECENT_CALLS calls (ring buffers: a camera running for days keeps its memory).
        self.calls = 0
        self._started = 0  # calls that took the active record; a swap's `at_call` counts these
        self.call_ms: deque[float] = deque(maxlen=RECENT_CALLS)  # whole call (preprocess + engine)
        self.engine_ms: deque[float] = deque(maxlen=RECENT_CALLS)
        self.swaps: list[dict] = []
        self.budget_ms: float | None = None
        self._active: Active | None = None
        self.last: Selection | None = None  # the selection whose engine ran the latest call
        self._resolver = None  # ExactResolver, created on the first exact request
        self._generation = 0  # number of the latest swap request
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="edgemtl-swap")  # background swaps, in order
        first = self.manifest.grid[0]
        self._request(Selection(first, 0.0, "first grid point"), "load", None, wait=True, budget=None)

    # -- resolution -------------------------------------------------------------------
    def set_preference(self, r, c: float, exact: bool = False, wait: bool = True) -> Selection | Swap:
        """Switches to the compiled grid point nearest to (r, c) (see runtime.resolve).
        `exact=True` evaluates the bundle's hypernets at (r, c) and, when that tree
        is compiled, binds freshly folded weights to its engine; otherwise it falls
        back to the nearest grid point and says why in the selection's reason.
        `wait=False` returns a `Swap` at once and loads on the background thread;
        calls keep running on the current sub-network until the new one is ready."""
        sel, adaptation = self.resolve(r, c, exact)
        return self._request(sel, "preference", adaptation, wait, budget=None)

    def resolve(self, r, c: float, exact: bool = False) -> tuple[Selection, dict | None]:
        """What `set_preference(r, c, exact)` would select, without switching: the
        selection and, in exact mode, its adaptation arrays from the hypernets (else None)."""
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
        tree, adaptation = self._resolver(pref.r, pref.c)
        sig = get_family(self.manifest.family).signature(tree)
        if sig not in self.manifest.signatures:
            return replace(
                fallback, reason=fallback.reason + f"; exact tree {sig} is not compiled in this bundle"
            ), None
        name = "exact r=" + ",".join(f"{v:.4g}" for v in pref.r) + f";c={pref.c:.4g}"
        entry = GridEntry(name, pref.r, pref.c, sig, arrays_id(adaptation))
        return Selection(entry, 0.0, "exact: hypernets + numpy BN folding"), adaptation

    def set_budget(self, latency_ms: float, r=None, wait: bool = True) -> Selection | Swap:
        """Most capable point whose calibrated latency on this device fits `latency_ms`,
        for task weights `r` (default: those of the latest request, loaded or not). If nothing fits, the
        fastest point is chosen and `selection.fits` is False. `wait` as in set_preference."""
        if not isinstance(latency_ms, (int, float)) or not np.isfinite(latency_ms) or latency_ms <= 0:
            raise EdgeRuntimeError(f"budget must be a positive number of milliseconds, found {latency_ms!r}")
        # Default: the latest request's task weights (a preference swap may still be loading).
        r = self._target.entry.r if r is None else validate_preference(r, 0.0, len(self.task_names)).r
        sel = within_budget(self.manifest, self.latency_table(), float(latency_ms), r)
        return self._request(sel, "budget", None, wait, budget=float(latency_ms))

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
    def open_runner(self, entry: GridEntry, adaptation: dict | None = None) -> Runner:
        """A fresh, activated runner for `entry` on this runtime's backend, outside the
        warm pool (calibration, benchmarks); the caller closes it."""
        return self._load(entry, adaptation)[0]

    def engine_path(self, signature: str) -> Path:
        """The verified engine file of `signature` for this runtime's backend."""
        sig = self.manifest.signatures[signature]
        ref = next((e for e in sig.engines if e.backend == self.backend), None)
        if ref is None:
            raise EdgeRuntimeError(f"signature {signature} has no {self.backend} engine in this bundle")
        return verified_engine(self.bundle, signature, ref)

    def _load(self, entry: GridEntry, adaptation: dict | None = None) -> tuple[Runner, int]:
        """(activated runner, the resident memory it added): folding + engine load + binding
        + one run on a blank frame, so the first real frame on it pays no first-run costs
        (ONNX Runtime sizes its arena then) and the pool is charged the arena too."""
        with Growth() as grown:
            path = self.engine_path(entry.signature)
            weights = self.weights.entry_weights(entry, adaptation)
            runner = get_runner(self.backend)(path, weights, threads=self.threads).activate()
            try:
                runner.run(np.zeros((1, *self.manifest.input.shape), np.float32))
            except Exception:
                runner.close()
                raise
        return runner, max(grown.bytes or 0, nbytes(weights))

    def _pooled(self, entry: GridEntry, adaptation: dict | None) -> tuple[PoolItem, bool]:
        """(pinned warm pool item for `entry`, was warm); rebinds an idle runner of the same
        signature in place where the backend makes that cheap (TensorRT refit)."""
        key = (entry.signature, entry.adaptation)
        if backend(self.backend).rebinds_in_place:
            idle = self.pool.take_idle(lambda k: k[0] == entry.signature and k != key)
            if idle is not None:
                try:
                    idle.runner.bind(self.weights.entry_weights(entry, adaptation))
                except Exception:
                    idle.runner.close()
                    raise
                return self.pool.put(key, idle, pin=True)
        return self.pool.get(key, lambda: self._load(entry, adaptation), pin=True)

    def _request(self, sel: Selection, why: str, adaptation: dict | None, wait: bool, budget) -> Selection | Swap:
        with self._lock:
            self._generation += 1
            self._target = sel  # what the runtime is heading for
            swap = Swap(sel, why, adaptation, self._generation, budget)
        if wait:
            self._prepare(swap)
            return swap.wait()
        self._loader.submit(self._prepare, swap)
        return swap

    def _prepare(self, swap: Swap) -> None:
        """Loads (or finds warm) the swap's sub-network, then installs it unless a newer
        request came meanwhile. Never raises: the outcome is recorded on the swap."""
        if swap.generation != self._generation:  # overtaken while queued: skip the load
            swap.finish("superseded")
            return
        try:
            item, swap.warm = self._pooled(swap.selection.entry, swap.adaptation)
        except Exception as exc:  # noqa: BLE001 - reported to whoever waits on the swap
            with self._lock:
                if swap.generation == self._generation and self._active is not None:
                    self._target = self._active.selection  # nothing changed: head for what runs
            swap.finish("failed", exc)
            return
        if self._install(swap, item):
            swap.finish("active")
        else:
            self.pool.unpin(item)  # stays warm for a later request
            swap.finish("superseded")

    def _install(self, swap: Swap, item: PoolItem) -> bool:
        """Makes the (already pinned) item active unless a newer request exists. The active
        runner stays pinned, so eviction never closes it; it is unpinned once replaced."""
        sel = swap.selection
        with self._lock:
            if swap.generation != self._generation:
                return False
            old, self._active = self._active, Active(sel, item)
            self.budget_ms, swap.at_call = swap.budget, self._started
            swap.switched = old is None or old.item is not item or old.selection.entry != sel.entry
            if swap.switched:
                self.swaps.append(
                    {
                        "why": swap.why,
                        "to": sel.entry.name,
                        "signature": sel.entry.signature,
                        "warm": swap.warm,
                        "ms": (time.perf_counter() - swap.t0) * 1e3,
                        "at_call": self._started,
                    }
                )
        if old is not None:
            self.pool.unpin(old.item)
        return True

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
            self.pool.get((e.signature, e.adaptation), lambda e=e: self._load(e))
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
            self._started += 1
            self.pool.pin(active.item)
        try:
            with active.item.run_lock:  # calls from several threads share a runner one at a time (backends.base)
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
        with self._lock:
            self._generation += 1  # queued swaps are superseded, not loaded
        self._loader.shutdown(wait=True)
        self.pool.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def verified_engine(bundle: Path, signature: str, ref) -> Path:
    """An engine file of the bundle: inside it, present, and with the manifest's sha256."""
    path = confine(bundle, ref.path, f"engine of signature {signature}", EdgeRuntimeError)
    if not path.is_file():
        raise EdgeRuntimeError(f"engine {path} is missing: the bundle is incomplete, rebuild it")
    if file_sha256(path) != ref.sha256:
        raise EdgeRuntimeError(f"engine {path} is corrupt (sha256 differs from the manifest): rebuild the bundle")
    return path


def load(bundle: str | Path, backend: str = "auto", **kwargs) -> Runtime:
    """Loads a compiled bundle; `backend` is 'auto' or a registered backend's name."""
    return Runtime(bundle, backend, **kwargs)
