from runtime.backends.base import Runner
from runtime.pool import WarmPool


class FakeRunner(Runner):
    name = "fake"

    def __init__(self, tag):
        super().__init__(__file__)
        self.tag, self.closed = tag, False

    def _activate(self):
        pass

    def _run(self, x):
        return [x]

    def _bind(self, weights):
        pass

    def _close(self):
        self.closed = True


def _load(tag, nbytes=100):
    return lambda: (FakeRunner(tag).activate(), nbytes)


def test_lru_eviction_within_memory_budget():
    pool = WarmPool(250)
    a, warm_a = pool.get("a", _load("a"))
    b, _ = pool.get("b", _load("b"))
    again, warm = pool.get("a", _load("a"))  # touch a: b is now least recent
    assert (warm_a, warm, again is a) == (False, True, True)
    c, _ = pool.get("c", _load("c"))
    assert list(pool.items) == ["a", "c"] and b.runner.closed and not a.runner.closed
    assert (pool.hits, pool.misses, pool.evictions, pool.nbytes) == (1, 3, 1, 200)


def test_item_bigger_than_budget_still_loads_and_evicts_the_rest():
    pool = WarmPool(150)
    a, _ = pool.get("a", _load("a"))
    big, _ = pool.get("big", _load("big", 1000))
    assert list(pool.items) == ["big"] and a.runner.closed and not big.runner.closed


def test_pinned_runner_is_closed_only_when_released():
    pool = WarmPool(100)
    a, _ = pool.get("a", _load("a"))
    pool.pin(a)
    pool.get("b", _load("b"))
    assert "a" not in pool.items and not a.runner.closed  # a call is still running on it
    pool.unpin(a)
    assert a.runner.closed


def test_take_idle_skips_pinned_items_and_put_rekeys():
    pool = WarmPool(1000)
    a, _ = pool.get(("s", "a"), _load("a"))
    b, _ = pool.get(("s", "b"), _load("b"))
    pool.pin(a)
    taken = pool.take_idle(lambda k: k[0] == "s")
    assert taken is b and list(pool.items) == [("s", "a")]  # a is pinned: never rebound under a call
    item, warm = pool.put(("s", "c"), taken)
    assert item is b and not warm and list(pool.items) == [("s", "a"), ("s", "c")]
    assert pool.take_idle(lambda k: k[0] == "t") is None


def test_the_budget_counts_measured_bytes():
    """Items are charged what their load reported (the runtime reports RSS growth),
    so three loads of 400 bytes do not fit a 1000-byte pool."""
    pool = WarmPool(1000)
    for tag in "abc":
        pool.get(tag, _load(tag, nbytes=400))
    assert list(pool.items) == ["b", "c"] and pool.nbytes == 800 and pool.evictions == 1


def test_an_item_fetched_pinned_survives_eviction_until_unpinned():
    """A swap gets its item pinned in the same step as the lookup: a load on another
    thread that overflows the budget cannot close it before it is installed."""
    pool = WarmPool(150)
    a, _ = pool.get("a", _load("a"), pin=True)
    pool.get("b", _load("b"))  # over budget: a is evicted from the table but stays open
    assert "a" not in pool.items and a.evicted and not a.runner.closed
    pool.unpin(a)
    assert a.runner.closed
