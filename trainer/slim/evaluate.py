"""`trainer eval` for the width-slimmable family: the paper-style table at several budgets.

Rows: the largest and the smallest configuration (static networks), and the
search's configurations for the evaluation preferences at c = 0, 0.5 and 1
(the budget between the smallest and the largest configuration's FLOPs). Columns
as the tree family's (HV of the scaled losses, uniformity, mean inference
params and GFLOPs), plus our controllability measure (trainer.evaluate).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edgecore.fileio import atomic_write_text
from trainer.checkpoint import load_checkpoint
from trainer.config import EvalConfig
from trainer.evaluate import Evaluator, controllability, simplex_points
from trainer.evaluate import _row as tree_row
from trainer.slim.family import FAMILY, cost_range, search_config

BUDGETS = (0.0, 0.5, 1.0)


class SlimEvaluator(Evaluator):
    """Scores and prices width configurations of a trained SlimNet on one split."""

    def __init__(self, run_dir: str | Path, split: str):
        cfg, models, self.payload = load_checkpoint(Path(run_dir) / "model.ckpt")
        super().__init__(cfg, models, self.payload, split)
        self.net = self.anchor
        self.net.set_output_size(self.data.hw)
        self._scores, self._costs = {}, {}

    def config(self, r, c: float) -> tuple[int, ...]:
        return search_config(self.net, np.asarray(r, float), c)

    def score(self, spec) -> tuple[np.ndarray, list[float]]:
        """Scaled losses w_i L_i over the split and each task's metric (cached per spec)."""
        if spec not in self._scores:
            self._scores[spec] = super().score(lambda x: self.net(x, spec)[0])
        return self._scores[spec]

    def cost(self, spec) -> tuple[int, float]:
        """(params, FLOPs) of the standalone configuration at the split's frame size."""
        if spec not in self._costs:
            self._costs[spec] = FAMILY.cost(self.models, spec, self.data.hw)
        return self._costs[spec]


def _row(ev: SlimEvaluator, name: str, specs, prefs, ref, cost_specs) -> dict:
    scored = [ev.score(s) for s in specs]
    costs = np.array([ev.cost(s) for s in cost_specs])
    losses, metrics = [s[0] for s in scored], [s[1] for s in scored]
    row = tree_row(name, losses, metrics, prefs, ref, costs[:, 0].mean(), costs[:, 1].mean(), 0.0, len(prefs) > 1)
    share = float(costs[:, 0].mean()) / ev.cost(ev.net.largest())[0]
    return row | {"param_share": share, "configs": [list(s) for s in specs]}


def evaluate_slim(run_dir: str | Path, ecfg: EvalConfig | None = None, console: Console | None = None) -> dict:
    """Evaluates a slim-width RUN_DIR/model.ckpt; writes RUN_DIR/eval.json and eval.md."""
    ev = SlimEvaluator(run_dir, (ecfg.split if ecfg else "test"))
    ecfg = ecfg or ev.cfg.eval
    ref, prefs = np.full(ev.n, ecfg.hv_ref), simplex_points(ev.n, ecfg.n_prefs, ecfg.seed)
    cost_prefs = simplex_points(ev.n, ecfg.n_cost_prefs, ecfg.seed + 1)
    big, small = ev.net.largest(), ev.net.smallest()
    rows = [_row(ev, f"Largest {big}", [big] * len(prefs), prefs, ref, [big])]
    rows.append(_row(ev, f"Smallest {small}", [small] * len(prefs), prefs, ref, [small]))
    for c in BUDGETS:
        specs = [ev.config(r, c) for r in prefs]
        costed = [ev.config(r, c) for r in cost_prefs]
        rows.append(_row(ev, f"Slim search, c={c:.1f}", specs, prefs, ref, costed) | {"c": c})
    ours = [r for r in rows if "c" in r]
    control = controllability(prefs, [np.array(r["losses"]) for r in ours], [r["c"] for r in ours],
                              [[ev.cost(tuple(s))[1] for s in r["configs"]] for r in ours])  # fmt: skip
    low, high = cost_range(ev.net)
    result = {
        "run": str(run_dir),
        "family": "slim-width",
        "split": ecfg.split,
        "hv_ref": ref.tolist(),
        "tasks": [t.describe() for t in ev.tasks],
        "preferences": prefs.tolist(),
        "rows": rows,
        "controllability": control,
        "flops_range": [low, high],
    }
    atomic_write_text(Path(run_dir) / "eval.json", json.dumps(result, indent=1))
    atomic_write_text(Path(run_dir) / "eval.md", markdown(result))
    (console or Console(width=120)).print(table(result))
    return result


def _cells(row: dict) -> list[str]:
    unif = "-" if row["uniformity"] is None else f"{row['uniformity']:.3f}"
    return [row["method"], f"{row['hv']:.4f}", unif, f"{row['params'] / 1e3:.1f}K", f"{row['gflops']:.4f}"]


def markdown(result: dict) -> str:
    ref = ",".join(f"{v:g}" for v in result["hv_ref"])
    head = ["Method", f"HV ↑ [{ref}]", "Unif. ↑", "Inf. params ↓", "GFLOPs ↓", *[t["name"] for t in result["tasks"]]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        lines.append("| " + " | ".join([*_cells(row), *[f"{v:.3f}" for v in row["metrics"]]]) + " |")
    c = result["controllability"]
    lines += ["", f"Controllability {c['score']:.3f} (tasks {c['task']:.3f}, cost {c['cost']:.3f})"]
    lo, hi = result["flops_range"]
    lines += [f"FLOPs range {lo / 1e9:.4f}-{hi / 1e9:.4f} GFLOPs ({hi / max(lo, 1):.1f}x)"]
    return "\n".join(lines) + "\n"


def table(result: dict) -> Table:
    t = Table(title=f"slim-width on {result['split']} (scaled losses w_i L_i)")
    for col in ("Method", "HV", "Unif.", "Inf. params", "GFLOPs"):
        t.add_column(col)
    for row in result["rows"]:
        t.add_row(*_cells(row))
    c = result["controllability"]
    t.caption = f"controllability {c['score']:.3f} (tasks {c['task']:.3f}, cost {c['cost']:.3f})"
    return t
