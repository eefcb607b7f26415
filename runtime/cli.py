"""`runtime` console script: run a bundle on a stream, benchmark and calibrate it.

Torch-free: imports numpy, onnxruntime (or tensorrt) and, for video, OpenCV.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from edgecore.cli import run_main
from edgecore.fileio import atomic_write_text
from runtime import backends
from runtime.app import StreamConfig, request_stop, run_stream, writable_target
from runtime.calibrate import bench
from runtime.latency import save_table
from runtime.manifest import load_manifest

EPILOG = """examples:
  runtime verify bundles/scenes3                      # a received bundle checked before it runs
  runtime calibrate bundles/scenes3                   # latency table for set_budget on this device
  runtime bench bundles/scenes3                       # per-signature latency percentiles
  runtime run bundles/scenes3 --source synthetic --headless --out out.mp4 \\
      --schedule schedule.json --stats stats.json
  runtime run bundles/scenes3 --source 0              # camera 0, window with live keys
  runtime run bundles/scenes3 --source clip.mp4 --live-fps 30   # the clip as a camera delivers it

schedule.json: {"events": [{"frame": 0, "r": [0.6, 0.2, 0.2], "c": 0.0},
                           {"frame": 30, "budget_ms": 2.5}, ...]}
keys (window): 1..9 raise that task's weight, c / C lower / raise the cost preference,
  + / - raise / lower the budget by 25%, q quits.
exit codes: 0 ok, 2 bad input (bundle, source, schedule, preference), 130 interrupted"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runtime",
        description="Run compiled controllable multi-task bundles (no PyTorch needed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a camera, video, image folder or the bundle's synthetic frames")
    _bundle_argument(r)
    r.add_argument("--source", default="synthetic", help="camera index, video file, image folder or 'synthetic'")
    r.add_argument("--frames", type=int, default=None, help="stop after N frames (synthetic: loops to N)")
    r.add_argument(
        "--live-fps",
        type=float,
        default=None,
        help="play a video, folder or synthetic source like a "
        "camera delivering this many frames per second: frames that arrive while one is processed "
        "are dropped and counted (cameras and stream URLs are always live)",
    )
    r.add_argument("--backend", default="auto", choices=["auto", *backends.names()])
    r.add_argument("--headless", action="store_true", help="no window (use with --out)")
    r.add_argument("--out", default=None, help="write the overlay video here (.mp4)")
    r.add_argument(
        "--schedule",
        default=None,
        help="schedule.json (or a shipped name: demo): preference/budget switches at frame numbers",
    )
    r.add_argument(
        "--stats",
        default=None,
        help="write latency percentiles, swaps, drops and the sub-network per "
        "stretch of frames here (JSON); per-frame records go to STATS with .frames.jsonl",
    )
    r.add_argument(
        "--frames-log",
        default=None,
        help="per-frame records as JSON lines (default: beside --stats); "
        "streamed, so a long camera run keeps its memory bounded",
    )
    r.add_argument(
        "--wait-swaps",
        action="store_true",
        help="hold each scheduled frame until its swap is active (reproducible offline runs); by default "
        "swaps load in the background and the stats say at which frame each took effect",
    )
    r.add_argument("--r", type=float, nargs="+", default=None, help="initial task weights")
    r.add_argument("--c", type=float, default=0.0, help="initial cost preference")
    r.add_argument("--budget-ms", type=float, default=None, help="initial latency budget (needs calibrate)")
    r.add_argument("--threads", type=int, default=0, help="intra-op threads of CPU backends (0: all cores)")
    for name in ("bench", "calibrate"):
        b = sub.add_parser(
            name, help="per-signature latency percentiles" + (" saved for set_budget" if name == "calibrate" else "")
        )
        _bundle_argument(b)
        b.add_argument("--backend", default="auto", choices=["auto", *backends.names()])
        b.add_argument("--repeats", type=int, default=50)
        b.add_argument("--warmup", type=int, default=10)
        b.add_argument("--threads", type=int, default=0)
        b.add_argument(
            "--fps",
            type=float,
            default=None,
            help="pace runs like a camera at this frame rate "
            "(latency at 30 FPS is higher than back to back; calibrate at the deployed rate)",
        )
    v = sub.add_parser(
        "verify",
        help="check a bundle as a runtime would (manifest, weights, folding, engines, tables), without running it",
        description="Reads every file of BUNDLE the way the runtime does, without running anything: "
        "exit 0 when it is valid, 2 with the first broken rule. For pipelines that receive bundles.",
    )
    _bundle_argument(v)
    return p


def _bundle_argument(p: argparse.ArgumentParser) -> None:
    """BUNDLE is positional for every subcommand; `--bundle BUNDLE` (the older form) still works."""
    p.add_argument("bundle", nargs="?", help="compiled bundle directory")
    p.add_argument("--bundle", dest="bundle_opt", default=None, help=argparse.SUPPRESS)


