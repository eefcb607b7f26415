"""SUMMARY.md: every goal of the benchmark issue, met or missed, from the JSON results."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import RESULTS
from runtime.latency import machine_id


def _load(d: Path, name: str) -> dict | None:
    p = d / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def lines(d: Path) -> list[str]:
    lat, sw, comp, cam, res = (_load(d, n) for n in ("latency", "swaps", "compile", "camera", "resolution"))
    # `benchmarks all` writes control.json here; the committed records keep one per run
    ctl = _load(d, "control") or _load(d / "scenes3", "control")
    m = next(x for x in (lat, sw, comp, ctl, cam, res) if x)["machine"]
    out = [
        f"# Benchmark summary: {m['cpu']}, {m['cores']} cores, onnxruntime {m['onnxruntime']} ({m['when']})",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
    ]
    if lat:
        g = lat["goals"]
        p1, p2, p3 = g["P1_latency_over_flops_ratio"], g["P2_engine_speedup_over_eager"], g["P3_full_engine_gflops"]
        out += [
            f"| P1 latency tracks FLOPs within 1.15x (engine t_sub/t_full over FLOPs ratio) | min {p1['min']:.2f}, "
            f"median {p1['median']:.2f}, max {p1['max']:.2f} | {'yes' if p1['met'] else 'no'} |",
            f"| P2 engine >= 2x eager on the same sub-network | min {p2['min']:.2f}x, median {p2['median']:.2f}x | "
            f"{'yes' if p2['met'] else 'no'} |",
            f"| P3 full anchor engine vs measured peak | {p3['achieved']:.2f} of {p3['peak']:.1f} GFLOP/s = "
            f"{100 * p3['fraction']:.1f}% | (reported) |",
        ]
    if res:
        for r in res["configs"]:
            out.append(
                f"| P1 at a {r['size']}x{r['size']} input, ORT threads {r['threads']} (paired calls) | min "
                f"{r['min']:.2f}, median {r['median']:.2f}, max {r['max']:.2f} | {'yes' if r['met'] else 'no'} |"
            )
    if sw:
        out += [
            f"| P4 hot swap p50 / p99 | {sw['hot_swap_ms']['p50']:.4f} / {sw['hot_swap_ms']['p99']:.4f} ms | "
            f"(reported) |",
            f"| P4 cold swap p50 / p99 | {sw['cold_swap_ms']['p50']:.2f} / {sw['cold_swap_ms']['p99']:.2f} ms | "
            f"(reported) |",
            f"| P6 runtime overhead per call vs raw session (p50) | {sw['overhead_run_us_p50']:.1f} us "
            f"(with preprocessing {sw['overhead_call_us_p50']:.1f} us) | (reported) |",
        ]
    if comp:
        for r in comp["rows"]:
            out.append(
                f"| P5 build, {r['grid']} points, {r['mode']} | {r['stages']['total']:.2f} s, "
                f"{r['signatures']} signatures ({r['dedup']:.1f}x dedup), {r['engine_builds']} engine builds | "
                f"(reported) |"
            )
    if ctl:
        for goal in ctl["eval"].get("goals", []):
            out.append(f"| {goal['goal']} | {goal['measured']} | {'yes' if goal['met'] else 'no'} |")
    if cam:
        for run in cam["runs"]:
            over = sum(s["over_after"] for s in run["switches"][:2] + run["switches"][3:])  # the feasible budgets
            label = (
                f"calibrated at {run['calibrated_at_fps']:g} FPS" if run["calibrated_at_fps"] else "back-to-back table"
            )
            out.append(
                f"| camera loop at {cam['fps']:g} FPS, {label} | {run['late_frames']} late frames of "
                f"{cam['frames']}; {over} of 60 frames over a feasible budget after its switch | (reported) |"
            )
    return out


def main(out: Path | None = None) -> Path:
    d = out or RESULTS / machine_id()
    path = d / "SUMMARY.md"
    path.write_text("\n".join(lines(d)) + "\n")
    return path
