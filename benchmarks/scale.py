"""Deployment at paper scale: the paper's backbones at their resolutions, compiled
over 66- and 198-point grids and run by the torch-free runtime on this CPU.

    python -m benchmarks scale [--quick] [--run runs/scenes3]

Models (trainer/configs): nyu-r34 (three ResNet-34 streams, 288x384 frames) and
pascal-mbv2 (five MobileNetV2 streams, 512x512), trained briefly (their accuracy
is not the point; the grid must yield several distinct trees). `--run` adds a
32x32 model for the figures side by side. Per model it reports:
- cold and warm build time per stage, and the `--jobs 2` speed-up of a cold build;
- bundle size by folder, weights' share, bytes per added grid point (66 -> 198);
- per-signature latency p50/p90 vs FLOPs (P1: latency ratio over FLOPs ratio, both
  relative to the bundle's largest sub-network) and vs the measured peak (P3);
- cold (blocking), background (time to effect) and hot swap times, and the
  resident memory each warm sub-network adds;
- a 30 FPS camera loop switching preference every second: frame time p50/p99 of
  frames that ran while a swap loaded vs steady frames, background vs blocking.
Quick mode: nyu-r34 only, the 66-point grid, fewer repeats (under 10 minutes
with the model trained; about 3 minutes more to train it).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, machine, pct, write
from runtime.latency import machine_id

MODELS = ("nyu-r34", "pascal-mbv2")
PARITY_SIZE = 64  # every weight set checked on 64x64 inputs, every signature at full size


def ensure_run(config: str, runs: Path) -> Path:
    """runs/<config>/model.ckpt, trained now if missing (resumes a killed run)."""
    ckpt = runs / config / "model.ckpt"
    if not ckpt.is_file():
        from trainer.config import load_config
        from trainer.train import fit

        print(f"training {config} (a few minutes) into {ckpt.parent}")
        fit(load_config(config), ckpt.parent)
    return ckpt


def grid_files(n_tasks: int, tmp: Path) -> dict[int, Path]:
    """66 preferences r on the simplex at c = 0, and the same 66 at c in {0, 0.5, 1}."""
    from compiler.grid import simplex_lattice

    step = 0.1 if n_tasks == 3 else 0.25  # 66 lattice points for 3 tasks, 70 for 5 (first 66 kept)
    rs = simplex_lattice(n_tasks, step)[:66]
    out = {}
    for n, cs in ((66, [0.0]), (198, [0.0, 0.5, 1.0])):
        prefs = [{"r": list(r), "c": c} for c in cs for r in rs]
        out[n] = tmp / f"grid{n}.json"
        out[n].write_text(json.dumps({"preferences": prefs}))
    return out


def folder_sizes(bundle: Path) -> dict[str, int]:
    sizes = {}
    for p in bundle.iterdir():
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
        key = p.name if p.is_dir() else ("hypernets" if p.name.startswith("hypernets") else p.name)
        sizes[key] = sizes.get(key, 0) + sum(f.stat().st_size for f in files)
    sizes["total"] = sum(sizes.values())
    return sizes


def _build(ckpt: Path, grid: Path, out: Path, cache: Path, jobs: int, parity_size: int | None) -> dict:
    from rich.console import Console

    from compiler.build import BuildConfig, build

    cfg = BuildConfig(
        str(ckpt), str(grid), str(out), "onnxruntime", cache=str(cache), jobs=jobs, parity_size=parity_size
    )
    rep = build(cfg, Console(quiet=True))
    return {"points": rep.points, "signatures": rep.signatures, "weight_sets": rep.weight_sets,
            "jobs": jobs, "stages": rep.stages, "parity_worst": rep.parity_worst}  # fmt: skip


def builds(ckpt: Path, grids: dict[int, Path], tmp: Path, parity_size: int | None, jobs_compare: bool) -> dict:
    """Cold (empty cache) and warm (identical rebuild) builds per grid; the largest grid
    also cold with --jobs 2. Returns the rows and each grid's bundle sizes."""
    rows, sizes = [], {}
    for n, grid in grids.items():
        cache, bundle = tmp / f"cache{n}", tmp / f"bundle{n}"
        for mode in ("cold", "warm"):
            rows.append({"grid": n, "mode": mode, **_build(ckpt, grid, bundle, cache, 1, parity_size)})
        sizes[n] = folder_sizes(bundle)
    if jobs_compare:
        n = max(grids)
        rows.append({"grid": n, "mode": "cold", **_build(ckpt, grids[n], tmp / "bj", tmp / "cj", 2, parity_size)})
        shutil.rmtree(tmp / "cj", ignore_errors=True)
    return {"rows": rows, "sizes": sizes}


