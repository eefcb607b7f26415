"""The edge hypernet alone: what trees it learns, per variant, scored on the run's path table.

    python -m benchmarks edge --run runs/scenes5 [--quick]

Each variant retrains only the edge stage on a copy of the run's frozen stages
(pretrain, single, scaling, affinity and the `exact` objective's path table) and scores
its argmax trees without any further training or test images: for 64 uniform
preferences at c = 0, 0.5 and 1, the node-parameter share of the tree (heads excluded),
how many distinct shares and trees, and the r-weighted task loss of the tree's paths
over the own-stream paths' (from the table, i.e. on the training images the table was
measured on; 1.00 = every task on its own stream); for each one-hot preference, whether
the task runs its own stream at c = 0 and the tree is minimal at c = 1. Minutes per
variant, where a full `benchmarks ablations` variant retrains the weight hypernet too.

Why it exists (issue 23): the scenes5 trees collapsed to one trunk at every preference,
and the question was which part of the edge stage caused it. The variants are the
shipped recipe, the recipe without the exact objective's temperature, the edge
hypernet's former conditioning (a 1/sqrt(dim) embedding into a ReLU MLP, rebuilt here
for the comparison) and that conditioning with a 3x weaker inactive loss.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import machine, write

VARIANTS = {
    "shipped": ([], False),
    "no exact temperature": (["method.exact_temperature=false"], False),
    "former conditioning": ([], True),
    "former conditioning, lambda_I 0.03": (["method.lambda_inactive=0.03"], True),
}
FROZEN = ("pretrain", "single", "scaling", "affinity", "paths")
C_GRID = (0.0, 0.5, 1.0)


def _former_conditioning(fit) -> None:
    """The edge hypernet as it was before issue 23: default embedding scale, ReLU body."""
    from torch import nn

    from trainer.models.hypernets import PreferenceEmbedding, mlp

    m, edge = fit.cfg.method, fit.models.edge
    edge.embed = PreferenceEmbedding(fit.n, m.embed_dim)
    edge.body = mlp(m.embed_dim, m.edge_hidden, nn.ReLU)


def train_variant(base: Path, out: Path, overrides: list[str], former: bool):
    """A Fit whose edge stage was retrained in `out` on the base run's frozen stages."""
    import torch

    from trainer.config import load_config
    from trainer.train import Fit

    shutil.rmtree(out, ignore_errors=True)  # a variant always starts from scratch
    (out / "stages").mkdir(parents=True)
    for stage in FROZEN:
        shutil.copy2(base / "stages" / f"{stage}.pt", out / "stages" / f"{stage}.pt")
    cfg = load_config(str(base / "config.yaml"), overrides)
    torch.manual_seed(cfg.seed)
    fit = Fit(cfg, out)
    if former:
        _former_conditioning(fit)
    fit.stage_edge()
    return fit


def score(fit) -> dict:
    """Tree statistics of the fit's edge hypernet, from its path table (module docstring)."""
    import torch

    from edgecore.tree import path, streams_per_layer
    from trainer.models.hypernets import simplex_points
    from trainer.train import used_cost

    edge, n, cost = fit.models.edge, fit.n, fit.node_cost().cpu()
    table = fit.state("paths")["table"]
    layers = table.dim() - 1
    own = torch.stack([table[(j,) + (j,) * layers] for j in range(n)])

    def rel_loss(tree, r) -> float:
        return float(sum(r[j] * table[(j, *path(tree, j)[:-1])] / own[j] for j in range(n)))

    prefs = torch.tensor(simplex_points(n, 64, 1), dtype=torch.float32)
    out = {}
    for c in C_GRID:
        trees = [edge.tree(r, c) for r in prefs]
        shares = [used_cost(t, cost) for t in trees]
        out[f"c={c}"] = {
            "share_mean": float(np.mean(shares)),
            "share_levels": sorted({round(s, 3) for s in shares}),
            "trees": len(set(trees)),
            "rel_loss": float(np.mean([rel_loss(t, r) for t, r in zip(trees, prefs)])),
        }
    eye = torch.eye(n)
    out["own_stream_c0"] = sum(path(edge.tree(eye[k], 0.0), k) == [k] * (layers + 1) for k in range(n))
    out["minimal_c1"] = sum(all(v == 1 for v in streams_per_layer(edge.tree(eye[k], 1.0))[:-1]) for k in range(n))
    out["params_c1_c0"] = out["c=1.0"]["share_mean"] / out["c=0.0"]["share_mean"]
    return out


def main(run: str, quick: bool = False, out: Path | None = None) -> dict:
    base = Path(run)
    missing = [s for s in FROZEN if not (base / "stages" / f"{s}.pt").is_file()]
    if missing or not (base / "config.yaml").is_file():
        print(
            f"benchmarks edge: {base} lacks stages {missing or ''} or config.yaml; it needs a run "
            "trained with method.edge_gradient=exact up to its edge stage (trainer fit)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    root = base.parent / f"{base.name}-edge{'-quick' if quick else ''}"  # beside the run, not in results/
    steps = []
    if quick:
        from trainer.config import load_config

        steps = [f"train.edge.steps={max(1, load_config(str(base / 'config.yaml')).train.edge.steps // 3)}"]
    result = {"machine": machine(), "run": str(base), "quick": quick, "tasks": None, "variants": {}}
    for name, (overrides, former) in VARIANTS.items():
        print(f"edge stage: {name}")
        fit = train_variant(base, root / name.replace(" ", "-").replace(",", ""), [*overrides, *steps], former)
        result["tasks"] = fit.n
        result["variants"][name] = {"overrides": overrides, "former_conditioning": former, **score(fit)}
    write("edge_stage", result, markdown(result), out)
    return result


def markdown(res: dict) -> str:
    lines = [
        "# The edge hypernet alone, per variant",
        "",
        f"Run `{res['run']}`: each variant retrains only the edge stage on its frozen stages; trees",
        "scored on its path table over 64 uniform preferences (share: node parameters, heads excluded;",
        "loss: r-weighted path loss over the own-stream path's, 1.00 = every task on its own stream).",
        "",
        "| variant | share c=0 (levels, min-max) | share c=0.5 | share c=1 | params c1/c0 | loss c=0 | loss c=1 "
        "| trees c=0 | one-hot own stream c=0 | one-hot minimal c=1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in res["variants"].items():
        c0, ch, c1 = v["c=0.0"], v["c=0.5"], v["c=1.0"]
        lv = c0["share_levels"]
        lines.append(
            f"| {name} | {c0['share_mean']:.3f} ({len(lv)}, {lv[0]:.2f}-{lv[-1]:.2f}) | {ch['share_mean']:.3f} "
            f"| {c1['share_mean']:.3f} | {v['params_c1_c0']:.3f} | {c0['rel_loss']:.3f} | {c1['rel_loss']:.3f} "
            f"| {c0['trees']} | {v['own_stream_c0']} of {res['tasks']} | {v['minimal_c1']} of {res['tasks']} |"
        )
    return "\n".join(lines) + "\n"
