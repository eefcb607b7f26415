"""`runtime` console script: run a bundle on a stream, benchmark and calibrate it.

Torch-free: imports numpy, onnxruntime (or tensorrt) and, for video, OpenCV.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecore.cli import run_main
from edgecore.fileio import atomic_write_text
from runtime import backends
from runtime.errors import EdgeRuntimeError

EPILOG = """examples:
  runtime calibrate bundles/scenes3                   # latency table for set_budget on this device
  runtime bench --bundle bundles/scenes3              # per-signature latency percentiles
  runtime run --bundle bundles/scenes3 --source synthetic --headless --out out.mp4 \\
      --schedule schedule.json --stats stats.json
  runtime run --bundle bundles/scenes3 --source 0     # camera 0, window with live keys
  runtime run --bundle bundles/scenes3 --source clip.mp4 --live-fps 30   # the clip as a camera delivers it

schedule.json: {"events": [{"frame": 0, "r": [0.6, 0.2, 0.2], "c": 0.0},
                           {"frame": 30, "budget_ms": 2.5}, ...]}
keys (window): 1..9 raise that task's weight, c / C lower / raise the cost preference,
  + / - raise / lower the budget by 25%, q quits.
exit codes: 0 ok, 2 bad input (bundle, source, schedule, preference), 130 interrupted"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="runtime", description="Run compiled controllable multi-task bundles "
                                "(no PyTorch needed).", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a camera, video, image folder or the bundle's synthetic frames")
    r.add_argument("--bundle", required=True)
    r.add_argument("--source", default="synthetic", help="camera index, video file, image folder or 'synthetic'")
    r.add_argument("--frames", type=int, default=None, help="stop after N frames (synthetic: loops to N)")
    r.add_argument("--live-fps", type=float, default=None, help="play a video, folder or synthetic source like a "
                   "camera delivering this many frames per second: frames that arrive while one is processed "
                   "are dropped and counted (cameras and stream URLs are always live)")
    r.add_argument("--backend", default="auto", choices=["auto", *backends.names()])
    r.add_argument("--headless", action="store_true", help="no window (use with --out)")
    r.add_argument("--out", default=None, help="write the overlay video here (.mp4)")
    r.add_argument("--schedule", default=None, help="schedule.json (or a shipped name: demo): preference/budget "
                   "switches at frame numbers")
    r.add_argument("--stats", default=None, help="write per-frame latency, swaps and drops here (JSON)")
    r.add_argument("--r", type=float, nargs="+", default=None, help="initial task weights")
    r.add_argument("--c", type=float, default=0.0, help="initial cost preference")
    r.add_argument("--budget-ms", type=float, default=None, help="initial latency budget (needs calibrate)")
    r.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: all cores)")
    for name in ("bench", "calibrate"):
        b = sub.add_parser(name, help="per-signature latency percentiles" + (
            " saved for set_budget" if name == "calibrate" else ""))
        if name == "bench":
            b.add_argument("--bundle", required=True)
        else:
            b.add_argument("bundle")
        b.add_argument("--backend", default="auto", choices=["auto", *backends.names()])
        b.add_argument("--repeats", type=int, default=50)
        b.add_argument("--warmup", type=int, default=10)
        b.add_argument("--threads", type=int, default=0)
        b.add_argument("--fps", type=float, default=None, help="pace runs like a camera at this frame rate "
                       "(latency at 30 FPS is higher than back to back; calibrate at the deployed rate)")
    return p


# -- schedule --------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    frame: int
    r: tuple | None = None
    c: float | None = None
    budget_ms: float | None = None


SCHEDULE_DIR = Path(__file__).parent / "schedules"  # shipped schedules, usable by name (e.g. demo)


def load_schedule(path: str | None) -> dict[int, list[Event]]:
    if path is None:
        return {}
    if not Path(path).exists() and (SCHEDULE_DIR / f"{path}.json").is_file():
        path = str(SCHEDULE_DIR / f"{path}.json")
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EdgeRuntimeError(f"schedule {path}: cannot read JSON ({exc})") from None
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list):
        raise EdgeRuntimeError(f"schedule {path}: expected {{\"events\": [...]}}")
    out: dict[int, list[Event]] = {}
    for i, ev in enumerate(events):
        where = f"schedule {path}: events[{i}]"
        if not isinstance(ev, dict) or set(ev) - {"frame", "r", "c", "budget_ms"}:
            raise EdgeRuntimeError(f"{where}: expected keys frame, r, c, budget_ms; found {ev!r}")
        if not isinstance(ev.get("frame"), int) or ev["frame"] < 0:
            raise EdgeRuntimeError(f"{where}: frame must be an integer >= 0, found {ev.get('frame')!r}")
        if ("r" in ev) != ("c" in ev) or ("r" not in ev and "budget_ms" not in ev):
            raise EdgeRuntimeError(f"{where}: give r and c together, and/or budget_ms")
        out.setdefault(ev["frame"], []).append(Event(ev["frame"], tuple(ev["r"]) if "r" in ev else None,
                                                     ev.get("c"), ev.get("budget_ms")))
    return out


