"""Swaps off the frame path: set_preference(..., wait=False) returns at once, the
new sub-network loads on the background thread while calls keep running on the
current one, and it takes effect between two calls."""

import shutil
import threading

import numpy as np
import pytest

import runtime
from runtime.core import Runtime
from runtime.errors import EdgeRuntimeError
from runtime.weights import WeightStore


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle[0], dst)
    return dst


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal((1, *shape)).astype(np.float32)


@pytest.fixture
def gated(monkeypatch):
    """Loads wait for `gate` (set by the test): a load that never finishes unless the
    test says so, instead of a sleep and a wall-clock assertion."""
    gate, started = threading.Event(), threading.Event()
    real = Runtime._load

    def slow(self, entry, adaptation=None):
        if threading.current_thread().name.startswith("edgemtl-swap"):
            started.set()
            assert gate.wait(30), "test gate never opened"
        return real(self, entry, adaptation)

    monkeypatch.setattr(Runtime, "_load", slow)
    return gate, started


def _other_point(rt):
    cur = rt.current.entry
    return next(e for e in rt.manifest.grid if e.signature != cur.signature)


def test_calls_keep_running_on_the_current_network_while_a_swap_loads(bundle, gated):
    gate, started = gated
    with runtime.load(bundle) as rt:
        before, target, x = rt.current, _other_point(rt), _x(rt.manifest.input.shape)
        swap = rt.set_preference(target.r, target.c, wait=False)
        assert swap.selection.entry == target and not swap.done()
        assert started.wait(30)
        for _ in range(5):  # the load is blocked: these calls would hang if they waited for it
            assert rt.infer(x)[1] is before
        assert swap.state == "pending" and rt.current is before
        gate.set()
        assert swap.wait(30).entry == target and swap.state == "active"
        assert swap.at_call == 5 and not swap.warm
        assert rt.infer(x)[1].entry == target
        assert rt.swaps[-1]["at_call"] == 5 and rt.swaps[-1]["to"] == target.name


def test_a_newer_request_supersedes_a_pending_one(bundle, gated):
    gate, started = gated
    with runtime.load(bundle) as rt:
        grid = rt.manifest.grid
        first = rt.set_preference(grid[5].r, grid[5].c, wait=False)
        assert started.wait(30)
        queued = rt.set_preference(grid[9].r, grid[9].c, wait=False)  # waits behind the first
        last = rt.set_preference(grid[12].r, grid[12].c, wait=False)
        gate.set()
        assert last.wait(30).entry == grid[12]
        assert (first.wait(30), queued.wait(30)) and (first.state, queued.state) == ("superseded", "superseded")
        assert rt.current.entry == grid[12]


def test_a_failed_background_load_raises_on_wait_and_keeps_the_current_network(bundle):
    with runtime.load(bundle) as rt:
        before, target = rt.current, _other_point(rt)
        engine = bundle / rt.manifest.signatures[target.signature].engines[0].path
        engine.write_bytes(b"not an engine")
        swap = rt.set_preference(target.r, target.c, wait=False)
        with pytest.raises(EdgeRuntimeError, match="corrupt"):
            swap.wait(30)
        assert swap.state == "failed" and rt.current is before


