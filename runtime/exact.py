"""Exact mode: the hypernets (exported to hypernets.onnx) evaluated at any
preference give the argmax tree and its BN deltas; the runtime folds them into
the bundle's anchor exactly as it does for grid points. The tree's engine must
be compiled in the bundle; the runtime falls back to the nearest grid point
otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecore.fileio import loads_untrusted
from edgecore.fold import tree_adaptation
from edgecore.paths import confine
from edgecore.tree import canonical_tree
from runtime.errors import EdgeRuntimeError

PLAN_VERSION = 2


class ExactResolver:
    def __init__(self, bundle: Path, entry: dict):
        import onnxruntime as ort

        from runtime.backends.onnxruntime import session_options

        files = {k: confine(bundle, entry[k], f"hypernets.{k}", EdgeRuntimeError) for k in ("plan", "graph")}
        try:
            plan = loads_untrusted(files["plan"].read_text())
            so = session_options(1, "ORT_ENABLE_ALL")
            self.session = ort.InferenceSession(str(files["graph"]), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # missing files, bad JSON/onnx: one message
            raise EdgeRuntimeError(f"bundle hypernets are unreadable ({exc.__class__.__name__}: {exc})") from None
        version = plan.get("version") if isinstance(plan, dict) else None
        if version != PLAN_VERSION:
            raise EdgeRuntimeError(
                f"hypernets plan version {version!r} is not supported (expected {PLAN_VERSION}): rebuild the bundle"
            )
        self.n_tasks, self.layout = plan["n_tasks"], plan["layout"]

    def __call__(self, r, c: float) -> tuple[tuple, dict]:
        """(canonical argmax tree, its adaptation arrays: see edgecore.fold.tree_adaptation) for (r, c)."""
        logits, flat = self.session.run(None, {"r": np.asarray(r, np.float32), "c": np.asarray([c], np.float32)})
        deltas, i = {}, 0
        for l, n, bns in self.layout:
            d = {}
            for name, ch in bns:
                d[f"{name}.weight"], d[f"{name}.bias"] = flat[i : i + ch], flat[i + ch : i + 2 * ch]
                i += 2 * ch
            deltas[(l, n)] = d
        tree = canonical_tree(logits.argmax(-1).tolist())
        return tree, tree_adaptation(tree, deltas)
