"""End to end on the tiny run: dedup, parity, cache reuse, corruption, concurrency."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from compiler.build import BuildConfig, build
from compiler.errors import ParityError
from compiler.grid import GRID_DIR
from edgecore.fold import TreeAnchor
from runtime.manifest import PRIORITY_RULE, load_manifest

GRID = str(GRID_DIR / "scenes3-21.json")


def _cfg(tiny_run, out, cache, **kw):
    """A build of the tiny run; `--backend auto` like the tiny_bundle fixture, whose cache tests reuse."""
    return BuildConfig(checkpoint=str(tiny_run / "model.ckpt"), prefs=GRID, out=str(out), cache=str(cache), **kw)


def _backends(bundle) -> list[str]:
    """The backends whose engines the bundle holds (auto: every one usable here)."""
    return [ref.backend for ref in next(iter(load_manifest(bundle).signatures.values())).engines]


def _warm_cache(tiny_bundle, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(tiny_bundle[1], cache)
    return cache


def test_build_deduplicates_and_every_point_passes_parity(tiny_bundle):
    bundle, _, report = tiny_bundle
    m = load_manifest(bundle)
    assert report.points == 21 and report.signatures == len(m.signatures) == len({e.signature for e in m.grid})
    # one engine per signature and backend, built once
    assert report.builds("engines") == report.signatures * len(_backends(bundle)) >= report.signatures
    assert all(err["rel"] <= 1e-4 for e in m.grid for err in e.parity.values())
    assert report.parity_worst <= 1e-4
    assert 0 < report.flops_rel[0] <= report.flops_rel[2] <= 1.0
    for sig in m.signatures.values():
        assert sig.nodes_per_layer[-1] == 3 and sum(len(set(r) - {-1}) for r in sig.tree) > 0
    assert not [p for p in bundle.parent.iterdir() if ".partial-" in p.name]


def test_repeated_build_is_all_hits(tiny_bundle, tiny_run, tmp_path):
    cache = _warm_cache(tiny_bundle, tmp_path)
    report = build(_cfg(tiny_run, tmp_path / "b", cache))
    assert all(report.builds(kind) == 0 for kind in report.cache), report.cache
    assert report.cache["engines"]["hit"] == report.signatures * len(_backends(tiny_bundle[0]))


def test_corrupted_engines_are_detected_and_only_they_rebuilt(tiny_bundle, tiny_run, tmp_path):
    cache = _warm_cache(tiny_bundle, tmp_path)
    engines = sorted((cache / "engines").rglob("*.onnx"))
    flipped = bytearray(engines[0].read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    engines[0].write_bytes(bytes(flipped))
    engines[1].write_bytes(engines[1].read_bytes()[:100])
    report = build(_cfg(tiny_run, tmp_path / "b", cache))
    assert report.cache["engines"] == {"hit": len(engines) - 2, "built": 0, "rebuilt": 2}
    assert report.parity_worst <= 1e-4


def test_two_processes_on_one_cache_both_succeed_and_build_each_entry_once(tiny_run, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "compiler.cli",
        "build",
        "--checkpoint",
        str(tiny_run / "model.ckpt"),
        "--prefs",
        GRID,
        "--cache",
        str(tmp_path / "cache"),
        "--backend",
        "onnxruntime",
    ]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        subprocess.Popen(
            cmd + ["--out", str(tmp_path / f"b{i}")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    stats = [load_manifest(tmp_path / f"b{i}").build["cache"]["engines"] for i in range(2)]
    n_sigs = len(load_manifest(tmp_path / "b0").signatures)
    assert sum(s["built"] for s in stats) == n_sigs and sum(s["hit"] for s in stats) == n_sigs
    assert len(list((tmp_path / "cache" / "engines").rglob("*.onnx"))) == n_sigs
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_wrong_folding_fails_parity_and_publishes_nothing(tiny_run, tmp_path, monkeypatch):
    real = TreeAnchor.weights

    def off_by_a_bit(self, tree, adaptation=None):
        w = real(self, tree, adaptation)
        name = next(k for k in w if k.endswith("conv1.0.bias"))
        w[name] = w[name] + np.float32(0.05)  # a folding bug of 5% of a typical bias
        return w

    monkeypatch.setattr(TreeAnchor, "weights", off_by_a_bit)
    with pytest.raises(ParityError, match="exceed the parity tolerance"):
        build(_cfg(tiny_run, tmp_path / "b", tmp_path / "cache", backend="onnxruntime"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


@pytest.mark.parametrize("parity_size", [None, 8])
def test_one_corrupt_delta_fails_the_build(tiny_run, tmp_path, monkeypatch, parity_size):
    """Parity checks every grid point's stored adaptation, not just one per signature:
    one wrong delta among 21 points fails the build, also when the weight sets are
    checked on a smaller input (--parity-size) and only each signature's first point
    at full size."""
    from trainer.families import DymuTree

    real, calls = DymuTree.adaptation_arrays, []

    def one_wrong(self, spec, adaptation):
        arrays = real(self, spec, adaptation)
        calls.append(1)
        if len(calls) == 7:  # the 7th grid point only
            key = next(k for k in sorted(arrays) if k.endswith(".bias"))
            arrays[key] = arrays[key] + np.float32(0.5)
        return arrays

    monkeypatch.setattr(DymuTree, "adaptation_arrays", one_wrong)
    cfg = _cfg(tiny_run, tmp_path / "b", tmp_path / "cache", backend="onnxruntime", parity_size=parity_size)
    with pytest.raises(ParityError, match=r"[12] of \d+ parity checks \(21 grid points\) exceed"):
        build(cfg)
    assert not (tmp_path / "b").exists()


def test_worker_processes_build_the_same_bundle(tiny_bundle, tiny_run, tmp_path):
    """--jobs 2 exports and checks parity in two spawned processes: same graphs,
    weights and parity results as the inline build, and their cache counts come back."""
    cfg = dataclasses.replace(_cfg(tiny_run, tmp_path / "b", tmp_path / "cache"), jobs=2, parity_size=8)
    rep = build(cfg)
    a, b = load_manifest(tiny_bundle[0]), load_manifest(tmp_path / "b")
    assert [(e.signature, e.adaptation) for e in a.grid] == [(e.signature, e.adaptation) for e in b.grid]
    assert {s: [e.key for e in v.engines] for s, v in a.signatures.items()} == {
        s: [e.key for e in v.engines] for s, v in b.signatures.items()
    }
    n_sigs, n_backends = len(b.signatures), len(_backends(tmp_path / "b"))
    assert rep.cache["graphs"]["built"] == 2 * n_sigs  # full-size and 8x8 graphs, exported by the workers
    assert rep.cache["parity"]["built"] + rep.cache["parity"]["hit"] == (21 + n_sigs) * n_backends


def test_manifest_records_stages_and_device(tiny_bundle):
    raw = json.loads((tiny_bundle[0] / "manifest.json").read_text())
    assert {"load", "derive", "adapt", "export", "engine", "parity", "total"} <= set(raw["build"]["stages"])
    backends = _backends(tiny_bundle[0])
    assert list(raw["build"]["backends"]) == backends and "onnxruntime" in backends
    assert all(raw["build"]["backends"][b]["device"]["device"].startswith("cpu-") for b in backends)
    assert sorted(raw["build"]["auto"]["order"]) == sorted(backends)
    if len(backends) > 1:  # several CPU backends: timed on this machine
        assert "measure" in raw["build"]["stages"] and set(raw["build"]["auto"]["ms"]) == set(backends)


def test_one_backend_is_not_measured(tiny_bundle, tiny_run, tmp_path):
    build(_cfg(tiny_run, tmp_path / "b", _warm_cache(tiny_bundle, tmp_path), backend="onnxruntime"))
    raw = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert raw["build"]["auto"] == {"rule": PRIORITY_RULE, "order": ["onnxruntime"]}
    assert list(raw["build"]["backends"]) == ["onnxruntime"] and _backends(tmp_path / "b") == ["onnxruntime"]


def test_the_manifest_names_the_checkpoint_by_identity_and_a_moved_bundle_runs(tiny_bundle, tiny_run, tmp_path):
    import runtime
    from edgecore.fileio import file_sha256

    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(tiny_bundle[0], moved)
    m = json.loads((moved / "manifest.json").read_text())
    assert m["model"]["checkpoint"] == {"name": "model.ckpt", "sha256": file_sha256(tiny_run / "model.ckpt")}
    text = (moved / "manifest.json").read_text()
    assert str(tiny_bundle[0].parent) not in text and str(tiny_run) not in text  # no path of the build machine
    with runtime.load(moved) as rt:
        rt.set_preference([0.2, 0.3, 0.5], 1.0)
        assert set(rt(np.zeros((16, 16, 3), np.uint8))) == {t["name"] for t in m["tasks"]}


def test_a_cache_pruned_while_the_build_reads_it_is_one_clear_error(tiny_run, tmp_path, monkeypatch):
    from compiler.cache import CompileCache
    from compiler.errors import CompilerError

    real = CompileCache.get_or_build

    def pruned_meanwhile(self, kind, *args):
        entry = real(self, kind, *args)
        if kind == "engines":
            entry.path.unlink()  # what a concurrent `compiler cache prune --all` does
        return entry

    monkeypatch.setattr(CompileCache, "get_or_build", pruned_meanwhile)
    with pytest.raises(CompilerError, match="vanished while this build read it"):
        build(_cfg(tiny_run, tmp_path / "b", tmp_path / "cache", backend="onnxruntime"))
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.partial-*"))


def test_a_killed_builds_staging_folder_is_removed_by_the_next_build(tmp_path):
    from compiler.build import remove_stale_staging

    out = tmp_path / "b"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".b.partial-{dead.stdout.strip()}"
    live = tmp_path / f".b.partial-{os.getpid()}"
    other = tmp_path / ".c.partial-1"
    for d in (stale, live, other):
        (d / "deltas").mkdir(parents=True)
    assert remove_stale_staging(out) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.slow
def test_auto_builds_every_usable_cpu_backend_and_records_the_measured_order(tiny_bundle, tiny_run, tmp_path, capsys):
    """The default `--backend auto`: engines and parity for ONNX Runtime and OpenVINO in one
    bundle, their latency measured here, and the runtime's auto following that order."""
    import runtime
    from runtime.backends import available
    from runtime.latency import machine_id
    from runtime.manifest import MEASURED_RULE

    if not available("openvino")[0]:
        pytest.skip(f"openvino: {available('openvino')[1]}")
    report = build(_cfg(tiny_run, tmp_path / "b", _warm_cache(tiny_bundle, tmp_path), backend="auto"))
    m = load_manifest(tmp_path / "b")
    for sig in m.signatures.values():
        assert [r.backend for r in sig.engines] == [
            n for n in ("tensorrt", "onnxruntime", "openvino") if available(n)[0]
        ]
        assert all((tmp_path / "b" / r.path).is_file() for r in sig.engines)
    n = report.signatures
    assert report.cache["engines"] == {"hit": 2 * n, "built": 0, "rebuilt": 0}  # the fixture's (also auto)
    assert set(m.build["parity_worst"]) == {"onnxruntime", "openvino"}
    assert max(m.build["parity_worst"].values()) == report.parity_worst <= 1e-4
    auto = m.build["auto"]
    assert auto["rule"] == MEASURED_RULE and auto["machine"] == machine_id()
    assert sorted(auto["order"]) == sorted(auto["ms"]) == ["onnxruntime", "openvino"]
    assert auto["ms"][auto["order"][0]] <= auto["ms"][auto["order"][1]]
    assert "measure" in m.build["stages"]
    if not available("tensorrt")[0]:
        assert "skipping tensorrt" in capsys.readouterr().err
    with runtime.load(tmp_path / "b") as rt:
        assert rt.backend == auto["order"][0] and "measured at build time" in rt.backend_reason
