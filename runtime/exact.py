"""Exact mode: the hypernets (exported to hypernets.onnx) evaluated at any
preference, the argmax tree, and its BN-folded weights computed in numpy with
the same `fold_tree` the compiler uses. The tree's engine must be compiled in
the bundle; the runtime falls back to the nearest grid point otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgecore.fold import fold_tree
from edgecore.paths import confine
from edgecore.tree import canonical_tree, parse_node_key
from runtime.errors import EdgeRuntimeError

PLAN_VERSION = 1


class ExactResolver:
    def __init__(self, bundle: Path, entry: dict):
        import onnxruntime as ort

        from runtime.backends.onnxruntime import session_options

        files = {k: confine(bundle, entry[k], f"hypernets.{k}", EdgeRuntimeError) for k in ("plan", "anchor", "graph")}
        try:
            plan = json.loads(files["plan"].read_text())
            with np.load(files["anchor"], allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            so = session_options(1, "ORT_ENABLE_ALL")
            self.session = ort.InferenceSession(str(files["graph"]), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # missing files, bad JSON/npz/onnx: one message
            raise EdgeRuntimeError(f"bundle hypernets are unreadable ({exc.__class__.__name__}: {exc})") from None
        if plan.get("version") != PLAN_VERSION:
            raise EdgeRuntimeError(
                f"hypernets plan version {plan.get('version')!r} is not supported (expected {PLAN_VERSION})"
            )
        self.n_tasks, self.layout = plan["n_tasks"], plan["layout"]
        try:
            self._read_pairs(plan["pairs"], arrays)
        except ValueError as exc:
            raise EdgeRuntimeError(f"bundle hypernets plan is malformed: {exc}") from None

    def _read_pairs(self, pairs_by_key: dict, arrays: dict) -> None:
        self.nodes, self.heads = {}, []
        for key, pairs in pairs_by_key.items():
            fold = (
                {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(key + "/")},
                [tuple(p) for p in pairs],
            )
            if key.startswith("heads."):
                self.heads.append((int(key.split(".")[1]), fold))
            else:
                self.nodes[parse_node_key(key)] = fold
        self.heads = [f for _, f in sorted(self.heads)]

    def __call__(self, r, c: float) -> tuple[tuple, dict]:
        """(canonical argmax tree, {node: {'<bn>.weight|bias': delta}}) for (r, c)."""
        logits, flat = self.session.run(None, {"r": np.asarray(r, np.float32), "c": np.asarray([c], np.float32)})
        deltas, i = {}, 0
        for l, n, bns in self.layout:
            d = {}
            for name, ch in bns:
                d[f"{name}.weight"], d[f"{name}.bias"] = flat[i : i + ch], flat[i + ch : i + 2 * ch]
                i += 2 * ch
            deltas[(l, n)] = d
        return canonical_tree(logits.argmax(-1).tolist()), deltas

    def weights(self, tree, deltas) -> dict[str, np.ndarray]:
        return fold_tree(self.nodes, self.heads, tree, deltas)
