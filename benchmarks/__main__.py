"""`python -m benchmarks swaps --bundle BUNDLE [--quick]`"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="Benchmarks; results go to "
                                "benchmarks/results/<device>/ as JSON + Markdown.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("swaps", help="hot/cold swaps, rebinds, resolution, runtime overhead vs raw session")
    s.add_argument("--bundle", required=True)
    s.add_argument("--quick", action="store_true", help="fewer repeats (seconds)")
    s.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    s.add_argument("--out", default=None, help="result directory (default benchmarks/results/<device>)")
    args = p.parse_args(argv)
    from pathlib import Path

    from benchmarks import swaps
    rounds, calls = (40, 100) if args.quick else (200, 1000)
    swaps.main(args.bundle, rounds, calls, args.threads, Path(args.out) if args.out else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
