"""`compiler` CLI: exit codes, messages, nothing left behind on bad input."""

import json

import pytest

from compiler.cli import main
from runtime.backends import available

GOOD = {"preferences": [{"r": [0.5, 0.25, 0.25], "c": 0.0}, {"r": [0.2, 0.3, 0.5], "c": 1.0, "name": "x"}]}
BAD_GRIDS = [
    ({"preferences": [{"r": [0.5, 0.5], "c": 0}]}, "3 entries"),
    ({"preferences": [{"r": [1.2, -0.2, 0.0], "c": 0}]}, ">= 0"),
    ('{"preferences": [{"r": [NaN, 0.5, 0.5], "c": 0}]}', "finite"),
    ({"preferences": [{"r": [0.5, 0.2, 0.2], "c": 0}]}, "sum to 1"),
    ({"preferences": [{"r": [0.5, 0.25, 0.25], "c": 1.5}]}, r"in \[0, 1\]"),
    ({"preferences": [{"r": [0.5, 0.25, 0.25], "c": 0, "cost": 1}]}, "unknown key"),
    ({"lattice": {"r_step": 0.3, "c": [0]}}, "whole steps"),
    ("{not json", "not valid JSON"),
]


def _run(tmp_path, tiny_run, grid, *extra, checkpoint=None):
    path = tmp_path / "grid.json"
    path.write_text(grid if isinstance(grid, str) else json.dumps(grid))
    ckpt = checkpoint or str(tiny_run / "model.ckpt")
    return main(
        [
            "build",
            "--checkpoint",
            ckpt,
            "--prefs",
            str(path),
            "--out",
            str(tmp_path / "bundle"),
            "--cache",
            str(tmp_path / "cache"),
            *extra,
        ]
    )


def _nothing_left(tmp_path):
    left = sorted(p.name for p in tmp_path.iterdir()) if tmp_path.exists() else []
    return [n for n in left if n not in ("grid.json", "cache", "not-a-ckpt")]


@pytest.mark.parametrize("grid, match", BAD_GRIDS)
def test_bad_grid_exits_2_naming_the_problem(tmp_path, tiny_run, capsys, grid, match):
    assert _run(tmp_path, tiny_run, grid) == 2
    err = capsys.readouterr().err
    assert err.startswith("compiler: error: ") and len(err.strip().splitlines()) == 1
    assert pytest.importorskip("re").search(match, err), err
    assert _nothing_left(tmp_path) == []


def test_not_a_checkpoint_exits_2(tmp_path, tiny_run, capsys):
    fake = tmp_path / "not-a-ckpt"
    fake.write_bytes(b"PK\x03\x04 definitely not torch")
    assert _run(tmp_path, tiny_run, GOOD, checkpoint=str(fake)) == 2
    assert "is not a model checkpoint" in capsys.readouterr().err
    assert _nothing_left(tmp_path) == []


def test_unsupported_backend_or_precision_fails_fast(tmp_path, tiny_run, capsys):
    assert _run(tmp_path, tiny_run, GOOD, "--precision", "fp16") == 2
    assert "backends that build it: ['tensorrt']" in capsys.readouterr().err
    assert _run(tmp_path, tiny_run, GOOD, "--backend", "onnxruntime", "--precision", "bf16") == 2
    assert "--precision bf16 is not supported by onnxruntime; backends that build it: ['openvino']" in (
        capsys.readouterr().err
    )
    assert _run(tmp_path, tiny_run, GOOD, "--backend", "onnxruntime,nope") == 2
    assert "--backend 'onnxruntime,nope': expected 'auto'" in capsys.readouterr().err
    if not available("tensorrt")[0]:
        assert _run(tmp_path, tiny_run, GOOD, "--backend", "tensorrt") == 2
        assert "--backend tensorrt cannot run on this machine" in capsys.readouterr().err
    assert _nothing_left(tmp_path) == []


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(tmp_path, tiny_run, capsys):
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "precious.txt").write_text("keep me")
    assert _run(tmp_path, tiny_run, GOOD) == 2
    assert "is not a bundle" in capsys.readouterr().err
    assert (tmp_path / "bundle" / "precious.txt").read_text() == "keep me"


def test_build_then_cache_ls_verify_prune(tmp_path, tiny_run, capsys):
    assert _run(tmp_path, tiny_run, GOOD) == 0
    out = capsys.readouterr().out
    assert "grid points" in out and "distinct signatures" in out and "parity worst" in out
    assert "runtime auto order" in out
    cache = ["--cache", str(tmp_path / "cache")]
    assert main(["cache", "ls", *cache]) == 0
    listing = capsys.readouterr().out
    assert "engines" in listing and "graphs" in listing and "CORRUPT" not in listing
    engine = next((tmp_path / "cache" / "engines").rglob("*.onnx"))
    engine.write_bytes(b"garbage")
    assert main(["cache", "verify", *cache]) == 0
    assert "CORRUPT" in capsys.readouterr().out and engine.exists()
    assert main(["cache", "verify", "--fix", *cache]) == 0
    assert "1 entry removed" in capsys.readouterr().out and not engine.exists()
    assert main(["cache", "prune", "--all", *cache]) == 0
    capsys.readouterr()
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix not in (".lock",)]
    # A rebuild after pruning works and republishes the bundle in place.
    assert _run(tmp_path, tiny_run, GOOD) == 0
