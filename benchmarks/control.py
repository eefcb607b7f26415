"""Controllability on our data: the trainer's eval table (paper Tables 1-3),
Figure 5 (active-parameter share over the simplex, ours vs PHN-BN, c = 0 / 0.5 / 1),
Figure 7 (each task's loss against its own preference, marginalised, c = 0 / 1,
with and without adaptation) and the measured latency over the simplex
(c = 0 / 1) from the bundle's calibrated latency table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.common import machine, write


def _ternary(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(r)
    return r[:, 1] + r[:, 2] / 2, r[:, 2] * np.sqrt(3) / 2


def _corners(ax, names) -> None:
    """Task names at the simplex corners (r = one-hot)."""
    for (x, y), name, va in zip([(0, 0), (1, 0), (0.5, np.sqrt(3) / 2)], names, ["top", "top", "bottom"]):
        ax.annotate(
            name,
            (x, y),
            xytext=(0, -6 if va == "top" else 6),
            textcoords="offset points",
            ha="center",
            va=va,
            fontsize=8,
        )


def _ternary_panel(ax, x, y, values, title: str, names, **scatter):
    """One simplex panel: points coloured by `values`, task names at the corners."""
    sc = ax.scatter(x, y, c=values, **scatter)
    ax.set_title(title, fontsize=9, pad=14)
    _corners(ax, names)
    ax.set_aspect("equal")
    ax.axis("off")
    return sc


def eval_table(run: str) -> dict:
    path = Path(run) / "eval.json"
    if not path.is_file():
        from trainer.evaluate import evaluate

        evaluate(run)
    return json.loads(path.read_text())


def shares(run: str, step: float) -> dict:
    """Param share of ours over a simplex lattice for c in {0, 0.5, 1}; PHN-BN's is constant."""
    import torch

    from compiler.grid import simplex_lattice
    from edgecore.tree import canonical_tree
    from trainer.checkpoint import load_checkpoint
    from trainer.cost import tree_cost
    from trainer.models.blocks import count_params

    cfg, models, payload = load_checkpoint(Path(run) / "model.ckpt")
    anchor, full = models.anchor, count_params(models.anchor)
    shape, cache = tuple(payload["input_spec"]["shape"]), {}
    lattice = simplex_lattice(anchor.n_tasks, step)
    out = {"r": [list(r) for r in lattice], "ours": {}}
    for c in (0.0, 0.5, 1.0):
        vals = []
        for r in lattice:
            tree = canonical_tree(models.edge.tree(torch.tensor(r, dtype=torch.float32), c))
            if tree not in cache:
                cache[tree] = tree_cost(anchor, tree, shape[1])[0] / full
            vals.append(cache[tree])
        out["ours"][str(c)] = vals
    phn = torch.nn.Sequential(*models.phn_bn.network_modules())
    out["phn_bn"] = count_params(phn) / full
    return out


def marginal_losses(run: str, n_prefs: int) -> dict:
    """Scaled test loss of each task vs its own preference r_i, binned, for c = 0 / 1, adapted or not."""
    import torch

    from trainer.checkpoint import load_checkpoint
    from trainer.evaluate import Evaluator, simplex_points

    cfg, models, payload = load_checkpoint(Path(run) / "model.ckpt")
    ev = Evaluator(cfg, models, payload, "test")
    prefs = simplex_points(ev.n, n_prefs, 123)
    res = {"r": prefs.tolist(), "tasks": [t.name for t in ev.tasks]}
    for c in (0.0, 1.0):
        for adapt in (False, True):
            losses = []
            for r in prefs:
                rt = torch.tensor(r, dtype=torch.float32)
                tree = models.edge.tree(rt, c)
                deltas = models.adaptation(rt, c, tree) if adapt else None
                with torch.no_grad():
                    losses.append(ev.score(lambda x: ev.anchor.forward_tree(x, tree, deltas))[0].tolist())
            res[f"c={c:g},{'adapted' if adapt else 'unadapted'}"] = losses
    return res


def simplex_latency(bundle: str) -> dict | None:
    from runtime.manifest import load_manifest

    m = load_manifest(bundle)
    tables = sorted((Path(bundle) / "latency").glob("*.json")) if (Path(bundle) / "latency").is_dir() else []
    if not tables:
        return None
    table = json.loads(tables[0].read_text())["signatures"]
    pts = [{"r": list(e.r), "c": e.c, "p50": table[e.signature]["p50"], "signature": e.signature} for e in m.grid]
    return {"table": tables[0].name, "points": pts, "cost_ratio": cost_latency_ratios(pts)}


def cost_latency_ratios(points: list[dict]) -> dict | None:
    """Per task preference r on the grid: calibrated p50 at c = 1 over p50 at c = 0
    (what the cost preference buys on this device), and the share of r at or below 0.85;
    the same over the r whose c = 1 point runs another sub-network than c = 0 (for a
    skewed r both are often already one trunk, and the ratio is 1 by construction)."""
    by_r = {}
    for p in points:
        by_r.setdefault(tuple(round(v, 6) for v in p["r"]), {})[p["c"]] = p
    pairs = [(v[0.0], v[1.0]) for v in by_r.values() if 0.0 in v and 1.0 in v]
    if not pairs:
        return None
    ratios = [b["p50"] / a["p50"] for a, b in pairs]
    changed = [b["p50"] / a["p50"] for a, b in pairs if a.get("signature") != b.get("signature")]
    q = np.percentile(ratios, [0, 10, 50, 90, 100])
    return {
        "n": len(ratios),
        "min": q[0],
        "p10": q[1],
        "median": q[2],
        "p90": q[3],
        "max": q[4],
        "share_at_most_0.85": float(np.mean(np.array(ratios) <= 0.85)),
        "ratios": ratios,
        "n_changed": len(changed),
        "changed_median": float(np.median(changed)) if changed else None,
        "changed_share_at_most_0.85": float(np.mean(np.array(changed) <= 0.85)) if changed else None,
    }


