"""runtime.load / set_preference / set_budget / calls, on the tiny bundle."""

import json
import shutil
import threading

import numpy as np
import pytest

import runtime
from runtime.backends import available, get_runner
from runtime.core import Runtime
from runtime.errors import EdgeRuntimeError
from runtime.resolve import nearest, r_distance, within_budget
from runtime.weights import WeightStore
from tests.conftest import write_latency


def _x(seed=0, shape=(3, 16, 16)):
    return np.random.default_rng(seed).standard_normal((1, *shape)).astype(np.float32)


def _reference(bundle, manifest, entry, x):
    sig = manifest.signatures[entry.signature]
    weights = WeightStore(bundle, manifest).entry_weights(entry)
    with get_runner("onnxruntime")(bundle / sig.engines[0].path, weights) as r:
        return r.run(x)


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    """A private copy: tests below corrupt files and write latency tables."""
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle[0], dst)
    return dst


def test_set_preference_resolves_to_the_nearest_point_and_runs_it(bundle):
    with runtime.load(bundle) as rt:
        assert rt.backend == "onnxruntime" and "onnxruntime" in rt.backend_reason
        assert rt.last is None  # nothing ran yet
        sel = rt.set_preference([0.7, 0.2, 0.1], 0.3)
        dists = [r_distance(e.r, (0.7, 0.2, 0.1)) + abs(e.c - 0.3) for e in rt.manifest.grid]
        assert sel.distance == pytest.approx(min(dists)) and rt.current is sel
        outs = rt.run(_x())
        assert rt.last is sel  # the selection whose engine produced `outs`
        ref = _reference(bundle, rt.manifest, sel.entry, _x())
        for name, r in zip(rt.task_names, ref):
            np.testing.assert_array_equal(outs[name], r[0])
        exact = rt.manifest.grid[3]
        assert rt.set_preference(list(exact.r), exact.c).entry == exact


def test_resolve_previews_a_selection_without_switching(bundle):
    with runtime.load(bundle) as rt:
        before, swaps = rt.current, len(rt.swaps)
        sel, weights = rt.resolve([0.1, 0.1, 0.8], 0.9)
        assert weights is None and rt.current is before and len(rt.swaps) == swaps
        assert rt.set_preference([0.1, 0.1, 0.8], 0.9).entry == sel.entry


def test_open_runner_is_owned_by_the_caller_and_runs_the_same_network(bundle):
    with runtime.load(bundle) as rt:
        entry = rt.manifest.grid[-1]
        pooled = len(rt.pool.items)
        runner = rt.open_runner(entry)
        try:
            assert len(rt.pool.items) == pooled  # not pooled: closing it is the caller's job
            ref = _reference(bundle, rt.manifest, entry, _x(2))
            for out, r in zip(runner.run(_x(2)), ref):
                np.testing.assert_array_equal(out, r)
        finally:
            runner.close()


def test_frames_are_preprocessed_and_bad_frames_rejected(bundle):
    with runtime.load(bundle) as rt:
        outs = rt(np.full((40, 30, 3), 128, np.uint8))
        assert {k: v.shape for k, v in outs.items()} == {
            "semseg": (5, 16, 16),
            "depth": (1, 16, 16),
            "normals": (3, 16, 16),
        }
        with pytest.raises(EdgeRuntimeError, match=r"HxWx3 array, found \(40, 30\)"):
            rt(np.zeros((40, 30), np.uint8))
        with pytest.raises(EdgeRuntimeError, match="must be uint8"):
            rt(np.zeros((40, 30, 3), np.float32))
        with pytest.raises(EdgeRuntimeError, match=r"shape \(1, 3, 16, 16\)"):
            rt.run(np.zeros((1, 3, 8, 8), np.float32))


