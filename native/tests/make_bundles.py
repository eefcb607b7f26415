"""Builds the bundles the C++ tests run on (ctest's `fixture_bundles` step):

    DIR/tree/       the tiny config trained and compiled for OpenVINO over the 21-point
                    grid, with a hand-made latency table for this machine
    DIR/slim/       the tiny-slim config, the same way
    DIR/tree-weights.safetensors   the Python runtime's folded weight set of each of
                    tree/'s first two grid points ("<point>|<initializer>"), which the C++
                    folding must equal bit for bit

Seconds of training each; the data cache goes to DIR/cache, never the user's.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path


def build(root: Path, config: str, name: str) -> Path:
    from compiler.build import BuildConfig, build
    from compiler.grid import GRID_DIR
    from trainer.config import load_config
    from trainer.train import fit

    run = root / f"{name}-run"
    if not (run / "model.ckpt").is_file():
        fit(load_config(config), run)
    out = root / name
    cfg = BuildConfig(checkpoint=str(run / "model.ckpt"), prefs=str(GRID_DIR / "scenes3-21.json"), out=str(out),
                      cache=str(root / "compile-cache"), backend="openvino")  # fmt: skip
    build(cfg)
    return out


def latency_table(bundle: Path) -> None:
    """Signature i of the sorted list takes (i + 1) ms: budget picks are known in advance."""
    from runtime.latency import LatencyTable, machine_id, save_table
    from runtime.manifest import load_manifest

    m = load_manifest(bundle)
    device = next(ref.device for s in m.signatures.values() for ref in s.engines if ref.backend == "openvino")
    ms = {s: dict.fromkeys(("p50", "p90", "p99"), float(i + 1)) for i, s in enumerate(sorted(m.signatures))}
    save_table(bundle, LatencyTable("openvino", device, machine_id(), ms))


def reference_weights(bundle: Path, out: Path) -> None:
    from safetensors.numpy import save_file

    from runtime.manifest import load_manifest
    from runtime.weights import WeightStore

    m = load_manifest(bundle)
    store = WeightStore(bundle, m)
    arrays = {f"{e.name}|{k}": v for e in m.grid[:2] for k, v in store.entry_weights(e).items()}
    save_file(arrays, str(out))


def main(root: str) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_CACHE_HOME", str(root / "cache"))
    for config, name in (("tiny", "tree"), ("tiny-slim", "slim")):
        shutil.rmtree(root / name, ignore_errors=True)
        build(root, config, name)
    latency_table(root / "tree")
    reference_weights(root / "tree", root / "tree-weights.safetensors")
    print(json.dumps({"fixture": str(root), "bundles": ["tree", "slim"]}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main(sys.argv[1])
