"""P1 by input size and thread count: does engine latency track FLOPs?

The nets are fully convolutional, so every signature and the full anchor are
re-exported with the bundle's folded weights at square inputs of each size and
timed alternately (latency.paired: call by call at one thread, blocks of 50 calls
with more) at each ORT thread count.
FLOPs are counted at each size. Outputs at sizes other than the trained one are
not meant to be accurate: this measures the cost model only."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import bundle_checkpoint, machine, pct, write
from benchmarks.latency import P1_TOLERANCE, engine_runner, export_engine, p1_verdict, pair_block, paired


def _size_rows(anchor, m, bundle, size, repeats, warmup, threads, tmp: Path) -> list[dict]:
    import torch

    from edgecore.tree import identity_tree
    from runtime.weights import WeightStore
    from trainer.cost import tree_cost

    names, shape = [t.name for t in m.tasks], (3, size, size)
    xs = [np.random.default_rng(i).standard_normal((1, *shape)).astype(np.float32) for i in range(4)]
    full_tree = identity_tree(anchor.n_layers, anchor.n_tasks)
    full_flops = tree_cost(anchor, full_tree, size)[1]
    full = engine_runner(*export_engine(anchor.subnet(full_tree), shape, names, tmp / f"full-{size}"), threads)
    rows, store = [], WeightStore(bundle, m)
    try:
        for sig, info in m.signatures.items():
            entry = next(e for e in m.grid if e.signature == sig)
            sub = anchor.subnet(info.tree)
            sub.load_state_dict({k: torch.from_numpy(v) for k, v in store.entry_weights(entry).items()})
            with engine_runner(*export_engine(sub, shape, names, tmp / f"{sig}-{size}"), threads) as runner:
                t_full, t_sub = paired(full.run, runner.run, xs, warmup, repeats, pair_block(threads))
            flops_ratio = tree_cost(anchor, info.tree, size)[1] / full_flops
            latency_ratio = pct(t_sub)["p50"] / pct(t_full)["p50"]
            rows.append(
                {
                    "signature": sig,
                    "flops_ratio": flops_ratio,
                    "latency_ratio": latency_ratio,
                    "tracking": latency_ratio / flops_ratio,
                    "engine": pct(t_sub),
                    "engine_full": pct(t_full),
                    "full_gflops": full_flops / 1e9,
                }
            )
    finally:
        full.close()
    return rows


def measure(bundle: str, run: str, sizes=(32, 64, 128), threads=(1, 0), repeats: int = 200, warmup: int = 10) -> dict:
    """One P1 row set per (size, ORT threads; 0 = all cores)."""
    import torch

    from runtime.manifest import load_manifest
    from trainer.checkpoint import load_checkpoint

    m = load_manifest(bundle)
    anchor = load_checkpoint(bundle_checkpoint(m, run))[1].anchor.eval()
    out = {"bundle": str(bundle), "trained_size": m.input.shape[1], "repeats": repeats, "configs": []}
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for t in threads:
                rows = _size_rows(anchor, m, bundle, size, repeats, warmup, t, Path(tmp))
                out["configs"].append(
                    {
                        "size": size,
                        "threads": t or "all",
                        "rows": rows,
                        **p1_verdict([r["tracking"] for r in rows]),
                        "full_engine_ms": float(np.median([r["engine_full"]["p50"] for r in rows])),
                        "full_gflops": rows[0]["full_gflops"],
                    }
                )
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    lo = min(r["flops_ratio"] for c in res["configs"] for r in c["rows"])
    for c in res["configs"]:
        ax.scatter(
            [r["flops_ratio"] for r in c["rows"]],
            [r["latency_ratio"] for r in c["rows"]],
            s=14,
            marker="o" if c["threads"] == 1 else "^",
            label=f"{c['size']}x{c['size']}, {c['threads']} thr",
        )
    xs = np.linspace(lo * 0.98, 1.0, 2)
    ax.plot(xs, xs, c="k", lw=1, label="latency = FLOPs")
    ax.fill_between(xs, xs / P1_TOLERANCE, xs * P1_TOLERANCE, color="gray", alpha=0.2, label=f"within {P1_TOLERANCE}x")
    ax.set_xlabel("FLOPs of sub-network / full anchor")
    ax.set_ylabel("p50 latency of sub-network / full anchor")
    ax.set_title("P1 by input size and ORT threads (paired calls)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(res: dict) -> str:
    lines = [
        f"# P1 by input size and threads ({res['machine']['cpu']}, {res['machine']['cores']} cores; "
        f"{res['repeats']} paired calls per signature; trained at {res['trained_size']}x{res['trained_size']})",
        "",
        "| input | ORT threads | full anchor GFLOPs | full anchor engine p50 ms | GFLOP/s | latency ratio / "
        "FLOPs ratio: min / median / max | within 1.15x |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in res["configs"]:
        lines.append(
            f"| {c['size']}x{c['size']} | {c['threads']} | {c['full_gflops']:.3f} | {c['full_engine_ms']:.3f} "
            f"| {c['full_gflops'] / c['full_engine_ms'] * 1e3:.1f} | {c['min']:.2f} / {c['median']:.2f} / "
            f"{c['max']:.2f} | {'met' if c['met'] else 'missed'} |"
        )
    return "\n".join(lines) + "\n"


def main(
    bundle: str, run: str, sizes=(32, 64, 128), threads=(1, 0), repeats: int = 200, warmup: int = 10, out=None
) -> dict:
    res = {"machine": machine(), **measure(bundle, run, sizes, threads, repeats, warmup)}
    d = write("resolution", res, markdown(res), out)
    plot(res, d / "p1_by_input_size.png")
    print(markdown(res))
    return res
