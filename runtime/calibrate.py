"""`runtime calibrate` / `runtime bench`: per-signature latency on this device,
measured the way `set_budget` needs it (preprocess + engine run per frame)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import runtime
from edgecore.stats import percentiles
from runtime.errors import EdgeRuntimeError
from runtime.latency import LatencyTable, machine_id
from runtime.preprocess import preprocess
from runtime.sources import frames


def bench(
    bundle: str, backend: str = "auto", repeats: int = 50, warmup: int = 10, threads: int = 0, fps: float | None = None
) -> LatencyTable:
    """Per-signature latency (ms) of one frame on this device: preprocessing of a
    camera-sized frame (the bundle's samples) plus the engine run, which is what
    `set_budget` must fit. Frames rotate between repeats. With `fps`, runs are
    paced like a camera's frames: on our 2-core VM a frame every 33 ms costs
    about 2x a back-to-back run (cold caches, idle cores), so calibrate at the
    rate you deploy at."""
    rt = runtime.load(bundle, backend, threads=threads)
    spec = rt.manifest.input
    try:
        imgs = list(frames("synthetic", Path(bundle), 4))
    except EdgeRuntimeError:  # no samples: random frames of the input size
        imgs = list(np.random.default_rng(0).integers(0, 255, (4, *spec.shape[1:], spec.shape[0]), dtype=np.uint8))
    table = {}
    try:
        for sig in rt.manifest.signatures:
            entry = next(e for e in rt.manifest.grid if e.signature == sig)
            runner = rt.open_runner(entry)
            try:
                ms = []
                for i in range(warmup + repeats):
                    if fps:
                        time.sleep(1.0 / fps)
                    t0 = time.perf_counter()
                    runner.run(preprocess(imgs[i % len(imgs)], spec))
                    ms.append((time.perf_counter() - t0) * 1e3)
            finally:
                runner.close()
            table[sig] = percentiles(ms[warmup:])
    finally:
        rt.close()
    return LatencyTable(
        backend=rt.backend,
        device=rt.device(),
        machine=machine_id(),
        repeats=repeats,
        threads=threads,
        fps=fps,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        signatures=table,
    )