def check_schedule(schedule: dict[int, list[Event]], n_tasks: int, path) -> None:
    """Validates every event against the bundle before the first frame, so a bad
    event cannot stop a run half-way."""
    from runtime.prefs import validate_preference
    for events in schedule.values():
        for ev in events:
            where = f"schedule {path}: event at frame {ev.frame}"
            if ev.r is not None:
                validate_preference(list(ev.r), ev.c, n_tasks, where=where)
            if ev.budget_ms is not None and (not isinstance(ev.budget_ms, (int, float)) or not ev.budget_ms > 0):
                raise EdgeRuntimeError(f"{where}: budget_ms must be a positive number, found {ev.budget_ms!r}")


def apply_event(rt, ev: Event) -> None:
    if ev.r is not None:
        rt.set_preference(list(ev.r), ev.c)
    if ev.budget_ms is not None:
        rt.set_budget(ev.budget_ms)


# -- run ---------------------------------------------------------------------------------
def _hud(rt, sel, fps: float, dropped: int | None = None) -> list[str]:
    # Percentiles of the last 300 frames: what the stream does now, and O(1) per frame on long runs.
    recent = rt.engine_ms[-300:]
    st = {f"p{q}": float(np.percentile(recent, q)) for q in (50, 99)} if recent else {}
    sig = rt.manifest.signatures[sel.entry.signature]
    full = rt.manifest.full_net
    budget = f"{rt.budget_ms:.2f} ms" if rt.budget_ms else "none"
    drops = f"  dropped {dropped}" if dropped is not None else ""
    return [f"{fps:5.1f} FPS  engine p50 {st.get('p50', 0):.2f} p99 {st.get('p99', 0):.2f} ms{drops}",
            f"r=({', '.join(f'{v:.2f}' for v in sel.entry.r)}) c={sel.entry.c:.2f} budget {budget}",
            f"sig {sig.signature}  params {sig.params / full['params']:.2f}x  FLOPs {sig.flops / full['flops']:.2f}x"]


def _keys(rt, key: int) -> bool:
    """Applies a window key press; returns False to quit."""
    if key in (ord("q"), 27):
        return False
    e = rt.current.entry
    r, c = np.array(e.r), e.c
    if ord("1") <= key <= ord("9") and key - ord("1") < len(r):
        r[key - ord("1")] += 0.1
        rt.set_preference(list(r / r.sum()), c)
    elif key in (ord("c"), ord("C")):
        rt.set_preference(list(r), float(np.clip(c + (0.1 if key == ord("C") else -0.1), 0, 1)))
    elif key in (ord("+"), ord("-")) and rt.budget_ms:
        rt.set_budget(rt.budget_ms * (1.25 if key == ord("+") else 0.8))
    return True


class _Output:
    """The overlay canvas of each frame, written to an mp4 and/or shown in a window."""

    def __init__(self, args, kinds: dict[str, str]):
        from runtime.sources import _cv2
        self.cv2 = _cv2() if (args.out or not args.headless) else None
        self.path, self.window, self.kinds = args.out, not args.headless, kinds
        self.writer, self.written = None, 0

    def frame(self, rt, frame, outs, hud) -> bool:
        """Draws and emits one frame (`hud()` gives its text lines); False when the user quit the window."""
        if self.cv2 is None:
            return True
        from runtime.viz import compose
        canvas = compose(frame, outs, self.kinds, hud())
        if self.path:
            if self.writer is None:
                self.writer = self.cv2.VideoWriter(self.path, self.cv2.VideoWriter_fourcc(*"mp4v"), 15,
                                                   (canvas.shape[1], canvas.shape[0]))
                if not self.writer.isOpened():
                    raise EdgeRuntimeError(f"cannot write video {self.path}")
            self.writer.write(np.ascontiguousarray(canvas[..., ::-1]))
            self.written += 1
        if self.window:
            self.cv2.imshow("edgemtl", canvas[..., ::-1])
            return _keys(rt, self.cv2.waitKey(1) & 0xFF)
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()  # finalises the mp4, also after Ctrl-C


