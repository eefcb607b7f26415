"""Shared fixtures: an isolated data cache and one tiny trained run per session."""

from __future__ import annotations

import pytest
import torch


def randomise_bn(module: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affines, so a wrong node, delta or fold
    shows up in outputs instead of hiding behind identity BNs."""
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.3, 0.3)


@pytest.fixture(name="randomise_bn")
def _randomise_bn_fixture():
    return randomise_bn


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # Rendered scenes go to a per-session cache, never the user's ~/.cache.
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()


def _fit(tmp_path_factory, config: str):
    from trainer.config import load_config
    from trainer.train import fit

    out = tmp_path_factory.mktemp(f"{config}-run")
    fit(load_config(config), out)
    return out


def _compile(tmp_path_factory, run, name: str):
    """`run` compiled over the shipped 21-point grid (fp32, `--backend auto`: every backend
    usable here, ONNX Runtime and OpenVINO on a CPU box) with its own compile cache:
    (bundle dir, cache dir, BuildReport)."""
    from compiler.build import BuildConfig, build
    from compiler.grid import GRID_DIR

    root = tmp_path_factory.mktemp(name)
    cfg = BuildConfig(
        checkpoint=str(run / "model.ckpt"),
        prefs=str(GRID_DIR / "scenes3-21.json"),
        out=str(root / "bundle"),
        cache=str(root / "cache"),
    )
    report = build(cfg)
    pin_auto_to_onnxruntime(root / "bundle")
    return root / "bundle", root / "cache", report


def pin_auto_to_onnxruntime(bundle) -> None:
    """Puts ONNX Runtime first in the bundle's recorded `auto` order (its measurements are
    kept): tests that load the shared bundle with the default backend compare against ONNX
    Runtime references and corrupt its engines, whichever backend this machine measured
    faster. The measured order itself is tested on bundles of their own (test_build.py)."""
    import json

    path = bundle / "manifest.json"
    raw = json.loads(path.read_text())
    order = raw["build"]["auto"]["order"]
    raw["build"]["auto"]["order"] = ["onnxruntime"] + [n for n in order if n != "onnxruntime"]
    path.write_text(json.dumps(raw, indent=1))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, _isolated_cache):
    """A fully trained (seconds-long) tiny run directory with model.ckpt."""
    return _fit(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_run):
    """The tiny run compiled: (bundle dir, cache dir, BuildReport)."""
    return _compile(tmp_path_factory, tiny_run, "bundle")


def write_latency(bundle, backend: str, device: str, ms: dict) -> None:
    """A hand-made latency table for this machine ({signature: ms} for every statistic),
    so a budget pick is known without timing anything."""
    from runtime.latency import LatencyTable, machine_id, save_table

    save_table(
        bundle,
        LatencyTable(
            backend, device, machine_id(), {s: dict.fromkeys(("p50", "p90", "p99"), v) for s, v in ms.items()}
        ),
    )


@pytest.fixture(scope="session")
def tiny_slim_run(tmp_path_factory, _isolated_cache):
    """A trained (seconds-long) tiny run of the width-slimmable family."""
    return _fit(tmp_path_factory, "tiny-slim")


@pytest.fixture(scope="session")
def tiny_slim_bundle(tmp_path_factory, tiny_slim_run):
    """The tiny slim run compiled: (bundle dir, BuildReport)."""
    bundle, _, report = _compile(tmp_path_factory, tiny_slim_run, "slim-bundle")
    return bundle, report
