"""Shared benchmark plumbing: machine description, percentiles, result files."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from edgecore.fileio import file_sha256
from edgecore.stats import percentiles
from runtime.errors import EdgeRuntimeError
from runtime.latency import cpu_model, machine_id

RESULTS = Path(__file__).parent / "results"


def bundle_checkpoint(manifest, run: str | Path) -> Path:
    """The run's checkpoint that `manifest`'s bundle was built from: bundles record the
    checkpoint by name and sha256 (a moved bundle keeps working), so benchmarks that
    need the PyTorch model take the run folder and check it is the same model."""
    want = manifest.model.get("checkpoint")
    if not isinstance(want, dict) or "sha256" not in want:
        raise EdgeRuntimeError("the bundle does not record its checkpoint's sha256: rebuild it with this compiler")
    path = Path(run) / "model.ckpt"
    if not path.is_file():
        raise EdgeRuntimeError(f"--run {run}: {path} does not exist")
    if file_sha256(path) != want["sha256"]:
        raise EdgeRuntimeError(
            f"--run {run}: {path} is not the checkpoint this bundle was built from (sha256 differs from the manifest's)"
        )
    return path


def machine() -> dict:
    import onnxruntime

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def pct(values) -> dict:
    values = list(values)
    return {**percentiles(values), "n": len(values)}


def write(name: str, result: dict, markdown: str, out: Path | None = None) -> Path:
    """Writes <out or results/<device>>/<name>.json and .md; returns the directory."""
    d = out or RESULTS / machine_id()  # the name this machine's latency tables carry
    d.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1)
    if len(text) > 200_000:  # raw per-point data (e.g. a 5-task simplex lattice): keep the repo small
        text = json.dumps(result, separators=(",", ":"))
    (d / f"{name}.json").write_text(text)
    (d / f"{name}.md").write_text(markdown)
    return d
