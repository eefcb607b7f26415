"""Camera-loop simulation: frames arrive at a target rate, a scripted budget
schedule switches the sub-network, and we count frames over budget in a window
before and after each switch (P4 in a deployer's terms)."""

from __future__ import annotations

import time

import numpy as np

import runtime
from benchmarks.common import machine, write
from runtime.calibrate import bench
from runtime.latency import save_table
from runtime.sources import frames as source


def simulate(
    bundle: str,
    fps: float = 30.0,
    frames: int = 240,
    window: int = 20,
    threads: int = 0,
    calibrate_fps: float | None = None,
) -> dict:
    """`calibrate_fps`: first recalibrate the bundle's latency table with runs paced
    at that rate (None keeps the existing, back-to-back table)."""
    if calibrate_fps:
        save_table(bundle, bench(bundle, "onnxruntime", repeats=30, warmup=5, threads=threads, fps=calibrate_fps))
    with runtime.load(bundle, "onnxruntime", threads=threads) as rt:
        table = rt.latency_table()  # needs `runtime calibrate`
        lat = sorted(table.values())
        # Budgets from this device's own table: generous, tight (median), impossible, generous.
        budgets = [lat[-1] * 2, float(np.median(lat)), lat[0] * 0.5, lat[-1] * 2]
        switches = {int(frames * (i + 1) / (len(budgets) + 1)): b for i, b in enumerate(budgets)}
        period, per_frame, t_next = 1.0 / fps, [], time.perf_counter()
        rt.set_budget(budgets[0])
        for i, frame in enumerate(source("synthetic", rt.bundle, frames)):
            if i in switches:
                rt.set_budget(switches[i])
            now = time.perf_counter()
            if now < t_next:
                time.sleep(t_next - now)  # the camera's next frame is not there yet
            t0 = time.perf_counter()
            _, sel = rt.infer(__import__("runtime.preprocess", fromlist=["x"]).preprocess(frame, rt.manifest.input), t0)
            ms = rt.call_ms[-1]
            per_frame.append(
                {
                    "frame": i,
                    "ms": ms,
                    "budget": rt.budget_ms,
                    "over": ms > rt.budget_ms,
                    "late": time.perf_counter() > t_next + period,
                    "signature": sel.entry.signature,
                }
            )
            t_next += period
    around = []
    for f, b in switches.items():
        before = per_frame[max(f - window, 0) : f]
        after = per_frame[f : f + window]
        around.append(
            {
                "frame": f,
                "budget_ms": b,
                "over_before": sum(p["over"] for p in before),
                "over_after": sum(p["over"] for p in after),
                "window": window,
            }
        )
    return {
        "fps": fps,
        "frames": frames,
        "calibrated_at_fps": calibrate_fps,
        "switches": around,
        "late_frames": sum(p["late"] for p in per_frame),
        "per_frame": per_frame,
    }


def markdown(res: dict) -> str:
    lines = [
        f"# Camera loop at {res['fps']:g} FPS, {res['frames']} frames per run ({res['machine']['cpu']})",
        "",
        "Budgets come from the bundle's latency table: 2x its slowest entry, its median, half its "
        "fastest (nothing fits: the fastest point runs), 2x its slowest.",
        "",
        "| latency table | switch at frame | new budget (ms) | over budget in the 20 frames before | after |"
        " late frames (run) |",
        "|---|---|---|---|---|---|",
    ]
    for run in res["runs"]:
        label = f"paced at {run['calibrated_at_fps']:g} FPS" if run["calibrated_at_fps"] else "back to back"
        for s in run["switches"]:
            lines.append(
                f"| {label} | {s['frame']} | {s['budget_ms']:.3f} | {s['over_before']} | {s['over_after']} | "
                f"{run['late_frames']} |"
            )
    return "\n".join(lines) + "\n"


def main(bundle: str, fps: float = 30.0, frames: int = 240, out=None) -> dict:
    """Two runs: budgets from a back-to-back latency table, then from one calibrated at `fps`."""
    save_table(bundle, bench(bundle, "onnxruntime", repeats=30, warmup=5))
    runs = [simulate(bundle, fps, frames), simulate(bundle, fps, frames, calibrate_fps=fps)]
    res = {"machine": machine(), "bundle": str(bundle), "fps": fps, "frames": frames, "runs": runs}
    write("camera", res, markdown(res), out)
    print(markdown(res))
    return res
