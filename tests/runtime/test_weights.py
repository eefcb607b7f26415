"""Bundle format 2 on: the anchor stored once, per point its adaptation, folded at load;
format 3: as safetensors files."""

import json
import shutil

import numpy as np
import pytest

import runtime
from edgecore.arrays import SUFFIX, load_arrays, write_arrays
from runtime.errors import EdgeRuntimeError
from runtime.manifest import load_manifest
from runtime.weights import ANCHOR_DIR, DELTAS_DIR, WeightStore


@pytest.fixture
def copy(tiny_bundle, tmp_path):
    dst = tmp_path / "moved" / "b"
    shutil.copytree(tiny_bundle[0], dst)
    return dst


def test_the_anchor_is_stored_once_and_each_point_only_its_deltas(tiny_bundle):
    bundle = tiny_bundle[0]
    m = load_manifest(bundle)
    anchor = bundle / "anchor" / f"{m.anchor['id']}.safetensors"
    deltas = sorted((bundle / DELTAS_DIR).iterdir())
    assert anchor.is_file() and len(list((bundle / "anchor").iterdir())) == 1
    assert len(deltas) == len({e.adaptation for e in m.grid})
    # A point's file is its used nodes' BN deltas: a small fraction of the anchor.
    assert max(p.stat().st_size for p in deltas) < anchor.stat().st_size / 4
    assert not (bundle / "weights").exists()


def test_bundle_graphs_hold_structure_only(tiny_bundle):
    """Graphs would otherwise store the anchor's weights once per signature."""
    import onnx

    m = load_manifest(tiny_bundle[0])
    for sig in m.signatures.values():
        g = onnx.load(str(tiny_bundle[0] / sig.graph), load_external_data=False)
        stored = {t.name for t in g.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL}
        assert not stored & set(sig.weight_names)


def test_a_moved_bundle_runs_and_folds_the_weights_parity_verified(tiny_bundle, copy):
    bundle = tiny_bundle[0]
    x = np.random.default_rng(0).standard_normal((1, *load_manifest(bundle).input.shape)).astype(np.float32)
    with runtime.load(bundle) as a, runtime.load(copy) as b:
        for entry in a.manifest.grid[:4]:
            a.set_preference(entry.r, entry.c)
            b.set_preference(entry.r, entry.c)
            for name in a.task_names:
                np.testing.assert_array_equal(a.run(x)[name], b.run(x)[name])


def test_a_tampered_delta_file_is_rejected(copy):
    m = load_manifest(copy)
    path = copy / DELTAS_DIR / f"{m.grid[1].adaptation}{SUFFIX}"
    arrays = load_arrays(path)
    key = next(iter(arrays))
    arrays[key] = arrays[key] + 1.0
    write_arrays(path, arrays)
    with pytest.raises(EdgeRuntimeError, match="corrupt: its content hashes to"):
        WeightStore(copy, m).entry_weights(m.grid[1])


def test_a_tampered_anchor_is_rejected(copy):
    m = load_manifest(copy)
    path = copy / ANCHOR_DIR / f"{m.anchor['id']}{SUFFIX}"
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(EdgeRuntimeError, match="corrupt"):
        WeightStore(copy, m).entry_weights(m.grid[0])


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_format_bundle_gets_the_rebuild_error(copy, version):
    """Format 2 held npz array files: this runtime reads safetensors only (format 3)."""
    d = json.loads((copy / "manifest.json").read_text())
    d["format_version"] = version
    (copy / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(EdgeRuntimeError, match=r"rebuild the bundle with compiler >= 0\.3\.0"):
        runtime.load(copy)


def test_a_malformed_anchor_plan_is_one_clear_error(copy):
    d = json.loads((copy / "manifest.json").read_text())
    d["anchor"]["plan"] = {"pairs": {"n0_0": [["conv", "bn"]]}}
    (copy / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(EdgeRuntimeError, match="anchor plan is malformed"):
        runtime.load(copy)
