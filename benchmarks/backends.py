"""CPU backends side by side: `python -m benchmarks backends --run runs/scenes3`.

The run compiled over one grid for every CPU backend and precision present
(ONNX Runtime fp32, OpenVINO fp32 and bf16 where the CPU executes bf16), then
every signature's engine call timed in one process, backends interleaved per
signature, at 1 thread and at the backend's default threads. Ratios are to ONNX
Runtime on the same signature, measured in the same run: the basis of the
runtime's `auto` order among CPU backends.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, write


def variants() -> list[tuple[str, str]]:
    """(backend, precision) of every CPU backend and precision usable here."""
    from runtime.backends import available

    out = [("onnxruntime", "fp32")]
    if available("openvino")[0]:
        from runtime.backends.openvino import cpu_has_bf16

        out += [("openvino", "fp32")] + ([("openvino", "bf16")] if cpu_has_bf16() else [])
    return out


def build_all(checkpoint: str, grid: str, root: Path) -> dict[tuple[str, str], Path]:
    from rich.console import Console

    from compiler.build import BuildConfig, build

    bundles = {}
    for backend, precision in variants():
        out = root / f"{backend}-{precision}"
        cfg = BuildConfig(checkpoint=checkpoint, prefs=grid, out=str(out), cache=str(root / "cache"),
                          backend=backend, precision=precision)  # fmt: skip
        build(cfg, Console(quiet=True))
        bundles[(backend, precision)] = out
    return bundles


def time_calls(rt, x: np.ndarray, calls: int) -> float:
    for _ in range(max(3, calls // 10)):
        rt.run(x)
    ms = []
    for _ in range(calls):
        t0 = time.perf_counter()
        rt.run(x)
        ms.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ms))


def measure(bundles: dict, calls: int) -> list[dict]:
    import runtime

    rows = []
    for threads in (1, 0):
        rts = {k: runtime.load(v, threads=threads) for k, v in bundles.items()}
        try:
            first = next(iter(rts.values()))
            x = np.random.default_rng(0).standard_normal((1, *first.manifest.input.shape)).astype(np.float32)
            for sig in first.manifest.signatures:
                entry = next(e for e in first.manifest.grid if e.signature == sig)
                row = {"threads": threads or "default", "signature": sig}
                for (backend, precision), rt in rts.items():  # interleaved: the same machine state
                    rt.set_preference(entry.r, entry.c)
                    row[f"{backend}-{precision}"] = time_calls(rt, x, calls)
                rows.append(row)
        finally:
            for rt in rts.values():
                rt.close()
    return rows


def markdown(res: dict) -> str:
    names = [f"{b}-{p}" for b, p in res["variants"]]
    lines = [
        f"# CPU backends ({res['machine']['cpu']}, {res['machine']['cores']} cores), input {res['input']}",
        "",
        "Median engine call (ms) per signature, mean over signatures; ratio to ONNX Runtime fp32 (mean, min-max).",
        "",
        "| threads | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for threads in ("1", "default"):
        rows = [r for r in res["rows"] if str(r["threads"]) == threads]
        cells = []
        for n in names:
            ratio = [r[n] / r["onnxruntime-fp32"] for r in rows]
            cells.append(
                f"{np.mean([r[n] for r in rows]):.3f} ({np.mean(ratio):.2f}x, {min(ratio):.2f}-{max(ratio):.2f})"
            )
        lines.append(f"| {threads} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(run: str, grid: str = "scenes3-21", calls: int = 200, out=None) -> dict:
    from compiler.grid import GRID_DIR

    path = grid if Path(grid).is_file() else str(GRID_DIR / f"{grid}.json")
    with tempfile.TemporaryDirectory() as tmp:
        bundles = build_all(f"{run}/model.ckpt", path, Path(tmp))
        from runtime.manifest import load_manifest

        shape = list(load_manifest(next(iter(bundles.values()))).input.shape)
        rows = measure(bundles, calls)
    res = {"machine": machine(), "run": run, "input": shape, "variants": [list(v) for v in bundles], "rows": rows}
    write("backends", res, markdown(res), out)
    print(markdown(res))
    return res
