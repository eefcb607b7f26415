"""Camera-loop simulation: frames arrive at a target rate, a scripted budget
schedule switches the sub-network, and we count frames over budget in a window
before and after each switch (P4 in a deployer's terms)."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import machine, write


def simulate(bundle: str, fps: float = 30.0, frames: int = 240, window: int = 20, threads: int = 0) -> dict:
    import runtime
    from runtime.sources import frames as source
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
            per_frame.append({"frame": i, "ms": ms, "budget": rt.budget_ms, "over": ms > rt.budget_ms,
                              "late": time.perf_counter() > t_next + period, "signature": sel.entry.signature})
            t_next += period
    around = []
    for f, b in switches.items():
        before = per_frame[max(f - window, 0):f]
        after = per_frame[f:f + window]
        around.append({"frame": f, "budget_ms": b, "over_before": sum(p["over"] for p in before),
                       "over_after": sum(p["over"] for p in after), "window": window})
    return {"fps": fps, "frames": frames, "switches": around, "late_frames": sum(p["late"] for p in per_frame),
            "per_frame": per_frame}


def markdown(res: dict) -> str:
    lines = [f"# Camera loop at {res['fps']:g} FPS, {res['frames']} frames ({res['machine']['cpu']})", "",
             f"frames that missed the next frame's arrival: {res['late_frames']}", "",
             "| switch at frame | new budget (ms) | over budget in the 20 frames before | after |", "|---|---|---|---|"]
    for s in res["switches"]:
        lines.append(f"| {s['frame']} | {s['budget_ms']:.3f} | {s['over_before']} | {s['over_after']} |")
    return "\n".join(lines) + "\n"


def main(bundle: str, fps: float = 30.0, frames: int = 240, out=None) -> dict:
    res = {"machine": machine(), "bundle": str(bundle), **simulate(bundle, fps, frames)}
    write("camera", res, markdown(res), out)
    print(markdown(res))
    return res