def _parse(argv) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.bundle and args.bundle_opt and args.bundle != args.bundle_opt:
        parser.error(f"two bundles given: {args.bundle} and --bundle {args.bundle_opt}")
    args.bundle = args.bundle or args.bundle_opt
    if not args.bundle:
        parser.error("the bundle directory is required (runtime run BUNDLE ...)")
    return args


def _print_bench(table, manifest) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{table.backend} on {table.device}, {table.machine} ({table.repeats} runs each)")
    for col in ("signature", "FLOPs vs full", "p50 ms", "p90 ms", "p99 ms"):
        t.add_column(col)
    full = manifest.full_net["flops"]
    for sig, v in sorted(table.signatures.items(), key=lambda kv: kv[1]["p50"]):
        t.add_row(sig, f"{manifest.signatures[sig].flops / full:.2f}", *(f"{v[k]:.3f}" for k in ("p50", "p90", "p99")))
    Console().print(t)


def _print_run(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    s = result["summary"]
    t = Table(title=f"{result['frames']} frames from {result['source']} on {result['backend']}", show_header=False)
    rows = [
        ("backend", result["backend_reason"]),
        ("frames processed / dropped", f"{result['processed']} / {result['dropped']}"),
        ("call latency p50 / p90 / p99 ms", " / ".join(f"{s['call_ms'].get(k, 0):.2f}" for k in ("p50", "p90", "p99"))),
        (
            "engine latency p50 / p90 / p99 ms",
            " / ".join(f"{s['engine_ms'].get(k, 0):.2f}" for k in ("p50", "p90", "p99")),
        ),
        ("swaps (hot / cold)", f"{s['swaps']} ({s['hot_swaps']} / {s['cold_swaps']})"),
        ("hot swap p50 / p99 ms", " / ".join(f"{s['hot_swap_ms'].get(k, 0):.3f}" for k in ("p50", "p99"))),
        ("cold swap p50 / p99 ms", " / ".join(f"{s['cold_swap_ms'].get(k, 0):.2f}" for k in ("p50", "p99"))),
        ("frames over budget", str(result["over_budget"])),
        ("output video", f"{result['video']} ({result['video_frames']} frames)"),
    ]
    for row in rows:
        t.add_row(*row)
    Console().print(t)
    seg = Table(title="Sub-network per stretch of frames (params / FLOPs as a share of the full anchor)")
    for col in ("frames", "r", "c", "signature", "params", "FLOPs", "engine p50 ms"):
        seg.add_column(col)
    for g in result["segments"]:
        seg.add_row(
            f"{g['first']}-{g['last']}",
            " ".join(f"{v:.2f}" for v in g["r"]),
            f"{g['c']:.2f}",
            g["signature"][:8],
            f"{g['params']:.2f}x",
            f"{g['flops']:.2f}x",
            f"{g['engine_p50_ms']:.3f}",
        )
    Console().print(seg)


def _stream_config(args) -> StreamConfig:
    frames_log = args.frames_log
    if frames_log is None and args.stats:
        frames_log = str(Path(args.stats).with_suffix(".frames.jsonl"))
    r = tuple(args.r) if args.r is not None else None
    return StreamConfig(args.bundle, args.source, args.frames, args.live_fps, args.backend, args.headless, args.out,
                        args.schedule, r, args.c, args.budget_ms, args.threads, frames_log,
                        args.wait_swaps)  # fmt: skip


def _stop_between_frames(signum, frame) -> None:
    request_stop()  # the frame in flight is finished and written; then the video is closed, the stats kept


def _run(args) -> int:
    if args.cmd == "verify":
        from runtime.verify import verify_bundle

        checked = verify_bundle(args.bundle)
        print(f"{args.bundle}: valid (" + ", ".join(f"{k} {v}" for k, v in checked.items()) + ")")
        return 0
    if args.cmd == "run":
        if args.stats:  # checked before the first frame, not discovered after the whole run
            writable_target(args.stats, "--stats")
        cfg = _stream_config(args)
        previous = signal.signal(signal.SIGTERM, _stop_between_frames)  # `kill PID` ends a run like Ctrl-C
        try:
            result = run_stream(cfg)
        finally:  # a caller's own handler (main() called in-process) is theirs again
            signal.signal(signal.SIGTERM, previous)
        if args.stats:
            atomic_write_text(args.stats, json.dumps(result, indent=1))
        _print_run(result)
        if result["interrupted"]:
            print("runtime: interrupted; stats and video cover the frames processed", file=sys.stderr)
            return 130
        return 0
    table = bench(args.bundle, args.backend, args.repeats, args.warmup, args.threads, args.fps)
    _print_bench(table, load_manifest(args.bundle))
    if args.cmd == "calibrate":
        print(f"wrote {save_table(args.bundle, table)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    return run_main("runtime", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
