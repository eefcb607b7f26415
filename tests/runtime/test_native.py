"""The C++ runtime (libedgemtl via its C API, edgemtl-run) against the Python runtime on
the same bundle: outputs for every signature, preprocessing of real frames, per-frame
selections of a schedule, the stats schema. Needs the native build (README: cmake);
the README's test command builds it before pytest runs."""

import json
import shutil
import subprocess

import numpy as np
import pytest

import runtime
from runtime.app import StreamConfig, run_stream
from runtime.errors import EdgeRuntimeError
from runtime.native import NativeRuntime, find_library
from runtime.preprocess import preprocess
from runtime.sources import sample_frames
from tests.conftest import write_latency

LIB = find_library()
pytestmark = pytest.mark.skipif(
    LIB is None, reason="native runtime not built (cmake -S . -B build && cmake --build build)"
)
RUN = LIB.parent / "edgemtl-run" if LIB else None


def _first_points(m):
    seen = {}
    for e in m.grid:
        seen.setdefault(e.signature, e)
    return list(seen.values())


def _x(shape, seed):
    return np.random.default_rng(seed).normal(size=(1, *shape)).astype(np.float32)


def test_outputs_equal_the_python_runtime_for_every_signature(tiny_bundle):
    bundle = tiny_bundle[0]
    with NativeRuntime(bundle, "openvino", threads=1) as nat, runtime.load(bundle, "openvino", threads=1) as py, \
            runtime.load(bundle, "onnxruntime", threads=1) as ort:  # fmt: skip
        assert nat.backend == "openvino"
        for i, e in enumerate(_first_points(py.manifest)):
            x = _x(py.manifest.input.shape, i)
            for rt in (nat, py, ort):
                rt.set_preference(list(e.r), e.c)
            got, same, ref = nat.run(x), py.run(x), ort.run(x)
            assert nat.current() == (e.name, e.signature)
            for task in py.task_names:
                scale = float(np.abs(ref[task]).max()) or 1.0
                assert np.abs(got[task] - same[task]).max() <= 1e-6 * scale, (e.name, task)  # same backend
                assert np.abs(got[task] - ref[task]).max() <= 1e-4 * scale, (e.name, task)  # the fp32 parity budget


def test_width_family_outputs_equal_the_python_runtime(tiny_slim_bundle):
    """The slim-width fold (prefix slices of the full tensors, switchable BN rows) in C++."""
    bundle = tiny_slim_bundle[0]
    with NativeRuntime(bundle, "openvino", threads=1) as nat, runtime.load(bundle, "openvino", threads=1) as py:
        assert py.manifest.family == "slim-width"
        for i, e in enumerate(_first_points(py.manifest)):
            x = _x(py.manifest.input.shape, i)
            nat.set_preference(list(e.r), e.c)
            py.set_preference(list(e.r), e.c)
            got, ref = nat.run(x), py.run(x)
            for task in py.task_names:
                np.testing.assert_array_equal(got[task], ref[task])


def test_frames_are_preprocessed_like_python(tiny_bundle):
    bundle = tiny_bundle[0]
    frames = sample_frames(bundle)[:4]
    with NativeRuntime(bundle, "openvino", threads=1) as nat, runtime.load(bundle, "openvino", threads=1) as py:
        for frame in frames:
            got, ref = nat.run_frame(frame), py.run(preprocess(frame, py.manifest.input))
            bgr = nat.run_frame(np.ascontiguousarray(frame[..., ::-1]), "BGR")
            for task in py.task_names:
                scale = float(np.abs(ref[task]).max()) or 1.0
                assert np.abs(got[task] - ref[task]).max() <= 1e-6 * scale
                np.testing.assert_array_equal(bgr[task], got[task])
        assert nat.stats()["calls"] == 2 * len(frames)


def test_refusals_come_back_as_errors(tiny_bundle, tmp_path):
    with pytest.raises(EdgeRuntimeError, match="is not a bundle"):
        NativeRuntime(tmp_path)
    with NativeRuntime(tiny_bundle[0], "openvino") as nat:
        with pytest.raises(EdgeRuntimeError, match="r must have 3 entries"):
            nat.set_preference([0.5, 0.5], 0.0)
        with pytest.raises(EdgeRuntimeError, match="input must have shape"):
            nat.run(np.zeros((1, 3, 8, 8), np.float32))
        nat.set_preference([0.6, 0.2, 0.2], 0.0, wait=False)
        nat.wait()
        nat.run(np.zeros(nat.input_shape, np.float32))
        assert nat.current()[0] == "r=0.6,0.2,0.2;c=0.0"


