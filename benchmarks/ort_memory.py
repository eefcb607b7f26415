"""Resident memory and speed of warm ONNX Runtime sessions under the session options
Python can set: `python -m benchmarks.ort_memory MODE BUNDLE` prints one JSON line.
Each mode runs in its own process (the global thread pool and a registered shared
allocator are process-wide and must precede the first session).

Modes: default (what the runtime does: per-session threads and arena, ORT_ENABLE_ALL),
global (one global intra-op pool: set_global_thread_pool_sizes + use_per_session_threads
off), env (one shared arena: create_and_register_allocator + session.use_env_allocators),
noarena (enable_cpu_mem_arena off), extended (ORT_ENABLE_EXTENDED: no NCHWc copy of the
weights). ORT's PrepackedWeightsContainer is C/C++-only (no Python binding).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

MODES = ("default", "global", "env", "noarena", "extended")


def options(mode: str):
    import onnxruntime as ort

    from runtime.backends.onnxruntime import session_options

    so = session_options(0, "ORT_ENABLE_EXTENDED" if mode == "extended" else "ORT_ENABLE_ALL")
    if mode == "global":
        so.use_per_session_threads = False
    if mode == "env":
        so.add_session_config_entry("session.use_env_allocators", "1")
    if mode == "noarena":
        so.enable_cpu_mem_arena = False
    return ort, so


def measure(mode: str, bundle: str, k: int = 4) -> dict:
    """RSS added by each of k sessions (folded weights + session + first run), load and run ms."""
    import onnxruntime as ort

    from runtime.manifest import load_manifest
    from runtime.memory import rss_bytes
    from runtime.weights import WeightStore

    if mode == "global":
        ort.set_global_thread_pool_sizes(0, 1)
    if mode == "env":
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, None)
    m = load_manifest(bundle)
    store = WeightStore(bundle, m)
    store.anchor()
    entries = list({e.signature: e for e in reversed(m.grid)}.values())[:k]
    x = np.zeros((1, *m.input.shape), np.float32)
    keep, rows = [], []
    for e in entries:
        r0, t0 = rss_bytes(), time.perf_counter()
        weights = store.entry_weights(e)
        _, so = options(mode)
        values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for v in weights.values()]
        so.add_external_initializers(list(weights), values)
        path = f"{bundle}/{m.signatures[e.signature].engines[0].path}"
        session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        session.run(None, {"image": x})
        load_ms = (time.perf_counter() - t0) * 1e3
        grown = rss_bytes() - r0
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            session.run(None, {"image": x})
            runs.append((time.perf_counter() - t) * 1e3)
        rows.append({"rss_mb": grown / 2**20, "weights_mb": sum(v.nbytes for v in weights.values()) / 2**20,
                     "load_ms": load_ms, "run_ms": float(np.median(runs))})  # fmt: skip
        keep.append((session, values, weights))
    return {"mode": mode, "sessions": rows}


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], sys.argv[2])))
