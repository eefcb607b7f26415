"""Data-parallel training speed: `trainer fit` of a scenes config as one process and as
a torchrun job of two, side by side in one run, per stage (the checkpoint's
stage_seconds: training steps only) and end to end (process start to checkpoint).

On a 2-core machine the fair comparison is one process using both cores (2 torch
threads) against two processes of one thread each: data parallelism can only win
where one process leaves a core idle (small kernels, Python overhead), and it pays
for the gradient all-reduce and BatchNorm statistics across ranks (one all-reduce per
BatchNorm layer, forward and backward; the last mode turns that off).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import machine, write

STAGES = ("pretrain", "single", "edge", "weight", "phn_bn")
MODES = {
    # name: (processes, torch threads per process, BatchNorm statistics across ranks)
    "1 process x 2 threads": (1, 2, True),
    "1 process x 1 thread": (1, 1, True),
    "2 processes x 1 thread (torchrun)": (2, 1, True),
    "2 processes x 1 thread, per-rank BatchNorm": (2, 1, False),
}


def command(config: str, out: Path, procs: int, threads: int, steps: int, sync_bn: bool = True) -> list[str]:
    launch = [sys.executable, "-m", "trainer"]
    if procs > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
        launch += ["-m", "trainer"]
    sets = [f"threads={threads}", f"train.sync_batchnorm={str(sync_bn).lower()}"]
    sets += [f"train.{s}.steps={steps}" for s in STAGES]
    return launch + ["fit", "--config", config, "--out", str(out)] + [a for s in sets for a in ("--set", s)]


def run_once(config: str, procs: int, threads: int, sync_bn: bool, steps: int, tmp: Path) -> dict:
    out = tmp / f"run-{procs}x{threads}-{sync_bn}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    done = subprocess.run(command(config, out, procs, threads, steps, sync_bn), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"trainer fit failed ({procs} x {threads}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    seconds = torch.load(out / "model.ckpt", weights_only=True)["stage_seconds"]
    return {
        "procs": procs,
        "threads": threads,
        "sync_bn": sync_bn,
        "wall_s": wall,
        "stage_s": {s: seconds.get(s, 0.0) for s in STAGES},
    }


def measure(config: str, steps: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_once(config, 1, 2, True, 1, Path(tmp) / "warm")  # renders the data cache once, outside the timings
        for name, (procs, threads, sync_bn) in MODES.items():
            rows.append({"mode": name, **run_once(config, procs, threads, sync_bn, steps, Path(tmp))})
            print(f"{name}: {rows[-1]['wall_s']:.1f} s", flush=True)
    return rows


def markdown(res: dict) -> str:
    base = res["rows"][0]
    lines = [
        f"# Data-parallel training: `trainer fit --config {res['config']}`, {res['steps']} steps per stage "
        f"({res['machine']['cpu']}, {res['machine']['cores']} cores)",
        "",
        "Seconds of training steps per stage (speed-up vs one process on both cores).",
        "",
        "| mode | " + " | ".join(STAGES) + " | all stages | process start to checkpoint |",
        "|---|" + "---|" * (len(STAGES) + 2),
    ]
    for r in res["rows"]:
        cells = [f"{r['stage_s'][s]:.1f} ({base['stage_s'][s] / r['stage_s'][s]:.2f}x)" for s in STAGES]
        total, btotal = sum(r["stage_s"].values()), sum(base["stage_s"].values())
        cells += [f"{total:.1f} ({btotal / total:.2f}x)", f"{r['wall_s']:.1f} ({base['wall_s'] / r['wall_s']:.2f}x)"]
        lines.append(f"| {r['mode']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(res["rows"])
    for k, r in enumerate(res["rows"]):
        xs = [i + k * width for i in range(len(STAGES))]
        ax.bar(xs, [r["stage_s"][s] for s in STAGES], width, label=r["mode"])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(STAGES))], STAGES)
    ax.set_ylabel(f"seconds for {res['steps']} steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(config: str = "scenes3", steps: int = 60, out=None) -> dict:
    res = {"machine": machine(), "config": config, "steps": steps, "rows": measure(config, steps)}
    d = write("distributed", res, markdown(res), out)
    plot(res, d / "distributed.png")
    print(markdown(res))
    return res
