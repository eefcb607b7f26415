"""Bounded warm pool of activated runners (LRU with a budget of resident bytes).

A swap to a pooled runner is a pointer swap; a miss loads the engine from the
bundle and binds its weights (a cold swap). Runners pinned by a call in flight
are never closed under it: eviction closes them when the call releases them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Hashable

from runtime.backends.base import Runner


@dataclass
class PoolItem:
    runner: Runner
    nbytes: int
    pins: int = 0
    evicted: bool = False
    run_lock: threading.Lock = field(default_factory=threading.Lock)  # one call at a time per runner


class WarmPool:
    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self.items: OrderedDict[Hashable, PoolItem] = OrderedDict()
        self.lock = threading.RLock()
        self.hits = self.misses = self.evictions = 0

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self.items.values())

    def get(self, key: Hashable, load: Callable[[], tuple[Runner, int]], pin: bool = False) -> tuple[PoolItem, bool]:
        """(item, was warm). `load` returns an activated runner and the resident memory
        it added (runtime.memory); it runs outside the lock, so a cold load does not
        stall calls on warm engines. `pin`: the item comes back pinned (atomically, so
        no concurrent eviction can close it before the caller uses it)."""
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                self.hits += 1
                return self._pinned(self.items[key], pin), True
        runner, nbytes = load()
        with self.lock:
            if key in self.items:  # loaded twice concurrently: keep the first
                runner.close()
                return self._pinned(self.items[key], pin), True
            self.misses += 1
            item = self.items[key] = self._pinned(PoolItem(runner, nbytes), pin)
            self._evict(keep=key)
            return item, False

    @staticmethod
    def _pinned(item: PoolItem, pin: bool) -> PoolItem:
        item.pins += int(pin)
        return item

    def take_idle(self, match: Callable[[Hashable], bool]) -> PoolItem | None:
        """Removes and returns the least recently used unpinned item whose key matches
        (to rebind its runner in place), or None."""
        with self.lock:
            for key, item in self.items.items():
                if item.pins == 0 and match(key):
                    return self.items.pop(key)
        return None

    def put(self, key: Hashable, item: PoolItem, pin: bool = False) -> tuple[PoolItem, bool]:
        """Adds an item taken with `take_idle` back under its new key; (item, False)."""
        with self.lock:
            if key in self.items:  # loaded meanwhile by someone else: keep theirs
                item.runner.close()
                return self._pinned(self.items[key], pin), True
            self.misses += 1
            self.items[key] = self._pinned(item, pin)
            self._evict(keep=key)
            return item, False

    def _evict(self, keep: Hashable) -> None:
        for key in list(self.items):
            if self.nbytes <= self.budget:
                break
            if key == keep:
                continue
            item = self.items.pop(key)
            item.evicted = True
            self.evictions += 1
            if item.pins == 0:
                item.runner.close()

    def pin(self, item: PoolItem) -> None:
        with self.lock:
            item.pins += 1

    def unpin(self, item: PoolItem) -> None:
        with self.lock:
            item.pins -= 1
            if item.evicted and item.pins == 0:
                item.runner.close()

    def close(self) -> None:
        with self.lock:
            for item in self.items.values():
                item.runner.close()
            self.items.clear()