def plots(res: dict, d: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    if len(res["shares"]["r"][0]) == 3:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
        x, y = _ternary(np.array(res["shares"]["r"]))
        for ax, (c, vals) in zip(axes, res["shares"]["ours"].items()):
            sc = _ternary_panel(
                ax,
                x,
                y,
                vals,
                f"ours, c={c} (PHN-BN: {res['shares']['phn_bn']:.2f} everywhere)",
                res["losses"]["tasks"],
                cmap="viridis",
                vmin=0.4,
                vmax=1.0,
                s=25,
            )
        fig.colorbar(sc, ax=axes, label="active parameter share")
        fig.savefig(d / "fig5_param_share.png", dpi=110)
        plt.close(fig)
        files.append("fig5_param_share.png")
    fig, axes = plt.subplots(1, len(res["losses"]["tasks"]), figsize=(4 * len(res["losses"]["tasks"]), 3.2))
    r = np.array(res["losses"]["r"])
    bins = np.linspace(0, 1, 6)
    for i, (ax, task) in enumerate(zip(np.atleast_1d(axes), res["losses"]["tasks"])):
        idx = np.clip(np.digitize(r[:, i], bins) - 1, 0, len(bins) - 2)
        for key, vals in res["losses"].items():
            if not key.startswith("c="):
                continue
            v = np.array(vals)[:, i]
            means = [v[idx == b].mean() if (idx == b).any() else np.nan for b in range(len(bins) - 1)]
            ax.plot((bins[:-1] + bins[1:]) / 2, means, "o-", label=key, ms=3)
        ax.set_xlabel(f"r_{task}")
        ax.set_ylabel(f"scaled loss {task}")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(d / "fig7_loss_vs_preference.png", dpi=110)
    plt.close(fig)
    files.append("fig7_loss_vs_preference.png")
    if res.get("latency") and len(res["latency"]["points"][0]["r"]) == 3:
        fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.6))
        pts = res["latency"]["points"]
        vmax = max(p["p50"] for p in pts)
        for ax, c in zip(axes, (0.0, 1.0)):
            sel = [p for p in pts if p["c"] == c]
            ax.axis("off")
            if not sel:
                ax.set_title(f"c={c:g}: not in the grid", fontsize=9)
                continue
            x, y = _ternary(np.array([p["r"] for p in sel]))
            sc = _ternary_panel(
                ax,
                x,
                y,
                [p["p50"] for p in sel],
                f"measured p50 latency, c={c:g}",
                res["losses"]["tasks"],
                cmap="magma",
                vmin=0,
                vmax=vmax,
                s=30,
            )
        fig.colorbar(sc, ax=axes, label="ms")
        fig.savefig(d / "latency_over_simplex.png", dpi=110)
        plt.close(fig)
        files.append("latency_over_simplex.png")
    return files


def markdown(res: dict) -> str:
    from trainer.evaluate import markdown_tables

    s = res["shares"]
    lines = [
        f"# Controllability ({res['run']})",
        "",
        markdown_tables(res["eval"]),
        "",
        "## Active parameter share over the simplex (Figure 5)",
        "",
        "| c | ours: min / mean / max | PHN-BN |",
        "|---|---|---|",
    ]
    for c, vals in s["ours"].items():
        lines.append(f"| {c} | {min(vals):.3f} / {np.mean(vals):.3f} / {max(vals):.3f} | {s['phn_bn']:.3f} |")
    lines += [
        "",
        "## Scaled loss of each task vs its own preference (Figure 7; mean over preferences)",
        "",
        "| setting | " + " | ".join(f"{t}: r<0.2 / r>0.6" for t in res["losses"]["tasks"]) + " |",
        "|---|" + "---|" * len(res["losses"]["tasks"]),
    ]
    r = np.array(res["losses"]["r"])
    for key, vals in res["losses"].items():
        if key.startswith("c="):
            v = np.array(vals)
            cells = [
                f"{v[r[:, i] < 0.2, i].mean():.2f} / {v[r[:, i] > 0.6, i].mean():.2f}" if (r[:, i] > 0.6).any() else "-"
                for i in range(v.shape[1])
            ]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if res.get("latency"):
        lines += ["", f"Measured latency over the grid from `{res['latency']['table']}`: see latency_over_simplex.png."]
        q = res["latency"].get("cost_ratio")
        if q:
            lines += [
                "",
                "Calibrated p50 at c = 1 over c = 0 for the same r "
                f"({q['n']} task preferences): min {q['min']:.2f}, p10 {q['p10']:.2f}, median {q['median']:.2f}, "
                f"p90 {q['p90']:.2f}, max {q['max']:.2f}; at or below 0.85 for {q['share_at_most_0.85']:.0%} of r.",
            ]
            if q.get("n_changed"):
                lines += [
                    "",
                    f"For the {q['n_changed']} r whose c = 1 point runs another sub-network than c = 0: "
                    f"median {q['changed_median']:.2f}, at or below 0.85 for "
                    f"{q['changed_share_at_most_0.85']:.0%} of them.",
                ]
    return "\n".join(lines) + "\n"


def main(run: str, bundle: str | None = None, quick: bool = False, out=None) -> dict:
    res = {
        "machine": machine(),
        "run": str(run),
        "eval": eval_table(run),
        "shares": shares(run, 0.1 if quick else 0.05),
        "losses": marginal_losses(run, 20 if quick else 60),
        "latency": simplex_latency(bundle) if bundle else None,
    }
    d = write("control", res, markdown(res), out)
    res["plots"] = plots(res, d)
    print(markdown(res))
    return res