def latency(bundle: Path, repeats: int) -> dict:
    """Per signature, batch-1 engine latency (all cores) against FLOPs; P1 relative to the
    largest sub-network in the bundle, P3 its GFLOP/s against the measured matmul peak."""
    import runtime
    from benchmarks.latency import P1_TOLERANCE, p1_verdict, peak_gflops

    rows = []
    with runtime.load(bundle, "onnxruntime") as rt:
        x = np.random.default_rng(0).standard_normal((1, *rt.manifest.input.shape)).astype(np.float32)
        for sig, info in rt.manifest.signatures.items():
            entry = next(e for e in rt.manifest.grid if e.signature == sig)
            with rt.open_runner(entry) as runner:
                runner.run(x)  # warm-up
                ms = []
                for _ in range(repeats):
                    runner.run(x)
                    ms.append(runner.last_latency_ms)
            rows.append({"signature": sig, "flops": info.flops, "params": info.params, **pct(ms)})
    big = max(rows, key=lambda r: r["flops"])
    track = [(r["p50"] / big["p50"]) / (r["flops"] / big["flops"]) for r in rows if r is not big]
    peak = peak_gflops()
    achieved = big["flops"] / (big["p50"] * 1e6)
    return {
        "rows": rows,
        "P1": {**p1_verdict(track), "tolerance": P1_TOLERANCE} if track else None,
        "P3": {
            "achieved_gflops": achieved,
            "peak_gflops": peak["peak_gflops"],
            "fraction": achieved / peak["peak_gflops"],
        },
    }


def swaps_and_memory(bundle: Path, k: int) -> dict:
    """Cold (blocking) swaps into an empty pool, then the same points hot; background
    swaps timed from the request to the first frame on the new network; the resident
    bytes each load added (the pool's accounting)."""
    import runtime

    with runtime.load(bundle, "onnxruntime", pool_mb=1 << 20) as rt:
        x = np.zeros((1, *rt.manifest.input.shape), np.float32)
        points = _distinct(rt.manifest, k)
        cold = _timed_swaps(rt, points)
        memory = [item.nbytes for item in rt.pool.items.values()]
        # What format 1's pool charged a session: engine file + weight set bytes.
        estimate = [
            rt.engine_path(e.signature).stat().st_size + sum(v.nbytes for v in rt.weights.entry_weights(e).values())
            for e in points
        ]
        hot = _timed_swaps(rt, points)
        fresh = [e for e in _same_signature(rt.manifest, k + 1) if (e.signature, e.adaptation) not in rt.pool.items]
        same_sig = _timed_swaps(rt, fresh)  # ONNX Runtime: one more session per weight set
    with runtime.load(bundle, "onnxruntime", pool_mb=1 << 20) as rt:
        background = []
        for e in _distinct(rt.manifest, k)[1:]:
            t0 = time.perf_counter()
            swap = rt.set_preference(e.r, e.c, wait=False)
            while rt.infer(x)[1].entry != e:  # frames keep running on the old network meanwhile
                pass
            background.append({"ms": (time.perf_counter() - t0) * 1e3, "load_ms": swap.ms})
    return {
        "cold_swap_ms": pct(cold),
        "hot_swap_ms": pct(hot),
        "background_to_effect_ms": pct([b["ms"] for b in background]),
        "weight_change_same_signature_ms": pct(same_sig),
        "memory_per_warm_subnetwork_mb": pct([m / 2**20 for m in memory]),
        "file_size_estimate_mb": pct([m / 2**20 for m in estimate]),
        "anchor_mb": sum(f.stat().st_size for f in (bundle / "anchor").iterdir()) / 2**20,
    }


