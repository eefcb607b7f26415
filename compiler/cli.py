"""`compiler` console script: `build` a bundle from a checkpoint and a preference
grid; `cache ls|verify|prune` manage the shared compile cache."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgecore.cli import run_main
from runtime import backends

EPILOG = """examples:
  compiler build --checkpoint runs/scenes3/model.ckpt --prefs scenes3-198 --out bundles/scenes3
  compiler build --checkpoint runs/x/model.ckpt --prefs my-grid.json --out b --backend tensorrt --precision fp16
  compiler build --checkpoint runs/x/model.ckpt --prefs scenes3-21 --out b --backend onnxruntime,openvino
  compiler cache ls
  compiler cache verify --fix        # delete corrupt entries (the next build rebuilds them)
  compiler cache prune --older-than 30

--prefs takes a grid.json path or a shipped grid name (scenes3-198, scenes3-21,
example-explicit). EDGEMTL_CACHE_STRICT=1 makes any cache miss an error.
exit codes: 0 ok, 1 parity check failed (nothing published), 2 bad input, 130 interrupted"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="compiler",
        description="Compile a controllable multi-task model into "
        "deduplicated, BN-folded, verified engines for a grid of preferences.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="compile a preference grid into BUNDLE_DIR")
    b.add_argument("--checkpoint", required=True, help="RUN_DIR/model.ckpt written by `trainer fit` (or RUN_DIR)")
    b.add_argument("--prefs", required=True, help="grid.json (explicit preferences or a lattice) or a shipped name")
    b.add_argument("--out", required=True, help="bundle directory (replaced atomically when the build succeeds)")
    b.add_argument(
        "--backend",
        default="auto",
        metavar="auto|NAME[,NAME...]",
        help=f"engine backends: auto (default) builds every backend usable here and records which is "
        f"fastest on this machine for the runtime's auto; or one or a comma-separated list of {backends.names()}",
    )
    b.add_argument(
        "--precision",
        default="fp32",
        choices=backends.precisions(),
        help="engine precision of the backends that build it (the others build fp32)",
    )
    b.add_argument(
        "--cache",
        default=None,
        help="compile cache directory (default: ~/.cache/edgemtl/compile or $EDGEMTL_CACHE), shared by every bundle",
    )
    b.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes for export and parity, threads for engine builds (default 1; each "
        "process loads the checkpoint: worth it for paper-scale models, not for 32x32 ones)",
    )
    b.add_argument(
        "--parity-size",
        type=int,
        default=None,
        metavar="S",
        help="check every grid point's weights on an SxS input (a small graph + engine per signature) "
        "and each signature's first point at full size (default: every point at full size)",
    )
    b.add_argument(
        "--parity-tol", type=float, default=1e-4, help="fp32 parity budget: max abs error / output scale (default 1e-4)"
    )
    b.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT builder workspace (default 1024)")
    c = sub.add_parser("cache", help="inspect and manage the compile cache")
    c.add_argument("action", choices=["ls", "verify", "prune"])
    c.add_argument("--cache", default=None, help="cache directory (default as for build)")
    c.add_argument("--fix", action="store_true", help="verify: delete corrupt entries")
    c.add_argument(
        "--older-than", type=float, default=None, metavar="DAYS", help="prune: delete entries not used for DAYS days"
    )
    c.add_argument("--all", action="store_true", help="prune: delete every entry")
    return p


def _grid_path(prefs: str) -> str:
    from compiler.grid import GRID_DIR

    shipped = GRID_DIR / f"{prefs}.json"
    return str(shipped) if not Path(prefs).exists() and shipped.is_file() else prefs


def _fmt3(values, fmt="{:.2f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


def print_summary(report, console: Console) -> None:
    t = Table(title=f"compiled {report.bundle}", show_header=False)
    dedup = report.points / max(report.signatures, 1)
    rows = [
        ("grid points", str(report.points)),
        ("distinct signatures", f"{report.signatures} (dedup {dedup:.1f}x)"),
        ("distinct weight sets", str(report.weight_sets)),
        ("params / full net (min/med/max)", _fmt3(report.params_rel)),
        ("FLOPs / full net (min/med/max)", _fmt3(report.flops_rel)),
    ]
    for kind, c in report.cache.items():
        rows.append((f"cache {kind}", f"{c['hit']} hits, {c['built']} built, {c['rebuilt']} rebuilt (corrupt)"))
    rows.append(("parity worst (rel. error)", f"{report.parity_worst:.2e}"))
    rows.append(("runtime auto order", auto_text(report.auto)))
    rows += [(f"time {k}", f"{v:.2f} s") for k, v in report.stages.items()]
    for row in rows:
        t.add_row(*row)
    console.print(t)


def auto_text(auto: dict) -> str:
    """'openvino 0.31 ms < onnxruntime 0.42 ms (measured)' or 'onnxruntime (registry priority ...)'."""
    ms = auto.get("ms", {})
    if ms:
        return " < ".join(f"{n} {ms[n]:.3g} ms" if n in ms else n for n in auto["order"]) + " (measured here)"
    return f"{', '.join(auto.get('order', []))} ({auto.get('rule', '')})"


def _build(args, console: Console) -> None:
    from compiler.build import BuildConfig, build

    cfg = BuildConfig(
        checkpoint=args.checkpoint,
        prefs=_grid_path(args.prefs),
        out=args.out,
        backend=args.backend,
        precision=args.precision,
        cache=args.cache,
        jobs=args.jobs,
        parity_size=args.parity_size,
        parity_tol=args.parity_tol,
        workspace_mb=args.workspace_mb,
    )
    print_summary(build(cfg, console), console)


def _cache(args, console: Console) -> None:
    from compiler.cache import CompileCache

    cache = CompileCache(args.cache, strict=False)
    now, t = time.time(), Table(title=f"compile cache {cache.root}")
    for col in ("kind", "where", "key", "size", "unused for (d)", "status"):
        t.add_column(col)
    removed = 0
    for data, meta_path in cache.entries():
        meta = cache.verify(data, meta_path)
        age = (now - meta_path.stat().st_mtime) / 86400
        status = "ok" if meta else "CORRUPT"
        stale = args.action == "prune" and (
            args.all or meta is None or (args.older_than is not None and age > args.older_than)
        )
        if stale or (args.action == "verify" and args.fix and meta is None):
            cache.remove(data, meta_path)
            removed, status = removed + 1, status + ", removed"
        kind, where = data.relative_to(cache.root).parts[0], "/".join(data.relative_to(cache.root).parts[1:-1])
        t.add_row(kind, where, data.stem, f"{data.stat().st_size if data.exists() else 0:,}", f"{age:.1f}", status)
    console.print(t)
    if args.action != "ls":
        console.print(f"{removed} entr{'y' if removed == 1 else 'ies'} removed")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = Console(stderr=False)
    command = _build if args.cmd == "build" else _cache
    return run_main(
        "compiler",
        lambda: command(args, console),
        "interrupted; nothing was published (cache entries already written are kept)",
    )


if __name__ == "__main__":
    sys.exit(main())