def run_stream(args) -> dict:
    """Runs the source through the bundle; Ctrl-C ends the stream like its last
    frame would (result['interrupted']), so stats and video of a camera run are kept."""
    import runtime
    from runtime.preprocess import preprocess
    from runtime.sources import open_source
    schedule = load_schedule(args.schedule)
    rt = runtime.load(args.bundle, args.backend, threads=args.threads)
    check_schedule(schedule, len(rt.task_names), args.schedule)
    if args.r is not None:
        rt.set_preference(args.r, args.c)
    if args.budget_ms is not None:
        rt.set_budget(args.budget_ms)
    out = _Output(args, {t.name: t.kind for t in rt.manifest.tasks})
    source, live = open_source(args.source, Path(args.bundle), args.frames, args.live_fps)
    per_frame, swaps, interrupted, t_start = [], [], False, time.perf_counter()
    try:
        for i, frame in enumerate(source):
            for ev in schedule.get(i, []):
                n0 = len(rt.swaps)
                apply_event(rt, ev)
                swaps += [{"frame": i, **s} for s in rt.swaps[n0:]]
            t0 = time.perf_counter()  # call_ms includes preprocessing
            outs, sel = rt.infer(preprocess(frame, rt.manifest.input), t0)
            per_frame.append({"frame": i, "call_ms": rt.call_ms[-1], "engine_ms": rt.engine_ms[-1],
                              "point": sel.entry.name, "signature": sel.entry.signature,
                              "over_budget": bool(rt.budget_ms and rt.call_ms[-1] > rt.budget_ms)})
            fps = len(per_frame) / max(time.perf_counter() - t_start, 1e-9)
            if not out.frame(rt, frame, outs, lambda: _hud(rt, sel, fps, live.dropped if live else None)):
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if live is not None:
            live.close()
        out.close()
        rt.close()
    return {"bundle": str(args.bundle), "source": args.source, "backend": rt.backend,
            "segments": segments(per_frame, rt.manifest),
            "backend_reason": rt.backend_reason, "interrupted": interrupted, "frames": len(per_frame),
            "processed": len(per_frame), "live": live is not None,
            "produced": live.produced if live else len(per_frame), "dropped": live.dropped if live else 0,
            "video": args.out, "video_frames": out.written, "swaps": swaps, "summary": rt.stats(),
            "per_frame": per_frame}


def segments(per_frame: list[dict], manifest) -> list[dict]:
    """Consecutive frames on one grid point, with that sub-network's params/FLOPs
    (share of the full anchor) and engine p50: what a schedule's switches bought."""
    out, full = [], manifest.full_net
    for f in per_frame:
        if not out or out[-1]["point"] != f["point"]:
            sig, entry = manifest.signatures[f["signature"]], manifest.entry(f["point"])
            out.append({"first": f["frame"], "point": f["point"], "r": list(entry.r), "c": entry.c,
                        "signature": f["signature"],
                        "params": sig.params / full["params"], "flops": sig.flops / full["flops"], "ms": []})
        out[-1]["last"] = f["frame"]
        out[-1]["ms"].append(f["engine_ms"])
    for seg in out:
        seg["engine_p50_ms"] = float(np.percentile(seg.pop("ms"), 50))
    return out


