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


def eval_grid(prefs: np.ndarray) -> dict:
    """The evaluation preferences at every budget, as an explicit compile grid: every
    network the table scores is compiled and calibrated."""
    points = [{"name": f"p{i}-c{c:g}", "r": [float(v) for v in r], "c": c}
              for i, r in enumerate(prefs) for c in BUDGETS]  # fmt: skip
    return {"preferences": points}


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
            deltas = models.adaptation(rt, c, tree)
            losses = ev.score(lambda x: ev.anchor.forward_tree(x, tree, deltas))[0]
            params, flops = ev.tree_cost(tree)
            rows.append({"losses": losses.tolist(), "flops": flops, "params": params, "sig": tree_signature(tree)})
        out[c] = rows
    return {"family": "dymu-tree", "by_c": out, "tasks": [t.name for t in ev.tasks]}


def slim_scores(run: str, prefs: np.ndarray, weights=None) -> dict:
    """As tree_scores; `weights`: the loss scaling w_i to report in (the tree run's, so both
    families' scaled losses and HV are on one scale)."""
    from edgecore.widths import widths_signature
    from trainer.slim.evaluate import SlimEvaluator

    ev = SlimEvaluator(run, "test")
    if weights is not None:
        ev.w = np.asarray(weights, float)
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


def compile_and_calibrate(run: str, root: Path, name: str, grid: dict, repeats: int = 30) -> tuple[Path, dict]:
    """The run compiled over `grid` and calibrated on this machine: (bundle, {signature: ms p50})."""
    import json

    from rich.console import Console

    from compiler.build import BuildConfig, build
    from runtime.calibrate import bench
    from runtime.latency import save_table

    path = root / f"{name}-grid.json"
    path.write_text(json.dumps(grid))
    out = root / name
    build(BuildConfig(checkpoint=f"{run}/model.ckpt", prefs=str(path), out=str(out), cache=str(root / "cache"),
                      backend="onnxruntime"),
          Console(quiet=True))  # fmt: skip
    table = bench(str(out), repeats=repeats, warmup=min(5, repeats))
    save_table(out, table)
    return out, table.stat("p50")


def budget_sweep(bundle: Path, n: int = 12, calls: int = 30) -> list[dict]:
    """Latency budgets from the fastest to the slowest compiled network (in the statistic
    set_budget fits by, the runtime's latency_stat): what it picks for uniform task
    weights, and that network's latency measured afresh over `calls` calls (same
    statistic). A budget is met when the fresh measurement fits it."""
    import time

    import runtime
    from edgecore.stats import percentiles

    rows = []
    with runtime.load(bundle) as rt:
        latency, k = rt.latency_table(), len(rt.task_names)
        x = np.random.default_rng(0).standard_normal((1, *rt.manifest.input.shape)).astype(np.float32)
        for budget in np.linspace(min(latency.values()), max(latency.values()), n):
            sig = rt.set_budget(float(budget), r=[1 / k] * k).entry.signature
            ms = []
            for _ in range(calls + 3):
                t0 = time.perf_counter()
                rt.run(x)
                ms.append((time.perf_counter() - t0) * 1e3)
            got = percentiles(ms[3:])[rt.latency_stat]
            rows.append({"budget_ms": float(budget), "calibrated_ms": latency[sig], "ms": got,
                         "met": bool(got <= budget), "signature": sig, "stat": rt.latency_stat})  # fmt: skip
    return rows


def measure(tree_run: str, slim_run: str, n_prefs: int = 20, ref: float = 2.0) -> dict:
    from trainer.checkpoint import read_checkpoint
    from trainer.evaluate import simplex_points

    res = {"families": {}}
    w = read_checkpoint(Path(tree_run) / "model.ckpt")["loss_weights"]  # one loss scale for both
    runs = {"dymu-tree": (tree_run, tree_scores), "slim-width": (slim_run, lambda r, p: slim_scores(r, p, w))}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (run, score) in runs.items():
            print(f"{name}: scoring", flush=True)
            scores = score(run, prefs := simplex_points(len(_tasks(run)), n_prefs, 123))
            rows, control = table_rows(scores, prefs, ref)
            print(f"{name}: compiling and calibrating", flush=True)
            bundle, latency = compile_and_calibrate(run, Path(tmp), name, eval_grid(prefs))
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
                "budget_sweep": budget_sweep(bundle),
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
        f"Test split, 20 preferences; losses of both families scaled by the tree run's w_i (1 / single-task "
        f"val loss); HV against [{res['hv_ref']:g}] per task.",
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
            f"| {llo:.2f}-{lhi:.2f} | {sum(met)} of {len(met)} ({fam['budget_sweep'][0]['stat']}) |"
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
        bx.plot([b["budget_ms"] for b in sweep], [b["ms"] for b in sweep], "o-", label=f"{name} (measured)")
    ax.set_xlabel("measured latency p50 (ms)")
    ax.set_ylabel("mean scaled test loss")
    lo = min(b["budget_ms"] for f in res["families"].values() for b in f["budget_sweep"])
    hi = max(b["budget_ms"] for f in res["families"].values() for b in f["budget_sweep"])
    bx.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="budget")
    bx.set_xlabel("latency budget (ms)")
    bx.set_ylabel("latency of the chosen network, measured (ms)")
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