@pytest.fixture
def scheduled(tiny_bundle, tmp_path):
    """A copy of the bundle with a known latency table, and a schedule of preference and budget events."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle[0], bundle)
    with runtime.load(bundle, "openvino") as rt:
        sigs = sorted(rt.manifest.signatures)
        write_latency(bundle, "openvino", rt.device(), {s: float(i + 1) for i, s in enumerate(sigs)})
    events = [{"frame": 0, "r": [0.34, 0.33, 0.33], "c": 0.0}, {"frame": 5, "r": [0.8, 0.1, 0.1], "c": 1.0},
              {"frame": 10, "budget_ms": 2.5}, {"frame": 15, "r": [0.1, 0.1, 0.8], "c": 0.5, "budget_ms": 100.0},
              {"frame": 20, "budget_ms": 0.5}]  # fmt: skip
    (tmp_path / "schedule.json").write_text(json.dumps({"events": events}))
    return bundle, tmp_path / "schedule.json"


@pytest.mark.skipif(RUN is None or not RUN.is_file(), reason="edgemtl-run not built (needs OpenCV)")
def test_a_schedule_selects_the_same_points_in_both_runtimes(scheduled, tmp_path):
    bundle, schedule = scheduled
    py = run_stream(StreamConfig(str(bundle), frames=25, backend="openvino", schedule=str(schedule), wait_swaps=True,
                                 frames_log=str(tmp_path / "py.jsonl"), threads=1))  # fmt: skip
    args = [str(RUN), str(bundle), "--frames", "25", "--backend", "openvino", "--schedule", str(schedule),
            "--wait-swaps", "--threads", "1", "--frames-log", str(tmp_path / "cc.jsonl"),
            "--stats", str(tmp_path / "cc.json"), "--out", str(tmp_path / "cc.mp4")]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    points = [
        [json.loads(line)["point"] for line in (tmp_path / f).read_text().splitlines()]
        for f in ("py.jsonl", "cc.jsonl")
    ]
    assert points[0] == points[1] and len(set(points[0])) >= 3
    native = json.loads((tmp_path / "cc.json").read_text())
    assert set(native) == set(py) and set(native["summary"]) == set(py["summary"])
    assert [s["point"] for s in native["segments"]] == [s["point"] for s in py["segments"]]
    assert native["video_frames"] == 25 and (tmp_path / "cc.mp4").stat().st_size > 0


@pytest.mark.skipif(RUN is None or not RUN.is_file(), reason="edgemtl-run not built (needs OpenCV)")
def test_a_live_source_counts_what_it_dropped(scheduled, tmp_path):
    """--live-fps plays the samples like a camera: the newest frame is taken, the ones that
    arrived meanwhile are dropped and counted (the Python app's LiveSource semantics)."""
    bundle, _ = scheduled
    args = [str(RUN), str(bundle), "--frames", "30", "--live-fps", "1000000", "--stats", str(tmp_path / "live.json")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    res = json.loads((tmp_path / "live.json").read_text())
    assert res["live"] and res["frames"] == 30 and res["dropped"] > 0  # a frame every microsecond outpaces any engine
    assert res["produced"] >= res["frames"] + res["dropped"]


@pytest.mark.skipif(RUN is None or not RUN.is_file(), reason="edgemtl-run not built (needs OpenCV)")
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--schedule", "{schedule}"], "would never run"),
        (["--frames", "0"], "--frames must be a positive number"),
        (["--backend", "nope"], "bundle has no nope engines"),
        (["--live-fps", "0"], "live frame rate must be a positive number"),
    ],
)
def test_edgemtl_run_refuses_bad_input_with_exit_code_2(scheduled, tmp_path, extra, message):
    bundle, schedule = scheduled
    args = [str(RUN), str(bundle), "--frames", "3", *(a.format(schedule=schedule) for a in extra)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr
