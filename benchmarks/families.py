"""The two model families side by side on the same data, grid and machine:
`python -m benchmarks families --run runs/scenes3 --slim-run runs/scenes3-slim`.

For each family, at budgets c = 0, 0.25, 0.5, 0.75, 1 over the same evaluation
preferences: HV and uniformity of the scaled test losses, mean inference params
and GFLOPs, and our controllability measure (trainer.evaluate.controllability).
Both runs are compiled from the same grid into bundles, calibrated on this CPU,
and each configuration's measured latency is reported; a sweep of latency
budgets through the runtime's `set_budget` shows whether cost follows the
budget (the fraction of budgets met) and where each family's cost range lies.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, write

BUDGETS = (0.0, 0.25, 0.5, 0.75, 1.0)
GRID = {"lattice": {"r_step": 0.25, "c": list(BUDGETS)}}


def tree_scores(run: str, prefs: np.ndarray) -> dict:
    """The tree family: per c, every preference's scaled test losses, FLOPs, params, signature."""
    from edgecore.tree import tree_signature
    from trainer.checkpoint import load_checkpoint
    from trainer.evaluate import Evaluator

    cfg, models, payload = load_checkpoint(Path(run) / "model.ckpt")
    ev = Evaluator(cfg, models, payload, "test")
    out = {}
    for c in BUDGETS:
        rows = []
        for r in prefs:
            rt = torch.tensor(r, dtype=torch.float32)
            tree = models.edge.tree(rt, c)
            losses = ev.score(lambda x: ev.anchor.forward_tree(x, tree, models.weight(rt, c)))[0]
            params, flops = ev.tree_cost(tree)
            rows.append({"losses": losses.tolist(), "flops": flops, "params": params, "sig": tree_signature(tree)})
        out[c] = rows
    return {"family": "dymu-tree", "by_c": out, "tasks": [t.name for t in ev.tasks]}


def slim_scores(run: str, prefs: np.ndarray) -> dict:
    from edgecore.widths import widths_signature
    from trainer.slim.evaluate import SlimEvaluator

    ev = SlimEvaluator(run, "test")
    out = {}
    for c in BUDGETS:
        rows = []
        for r in prefs:
            spec = ev.config(r, c)
            params, flops = ev.cost(spec)
            rows.append(
                {"losses": ev.score(spec)[0].tolist(), "flops": flops, "params": params, "sig": widths_signature(spec)}
            )
        out[c] = rows
    return {"family": "slim-width", "by_c": out, "tasks": [t.name for t in ev.tasks]}


def table_rows(scores: dict, prefs: np.ndarray, ref: float) -> tuple[list[dict], dict]:
    from trainer.evaluate import controllability, hypervolume, uniformity

    rows = []
    for c, pts in scores["by_c"].items():
        losses = np.array([p["losses"] for p in pts])
        rows.append(
            {
                "c": c,
                "hv": hypervolume(losses, np.full(losses.shape[1], ref)),
                "uniformity": float(np.mean([uniformity(l, r) for l, r in zip(losses, prefs)])),
                "params": float(np.mean([p["params"] for p in pts])),
                "gflops": float(np.mean([p["flops"] for p in pts])) / 1e9,
                "mean_scaled_loss": float(losses.mean()),
            }
        )
    by = scores["by_c"]
    control = controllability(prefs, [np.array([p["losses"] for p in by[c]]) for c in by], list(by),
                              [[p["flops"] for p in by[c]] for c in by])  # fmt: skip
    return rows, control


def compile_and_calibrate(run: str, root: Path, name: str, grid: dict = GRID, repeats: int = 30) -> tuple[Path, dict]:
    """The run compiled over `grid` and calibrated on this machine: (bundle, {signature: ms p50})."""
    import json

    from rich.console import Console

    from compiler.build import BuildConfig, build
    from runtime.calibrate import bench
    from runtime.latency import save_table

    path = root / f"{name}-grid.json"
    path.write_text(json.dumps(grid))
    out = root / name
    build(BuildConfig(checkpoint=f"{run}/model.ckpt", prefs=str(path), out=str(out), cache=str(root / "cache")),
          Console(quiet=True))  # fmt: skip
    table = bench(str(out), repeats=repeats, warmup=min(5, repeats))
    save_table(out, table)
    return out, table.stat("p50")


def budget_sweep(bundle: Path, latency: dict, n: int = 12) -> list[dict]:
    """Latency budgets from the fastest to the slowest compiled network: what set_budget
    picks (for uniform task weights) and its calibrated latency."""
    import runtime

    lo, hi = min(latency.values()), max(latency.values())
    rows = []
    with runtime.load(bundle) as rt:
        k = len(rt.task_names)
        for budget in np.linspace(lo, hi, n):
            sel = rt.set_budget(float(budget), r=[1 / k] * k)
            ms = latency[sel.entry.signature]
            rows.append(
                {"budget_ms": float(budget), "ms": ms, "met": bool(ms <= budget), "signature": sel.entry.signature}
            )
    return rows


def measure(tree_run: str, slim_run: str, n_prefs: int = 20, ref: float = 2.0) -> dict:
    from trainer.evaluate import simplex_points

    res = {"families": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run, score in (("dymu-tree", tree_run, tree_scores), ("slim-width", slim_run, slim_scores)):
            print(f"{name}: scoring", flush=True)
            scores = score(run, prefs := simplex_points(len(_tasks(run)), n_prefs, 123))
            rows, control = table_rows(scores, prefs, ref)
            print(f"{name}: compiling and calibrating", flush=True)
            bundle, latency = compile_and_calibrate(run, Path(tmp), name)
            for row in rows:  # latency of the configurations each budget's preferences run
                row["latency_ms"] = float(np.mean([latency.get(p["sig"], np.nan) for p in scores["by_c"][row["c"]]]))
            res["families"][name] = {
                "run": run,
                "rows": rows,
                "controllability": control,
                "latency_ms": latency,
                "latency_range_ms": [min(latency.values()), max(latency.values())],
                "flops_range_g": [
                    min(p["flops"] for c in BUDGETS for p in scores["by_c"][c]) / 1e9,
                    max(p["flops"] for c in BUDGETS for p in scores["by_c"][c]) / 1e9,
                ],  # fmt: skip
                "budget_sweep": budget_sweep(bundle, latency),
            }
    res["hv_ref"] = ref
    return res


def _tasks(run: str) -> list:
    from trainer.checkpoint import read_checkpoint

    return read_checkpoint(Path(run) / "model.ckpt")["tasks"]


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        f"# Model families side by side ({m['cpu']}, {m['cores']} cores)",
        "",
        f"Test split, 20 preferences; HV of the scaled losses against [{res['hv_ref']:g}] per task.",
        "",
        "| family | c | HV ↑ | uniformity ↑ | mean scaled loss ↓ | inf. params | GFLOPs | latency p50 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, fam in res["families"].items():
        for r in fam["rows"]:
            lines.append(
                f"| {name} | {r['c']:.2f} | {r['hv']:.4f} | {r['uniformity']:.3f} | {r['mean_scaled_loss']:.3f} | "
                f"{r['params'] / 1e3:.1f}K | {r['gflops']:.4f} | {r['latency_ms']:.2f} |"
            )
    lines += ["", "| family | controllability | task control | cost control | GFLOPs range | latency range (ms) | "
              "latency budgets met |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, fam in res["families"].items():
        c, (flo, fhi), (llo, lhi) = fam["controllability"], fam["flops_range_g"], fam["latency_range_ms"]
        met = [b["met"] for b in fam["budget_sweep"]]
        lines.append(
            f"| {name} | {c['score']:.3f} | {c['task']:.3f} | {c['cost']:.3f} | {flo:.4f}-{fhi:.4f} ({fhi / flo:.1f}x) "
            f"| {llo:.2f}-{lhi:.2f} | {sum(met)} of {len(met)} |"
        )
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for name, fam in res["families"].items():
        rows = fam["rows"]
        ax.plot([r["latency_ms"] for r in rows], [r["mean_scaled_loss"] for r in rows], "o-", label=name)
        for r in rows:
            ax.annotate(f"c={r['c']:g}", (r["latency_ms"], r["mean_scaled_loss"]), fontsize=7)
        sweep = fam["budget_sweep"]
        bx.plot([b["budget_ms"] for b in sweep], [b["ms"] for b in sweep], "o-", label=name)
    ax.set_xlabel("measured latency p50 (ms)")
    ax.set_ylabel("mean scaled test loss")
    lo = min(b["budget_ms"] for f in res["families"].values() for b in f["budget_sweep"])
    hi = max(b["budget_ms"] for f in res["families"].values() for b in f["budget_sweep"])
    bx.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="budget")
    bx.set_xlabel("latency budget (ms)")
    bx.set_ylabel("latency of the chosen network (ms)")
    for a in (ax, bx):
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(tree_run: str, slim_run: str, out=None) -> dict:
    res = {"machine": machine(), **measure(tree_run, slim_run)}
    d = write("families", res, markdown(res), out)
    plot(res, d / "families.png")
    print(markdown(res))
    return res
