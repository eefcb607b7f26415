"""Hostile files that once crashed or split the two runtimes (issue 28's first cases): JSON
nested 100,000 deep in a manifest, a latency table or a schedule (a stack overflow in the
C++ runtime, a RecursionError in Python), sample frames behind a symlink that leaves the
bundle, weights stored as float16, sample frames with a zero-size dimension. Each is fed to
`runtime run` and to `edgemtl-run`: both exit 2 with the same rule named, neither crashes."""

import json
import shutil
import subprocess

import numpy as np
import pytest

import runtime
from edgecore.arrays import SUFFIX, arrays_id, load_arrays, write_arrays
from edgecore.fileio import MAX_JSON_DEPTH, json_depth, loads_untrusted
from runtime.cli import main as runtime_main
from runtime.native import find_library
from runtime.sources import SAMPLES
from tests.conftest import write_latency

LIB = find_library()
RUN = LIB.parent / "edgemtl-run" if LIB else None
DEEP = "[" * 100_000 + "]" * 100_000


def _deep_manifest(bundle, tmp_path):
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text.rstrip()[:-1] + ', "x": ' + DEEP + "}")
    return []


def _deep_latency(bundle, tmp_path):
    for table in (bundle / "latency").glob("*.json"):
        table.write_text('{"version": 2, "x": ' + DEEP + "}")
    (tmp_path / "s.json").write_text(json.dumps({"events": [{"frame": 1, "budget_ms": 5.0}]}))
    return ["--schedule", str(tmp_path / "s.json")]


def _deep_schedule(bundle, tmp_path):
    (tmp_path / "s.json").write_text('{"events": ' + DEEP + "}")
    return ["--schedule", str(tmp_path / "s.json")]


def _samples_outside(bundle, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(bundle / SAMPLES, outside)
    (bundle / SAMPLES).symlink_to(outside)
    return []


def _float16_deltas(bundle, tmp_path):
    """Every delta file rewritten as float16 under its new content id, the manifest pointing
    at it: the file is intact and addressed correctly, only its dtype breaks the format."""
    text = (bundle / "manifest.json").read_text()
    for path in sorted((bundle / "deltas").glob(f"*{SUFFIX}")):
        arrays = {k: v.astype(np.float16) for k, v in load_arrays(path).items()}
        new = arrays_id(arrays)
        write_arrays(path.parent / f"{new}{SUFFIX}", arrays)
        text = text.replace(f'"{path.name.removesuffix(SUFFIX)}"', f'"{new}"')
    (bundle / "manifest.json").write_text(text)
    return []


def _empty_frames(bundle, tmp_path):
    write_arrays(bundle / SAMPLES, {"frames": np.zeros((2, 0, 16, 3), np.uint8)})
    return []


CASES = {
    "manifest nested 100,000 deep": (_deep_manifest, "nested deeper than 64 levels"),
    "latency table nested 100,000 deep": (_deep_latency, "nested deeper than 64 levels"),
    "schedule nested 100,000 deep": (_deep_schedule, "nested deeper than 64 levels"),
    "sample frames behind a symlink out of the bundle": (_samples_outside, "leaves"),
    "weights stored as float16": (_float16_deltas, "expected float32"),
    "sample frames with a zero-size dimension": (_empty_frames, "(N, H, W, 3)"),
}


@pytest.fixture
def hostile(tiny_bundle, tmp_path, request):
    """A copy of the tiny bundle with a latency table, then broken as the case says."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle[0], bundle)
    with runtime.load(bundle, "openvino") as rt:
        write_latency(bundle, "openvino", rt.device(), dict.fromkeys(rt.manifest.signatures, 1.0))
    make, message = CASES[request.param]
    return bundle, make(bundle, tmp_path), message


@pytest.mark.parametrize("hostile", list(CASES), indirect=True)
def test_the_python_runtime_refuses_with_exit_2(hostile, capsys):
    bundle, extra, message = hostile
    code = runtime_main(["run", str(bundle), "--headless", "--frames", "3", "--backend", "openvino", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.skipif(RUN is None or not RUN.is_file(), reason="edgemtl-run not built (native build, OpenCV)")
@pytest.mark.parametrize("hostile", list(CASES), indirect=True)
def test_the_native_runtime_refuses_with_exit_2(hostile, tmp_path):
    bundle, extra, message = hostile
    args = [str(RUN), str(bundle), "--frames", "3", "--backend", "openvino", "--out", str(tmp_path / "o.mp4"), *extra]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr, (done.returncode, done.stderr[-500:])


def test_json_depth_is_measured_without_recursion():
    assert [json_depth(v) for v in (3, [], {"a": [1, {"b": []}]})] == [0, 1, 4]
    assert json_depth(loads_untrusted("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)) == MAX_JSON_DEPTH
    for text in ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), DEEP):
        with pytest.raises(ValueError, match="nested deeper than 64 levels"):
            loads_untrusted(text)


@pytest.mark.skipif(LIB is None, reason="native runtime not built (cmake -S . -B build && cmake --build build)")
@pytest.mark.parametrize("hostile", ["manifest nested 100,000 deep", "weights stored as float16"], indirect=True)
def test_the_c_api_refuses_with_an_error(hostile):
    """Through libedgemtl's C API (what an embedding application calls): an error, no crash."""
    from runtime.errors import EdgeRuntimeError
    from runtime.native import NativeRuntime

    bundle, _, message = hostile
    with pytest.raises(EdgeRuntimeError, match=message):
        with NativeRuntime(bundle, "openvino") as nat:
            nat.set_preference([0.6, 0.2, 0.2], 0.0)


@pytest.mark.parametrize("hostile", [c for c in CASES if not c.startswith("schedule")], indirect=True)
def test_runtime_verify_finds_each_broken_bundle_without_running_it(hostile, capsys):
    """`runtime verify` refuses every hostile bundle above with the rule the run names."""
    bundle, _, message = hostile
    code = runtime_main(["verify", str(bundle)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize("fixture", ["tiny_bundle", "tiny_slim_bundle"])
def test_runtime_verify_passes_a_built_bundle(fixture, request, capsys):
    """Both model families' bundles, as the compiler builds them, are valid."""
    assert runtime_main(["verify", str(request.getfixturevalue(fixture)[0])]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "engines" in out and "grid points" in out