def test_every_output_comes_from_the_selection_infer_names(bundle):
    """Background swaps cycling over the grid while one thread runs frames: each
    call's outputs equal the reference outputs of the selection it reports."""
    with runtime.load(bundle) as rt:
        x = _x(rt.manifest.input.shape)
        points = list(rt.manifest.grid[:6])
        store = WeightStore(bundle, rt.manifest)
        refs = {}
        for e in points:
            with runtime.backends.get_runner("onnxruntime")(rt.engine_path(e.signature), store.entry_weights(e)) as r:
                refs[e.name] = r.run(x)
        seen, swap = [], None
        for i in range(60):
            if i % 6 == 0:
                e = points[(i // 6) % len(points)]
                swap = rt.set_preference(e.r, e.c, wait=False)
            if i % 6 == 3:
                swap.wait(30)  # calls before this may run on either network
            outs, sel = rt.infer(x)
            seen.append(sel.entry.name)
            for name, ref in zip(rt.task_names, refs[sel.entry.name]):
                np.testing.assert_array_equal(outs[name], ref[0])
        assert len(set(seen)) == len(points)


def test_close_supersedes_queued_swaps(bundle, gated):
    gate, started = gated
    rt = runtime.load(bundle)
    grid = rt.manifest.grid
    rt.set_preference(grid[5].r, grid[5].c, wait=False)
    assert started.wait(30)
    queued = rt.set_preference(grid[9].r, grid[9].c, wait=False)
    generation = rt._generation
    closing = threading.Thread(target=rt.close)  # supersedes, then waits for the running load
    closing.start()
    while rt._generation == generation:  # the gate opens only once close() superseded `queued`
        closing.join(0.001)
    gate.set()
    closing.join(30)
    assert queued.wait(30) is queued.selection and queued.state == "superseded"


def test_a_budget_after_a_pending_preference_uses_the_requested_task_weights(bundle, gated):
    from runtime.resolve import within_budget
    from tests.conftest import write_latency

    gate, started = gated
    with runtime.load(bundle) as rt:
        m = rt.manifest
        write_latency(bundle, "onnxruntime", rt.device(), {s: 1.0 for s in m.signatures})
        target = next(e for e in m.grid if e.r != rt.current.entry.r and e.signature != rt.current.entry.signature)
        rt.set_preference(target.r, target.c, wait=False)
        assert started.wait(30)
        budget = rt.set_budget(5.0, wait=False)  # the preference has not loaded yet
        assert budget.selection.entry == within_budget(m, rt.latency_table(), 5.0, target.r).entry
        gate.set()
        budget.wait(30)
        assert rt.current.entry == budget.selection.entry and rt.budget_ms == 5.0


def test_a_swap_between_two_width_configurations(tiny_slim_bundle):
    """The runtime runs the width family's bundle with the same API: a preference
    swap moves to another width configuration between two calls."""
    bundle = tiny_slim_bundle[0]
    with runtime.load(bundle) as rt:
        specs = {e.signature: rt.manifest.signatures[e.signature].tree for e in rt.manifest.grid}
        first, second = [next(e for e in rt.manifest.grid if e.signature == s) for s in list(specs)[:2]]
        rt.set_preference(first.r, first.c)
        x = _x(rt.manifest.input.shape)
        assert rt.infer(x)[1].entry.signature == first.signature
        swap = rt.set_preference(second.r, second.c, wait=False)
        swap.wait(30)
        outs, sel = rt.infer(x)
        assert sel.entry.signature == second.signature and specs[first.signature] != specs[second.signature]
        assert set(outs) == set(rt.task_names)


def test_a_call_still_running_when_a_swap_takes_effect_counts_before_it(bundle):
    """`at_call` is the index of the first call on the new sub-network even when a call
    on the old one is still running as the swap installs (the app reports it as the
    swap's frame)."""
    with runtime.load(bundle) as rt:
        before, target, x = rt.current, _other_point(rt), _x(rt.manifest.input.shape)
        runner = rt._active.item.runner
        entered, release, real, done = threading.Event(), threading.Event(), runner.run, {}

        def held(inp):
            entered.set()
            assert release.wait(30), "test never released the call"
            return real(inp)

        runner.run = held
        call = threading.Thread(target=lambda: done.update(sel=rt.infer(x)[1]))
        call.start()
        assert entered.wait(30)
        swap = rt.set_preference(target.r, target.c, wait=False)
        swap.wait(30)  # took effect while call 0 is inside the old engine
        release.set()
        call.join(30)
        assert done["sel"] is before and swap.at_call == 1
        assert rt.infer(x)[1].entry == target
