"""Fuzz and property suite: files from elsewhere (manifests, grids, schedules,
latency tables) generated with random structure and values either load or
raise the package's error type, never another exception (Hypothesis)."""

import copy
import json

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from compiler.errors import CompilerError  # noqa: E402
from compiler.grid import parse_grid  # noqa: E402
from runtime.app import check_schedule, load_schedule  # noqa: E402
from runtime.errors import EdgeRuntimeError  # noqa: E402
from runtime.latency import LatencyTable, parse_table  # noqa: E402
from runtime.manifest import Manifest, manifest_from_dict  # noqa: E402
from runtime.prefs import validate_preference  # noqa: E402
from runtime.preprocess import preprocess  # noqa: E402

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["../x", "/etc/passwd", "0" * 16, "onnxruntime", "dymu-tree", ""]),
)  # fmt: skip
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)  # fmt: skip


def _paths(obj, prefix=()):
    """Every (path to a value) in a JSON tree."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@st.composite
def mutated(draw, seed: dict, n: int = 3):
    """`seed` with up to n random edits: a value replaced, a key deleted or a key added."""
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(1, n))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(json_values)
        else:
            parent[path[-1]] = draw(json_values)
    return doc


@pytest.fixture(scope="module")
def seed_manifest(tiny_bundle):
    raw = json.loads((tiny_bundle[0] / "manifest.json").read_text())
    raw["grid"] = raw["grid"][:3]  # keep examples small; every kind of field is still there
    used = {e["signature"] for e in raw["grid"]}
    raw["signatures"] = {k: v for k, v in raw["signatures"].items() if k in used}
    return raw


def test_mutated_manifests_load_or_raise_the_runtime_error(seed_manifest):
    assert isinstance(manifest_from_dict(copy.deepcopy(seed_manifest)), Manifest)

    @FUZZ
    @given(mutated(seed_manifest))
    def check(doc):
        try:
            m = manifest_from_dict(doc)
        except EdgeRuntimeError:
            return
        # What loads must also work: a frame preprocesses to the engine's input.
        x = preprocess(np.zeros((m.input.shape[1], m.input.shape[2], m.input.shape[0]), np.uint8), m.input)
        assert x.shape == (1, *m.input.shape) and np.isfinite(x).all()

    check()


@FUZZ
@given(json_values)
def test_random_json_is_never_a_manifest_by_accident(doc):
    with pytest.raises(EdgeRuntimeError):
        manifest_from_dict(doc)


GRID_SEED = {"preferences": [{"name": "a", "r": [0.5, 0.3, 0.2], "c": 0.0}], "lattice": {"r_step": 0.5, "c": [0, 1]}}


@FUZZ
@given(st.one_of(json_values, mutated(GRID_SEED)))
def test_grids_parse_or_raise_the_compiler_error(doc):
    try:
        points = parse_grid(doc, 3, "fuzz.json")
        assert all(abs(sum(p.preference.r) - 1) < 1e-6 for p in points)
    except CompilerError:
        pass


SCHEDULE_SEED = {"events": [{"frame": 0, "r": [0.6, 0.2, 0.2], "c": 0.0}, {"frame": 3, "budget_ms": 2.5}]}


@FUZZ
@given(doc=st.one_of(json_values, mutated(SCHEDULE_SEED)))
def test_schedules_load_or_raise_the_runtime_error(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("s") / "s.json"
    path.write_text(json.dumps(doc))
    try:
        check_schedule(load_schedule(str(path)), 3, path, frames=10)
    except EdgeRuntimeError:
        pass


TABLE_SEED = LatencyTable("onnxruntime", "cpu-x86_64", "m", {"0" * 16: {"p50": 1.0, "p90": 1.5, "p99": 2.0}}).to_dict()


@FUZZ
@given(st.one_of(json_values, mutated(TABLE_SEED)))
def test_latency_tables_parse_to_finite_positive_values_or_raise(doc):
    try:
        table = parse_table(doc, "fuzz", {"0" * 16})
    except EdgeRuntimeError:
        return
    for v in table.signatures.values():
        assert 0 < v["p50"] <= v["p90"] <= v["p99"] < float("inf")


@FUZZ
@given(st.one_of(json_values, st.lists(st.floats(allow_nan=True), max_size=5)), json_values)
def test_preferences_validate_or_raise_the_runtime_error(r, c):
    try:
        pref = validate_preference(r, c, 3)
    except EdgeRuntimeError:
        return
    assert abs(sum(pref.r) - 1) < 1e-6 and 0 <= pref.c <= 1


@pytest.fixture(scope="module")
def calibrated_bundle(tiny_bundle, tmp_path_factory):
    import shutil

    from tests.conftest import write_latency

    dst = tmp_path_factory.mktemp("fuzz-bundle") / "bundle"
    shutil.copytree(tiny_bundle[0], dst)
    m = json.loads((dst / "manifest.json").read_text())
    sigs = sorted(m["signatures"])
    engine = next(iter(m["signatures"].values()))["engines"][0]
    write_latency(dst, engine["backend"], engine["device"], {s: 1.0 + i for i, s in enumerate(sigs)})
    return dst


OPS = st.one_of(
    st.tuples(st.just("pref"), st.integers(0, 10**6)), st.tuples(st.just("budget"), st.floats(0.5, 20.0)),
    st.tuples(st.just("frame")),
)  # fmt: skip


def test_swaps_budgets_and_frames_from_several_threads_run_the_named_sub_network(calibrated_bundle, monkeypatch):
    """Whatever interleaving of preference and budget switches and frames several
    threads produce, each frame's outputs are those of the sub-network its
    returned selection names (reference: that point run alone). Each engine run
    sleeps 1 ms, so switches land while frames are in flight."""
    import threading
    import time

    import runtime
    from runtime.backends import onnxruntime as ort_backend

    real_run = ort_backend.Runner._run

    def slow_run(self, x):
        time.sleep(0.001)
        return real_run(self, x)

    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with runtime.load(calibrated_bundle, threads=1) as ref_rt:
        grid = list(ref_rt.manifest.grid)
        reference = {}
        for e in grid:
            with ref_rt.open_runner(e) as runner:
                reference[e.name] = runner.run(x)

    monkeypatch.setattr(ort_backend.Runner, "_run", slow_run)

    @settings(max_examples=25, deadline=None)
    @given(st.lists(st.lists(OPS, min_size=1, max_size=12), min_size=2, max_size=3))
    def check(sequences):
        frames, errors = [], []
        with runtime.load(calibrated_bundle, threads=1) as rt:

            def work(seq):
                try:
                    for op in seq:
                        if op[0] == "pref":
                            e = grid[op[1] % len(grid)]
                            rt.set_preference(list(e.r), e.c)
                        elif op[0] == "budget":
                            rt.set_budget(op[1])
                        else:
                            frames.append(rt.infer(x))
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(s,)) for s in sequences]
            [t.start() for t in threads]
            [t.join() for t in threads]
        assert not errors, errors
        for outs, sel in frames:
            for got, want in zip(outs.values(), reference[sel.entry.name]):
                np.testing.assert_array_equal(got, want[0])

    check()