def ort_modes(bundle: Path) -> list[dict]:
    """benchmarks.ort_memory per mode, each in a fresh process (see there)."""
    import subprocess
    import sys

    from benchmarks.ort_memory import MODES

    out = []
    for mode in MODES:
        cmd = [sys.executable, "-m", "benchmarks.ort_memory", mode, str(bundle)]
        out.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    return out


def _distinct(manifest, k: int) -> list:
    """Up to k grid points on distinct signatures (distinct engines)."""
    seen, out = set(), []
    for e in manifest.grid:
        if e.signature not in seen:
            seen.add(e.signature)
            out.append(e)
    return out[:k]


def _same_signature(manifest, k: int) -> list:
    """Up to k grid points that share the signature with the most distinct weight sets."""
    by_sig: dict[str, dict] = {}
    for e in manifest.grid:
        by_sig.setdefault(e.signature, {}).setdefault(e.adaptation, e)
    return list(max(by_sig.values(), key=len).values())[:k]


def _timed_swaps(rt, points) -> list[float]:
    ms = []
    for e in points:
        t0 = time.perf_counter()
        rt.set_preference(e.r, e.c)
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def camera(bundle: Path, seconds: float, wait: bool, fps: float = 30.0, every_s: float = 1.0) -> dict:
    """Frames arrive at `fps` (or back to back when a frame takes longer); every
    `every_s` seconds the preference moves to another grid point. A frame's time is
    the call's wall time, plus the swap itself when `wait` (the blocking behaviour);
    frames that start while a background swap loads count as "during swap"."""
    import runtime

    with runtime.load(bundle, "onnxruntime", pool_mb=256) as rt:
        x = np.random.default_rng(0).standard_normal((1, *rt.manifest.input.shape)).astype(np.float32)
        points = _distinct(rt.manifest, 12)
        frames, i, t_start = [], 0, time.perf_counter()
        t_switch, swap = t_start + every_s, None
        while time.perf_counter() - t_start < seconds:
            t0, switched = time.perf_counter(), False
            if t0 >= t_switch:
                e = points[i % len(points)]
                i, t_switch, switched = i + 1, t_switch + every_s, True
                result = rt.set_preference(e.r, e.c, wait=wait)
                swap = None if wait else result
            during = switched or (swap is not None and not swap.done())
            rt.infer(x)
            frames.append({"ms": (time.perf_counter() - t0) * 1e3, "during_swap": during})
            sleep = t0 + 1 / fps - time.perf_counter()
            if sleep > 0:
                time.sleep(sleep)
    steady = [f["ms"] for f in frames if not f["during_swap"]]
    swapping = [f["ms"] for f in frames if f["during_swap"]]
    return {
        "wait": wait,
        "fps": fps,
        "every_s": every_s,
        "frames": len(frames),
        "switches": i,
        "steady_ms": pct(steady),
        "during_swap_ms": pct(swapping),
        "all_ms": pct([f["ms"] for f in frames]),
        "p99_all_over_steady": float(np.percentile([f["ms"] for f in frames], 99) / np.percentile(steady, 99))
        if steady
        else None,
    }


def model(ckpt: Path, quick: bool) -> dict:
    from runtime.manifest import load_manifest

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        grids = grid_files(_n_tasks(ckpt), tmp)
        if quick:
            grids = {66: grids[66]}
        built = builds(ckpt, grids, tmp, PARITY_SIZE, jobs_compare=True)
        bundle = tmp / f"bundle{max(grids)}"
        m = load_manifest(bundle)
        lat = latency(bundle, 3 if quick else 10)
        return {
            "checkpoint": str(ckpt),
            "input": list(m.input.shape),
            "backbone": m.model.get("backbone"),
            "full_net": m.full_net,
            "builds": built,
            "latency": lat,
            "swaps": swaps_and_memory(bundle, 4 if quick else 8),
            "ort_modes": ort_modes(bundle),
            "camera": cameras(bundle, lat, 20 if quick else 30),
        }


