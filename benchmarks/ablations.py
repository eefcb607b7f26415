"""The paper's Table 6 ablations and Figure 8's tau sweep, on a finished run.

Each variant changes only the edge hypernet's objective, so it reuses the run's
pretrain / single / scaling / affinity / path-table / PHN-BN stages (hard links into
RUN-ablations[-quick]/<variant>/stages, beside the run) and retrains the edge and weight hypernets with the
variant's `--set` overrides, through the same `trainer.train.fit`. Then, for
c in `C_GRID`, the adapted model ("ours") is scored on the test split: HV,
uniformity and mean inference params over the eval preferences.

Variants (Table 6, on the shipped recipe: exact task term, graded inactive loss,
cost term, edge preferences from Dirichlet(1), no active loss): without the
inactive loss; the paper's ungraded inactive loss; edge preferences from the
paper's Dirichlet(0.2); without the cost term; with the paper's active loss
(lambda_A = 1). The paper's other rows change nothing on this recipe, by
construction: the layer weighting (L - l) / L and the task affinity only weight
the active loss, and "all tasks active" leaves the inactive loss nothing to act
on, which is the "without the inactive loss" row.
Figure 8: the shipped recipe at tau in TAUS (its tau = 0.6 / N is the base row).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import machine, write

ABLATIONS = {
    "ours (shipped recipe)": [],
    "no inactive loss": ["method.lambda_inactive=0.0"],
    "ungraded inactive loss (paper)": ["method.graded_inactive=false"],
    "edge preferences Dirichlet(0.2) (paper)": ["method.edge_dirichlet=0.2"],
    "no cost term": ["method.lambda_cost=0.0"],
    "+ active loss (paper), lambda_A 1": ["method.lambda_active=1.0"],
}
TAUS = (0.1, 0.3)
C_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
REUSED = ("pretrain", "single", "scaling", "affinity", "paths", "phn_bn")  # frozen: the hypernets never change them


def variant_run(base: Path, root: Path, name: str, overrides: list[str], steps: list[str]) -> Path:
    """Trains (or resumes) one variant in root/<slug>, sharing the base run's frozen stages."""
    from trainer.config import load_config
    from trainer.train import fit

    out = root / re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")
    (out / "stages").mkdir(parents=True, exist_ok=True)
    for stage in REUSED:
        src, dst = base / "stages" / f"{stage}.pt", out / "stages" / f"{stage}.pt"
        if src.is_file() and not dst.exists():
            _link_or_copy(src, dst)
    cfg = load_config(str(base / "config.yaml"), [*overrides, *steps])
    fit(cfg, out)  # resumes; refuses a folder that holds another config instead of scoring the wrong model
    return out


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


def score_over_c(run: Path, c_grid=C_GRID) -> dict:
    """HV, uniformity and mean params share of the adapted model at each c."""
    import torch

    from trainer.checkpoint import load_checkpoint
    from trainer.evaluate import Evaluator, hypervolume, simplex_points, uniformity

    cfg, models, payload = load_checkpoint(run / "model.ckpt")
    ev = Evaluator(cfg, models, payload, cfg.eval.split)
    prefs = simplex_points(ev.n, cfg.eval.n_prefs, cfg.eval.seed)
    cost_prefs = simplex_points(ev.n, 300, cfg.eval.seed + 1)
    ref = np.full(ev.n, cfg.eval.hv_ref)
    out = {"c": list(c_grid), "hv": [], "uniformity": [], "param_share": []}
    for c in c_grid:
        losses = []
        for r in prefs:
            rt = torch.tensor(r, dtype=torch.float32)
            tree = models.edge.tree(rt, c)
            deltas = models.adaptation(rt, c, tree)
            losses.append(ev.score(lambda x: ev.anchor.forward_tree(x, tree, deltas))[0])
        shares = [
            ev.tree_cost(models.edge.tree(torch.tensor(r, dtype=torch.float32), c))[0] / ev.full_params
            for r in cost_prefs
        ]
        out["hv"].append(hypervolume(np.array(losses), ref))
        out["uniformity"].append(float(np.mean([uniformity(lo, r) for lo, r in zip(losses, prefs)])))
        out["param_share"].append(float(np.mean(shares)))
    return out


