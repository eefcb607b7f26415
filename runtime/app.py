"""The stream app behind `runtime run`: a source (camera, video, image folder or the
bundle's sample frames) through a loaded bundle, with a schedule of preference and
budget switches, an overlay video and/or window with live keys, and per-frame
statistics. A library module: `run_stream(StreamConfig(...))` is what the CLI calls."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import runtime
from edgecore.fileio import loads_untrusted
from edgecore.stats import percentiles
from runtime.errors import EdgeRuntimeError
from runtime.prefs import validate_preference
from runtime.preprocess import preprocess
from runtime.sources import frame_count, import_cv2, open_source
from runtime.viz import compose


@dataclass(frozen=True)
class StreamConfig:
    """Everything `runtime run` needs; the CLI parses into this."""

    bundle: str
    source: str = "synthetic"  # camera index, video file, image folder or 'synthetic'
    frames: int | None = None  # stop after N frames
    live_fps: float | None = None  # play a file source like a camera at this rate (drops frames)
    backend: str = "auto"
    headless: bool = True
    out: str | None = None  # overlay video (.mp4)
    schedule: str | None = None  # schedule.json or a shipped name
    r: tuple[float, ...] | None = None  # initial task weights
    c: float = 0.0
    budget_ms: float | None = None
    threads: int = 0
    frames_log: str | None = None  # per-frame records as JSON lines (streamed: memory stays bounded)
    wait_swaps: bool = False  # block the frame until a scheduled swap is active (reproducible offline runs)


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
        data = loads_untrusted(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise EdgeRuntimeError(f"schedule {path}: cannot read JSON ({exc})") from None
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list):
        raise EdgeRuntimeError(f'schedule {path}: expected {{"events": [...]}}')
    out: dict[int, list[Event]] = {}
    for i, ev in enumerate(events):
        where = f"schedule {path}: events[{i}]"
        if not isinstance(ev, dict) or set(ev) - {"frame", "r", "c", "budget_ms"}:
            raise EdgeRuntimeError(f"{where}: expected keys frame, r, c, budget_ms; found {ev!r}")
        frame = ev.get("frame")
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise EdgeRuntimeError(f"{where}: frame must be an integer >= 0, found {frame!r}")
        if ("r" in ev) != ("c" in ev) or ("r" not in ev and "budget_ms" not in ev):
            raise EdgeRuntimeError(f"{where}: give r and c together, and/or budget_ms")
        if "r" in ev and not isinstance(ev["r"], list):
            raise EdgeRuntimeError(f"{where}: r must be a list of task weights, found {ev['r']!r}")
        out.setdefault(ev["frame"], []).append(
            Event(ev["frame"], tuple(ev["r"]) if "r" in ev else None, ev.get("c"), ev.get("budget_ms"))
        )
    return out


def check_schedule(schedule: dict[int, list[Event]], n_tasks: int, path, frames: int | None = None) -> None:
    """Validates every event against the bundle (and the run's frame count, when known)
    before the first frame, so a bad event cannot stop a run half-way or never happen."""
    late = sorted(f for f in schedule if frames is not None and f >= frames)
    if late:
        raise EdgeRuntimeError(
            f"schedule {path}: an event at frame {late[0]} would never run: the run has "
            f"{frames} frames (0..{frames - 1})"
        )
    for events in schedule.values():
        for ev in events:
            where = f"schedule {path}: event at frame {ev.frame}"
            if ev.r is not None:
                validate_preference(list(ev.r), ev.c, n_tasks, where=where)
            if ev.budget_ms is not None and (not isinstance(ev.budget_ms, (int, float)) or not ev.budget_ms > 0):
                raise EdgeRuntimeError(f"{where}: budget_ms must be a positive number, found {ev.budget_ms!r}")


def apply_event(rt, ev: Event) -> list:
    """Requests the event's switches without waiting (the frame loop never blocks on a
    load); returns the pending swaps."""
    pending = []
    if ev.r is not None:
        pending.append(rt.set_preference(list(ev.r), ev.c, wait=False))
    if ev.budget_ms is not None:
        pending.append(rt.set_budget(ev.budget_ms, r=ev.r, wait=False))
    return pending


# -- run ---------------------------------------------------------------------------------
def hud(rt, sel, fps: float, dropped: int | None = None) -> list[str]:
    # Percentiles of the last 300 frames: what the stream does now, and O(1) per frame on long runs.
    recent = list(itertools.islice(reversed(rt.engine_ms), 300))
    st = percentiles(recent, (50, 99))
    sig = rt.manifest.signatures[sel.entry.signature]
    full = rt.manifest.full_net
    budget = f"{rt.budget_ms:.2f} ms" if rt.budget_ms else "none"
    drops = f"  dropped {dropped}" if dropped is not None else ""
    return [
        f"{fps:5.1f} FPS  engine p50 {st.get('p50', 0):.2f} p99 {st.get('p99', 0):.2f} ms{drops}",
        f"r=({', '.join(f'{v:.2f}' for v in sel.entry.r)}) c={sel.entry.c:.2f} budget {budget}",
        f"sig {sig.signature}  params {sig.params / full['params']:.2f}x  FLOPs {sig.flops / full['flops']:.2f}x",
    ]


def keys(rt, key: int) -> bool:
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


class Output:
    """The overlay canvas of each frame, written to an mp4 and/or shown in a window."""

    def __init__(self, cfg: StreamConfig, kinds: dict[str, str]):
        self.cv2 = import_cv2() if (cfg.out or not cfg.headless) else None
        self.path, self.window, self.kinds = cfg.out, not cfg.headless, kinds
        self.writer, self.written = None, 0

    def frame(self, rt, frame, outs, hud) -> bool:
        """Draws and emits one frame (`hud()` gives its text lines); False when the user quit the window."""
        if self.cv2 is None:
            return True
        canvas = compose(frame, outs, self.kinds, hud())
        if self.path:
            if self.writer is None:
                self.writer = self.cv2.VideoWriter(
                    self.path, self.cv2.VideoWriter_fourcc(*"mp4v"), 15, (canvas.shape[1], canvas.shape[0])
                )
                if not self.writer.isOpened():
                    raise EdgeRuntimeError(f"cannot write video {self.path}")
            self.writer.write(np.ascontiguousarray(canvas[..., ::-1]))
            self.written += 1
        if self.window:
            try:
                self.cv2.imshow("edgemtl", canvas[..., ::-1])
            except self.cv2.error as exc:  # headless OpenCV build, or no display
                raise EdgeRuntimeError(
                    f"cannot open a window here ({str(exc).strip().splitlines()[-1][:120]}); "
                    f"run with --headless (and --out FILE.mp4 to keep the video)"
                ) from None
            return keys(rt, self.cv2.waitKey(1) & 0xFF)
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()  # finalises the mp4, also after Ctrl-C


STOP = threading.Event()  # set by request_stop(): the run loop ends before its next frame


def request_stop() -> None:
    """Ends a running `run_stream` between two frames, as if the source had ended (safe from
    a signal handler or another thread); the result then says `interrupted`."""
    STOP.set()


def run_stream(args: StreamConfig) -> dict:
    """Runs the source through the bundle; Ctrl-C ends the stream like its last
    frame would (result['interrupted']), so stats and video of a camera run are kept."""
    check_config(args)
    schedule = load_schedule(args.schedule)
    rt = open_runtime(args, schedule)
    out = Output(args, {t.name: t.kind for t in rt.manifest.tasks})
    source, live = open_source(args.source, Path(args.bundle), args.frames, args.live_fps)
    log, interrupted, t_start = FrameLog(rt.manifest, args.frames_log), False, time.perf_counter()
    swaps = Swaps(rt.calls)
    STOP.clear()
    try:
        for i, frame in enumerate(source):
            if STOP.is_set():  # a stop request (SIGTERM) ends the run between two frames
                interrupted = True
                break
            swaps.request(rt, schedule.get(i, []), i, args.wait_swaps)
            t0 = time.perf_counter()  # call_ms includes preprocessing
            outs, sel = rt.infer(preprocess(frame, rt.manifest.input), t0)
            log.add(frame_record(rt, i, sel))
            fps = log.frames / max(time.perf_counter() - t_start, 1e-9)
            if not out.frame(rt, frame, outs, lambda: hud(rt, sel, fps, live.dropped if live else None)):
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if live is not None:
            live.close()
        out.close()
        log.close()
        rt.close()  # a swap still loading is superseded and recorded as such
    return result(args, rt, out, live, log, swaps.records(), interrupted)


def check_config(args: StreamConfig) -> None:
    """Refuses what would fail or silently misbehave later, before anything is loaded."""
    if args.frames is not None and (isinstance(args.frames, bool) or args.frames < 1):
        raise EdgeRuntimeError(f"--frames must be a positive number of frames, found {args.frames!r}")
    for flag, path in (("--out", args.out), ("--frames-log", args.frames_log)):
        if path is not None:
            writable_target(path, flag)


def writable_target(path: str, flag: str) -> None:
    """`path` can be created or replaced: its folder exists and is writable, and it is not a folder."""
    p = Path(path)
    if p.is_dir():
        raise EdgeRuntimeError(f"{flag} {path} is a folder; expected a file path")
    if not p.parent.is_dir() or not os.access(p.parent, os.W_OK):
        raise EdgeRuntimeError(f"{flag} {path}: its folder {p.parent} does not exist or is not writable")


def open_runtime(args: StreamConfig, schedule: dict[int, list[Event]]):
    """The loaded bundle at the initial preference/budget; the schedule is checked first."""
    rt = runtime.load(args.bundle, args.backend, threads=args.threads)
    n_frames = frame_count(args.source, Path(args.bundle), args.frames, args.live_fps)
    check_schedule(schedule, len(rt.task_names), args.schedule, n_frames)
    if args.r is not None:
        rt.set_preference(args.r, args.c)
    if args.budget_ms is not None:
        rt.set_budget(args.budget_ms)
    return rt


class Swaps:
    """The schedule's swap requests and where each took effect: `frame` is the first
    frame that ran on the new sub-network, `requested` the frame whose event asked."""

    def __init__(self, calls_before: int):
        self.calls_before = calls_before  # rt.calls when the stream started
        self.pending: list[tuple[int, object]] = []

    def request(self, rt, events: list[Event], frame: int, wait: bool = False) -> None:
        for ev in events:
            self.pending += [(frame, swap) for swap in apply_event(rt, ev)]
        if wait and events:
            self.pending[-1][1].wait()  # the last request supersedes the others

    def records(self) -> list[dict]:
        """Swaps that switched the sub-network, plus those superseded or failed."""
        out = []
        for requested, sw in self.pending:
            if sw.state == "active" and not sw.switched:
                continue  # the event selected the point already running
            rec = {"requested": requested, "state": sw.state, "to": sw.selection.entry.name, "why": sw.why}
            if sw.state == "active":
                rec |= {"frame": sw.at_call - self.calls_before, "signature": sw.selection.entry.signature,
                        "warm": sw.warm, "ms": sw.ms}  # fmt: skip
            if sw.error is not None:
                rec["error"] = str(sw.error)
            out.append(rec)
        return out


def frame_record(rt, i: int, sel) -> dict:
    over = bool(rt.budget_ms and rt.call_ms[-1] > rt.budget_ms)
    return {"frame": i, "call_ms": rt.call_ms[-1], "engine_ms": rt.engine_ms[-1], "point": sel.entry.name,
            "signature": sel.entry.signature, "over_budget": over}  # fmt: skip


def result(args: StreamConfig, rt, out: Output, live, log: FrameLog, swaps: list[dict],
           interrupted: bool) -> dict:  # fmt: skip
    return {
        "bundle": str(args.bundle), "source": args.source, "backend": rt.backend, "segments": log.segments,
        "backend_reason": rt.backend_reason, "interrupted": interrupted, "frames": log.frames,
        "processed": log.frames, "over_budget": log.over_budget, "live": live is not None,
        "produced": live.produced if live else log.frames, "dropped": live.dropped if live else 0,
        "video": args.out, "video_frames": out.written, "swaps": swaps, "summary": rt.stats(),
        "frames_log": args.frames_log,
    }  # fmt: skip


class FrameLog:
    """Per-frame records in bounded memory: each record is streamed to a JSON-lines file
    (when a path is given) as it happens; what stays in memory is counts, the segments
    (consecutive frames on one grid point, with that sub-network's params/FLOPs as a share
    of the full anchor: what a schedule's switches bought) and, per segment, a ring buffer
    of its last RECENT engine times for the p50."""

    RECENT = 10_000

    def __init__(self, manifest, path: str | None = None):
        self.manifest, self.path = manifest, path
        self.file = open(path, "w") if path else None  # noqa: SIM115 - closed by close()
        self.frames = self.over_budget = 0
        self.segments: list[dict] = []
        self._ms: deque = deque(maxlen=self.RECENT)

    def add(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
        self.frames += 1
        self.over_budget += record["over_budget"]
        if not self.segments or self.segments[-1]["point"] != record["point"]:
            self._close_segment()
            self.segments.append(self._segment(record))
        self.segments[-1]["last"] = record["frame"]
        self._ms.append(record["engine_ms"])

    def _segment(self, f: dict) -> dict:
        sig, entry, full = (
            self.manifest.signatures[f["signature"]],
            self.manifest.entry(f["point"]),
            self.manifest.full_net,
        )
        return {"first": f["frame"], "point": f["point"], "r": list(entry.r), "c": entry.c, "signature": f["signature"],
                "params": sig.params / full["params"], "flops": sig.flops / full["flops"]}  # fmt: skip

    def _close_segment(self) -> None:
        if self.segments and self._ms:
            self.segments[-1]["engine_p50_ms"] = percentiles(self._ms, (50,))["p50"]
        self._ms.clear()

    def close(self) -> None:
        self._close_segment()
        if self.file is not None:
            self.file.close()
            self.file = None
