"""Every CLI's contract, walked over every subcommand: --help works, and bad
arguments end in one line and exit 2 (issue 12's table), with nothing written."""

import json
import shutil

import numpy as np
import pytest

from benchmarks.__main__ import main as bench_main
from compiler.cli import main as compiler_main
from runtime.cli import main as runtime_main
from runtime.sources import SAMPLES, sample_frames
from trainer.cli import main as trainer_main

SUBCOMMANDS = [
    (trainer_main, []), (trainer_main, ["fit"]), (trainer_main, ["eval"]),
    (compiler_main, []), (compiler_main, ["build"]), (compiler_main, ["cache"]),
    (runtime_main, []), (runtime_main, ["run"]), (runtime_main, ["bench"]), (runtime_main, ["calibrate"]),
    (runtime_main, ["verify"]),
    (bench_main, []), *[(bench_main, [c]) for c in ("all", "latency", "resolution", "swaps", "camera", "compile",
                                                     "control", "ablations", "edge")],
]  # fmt: skip


@pytest.mark.parametrize("main, cmd", SUBCOMMANDS, ids=lambda v: getattr(v, "__module__", None) or " ".join(v))
def test_every_subcommand_explains_itself(main, cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out


@pytest.fixture
def bundle(tiny_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle[0], dst)
    return dst


def _schedule(tmp_path, *events):
    (tmp_path / "s.json").write_text(json.dumps({"events": list(events)}))
    return ["--schedule", str(tmp_path / "s.json")]


BAD_RUNS = [
    (lambda t: ["--frames", "0"], "--frames must be a positive number of frames, found 0"),
    (lambda t: ["--frames", "-1"], "--frames must be a positive number of frames, found -1"),
    (lambda t: _schedule(t, {"frame": True, "budget_ms": 1}), "frame must be an integer >= 0, found True"),
    (lambda t: _schedule(t, {"frame": 1, "r": 0.5, "c": 0}), "r must be a list of task weights, found 0.5"),
    (lambda t: ["--frames", "5", *_schedule(t, {"frame": 5, "budget_ms": 1})], "event at frame 5 would never run"),
    (lambda t: ["--stats", str(t / "missing" / "stats.json")], "does not exist or is not writable"),
    (lambda t: ["--out", str(t)], "is a folder; expected a file path"),
]


@pytest.mark.parametrize("extra, match", BAD_RUNS, ids=[m[:30] for _, m in BAD_RUNS])
def test_bad_run_arguments_exit_2_before_the_first_frame(bundle, tmp_path, capsys, extra, match):
    assert runtime_main(["run", str(bundle), "--headless", "--frames", "3", *extra(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "missing").exists()


def test_sample_frames_that_are_not_safetensors_are_refused(bundle, capsys):
    """An npz (even a pickled one) in place of the safetensors samples: one line, exit 2."""
    with open(bundle / SAMPLES, "wb") as f:
        np.savez(f, frames=np.array([{"x": 1}], dtype=object))
    assert runtime_main(["run", str(bundle), "--headless", "--frames", "2"]) == 2
    assert "corrupt or not a safetensors file" in capsys.readouterr().err


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["input"].update(shape=[3, 0, 16]), "positive integers"),
    (lambda d: d["input"].update(shape=[3, -16, 16]), "positive integers"),
    (lambda d: None, "nested deeper than 64 levels"),
])  # fmt: skip
def test_malformed_manifests_exit_2(bundle, capsys, edit, match):
    raw = json.loads((bundle / "manifest.json").read_text())
    edit(raw)
    text = (
        json.dumps(raw) if "nested" not in match else json.dumps(raw)[:-1] + ', "x": ' + "[" * 10**5 + "]" * 10**5 + "}"
    )
    (bundle / "manifest.json").write_text(text)
    assert runtime_main(["bench", str(bundle), "--repeats", "1"]) == 2
    assert match in capsys.readouterr().err


def test_a_schedule_event_past_the_end_of_a_finite_source_is_refused(bundle, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2")
    n_samples = len(sample_frames(bundle))
    late = _schedule(tmp_path, {"frame": n_samples, "budget_ms": 1})
    assert runtime_main(["run", str(bundle), "--headless", *late]) == 2  # the samples play once
    assert f"event at frame {n_samples} would never run" in capsys.readouterr().err
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    sched = _schedule(tmp_path, {"frame": 2, "budget_ms": 1})
    assert runtime_main(["run", str(bundle), "--headless", "--source", str(folder), "--frames", "10", *sched]) == 2
    assert "the run has 2 frames" in capsys.readouterr().err