@pytest.mark.parametrize(
    "r, c, match",
    [
        ([float("nan"), 0.5, 0.5], 0.0, "finite"),
        ([-0.5, 1.0, 0.5], 0.0, ">= 0"),
        ([0.5, 0.5], 0.0, "3 entries"),
        ([0.5, 0.25, 0.25], 2.0, r"\[0, 1\]"),
    ],
)
def test_bad_preferences_leave_the_runtime_untouched(bundle, r, c, match):
    with runtime.load(bundle) as rt:
        before = rt.current
        with pytest.raises(EdgeRuntimeError, match=match):
            rt.set_preference(r, c)
        assert rt.current is before and rt.run(_x()) is not None


def test_corrupt_engine_fails_the_swap_and_keeps_the_old_one(bundle):
    with runtime.load(bundle) as rt:
        before = rt.current
        other = next(e for e in rt.manifest.grid if e.signature != before.entry.signature)
        engine = bundle / rt.manifest.signatures[other.signature].engines[0].path
        engine.write_bytes(engine.read_bytes()[:-10])
        with pytest.raises(EdgeRuntimeError, match="corrupt"):
            rt.set_preference(list(other.r), other.c)
        assert rt.current is before
        write_latency(
            bundle, rt.backend, rt.device(), {s: 0.01 if s == other.signature else 1.0 for s in rt.manifest.signatures}
        )
        with pytest.raises(EdgeRuntimeError, match="corrupt"):
            rt.set_budget(0.5)  # picks `other`, whose engine is corrupt
        assert rt.current is before and rt.budget_ms is None  # the budget did not half-apply
        engine.unlink()
        with pytest.raises(EdgeRuntimeError, match="missing"):
            rt.set_preference(list(other.r), other.c)


def test_exact_mode_matches_pytorch_off_the_grid(bundle, tiny_run):
    """Off-grid preference: hypernets.onnx + numpy folding bound to the compiled
    engine of that tree give the PyTorch model's outputs at that exact (r, c)."""
    import torch

    from trainer.checkpoint import load_checkpoint

    _, models, _ = load_checkpoint(tiny_run / "model.ckpt")
    with runtime.load(bundle) as rt:
        compiled = {s.tree for s in rt.manifest.signatures.values()}
        rng, hits = np.random.default_rng(0), 0
        for _ in range(10):
            r, c = rng.dirichlet([1, 1, 1]), float(rng.uniform())
            sel = rt.set_preference(list(r), c, exact=True)
            rt_r = torch.tensor(r, dtype=torch.float32)  # the requested point, not the fallback's
            tree = runtime.canonical_tree(models.edge.tree(rt_r, c))
            if tree not in compiled:
                assert "not compiled in this bundle" in sel.reason and sel.entry in rt.manifest.grid
                continue
            hits += 1
            assert sel.reason.startswith("exact") and sel.entry.c == pytest.approx(c)
            x = _x(1)
            outs = rt.run(x)
            with torch.no_grad():
                ref = models.anchor.forward_tree(torch.from_numpy(x), tree, models.adaptation(rt_r, c))
            for name, want in zip(rt.task_names, ref):
                np.testing.assert_allclose(outs[name], want[0].numpy(), atol=1e-4 * float(want.abs().max()))
        assert hits > 0


def test_exact_mode_without_hypernets_falls_back_and_says_so(bundle):
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["hypernets"] = None
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with runtime.load(bundle) as rt:
        sel = rt.set_preference([0.72, 0.18, 0.1], 0.3, exact=True)
        assert "exact mode unavailable" in sel.reason and sel.entry in rt.manifest.grid


