"""`python -m benchmarks <name>` (`--help` lists them): results go to benchmarks/results/<device>/
as JSON + Markdown + plots, plus a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmarks of the trainer, compiler and "
        "runtime; results go to benchmarks/results/<device>/ (JSON + Markdown + plots).",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, help_ in (
        ("all", "everything below, then SUMMARY.md"),
        ("latency", "P1-P3: per-signature latency"),
        ("resolution", "P1 by input size and ORT thread count (paired calls)"),
        ("swaps", "P4/P6: swaps, rebinds, resolution, runtime overhead"),
        ("camera", "camera-loop simulation with a budget schedule"),
        ("compile", "P5: build time vs grid size, cold and warm"),
        ("control", "paper tables and figures 5/7, latency over the simplex"),
        ("edge", "the edge stage alone per variant, trees scored on the path table (retrains it; not part of all)"),
        ("ablations", "Table 6 ablations and the Fig. 8 tau sweep (retrains the hypernets; not part of all)"),
        ("scale", "paper-scale models: bundle size, build time, latency, swaps, memory (trains them; not part of all)"),
        ("distributed", "training speed of a torchrun job of 2 processes vs 1 process (trains; not part of all)"),
        ("families", "tree vs width-slimmable family: table, latency per budget (needs --run and --slim-run)"),
        ("backends", "CPU backends side by side: ONNX Runtime, OpenVINO fp32/bf16 on the run's signatures"),
        ("native", "the C++ runtime beside the Python runtimes: parity and latency (needs the cmake build)"),
    ):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--bundle", help="compiled bundle (latency, resolution, swaps, camera, control)")
        s.add_argument(
            "--run",
            help="trainer run directory (latency, resolution, compile, control, ablations; scale: a 32x32 model)",
        )
        s.add_argument("--slim-run", help="families: a trainer run of the width-slimmable family")
        s.add_argument("--paper-run", help="native: a paper-scale trainer run (e.g. runs/nyu-r34) measured too")
        s.add_argument("--quick", action="store_true", help="fewer repeats and smaller grids (minutes)")
        s.add_argument("--out", default=None, help="result directory (default benchmarks/results/<device>)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from benchmarks import (
        ablations,
        backends,
        camera,
        compile,
        control,
        distributed,
        edge_stage,
        families,
        latency,
        native,
        resolution,
        scale,
        summary,
        swaps,
    )

    out = Path(args.out) if args.out else None
    q = args.quick
    need = {
        "latency": ["bundle", "run"],
        "resolution": ["bundle", "run"],
        "swaps": ["bundle"],
        "camera": ["bundle"],
        "compile": ["run"],
        "control": ["run"],
        "ablations": ["run"],
        "edge": ["run"],
        "scale": [],
        "distributed": [],
        "families": ["run", "slim_run"],
        "backends": ["run"],
        "native": ["run"],
        "all": ["bundle", "run"],
    }[args.cmd]
    missing = [f"--{k.replace('_', '-')}" for k in need if getattr(args, k) is None]
    if missing:
        print(f"benchmarks {args.cmd}: missing {' and '.join(missing)}", file=sys.stderr)
        return 2
    steps = {
        "latency": lambda: latency.main(args.bundle, args.run, 30 if q else 200, 5 if q else 20, out=out),
        "resolution": lambda: resolution.main(
            args.bundle, args.run, (32, 128) if q else (32, 64, 128), repeats=40 if q else 200, out=out
        ),
        "swaps": lambda: swaps.main(args.bundle, 40 if q else 200, 100 if q else 1000, out=out),
        "camera": lambda: camera.main(args.bundle, 30.0, 120 if q else 300, out=out),
        "compile": lambda: compile.main(f"{args.run}/model.ckpt", (21, 66) if q else (21, 66, 198), out=out),
        "control": lambda: control.main(args.run, args.bundle, quick=q, out=out),
        "ablations": lambda: ablations.main(args.run, quick=q, out=out),
        "edge": lambda: edge_stage.main(args.run, quick=q, out=out),
        "scale": lambda: scale.main(quick=q, run=args.run, out=out),
        "distributed": lambda: distributed.main("scenes3", 20 if q else 60, out=out),
        "families": lambda: families.main(args.run, args.slim_run, out=out),
        "backends": lambda: backends.main(args.run, calls=50 if q else 200, out=out),
        "native": lambda: native.main(args.run, args.paper_run, calls=50 if q else 200, out=out),
    }
    for name in (
        [s for s in steps if s not in ("ablations", "edge", "scale", "distributed", "native")]
        if args.cmd == "all"
        else [args.cmd]
    ):
        steps[name]()
    if args.cmd == "all":
        print(f"wrote {summary.main(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
