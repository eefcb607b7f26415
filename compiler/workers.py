"""`--jobs N` for the build's torch-heavy stages (export, parity): N worker processes.

Threads do not help there: ONNX export holds the GIL and the PyTorch reference
passes fight over OpenMP threads. Each worker is a spawned process (fork after
torch has started its thread pools can deadlock) that loads the checkpoint once
and then runs `fn(src, cache, item)` for the items it is sent; the compile cache
is safe across processes (per-key file locks, atomic renames), and each call's
cache counts travel back with its result. With jobs=1 everything runs inline.
"""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterable, Iterator

from compiler.cache import CompileCache

_WORKER: dict[str, Any] = {}  # this worker process's Source


def _init(cfg) -> None:
    import torch

    from compiler.build import load

    torch.set_num_threads(1)  # one process per core: no oversubscription
    _WORKER["src"] = load(cfg)


def _call(fn: Callable, root: str, strict: bool, payload: bytes) -> tuple[Any, dict]:
    cache = CompileCache(root, strict)
    return fn(_WORKER["src"], cache, pickle.loads(payload)), cache.stats


def merge_stats(into: dict, stats: dict) -> None:
    for kind, counts in stats.items():
        mine = into.setdefault(kind, {"hit": 0, "built": 0, "rebuilt": 0})
        for k, v in counts.items():
            mine[k] = mine.get(k, 0) + v


class Workers:
    """`with Workers(cfg, src, cache) as w: for result in w.map(fn, items): ...`"""

    def __init__(self, cfg, src, cache: CompileCache):
        self.cfg, self.src, self.cache = cfg, src, cache
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "Workers":
        if self.cfg.jobs > 1:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(self.cfg.jobs, mp_context=ctx, initializer=_init, initargs=(self.cfg,))
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """fn(src, cache, item) per item, results in item order."""
        if self.pool is None:
            for item in items:
                yield fn(self.src, self.cache, item)
            return
        # Items go as plain pickle bytes: torch's multiprocessing pickler would share every
        # tensor through a file descriptor, and a 198-point grid's deltas exhaust the fd limit.
        root, strict = str(self.cache.root), self.cache.strict
        futures = [self.pool.submit(_call, fn, root, strict, pickle.dumps(item)) for item in items]
        for future in futures:
            result, stats = future.result()
            merge_stats(self.cache.stats, stats)
            yield result