def test_budget_needs_calibration_then_picks_within_it(bundle):
    with runtime.load(bundle) as rt:
        with pytest.raises(EdgeRuntimeError, match="runtime calibrate"):
            rt.set_budget(5.0)
        with pytest.raises(EdgeRuntimeError, match="positive number"):
            rt.set_budget(float("nan"))
        # A made-up table (timings are not asserted): latency grows with FLOPs.
        lat = {s: 1.0 + 10 * info.flops / rt.manifest.full_net["flops"] for s, info in rt.manifest.signatures.items()}
        write_latency(bundle, rt.backend, rt.device(), lat)
        sel = rt.set_budget(1e6, r=[1.0, 0.0, 0.0])
        assert sel.fits and sel.distance == pytest.approx(min(r_distance(e.r, (1, 0, 0)) for e in rt.manifest.grid))
        low = rt.set_budget(0.5)
        assert not low.fits and lat[low.entry.signature] == min(lat.values()) and "nothing fits" in low.reason
        assert rt.budget_ms == 0.5


def test_budget_rule_on_the_grid(tiny_bundle):
    m = runtime.manifest.load_manifest(tiny_bundle[0])
    lat = {s: float(i) for i, s in enumerate(sorted(m.signatures))}
    for budget in (0.5, 1.5, 2.5, 100.0):
        sel = within_budget(m, lat, budget, (0.2, 0.4, 0.4))
        if not any(v <= budget for v in lat.values()):
            continue
        assert lat[sel.entry.signature] <= budget
        closer = [e for e in m.grid if r_distance(e.r, (0.2, 0.4, 0.4)) < sel.distance - 1e-9]
        assert all(lat[e.signature] > budget for e in closer)  # nothing closer fits
        same = [
            e
            for e in m.grid
            if abs(r_distance(e.r, (0.2, 0.4, 0.4)) - sel.distance) < 1e-9 and lat[e.signature] <= budget
        ]
        assert sel.entry.c == min(e.c for e in same)  # smallest c that fits
    assert nearest(m, m.grid[0].r, m.grid[0].c).distance == 0


def test_swaps_from_another_thread_never_mix_sub_networks(bundle):
    """One thread runs frames while another switches preference 200 times: every
    output equals the reference of the sub-network the call reports it ran on."""
    x = _x(3)
    with runtime.load(bundle, pool_mb=64) as rt:
        points = [e for e in rt.manifest.grid][:6]
        refs = {e.name: _reference(bundle, rt.manifest, e, x) for e in points}
        stop, errors, seen = threading.Event(), [], set()

        def caller():
            while not stop.is_set():
                try:
                    outs, sel = rt.infer(x)
                    ref = refs.get(sel.entry.name)
                    if ref is not None:
                        seen.add(sel.entry.name)
                        for name, r in zip(rt.task_names, ref):
                            if not np.array_equal(outs[name], r[0]):
                                errors.append(f"{sel.entry.name}/{name} differs")
                except Exception as exc:  # noqa: BLE001 - any exception fails the test
                    errors.append(repr(exc))

        t = threading.Thread(target=caller)
        t.start()
        for i in range(200):
            e = points[i % len(points)]
            rt.set_preference(list(e.r), e.c)
        stop.set()
        t.join(30)
        assert not errors, errors[:3]
        assert len(seen) >= 2
        st = rt.stats()
        assert st["hot_swaps"] > 0 and st["swaps"] >= 190 and st["calls"] > 0


