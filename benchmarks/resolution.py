"""P1 against input size: does engine latency track FLOPs once the convs are big?

At the trained 32x32 input the sub-networks' latency ratio spreads widely
around their FLOPs ratio (latency.py; the profile says per-call overhead of
small convs). The nets are fully convolutional, so here every signature and the
full anchor are re-exported with the bundle's folded weights at larger square
inputs and timed as in latency.py (full-anchor engine and sub-network engine in
consecutive blocks per signature). FLOPs are counted at each size. Outputs at
sizes other than the trained one are not meant to be accurate: this measures
the cost model only."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import machine, pct, write
from benchmarks.latency import _timed


def _engine(module, shape, names, path: Path):
    """(ORT engine path, weights) of a folded tree module exported at `shape`."""
    from compiler.engines import get_builder
    from compiler.export import export_graph
    info = export_graph(module, shape, names, path.with_suffix(".onnx"))
    get_builder("onnxruntime").build(path.with_suffix(".onnx"), path.with_suffix(".engine.onnx"), "fp32",
                                     info.weight_names)
    return path.with_suffix(".engine.onnx"), module.weights()


def _size_rows(anchor, m, bundle, size, repeats, warmup, threads, tmp: Path) -> list[dict]:
    import torch

    from compiler.derive import TreeModule
    from runtime.backends import get_runner
    from runtime.weights import load_weights
    from trainer.cost import tree_cost
    from trainer.tree import identity_tree
    names, shape = [t.name for t in m.tasks], (3, size, size)
    xs = [np.random.default_rng(i).standard_normal((1, *shape)).astype(np.float32) for i in range(4)]
    full_tree = identity_tree(anchor.n_layers, anchor.n_tasks)
    full_flops = tree_cost(anchor, full_tree, size)[1]
    full = get_runner("onnxruntime")(*_engine(TreeModule(anchor, full_tree), shape, names, tmp / f"full-{size}"),
                                     threads=threads).activate()
    rows = []
    try:
        for sig, info in m.signatures.items():
            entry = next(e for e in m.grid if e.signature == sig)
            sub = TreeModule(anchor, info.tree)
            sub.load_state_dict({k: torch.from_numpy(v) for k, v in
                                 load_weights(Path(bundle) / "weights" / f"{entry.weights}.npz").items()})
            with get_runner("onnxruntime")(*_engine(sub, shape, names, tmp / f"{sig}-{size}"),
                                           threads=threads) as runner:
                t_full, t_sub = _timed(full.run, xs, warmup, repeats), _timed(runner.run, xs, warmup, repeats)
            flops_ratio = tree_cost(anchor, info.tree, size)[1] / full_flops
            latency_ratio = pct(t_sub)["p50"] / pct(t_full)["p50"]
            rows.append({"signature": sig, "flops_ratio": flops_ratio, "latency_ratio": latency_ratio,
                         "tracking": latency_ratio / flops_ratio, "engine": pct(t_sub), "engine_full": pct(t_full),
                         "full_gflops": full_flops / 1e9})
    finally:
        full.close()
    return rows


def measure(bundle: str, sizes=(32, 64, 128), repeats: int = 50, warmup: int = 5, threads: int = 0) -> dict:
    import torch

    from runtime.manifest import load_manifest
    from trainer.checkpoint import load_checkpoint
    m = load_manifest(bundle)
    anchor = load_checkpoint(m.model["checkpoint"])[1].anchor.eval()
    out = {"bundle": str(bundle), "trained_size": m.input.shape[1], "repeats": repeats,
           "threads": {"onnxruntime": threads or "all"}, "sizes": {}}
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            rows = _size_rows(anchor, m, bundle, size, repeats, warmup, threads, Path(tmp))
            track = [r["tracking"] for r in rows]
            out["sizes"][str(size)] = {"rows": rows, "min": min(track), "median": float(np.median(track)),
                                       "max": max(track), "met": bool(max(track) <= 1.15 and min(track) >= 1 / 1.15),
                                       "full_engine_ms": rows[0]["engine_full"]["p50"],
                                       "full_gflops": rows[0]["full_gflops"]}
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    lo = min(min(r["flops_ratio"] for r in s["rows"]) for s in res["sizes"].values())
    for size, s in res["sizes"].items():
        ax.scatter([r["flops_ratio"] for r in s["rows"]], [r["latency_ratio"] for r in s["rows"]], s=16,
                   label=f"{size}x{size}")
    xs = np.linspace(lo * 0.98, 1.0, 2)
    ax.plot(xs, xs, c="k", lw=1, label="latency = FLOPs")
    ax.fill_between(xs, xs / 1.15, xs * 1.15, color="gray", alpha=0.2, label="within 1.15x")
    ax.set_xlabel("FLOPs of sub-network / full anchor")
    ax.set_ylabel("p50 latency of sub-network / full anchor")
    ax.set_title("P1 by input size (ONNX Runtime engines)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(res: dict) -> str:
    lines = [f"# P1 by input size ({res['machine']['cpu']}, {res['machine']['cores']} cores, ORT threads "
             f"{res['threads']['onnxruntime']}; {res['repeats']} repeats; trained at {res['trained_size']}x"
             f"{res['trained_size']})", "",
             "| input | full anchor GFLOPs | full anchor engine p50 ms | GFLOP/s | latency ratio / FLOPs ratio: "
             "min / median / max | within 1.15x |", "|---|---|---|---|---|---|"]
    for size, s in res["sizes"].items():
        lines.append(f"| {size}x{size} | {s['full_gflops']:.3f} | {s['full_engine_ms']:.3f} | "
                     f"{s['full_gflops'] / s['full_engine_ms'] * 1e3:.1f} | {s['min']:.2f} / {s['median']:.2f} / "
                     f"{s['max']:.2f} | {'met' if s['met'] else 'missed'} |")
    return "\n".join(lines) + "\n"


def main(bundle: str, sizes=(32, 64, 128), repeats: int = 50, warmup: int = 5, threads: int = 0, out=None) -> dict:
    res = {"machine": machine(), **measure(bundle, sizes, repeats, warmup, threads)}
    d = write("resolution", res, markdown(res), out)
    plot(res, d / "p1_by_input_size.png")
    print(markdown(res))
    return res
