"""One `main` wrapper for every CLI: the package's errors become one line and
their exit code (2 for bad input), Ctrl-C exits 130, and anything else is a bug:
its traceback is printed with a line asking to report it, and the exit code is 1."""

from __future__ import annotations

import sys
import traceback
from typing import Callable

from edgecore.errors import EdgeError

BUG_REPORT = "this is a bug in edgemtl; please report it with the traceback above and the command you ran"


def run_main(tool: str, body: Callable[[], int | None], interrupted: str = "interrupted") -> int:
    """Runs `body()` and returns the process exit code (see the module docstring);
    `interrupted` is the line printed on Ctrl-C (say what was kept)."""
    try:
        return int(body() or 0)
    except EdgeError as exc:
        print(f"{tool}: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{tool}: {interrupted}", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the one place that turns an unexpected error into a bug report
        traceback.print_exc()
        print(f"{tool}: {BUG_REPORT}", file=sys.stderr)
        return 1