def cameras(bundle: Path, lat: dict, seconds: float) -> list[dict]:
    """The issue's loop (30 FPS, a switch every second), then a rate this CPU sustains with
    headroom (a frame every 3x the slowest sub-network's p50, a switch every 8 frames):
    at 30 FPS paper-scale frames run back to back, so a background load can only take
    cores from them; with headroom it runs in the idle time between frames."""
    slow = max(r["p50"] for r in lat["rows"]) / 1e3
    runs = [camera(bundle, seconds, wait) for wait in (False, True)]
    fps = 1 / (3 * slow)
    runs += [camera(bundle, seconds * 2, wait, fps=fps, every_s=8 / fps) for wait in (False, True)]
    return runs


def _n_tasks(ckpt: Path) -> int:
    from trainer.checkpoint import load_checkpoint

    return len(load_checkpoint(str(ckpt))[2]["tasks"])


def per_point_bytes(sizes: dict) -> float | None:
    """Bundle bytes each grid point adds: (size at 198 - size at 66) / 132."""
    sizes = {int(k): v for k, v in sizes.items()}  # JSON keys are strings
    if 66 in sizes and 198 in sizes:
        return (sizes[198]["total"] - sizes[66]["total"]) / 132
    return None


def markdown(res: dict) -> str:
    lines = [f"# Deployment at paper scale ({res['machine']['cpu']}, {res['machine']['cores']} cores)", ""]
    for name, r in res["models"].items():
        lines += _model_md(name, r)
    return "\n".join(lines) + "\n"


def _p(stats: dict, key: str = "p50", fmt: str = ".0f") -> str:
    """A percentile for the tables, or n/a when nothing was measured (e.g. no signature
    with a second weight set)."""
    return format(stats[key], fmt) if key in stats else "n/a"