# -- bench / calibrate -------------------------------------------------------------------
def bench(bundle: str, backend: str = "auto", repeats: int = 50, warmup: int = 10, threads: int = 0,
          fps: float | None = None) -> dict:
    """Per-signature latency (ms) of one frame on this device: preprocessing of a
    camera-sized frame (the bundle's samples) plus the engine run, which is what
    `set_budget` must fit. Frames rotate between repeats. With `fps`, runs are
    paced like a camera's frames: on our 2-core VM a frame every 33 ms costs
    about 2x a back-to-back run (cold caches, idle cores), so calibrate at the
    rate you deploy at."""
    import runtime
    from runtime.preprocess import preprocess
    from runtime.sources import frames
    rt = runtime.load(bundle, backend, threads=threads)
    spec = rt.manifest.input
    try:
        imgs = list(frames("synthetic", Path(bundle), 4))
    except EdgeRuntimeError:  # no samples: random frames of the input size
        imgs = list(np.random.default_rng(0).integers(0, 255, (4, *spec.shape[1:], spec.shape[0]), dtype=np.uint8))
    table = {}
    try:
        for sig in rt.manifest.signatures:
            entry = next(e for e in rt.manifest.grid if e.signature == sig)
            runner = rt.open_runner(entry)
            try:
                ms = []
                for i in range(warmup + repeats):
                    if fps:
                        time.sleep(1.0 / fps)
                    t0 = time.perf_counter()
                    runner.run(preprocess(imgs[i % len(imgs)], spec))
                    ms.append((time.perf_counter() - t0) * 1e3)
            finally:
                runner.close()
            table[sig] = {f"p{q}": float(np.percentile(ms[warmup:], q)) for q in (50, 90, 99)}
    finally:
        rt.close()
    return {"backend": rt.backend, "device": rt.device(), "repeats": repeats, "threads": threads, "fps": fps,
            "measures": "preprocess + engine run per frame",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "signatures": table}


def _print_bench(result: dict, manifest) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"{result['backend']} on {result['device']} ({result['repeats']} runs each)")
    for col in ("signature", "FLOPs vs full", "p50 ms", "p90 ms", "p99 ms"):
        t.add_column(col)
    full = manifest.full_net["flops"]
    for sig, v in sorted(result["signatures"].items(), key=lambda kv: kv[1]["p50"]):
        t.add_row(sig, f"{manifest.signatures[sig].flops / full:.2f}", *(f"{v[k]:.3f}" for k in ("p50", "p90", "p99")))
    Console().print(t)


def _print_run(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    s = result["summary"]
    t = Table(title=f"{result['frames']} frames from {result['source']} on {result['backend']}", show_header=False)
    rows = [("backend", result["backend_reason"]),
            ("frames processed / dropped", f"{result['processed']} / {result['dropped']}"),
            ("call latency p50 / p90 / p99 ms", " / ".join(f"{s['call_ms'].get(k, 0):.2f}" for k in ("p50", "p90", "p99"))),
            ("engine latency p50 / p90 / p99 ms", " / ".join(f"{s['engine_ms'].get(k, 0):.2f}" for k in ("p50", "p90", "p99"))),
            ("swaps (hot / cold)", f"{s['swaps']} ({s['hot_swaps']} / {s['cold_swaps']})"),
            ("hot swap p50 / p99 ms", " / ".join(f"{s['hot_swap_ms'].get(k, 0):.3f}" for k in ("p50", "p99"))),
            ("cold swap p50 / p99 ms", " / ".join(f"{s['cold_swap_ms'].get(k, 0):.2f}" for k in ("p50", "p99"))),
            ("frames over budget", str(sum(f["over_budget"] for f in result["per_frame"]))),
            ("output video", f"{result['video']} ({result['video_frames']} frames)")]
    for row in rows:
        t.add_row(*row)
    Console().print(t)
    seg = Table(title="Sub-network per stretch of frames (params / FLOPs as a share of the full anchor)")
    for col in ("frames", "r", "c", "signature", "params", "FLOPs", "engine p50 ms"):
        seg.add_column(col)
    for g in result["segments"]:
        seg.add_row(f"{g['first']}-{g['last']}", " ".join(f"{v:.2f}" for v in g["r"]), f"{g['c']:.2f}",
                    g["signature"][:8], f"{g['params']:.2f}x",
                    f"{g['flops']:.2f}x", f"{g['engine_p50_ms']:.3f}")
    Console().print(seg)


def _run(args) -> int:
    if args.cmd == "run":
        result = run_stream(args)
        if args.stats:
            atomic_write_text(args.stats, json.dumps(result, indent=1))
        _print_run(result)
        if result["interrupted"]:
            print("runtime: interrupted; stats and video cover the frames processed", file=sys.stderr)
            return 130
        return 0
    from runtime.manifest import load_manifest
    from runtime.resolve import save_latency
    result = bench(args.bundle, args.backend, args.repeats, args.warmup, args.threads, args.fps)
    _print_bench(result, load_manifest(args.bundle))
    if args.cmd == "calibrate":
        print(f"wrote {save_latency(args.bundle, result['backend'], result['device'], result)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_main("runtime", lambda: _run(args))

if __name__ == "__main__":
    sys.exit(main())
