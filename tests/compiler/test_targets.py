"""`--backend auto|NAME[,NAME]`: which backends a build compiles for, and the order it records."""

from types import SimpleNamespace

import pytest

from compiler.errors import CompilerError
from compiler.targets import Target, auto_order, requested, select_targets
from runtime import backends
from runtime.backends import BuildOptions
from runtime.manifest import MEASURED_RULE, PRIORITY_RULE


def _options(name: str) -> BuildOptions:
    return BuildOptions()


def _target(name: str) -> Target:
    return Target(SimpleNamespace(name=name), "fp32", {"device": "x"})


def test_backend_values_are_auto_one_name_or_a_list():
    assert requested("auto") == (backends.names(), False)
    assert requested("openvino, onnxruntime,openvino") == (["openvino", "onnxruntime"], True)
    for bad in ("", "onnx", "onnxruntime,,x"):
        with pytest.raises(CompilerError, match="expected 'auto', a backend or a comma-separated list"):
            requested(bad)


@pytest.fixture
def no_openvino(monkeypatch):
    """OpenVINO as on a machine without its package."""
    import runtime.backends.openvino as ov

    monkeypatch.setattr(ov, "available", lambda: (False, "the openvino backend needs the openvino Python package"))


def test_auto_skips_unusable_backends_and_says_why(no_openvino):
    said = []
    targets = select_targets("auto", "fp32", _options, say=said.append)
    assert [t.name for t in targets] == [n for n in ["onnxruntime"] if backends.available(n)[0]]
    assert any("skipping openvino: the openvino backend needs" in s for s in said)


def test_an_explicit_backend_that_cannot_build_here_fails_with_its_reason(no_openvino):
    with pytest.raises(CompilerError, match="the openvino backend needs the openvino Python package"):
        select_targets("onnxruntime,openvino", "fp32", _options, say=lambda s: None)


def test_precision_applies_to_the_backends_that_build_it(no_openvino):
    with pytest.raises(
        CompilerError, match=r"bf16 is not supported by onnxruntime; backends that build it: \['openvino'\]"
    ) as e:
        select_targets("auto", "bf16", _options, say=lambda s: None)
    assert "skipped here: openvino: the openvino backend needs" in str(e.value)


def test_precision_of_a_mixed_build(monkeypatch):
    import runtime.backends.openvino as ov

    if not backends.available("openvino")[0]:
        pytest.skip(backends.available("openvino")[1])
    monkeypatch.setattr(ov, "cpu_has_bf16", lambda: True)
    targets = select_targets("onnxruntime,openvino", "bf16", _options, say=lambda s: None)
    assert [(t.name, t.precision) for t in targets] == [("onnxruntime", "fp32"), ("openvino", "bf16")]


def test_one_backend_is_not_measured_and_keeps_the_registry_rule():
    def never(names):
        raise AssertionError("nothing to compare")

    assert auto_order([_target("openvino")], never) == {"rule": PRIORITY_RULE, "order": ["openvino"]}
    # One backend per device kind: nothing to compare either; the GPU first.
    two = auto_order([_target("onnxruntime"), _target("tensorrt")], never)
    assert two["order"] == ["tensorrt", "onnxruntime"] and "one backend per device kind" in two["rule"]


def test_backends_of_one_device_kind_are_ordered_by_their_measured_latency():
    measured = []

    def measure(names):
        measured.append(names)
        return {"onnxruntime": 0.42, "openvino": 0.31}

    auto = auto_order([_target("tensorrt"), _target("onnxruntime"), _target("openvino")], measure)
    assert measured == [["onnxruntime", "openvino"]]  # the GPU is not timed against the CPU
    assert auto["order"] == ["tensorrt", "openvino", "onnxruntime"]
    assert auto["rule"] == MEASURED_RULE and auto["ms"] == {"onnxruntime": 0.42, "openvino": 0.31}
    assert auto["machine"]