def main(run: str, quick: bool = False, out: Path | None = None) -> dict:
    base = Path(run)
    if not (base / "model.ckpt").is_file():
        print(f"benchmarks ablations: {base}/model.ckpt does not exist (run trainer fit first)", file=sys.stderr)
        raise SystemExit(2)
    # Variant runs sit beside the base run, not in results/; quick and full runs never share a folder.
    root = base.parent / f"{base.name}-ablations{'-quick' if quick else ''}"
    from trainer.config import load_config

    cfg = load_config(str(base / "config.yaml"))
    # --quick: a third of the edge and weight steps (the temperature schedule scales with them).
    steps = (
        [
            f"train.edge.steps={max(1, cfg.train.edge.steps // 3)}",
            f"train.weight.steps={max(1, cfg.train.weight.steps // 3)}",
        ]
        if quick
        else []
    )
    variants = dict(ABLATIONS)
    variants.update({f"tau={t}": [f"method.tau={t}"] for t in TAUS})
    result = {"machine": machine(), "run": str(base), "quick": quick, "steps": steps, "variants": {}}
    for name, overrides in variants.items():
        print(f"ablations: {name}")
        # The unchanged recipe at the run's own steps is the base run itself: score it, don't retrain it.
        vrun = base if not overrides and not steps else variant_run(base, root, name, overrides, steps)
        result["variants"][name] = {"overrides": overrides, **score_over_c(vrun)}
    d = write("ablations", result, markdown(result), out)
    plot(result, d / "fig8_tau_sweep.png")
    return result


def markdown(res: dict) -> str:
    lines = [
        "# Table 6 ablations and Figure 8 tau sweep",
        "",
        f"Run `{res['run']}`; each variant retrains the edge and weight hypernets "
        f"({'quick: ' + ', '.join(res['steps']) if res['quick'] else 'the run’s own step counts'}).",
        "",
        "| variant | HV c=0 | HV c=1 | Unif. c=0 | Unif. c=1 | params share c=0 | params share c=1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in res["variants"].items():
        lines.append(
            f"| {name} | {v['hv'][0]:.4f} | {v['hv'][-1]:.4f} | {v['uniformity'][0]:.3f} | "
            f"{v['uniformity'][-1]:.3f} | {v['param_share'][0]:.3f} | {v['param_share'][-1]:.3f} |"
        )
    lines += [
        "",
        "HV against c (Figure 8):",
        "",
        "| tau | " + " | ".join(f"c={c}" for c in C_GRID) + " |",
        "|---|" + "---|" * len(C_GRID),
    ]
    for name, v in _tau_rows(res):
        lines.append(f"| {name} | " + " | ".join(f"{h:.4f}" for h in v["hv"]) + " |")
    return "\n".join(lines) + "\n"


def _tau_rows(res: dict):
    """(tau label, variant) for Figure 8: the shipped recipe (default tau) and the sweep."""
    rows = [(name[4:], v) for name, v in res["variants"].items() if name.startswith("tau=")]
    base = res["variants"].get("ours (shipped recipe)")
    return ([("0.6/N (default)", base)] if base else []) + rows


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, v in _tau_rows(res):
        axes[0].plot(v["c"], v["hv"], marker="o", label=f"tau={name}")
        axes[1].plot(v["c"], v["param_share"], marker="o", label=f"tau={name}")
    axes[0].set(xlabel="c", ylabel="hypervolume", title="HV vs c (Fig. 8)")
    axes[1].set(xlabel="c", ylabel="mean params share", title="inference params vs c")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