@pytest.mark.skipif(not available("openvino")[0], reason=f"openvino: {available('openvino')[1]}")
def test_calls_from_two_threads_on_one_openvino_runner_each_get_their_own_outputs(bundle):
    """An OpenVINO runner owns one infer request; the runtime runs a runner for one
    call at a time, so concurrent callers never read each other's outputs."""
    xs = [_x(seed) for seed in (1, 2)]
    with runtime.load(bundle, "openvino") as rt:
        refs = [rt.run(x) for x in xs]
        errors = []

        def caller(i):
            try:
                for _ in range(300):
                    outs = rt.run(xs[i])
                    errors.extend(f"caller {i}: {k} differs" for k in outs if not np.array_equal(outs[k], refs[i][k]))
            except Exception as exc:  # noqa: BLE001 - any exception fails the test
                errors.append(repr(exc))

        threads = [threading.Thread(target=caller, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]


def test_stats_report_percentiles_and_swap_kinds(bundle):
    with runtime.load(bundle) as rt:
        a, b = rt.manifest.grid[0], rt.manifest.grid[-1]
        for _ in range(5):
            rt.run(_x())
        rt.set_preference(list(b.r), b.c)
        rt.set_preference(list(a.r), a.c)  # back to a warm engine
        st = rt.stats()
        assert st["calls"] == 5 and set(st["call_ms"]) == {"p50", "p90", "p99"}
        assert (st["cold_swaps"], st["hot_swaps"]) == (1, 1)
        assert json.dumps(st)  # JSON-serialisable for stats files


def test_prewarm_neighbours_makes_the_next_swap_hot(bundle, monkeypatch):
    with runtime.load(bundle, pool_mb=64) as rt:
        assert rt.prewarm("neighbours", k=3) == 4
        cur = rt.current.entry
        near = min((e for e in rt.manifest.grid if e != cur), key=lambda e: r_distance(e.r, cur.r) + abs(e.c - cur.c))
        rt.set_preference(list(near.r), near.c)
        assert rt.swaps[-1]["warm"]
        with pytest.raises(EdgeRuntimeError, match="prewarm expects"):
            rt.prewarm("everything")
    with runtime.load(bundle, pool_mb=0.001) as rt:  # a budget below one engine keeps one
        assert rt.prewarm("all") == 1
    real = Runtime._load  # each engine charged 1 MiB: resident-memory growth depends on the whole process
    monkeypatch.setattr(Runtime, "_load", lambda self, e, a=None: (real(self, e, a)[0], 1 << 20))
    with runtime.load(bundle, pool_mb=2.5) as rt:  # room for two
        active = rt.current
        others = [e for e in rt.manifest.grid if e != active.entry][:3]
        rt.prewarm(others)  # loading the third evicts the least recent: the active one
        assert (active.entry.signature, active.entry.adaptation) not in rt.pool.items
        assert rt.current is active and rt.run(_x())  # evicted from the pool, still runnable
        rt.set_preference(list(others[0].r), others[0].c)
        assert rt.run(_x()) and rt.stats()["pool"]["evictions"] > 0


def test_a_symlinked_engine_or_latency_folder_cannot_reach_outside_the_bundle(bundle, tmp_path):
    import os

    from runtime.calibrate import bench
    from runtime.latency import save_table

    outside = tmp_path / "outside"
    outside.mkdir()
    with runtime.load(bundle) as rt:
        other = next(e for e in rt.manifest.grid if e.signature != rt.current.entry.signature)
        engine = bundle / rt.manifest.signatures[other.signature].engines[0].path
        (outside / "engine.onnx").write_bytes(engine.read_bytes())
        engine.unlink()
        os.symlink(outside / "engine.onnx", engine)  # same bytes, same sha256: the hash does not help
        with pytest.raises(EdgeRuntimeError, match="leaves"):
            rt.set_preference(list(other.r), other.c)
    engine.unlink()
    engine.write_bytes((outside / "engine.onnx").read_bytes())
    os.symlink(outside, bundle / "latency")
    table = bench(str(bundle), repeats=1, warmup=0)
    with pytest.raises(EdgeRuntimeError, match="leaves"):
        save_table(bundle, table)
    assert list(outside.iterdir()) == [outside / "engine.onnx"]


def test_a_load_is_charged_the_resident_memory_it_added(bundle, monkeypatch):
    """The pool's bytes are RSS growth across fold + engine load + binding, not file
    sizes; when RSS did not grow (memory reused), at least the weight set's bytes."""
    import runtime.memory

    readings = iter([1 << 30, (1 << 30) + (300 << 20)] * 4)
    monkeypatch.setattr(runtime.memory, "rss_bytes", lambda: next(readings))
    with runtime.load(bundle) as rt:
        (item,) = rt.pool.items.values()
        assert item.nbytes == 300 << 20
    monkeypatch.setattr(runtime.memory, "rss_bytes", lambda: 1 << 30)
    with runtime.load(bundle) as rt:
        (item,) = rt.pool.items.values()
        assert 0 < item.nbytes == sum(v.nbytes for v in rt.weights.entry_weights(rt.current.entry).values())


def test_backends_that_rebind_in_place_reuse_an_idle_runner_of_the_signature(bundle, monkeypatch):
    import dataclasses

    import runtime.core
    from runtime.backends import backend

    monkeypatch.setattr(runtime.core, "backend", lambda n: dataclasses.replace(backend(n), rebinds_in_place=True))
    with runtime.load(bundle) as rt:
        by_sig = {}
        for e in rt.manifest.grid:
            by_sig.setdefault(e.signature, {})[e.adaptation] = e
        a, b = next(list(v.values())[:2] for v in by_sig.values() if len(v) > 1)
        other = next(e for e in rt.manifest.grid if e.signature != a.signature)
        rt.set_preference(a.r, a.c)
        runner = rt.pool.items[(a.signature, a.adaptation)].runner
        rt.set_preference(other.r, other.c)  # a is idle now
        rt.set_preference(b.r, b.c)
        assert rt.pool.items[(b.signature, b.adaptation)].runner is runner  # rebound, not reloaded
        assert (a.signature, a.adaptation) not in rt.pool.items
        x = _x()
        ref = _reference(bundle, rt.manifest, b, x)
        for name, r in zip(rt.task_names, ref):
            np.testing.assert_array_equal(rt.run(x)[name], r[0])


def _with_engines_and_order(manifest, backends_: list[str], auto: dict | None):
    """The manifest as if the bundle held engines of `backends_` and the build recorded `auto`
    (only the choice is tested here: nothing is loaded)."""
    from dataclasses import replace

    sigs = {}
    for k, s in manifest.signatures.items():
        ref = s.engines[0]
        sigs[k] = replace(s, engines=tuple(replace(ref, backend=b) for b in backends_))
    return replace(manifest, signatures=sigs, build={} if auto is None else {"auto": auto})


@pytest.mark.parametrize(
    "order, expected",
    [
        (["openvino", "onnxruntime"], "openvino"),
        (["onnxruntime", "openvino"], "onnxruntime"),
        (["tensorrt", "no-such-backend", "openvino", "onnxruntime"], "openvino"),  # unusable, unknown: skipped
        ("openvino", "onnxruntime"),  # malformed: the registry priority
    ],
)
def test_auto_follows_the_order_recorded_at_build_time(tiny_bundle, order, expected):
    from runtime.backends import available
    from runtime.core import choose_backend
    from runtime.manifest import MEASURED_RULE, load_manifest

    if not available("openvino")[0]:
        pytest.skip(f"openvino: {available('openvino')[1]}")
    auto = {"rule": MEASURED_RULE, "machine": "amd-epyc-2c", "ms": {"openvino": 0.31, "onnxruntime": 0.42}}
    m = _with_engines_and_order(load_manifest(tiny_bundle[0]), ["onnxruntime", "openvino"], {**auto, "order": order})
    name, reason = choose_backend(m, "auto")
    assert name == expected
    if isinstance(order, list):
        assert reason.startswith("auto: measured at build time on amd-epyc-2c: openvino 0.31 ms < onnxruntime 0.42 ms")
    else:
        assert reason.startswith("auto: registry priority;")


def test_auto_without_a_recorded_order_takes_the_registry_priority(tiny_bundle):
    from runtime.core import choose_backend
    from runtime.manifest import load_manifest

    m = _with_engines_and_order(load_manifest(tiny_bundle[0]), ["openvino", "onnxruntime"], None)
    assert choose_backend(m, "auto")[0] == "onnxruntime"  # a bundle of compiler 0.2: no build["auto"]
