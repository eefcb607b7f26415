"""`runtime verify BUNDLE`: every check a runtime makes when it loads and runs a bundle, made
up front and without running anything, for pipelines that receive bundles from elsewhere.

It reads each file the way the runtime reads it (the same functions, so the two cannot drift):
the manifest; the anchor and every adaptation file (content id, float32 arrays); every grid
point's weights folded against its signature; every signature's graph and every engine
(path confined to the bundle, sha256); the sample frames; every latency table; the exact-mode
plan. The first broken rule is one EdgeRuntimeError, as it would be at run time.
"""

from __future__ import annotations

from pathlib import Path

from edgecore.fileio import loads_untrusted
from edgecore.paths import confine
from runtime.core import verified_engine
from runtime.errors import EdgeRuntimeError
from runtime.latency import read_table
from runtime.manifest import load_manifest
from runtime.sources import SAMPLES, sample_frames
from runtime.weights import WeightStore


def _verify_engines(bundle: Path, manifest) -> int:
    for name, sig in manifest.signatures.items():
        graph = confine(bundle, sig.graph, f"graph of signature {name}", EdgeRuntimeError)
        if not graph.is_file():
            raise EdgeRuntimeError(f"graph {graph} is missing: the bundle is incomplete, rebuild it")
        for ref in sig.engines:
            verified_engine(bundle, name, ref)
    return sum(len(sig.engines) for sig in manifest.signatures.values())


def _verify_latency_tables(bundle: Path, manifest) -> int:
    folder = confine(bundle, "latency", "latency tables", EdgeRuntimeError)
    names = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
    for name in names:
        read_table(confine(bundle, f"latency/{name}", "latency table", EdgeRuntimeError), set(manifest.signatures))
    return len(names)


def _verify_plan(bundle: Path, manifest) -> bool:
    if not manifest.hypernets:
        return False
    path = confine(bundle, manifest.hypernets.get("plan"), "hypernets.plan", EdgeRuntimeError)
    try:
        plan = loads_untrusted(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeRuntimeError(f"bundle hypernets plan {path} is unreadable ({exc})") from None
    graph = confine(bundle, manifest.hypernets.get("graph"), "hypernets.graph", EdgeRuntimeError)
    if not isinstance(plan, dict) or not graph.is_file():
        raise EdgeRuntimeError(f"bundle hypernets: expected a plan object and {graph}: rebuild the bundle")
    return True


def verify_bundle(bundle: str | Path) -> dict:
    """Checks BUNDLE as a runtime would, without running it; returns what was checked."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    store = WeightStore(bundle, manifest)
    store.anchor()
    adaptations = {}
    for entry in manifest.grid:
        if entry.adaptation not in adaptations:
            adaptations[entry.adaptation] = store.adaptation(entry.adaptation)
        store.weights(manifest.signatures[entry.signature].tree, adaptations[entry.adaptation])
    samples = sample_frames(bundle) if (bundle / SAMPLES).exists() or (bundle / SAMPLES).is_symlink() else None
    return {
        "grid points": len(manifest.grid),
        "signatures": len(manifest.signatures),
        "adaptations": len(adaptations),
        "engines": _verify_engines(bundle, manifest),
        "latency tables": _verify_latency_tables(bundle, manifest),
        "sample frames": 0 if samples is None else len(samples),
        "exact-mode plan": _verify_plan(bundle, manifest),
    }
