"""Compile cost (P5): build time vs grid size, cold (empty cache) and warm
(identical rebuild), with dedup ratio and time per stage."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks.common import machine, write

GRIDS = {
    21: {"lattice": {"r_step": 0.2, "c": [0.0]}},
    66: {"lattice": {"r_step": 0.1, "c": [0.0]}},
    198: {"lattice": {"r_step": 0.1, "c": [0.0, 0.5, 1.0]}},
}


def measure(checkpoint: str, sizes=(21, 66, 198)) -> list[dict]:
    from rich.console import Console

    from compiler.build import BuildConfig, build

    rows = []
    quiet = Console(quiet=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            grid = Path(tmp) / f"grid{n}.json"
            grid.write_text(json.dumps(GRIDS[n]))
            cache = Path(tmp) / f"cache{n}"  # a fresh cache per size: cold means cold
            for mode in ("cold", "warm"):
                out = str(Path(tmp) / f"b{n}")
                cfg = BuildConfig(checkpoint, str(grid), out, "onnxruntime", cache=str(cache))
                rep = build(cfg, quiet)
                rows.append(
                    {
                        "grid": rep.points,
                        "mode": mode,
                        "signatures": rep.signatures,
                        "dedup": rep.points / rep.signatures,
                        "engine_builds": rep.builds("engines"),
                        "stages": rep.stages,
                    }
                )
    return rows


def markdown(res: dict) -> str:
    stages = ["derive", "fold", "export", "engine", "parity", "samples", "hypernets", "total"]
    lines = [
        f"# Compile time vs grid size ({res['machine']['cpu']}, {res['machine']['cores']} cores)",
        "",
        "| grid points | cache | signatures | dedup | engine builds | " + " | ".join(stages) + " (s) |",
        "|---|---|---|---|---|" + "---|" * len(stages),
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['grid']} | {r['mode']} | {r['signatures']} | {r['dedup']:.1f}x | {r['engine_builds']} | "
            + " | ".join(f"{r['stages'].get(s, 0):.2f}" for s in stages)
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for mode in ("cold", "warm"):
        rows = [r for r in res["rows"] if r["mode"] == mode]
        ax.plot([r["grid"] for r in rows], [r["stages"]["total"] for r in rows], "o-", label=f"{mode} cache")
    ax.set_xlabel("grid points")
    ax.set_ylabel("build time (s, excl. imports)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(checkpoint: str, sizes=(21, 66, 198), out=None) -> dict:
    res = {"machine": machine(), "checkpoint": checkpoint, "rows": measure(checkpoint, sizes)}
    d = write("compile", res, markdown(res), out)
    plot(res, d / "compile_time.png")
    print(markdown(res))
    return res