def _model_md(name: str, r: dict) -> list[str]:
    b, lat, sw = r["builds"], r["latency"], r["swaps"]
    full = r["full_net"]
    lines = [
        f"## {name}: {r['backbone']}, input {'x'.join(map(str, r['input']))}, anchor "
        f"{full['params'] / 1e6:.1f}M params, {full['flops'] / 1e9:.1f} GFLOPs",
        "",
        "| grid | build | jobs | signatures | weight sets | total s | export | engine | parity | other |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in b["rows"]:
        st = row["stages"]
        other = st["total"] - sum(st.get(k, 0) for k in ("export", "engine", "parity"))
        lines.append(
            f"| {row['grid']} | {row['mode']} | {row['jobs']} | {row['signatures']} | {row['weight_sets']} | "
            f"{st['total']:.1f} | {st.get('export', 0):.1f} | {st.get('engine', 0):.1f} | {st.get('parity', 0):.1f} | "
            f"{other:.1f} |"
        )
    lines += ["", "| grid | bundle MB | anchor | deltas | graphs | engines | hypernets | samples | manifest |",
              "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for n, s in b["sizes"].items():
        mb = lambda k: f"{s.get(k, 0) / 2**20:.2f}"  # noqa: E731
        lines.append(
            f"| {n} | {mb('total')} | {mb('anchor')} | {mb('deltas')} | {mb('graphs')} | {mb('engines')} | "
            f"{mb('hypernets')} | {mb('samples')} | {mb('manifest.json')} |"
        )
    ppb = per_point_bytes(b["sizes"])
    n_big = max(b["sizes"], key=int)  # JSON keys are strings: "66" > "198"
    big = b["sizes"][n_big]
    base = big.get("anchor", 0) + big.get("graphs", 0) + big.get("engines", 0)
    lines += [
        "",
        f"Bundle / (anchor + graphs + engines) at {n_big} points: {big['total'] / base:.3f}x"
        + (f"; each added grid point: {ppb / 1024:.1f} KB." if ppb is not None else "."),
        "",
        "| signature | FLOPs (G) | params (M) | p50 ms | p90 ms |",
        "|---|---|---|---|---|",
    ]
    for row in sorted(lat["rows"], key=lambda x: x["flops"]):
        lines.append(
            f"| {row['signature']} | {row['flops'] / 1e9:.2f} | {row['params'] / 1e6:.1f} | {row['p50']:.1f} | "
            f"{row['p90']:.1f} |"
        )
    p1, p3 = lat["P1"], lat["P3"]
    if p1:
        lines.append(
            f"\nP1 (latency ratio / FLOPs ratio vs the largest sub-network): min {p1['min']:.2f}, median "
            f"{p1['median']:.2f}, max {p1['max']:.2f} ({'met' if p1['met'] else 'missed'}, "
            f"tolerance {p1['tolerance']}x)."
        )
    lines.append(
        f"P3: the largest sub-network runs at {p3['achieved_gflops']:.1f} GFLOP/s, "
        f"{100 * p3['fraction']:.0f}% of the measured peak {p3['peak_gflops']:.1f} GFLOP/s."
    )
    lines += [
        "",
        f"Swaps: cold (blocking) p50 {_p(sw['cold_swap_ms'])} ms, hot p50 {_p(sw['hot_swap_ms'], fmt='.2f')} ms "
        f"(p99 {_p(sw['hot_swap_ms'], 'p99', '.2f')}), background request -> first frame on the new network p50 "
        f"{_p(sw['background_to_effect_ms'])} ms, weight change on one signature (ONNX Runtime: a new "
        f"session) p50 {_p(sw['weight_change_same_signature_ms'])} ms. Resident memory per warm sub-network "
        f"p50 {_p(sw['memory_per_warm_subnetwork_mb'])} MB, where file sizes (what the pool counted before) "
        f"say {_p(sw['file_size_estimate_mb'])} MB; the anchor, held once: {sw['anchor_mb']:.0f} MB.",
        "",
        "| ONNX Runtime session options | RSS per warm sub-network MB (median) | folded weights MB | "
        "load + first run ms | run ms |",
        "|---|---|---|---|---|",
        *[_mode_row(m) for m in r["ort_modes"]],
        "",
        "| camera loop | swaps | frames | switches | steady p50 / p99 ms | during swap p50 / p99 ms "
        "| p99 all / steady |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in r["camera"]:
        d, st = c["during_swap_ms"], c["steady_ms"]
        lines.append(
            f"| {c['fps']:.3g} FPS, switch every {c['every_s']:.3g} s | "
            f"{'blocking (wait=True)' if c['wait'] else 'background (wait=False)'} | {c['frames']} | "
            f"{c['switches']} | {_p(st, fmt='.1f')} / {_p(st, 'p99', '.1f')} | {_p(d, fmt='.1f')} / "
            f"{_p(d, 'p99', '.1f')} | {c['p99_all_over_steady'] or float('nan'):.2f} |"
        )
    return lines + [""]


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in res["models"].items():
        rows = r["latency"]["rows"]
        ax.scatter([x["flops"] / 1e9 for x in rows], [x["p50"] for x in rows], label=name)
    ax.set_xlabel("GFLOPs per frame")
    ax.set_ylabel("p50 latency (ms), ONNX Runtime CPU")
    ax.set_title("Sub-network latency vs FLOPs at paper scale")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _mode_row(m: dict) -> str:
    med = lambda k: float(np.median([s[k] for s in m["sessions"][1:] or m["sessions"]]))  # noqa: E731 - 1st: ORT init
    return (
        f"| {m['mode']} | {med('rss_mb'):.0f} | {med('weights_mb'):.0f} | {med('load_ms'):.0f} | {med('run_ms'):.0f} |"
    )


def main(quick: bool = False, run: str | None = None, out=None, runs: str = "runs") -> dict:
    names = MODELS[:1] if quick else MODELS
    res = {"machine": machine(), "quick": quick, "parity_size": PARITY_SIZE, "models": {}}
    d = Path(out) if out else RESULTS / machine_id() / "scale"
    ckpts = {name: ensure_run(name, Path(runs)) for name in names}
    if run is not None:
        ckpts[Path(run).name] = Path(run) / "model.ckpt"
    for name, ckpt in ckpts.items():
        res["models"][name] = model(ckpt, quick)
        write("scale", res, "(partial: the run did not finish)\n", d)  # a crash later loses nothing
    write("scale", res, markdown(res), d)
    plot(res, d / "latency_vs_flops.png")
    print(markdown(res))
    print(f"wrote {d}/scale.json and scale.md")
    return res
