import json
import math

import pytest

from runtime.errors import EdgeRuntimeError
from runtime.manifest import FORMAT_VERSION, load_manifest, manifest_from_dict


def test_compiled_manifest_roundtrips(tiny_bundle):
    bundle, _, report = tiny_bundle
    m = load_manifest(bundle)
    assert len(m.grid) == report.points == 21
    assert len(m.signatures) == report.signatures
    assert [t.name for t in m.tasks] == ["semseg", "depth", "normals"]
    assert m.input.shape == (3, 16, 16)
    for e in m.grid:
        sig = m.signatures[e.signature]
        assert (bundle / sig.graph).is_file() and (bundle / "deltas" / f"{e.adaptation}.safetensors").is_file()
        assert all((bundle / ref.path).is_file() for ref in sig.engines)
        assert set(e.parity) == {"semseg", "depth", "normals"}
        assert math.isclose(sum(e.r), 1.0)
    assert manifest_from_dict(m.to_dict()) == m


def _raw(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def _engine0(d: dict) -> dict:
    return next(iter(d["signatures"].values()))["engines"][0]


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda d: d.update(format_version=FORMAT_VERSION + 1),
            f"version {FORMAT_VERSION + 1} is not supported: .*update the runtime",
        ),
        (lambda d: d.update(format="something.else"), "not a bundle manifest"),
        (lambda d: d.pop("tasks"), "lacks 'tasks'"),
        (lambda d: d["grid"][0].update(signature="feedbeef"), "not among the bundle's signatures"),
        (lambda d: d["grid"][0].update(r=[float("nan"), 0.5, 0.5]), r"r\[0\] must be finite"),
        (lambda d: d["grid"][0].update(c=1.5), r"c must be in \[0, 1\]"),
        (lambda d: d["input"].update(shape=[16, 16]), r"input.shape must be \[C, H, W\]"),
        (lambda d: d.update(grid=[]), "grid is empty"),
        (lambda d: d.update(family="slim"), "unknown model family 'slim'"),
        (lambda d: _engine0(d).update(path="../../etc/passwd"), r"engines\[0\].path: expected a relative path"),
        (lambda d: _engine0(d).update(path="/etc/passwd"), r"engines\[0\].path: expected a relative path"),
        (lambda d: _engine0(d).update(device="../../x"), r"engines\[0\].device: expected name"),
        (lambda d: d["grid"][0].update(adaptation="../../../etc/x"), r"grid\[0\].adaptation: expected hex16"),
        (
            lambda d: d.update(hypernets={"graph": "/tmp/h.onnx", "plan": "p"}),
            "hypernets.graph: expected",
        ),
        (lambda d: next(iter(d["signatures"].values())).update(tree=[[0, 9]]), "is not a dymu-tree spec"),
        (lambda d: next(iter(d["signatures"].values())).update(signature="0" * 16), "has signature"),
    ],
)
def test_bad_manifests_name_the_problem(tiny_bundle, edit, match):
    d = _raw(tiny_bundle[0])
    edit(d)
    with pytest.raises(EdgeRuntimeError, match=match):
        manifest_from_dict(d)


def test_missing_or_broken_manifest_file(tmp_path):
    with pytest.raises(EdgeRuntimeError, match="not a bundle"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(EdgeRuntimeError, match="not valid JSON"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(
    "build, expected",
    [
        ("not a dict", {}),
        ({"auto": 5}, {}),
        ({"auto": {"order": ["openvino", 3], "rule": 7}}, {}),  # a malformed order is no order
        (
            {"auto": {"order": ["b", "a", "b"], "ms": {"a": 0.5, "b": "fast", "c": -1, "d": float("nan"), "e": True}}},
            {"order": ["b", "a"], "ms": {"a": 0.5}},
        ),
    ],
)
def test_a_recorded_auto_order_is_validated_and_malformed_parts_dropped(build, expected):
    """build["auto"] is read by the runtime's backend choice: junk there never raises."""
    from runtime.manifest import recorded_auto

    assert recorded_auto(build) == expected
