"""The C++ runtime beside the Python runtimes: `python -m benchmarks native --run runs/scenes3
[--paper-run runs/nyu-r34]` (needs the native build: README, native runtime).

Each run is compiled for ONNX Runtime and OpenVINO fp32 (one bundle, both backends) and for
OpenVINO bf16 where the CPU executes bf16. Then, per signature, at 1 thread and at all
threads, interleaved so all see the same machine state:

  - C++ OpenVINO: `edgemtl-bench`, the native runtime's `Runtime::run` per call, next to a
    bare OpenVINO infer request on the same engine and weights (the per-call overhead);
  - Python OpenVINO and Python ONNX Runtime: `runtime.load(...).run` per call.

Parity on the bundle's sample frames, every signature: C++ vs Python on OpenVINO (same
backend) and vs ONNX Runtime (the fp32 parity budget). Latencies are medians of calls on
one preprocessed input; the paper-scale model runs two signatures (largest, smallest).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.backends import time_calls
from benchmarks.common import machine, write

PAPER_GRID = {"preferences": [{"r": [0.34, 0.33, 0.33], "c": 0.0}, {"r": [0.34, 0.33, 0.33], "c": 1.0}]}


def build(run: str, grid: str, out: Path, backend: str, precision: str, cache: Path) -> Path:
    from rich.console import Console

    from compiler.build import BuildConfig, build

    cfg = BuildConfig(checkpoint=f"{run}/model.ckpt", prefs=grid, out=str(out), cache=str(cache),
                      backend=backend, precision=precision, parity_size=32)  # fmt: skip
    build(cfg, Console(quiet=True))
    return out


def bundles(run: str, grid: str, root: Path) -> dict[str, Path]:
    """{"fp32": bundle with onnxruntime + openvino engines, "bf16": openvino bf16 (if the CPU has it)}."""
    from runtime.backends.openvino import cpu_has_bf16

    out = {"fp32": build(run, grid, root / "fp32", "onnxruntime,openvino", "fp32", root / "cache")}
    if cpu_has_bf16():
        out["bf16"] = build(run, grid, root / "bf16", "openvino", "bf16", root / "cache")
    return out


def python_ms(rt, entry, x: np.ndarray, calls: int) -> float:
    rt.set_preference(list(entry.r), entry.c)
    return time_calls(rt, x, calls)


def native_ms(bundle: Path, entry, threads: int, calls: int) -> dict:
    from runtime.native import find_library

    exe = find_library().parent / "edgemtl-bench"
    args = [str(exe), str(bundle), "--point", entry.name, "--threads", str(threads), "--repeats", str(calls),
            "--warmup", str(max(3, calls // 10))]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(done.stdout)


def points(manifest, paper: bool) -> list:
    """The first grid point of every signature; the largest and smallest only at paper scale."""
    firsts = {}
    for e in manifest.grid:
        firsts.setdefault(e.signature, e)
    entries = sorted(firsts.values(), key=lambda e: -manifest.signatures[e.signature].flops)
    return [entries[0], entries[-1]] if paper and len(entries) > 1 else entries


def latency_rows(model: str, paths: dict, calls: int, paper: bool) -> list[dict]:
    import runtime

    rows = []
    cores = os.cpu_count() or 1
    for threads in (1, cores):
        rts = {"python-openvino-fp32": runtime.load(paths["fp32"], "openvino", threads=threads),
               "python-onnxruntime-fp32": runtime.load(paths["fp32"], "onnxruntime", threads=threads)}  # fmt: skip
        if "bf16" in paths:
            rts["python-openvino-bf16"] = runtime.load(paths["bf16"], "openvino", threads=threads)
        try:
            m = rts["python-openvino-fp32"].manifest
            x = np.random.default_rng(0).standard_normal((1, *m.input.shape)).astype(np.float32)
            for e in points(m, paper):
                row = {
                    "model": model,
                    "threads": threads,
                    "signature": e.signature,
                    "gflops": m.signatures[e.signature].flops / 1e9,
                }
                for precision, bundle in paths.items():
                    nat = native_ms(bundle, e, threads, calls)
                    row[f"cpp-openvino-{precision}"] = nat["native_ms"]["p50"]
                    row[f"bare-openvino-{precision}"] = nat["bare_ms"]["p50"]
                    row[f"overhead-us-{precision}"] = nat["overhead_us"]
                    row[f"noise-us-{precision}"] = (nat["bare_ms"]["p90"] - nat["bare_ms"]["p50"]) * 1e3
                    row["calls"] = nat["repeats"]
                for name, rt in rts.items():
                    row[name] = python_ms(rt, e, x, calls)
                rows.append(row)
                print(
                    f"  {model} threads={threads} {e.signature}: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float))
                )
        finally:
            for rt in rts.values():
                rt.close()
    return rows


def parity(bundle: Path) -> list[dict]:
    """Per signature: max |C++ - Python| / output scale on the sample frames, same backend and vs ONNX Runtime."""
    import runtime
    from runtime.native import NativeRuntime
    from runtime.sources import sample_frames

    frames = sample_frames(bundle)[:8]
    rows = []
    with NativeRuntime(bundle, "openvino", threads=1) as nat, runtime.load(bundle, "openvino", threads=1) as py, \
            runtime.load(bundle, "onnxruntime", threads=1) as ort:  # fmt: skip
        for e in points(py.manifest, paper=False):
            worst = {"same": 0.0, "ort": 0.0}
            for rt in (nat, py, ort):
                rt.set_preference(list(e.r), e.c)
            for frame in frames:
                got, same, ref = nat.run_frame(frame), py(frame), ort(frame)
                for task in py.task_names:
                    scale = float(np.abs(ref[task]).max()) or 1.0
                    worst["same"] = max(worst["same"], float(np.abs(got[task] - same[task]).max()) / scale)
                    worst["ort"] = max(worst["ort"], float(np.abs(got[task] - ref[task]).max()) / scale)
            rows.append({"signature": e.signature, "frames": len(frames), "vs_python_openvino": worst["same"],
                         "vs_python_onnxruntime": worst["ort"]})  # fmt: skip
    return rows


def overhead(rows: list[dict], precision: str) -> str:
    """Median over signatures of (C++ p50 - bare p50) in us, +- twice the standard error of a
    p50 (about (p90 - p50) / sqrt(calls) per signature: 1.28 sigma, 1.25 sigma / sqrt(n))."""
    diff = float(np.median([r[f"overhead-us-{precision}"] for r in rows]))
    err = float(np.median([2 * r[f"noise-us-{precision}"] / np.sqrt(r.get("calls", 1)) for r in rows]))
    return f"{diff:.1f} +- {err:.1f}"


def markdown(res: dict) -> str:
    lines = [
        f"# Native (C++) runtime vs Python runtimes ({res['machine']['cpu']}, {res['machine']['cores']} cores)",
        "",
    ]
    lines += [
        "## Parity on the sample frames (max |C++ - Python| / output scale, every signature)",
        "",
        "| signature | C++ vs Python, OpenVINO | C++ OpenVINO vs Python ONNX Runtime |",
        "|---|---|---|",
    ]
    lines += [
        f"| {p['signature']} | {p['vs_python_openvino']:.2e} | {p['vs_python_onnxruntime']:.2e} |"
        for p in res["parity"]
    ]
    cols = [c for c in ("cpp-openvino-fp32", "python-openvino-fp32", "python-onnxruntime-fp32", "cpp-openvino-bf16",
                        "python-openvino-bf16") if any(c in r for r in res["rows"])]  # fmt: skip
    over_head = " | C++ overhead over a bare infer request, us (fp32 / bf16; +- 2 standard errors) |"
    lines += [
        "",
        "## Latency: median ms per call, mean over signatures (ratio to C++ OpenVINO fp32)",
        "",
        "| model | input | threads | " + " | ".join(cols) + over_head,
        "|---|---|---|" + "---|" * (len(cols) + 1),
    ]
    for model, shape in res["inputs"].items():
        for threads in sorted({r["threads"] for r in res["rows"] if r["model"] == model}):
            rows = [r for r in res["rows"] if r["model"] == model and r["threads"] == threads]
            base = np.mean([r["cpp-openvino-fp32"] for r in rows])
            cells = [f"{np.mean([r[c] for r in rows]):.3f} ({np.mean([r[c] for r in rows]) / base:.2f}x)" for c in cols]
            over = " / ".join(overhead(rows, p) for p in ("fp32", "bf16") if f"overhead-us-{p}" in rows[0])
            lines.append(
                f"| {model} | {'x'.join(map(str, shape[1:]))} | {threads} | " + " | ".join(cells) + f" | {over} |"
            )
    return "\n".join(lines) + "\n"


def main(run: str, paper_run: str | None = None, calls: int = 200, out=None) -> dict:
    from compiler.grid import GRID_DIR
    from runtime.manifest import load_manifest
    from runtime.native import BUILD_HINT, find_library

    if find_library() is None:
        raise SystemExit(f"benchmarks native: the native runtime is not built: {BUILD_HINT}")
    res = {"machine": machine(), "runs": {"32": run, "paper": paper_run}, "rows": [], "inputs": {}, "parity": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = [(Path(run).name, run, str(GRID_DIR / "scenes3-198.json"), False)]  # the README bundle's grid
        if paper_run:
            (root / "paper-grid.json").write_text(json.dumps(PAPER_GRID))
            models.append((Path(paper_run).name, paper_run, str(root / "paper-grid.json"), True))
        for name, path, grid, paper in models:
            print(f"building {name} ...")
            paths = bundles(path, grid, root / name)
            res["inputs"][name] = [1, *load_manifest(paths["fp32"]).input.shape]
            if not paper:
                res["parity"] = parity(paths["fp32"])
            res["rows"] += latency_rows(name, paths, max(20, calls // 10) if paper else calls, paper)
    write("native", res, markdown(res), out)
    print(markdown(res))
    return res
