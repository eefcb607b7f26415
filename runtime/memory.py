"""What a warm sub-network really costs: resident memory growth of this process.

File sizes say little: ONNX Runtime reorders conv weights into its blocked
layout (a second copy), allocates an arena per session and keeps the bound
arrays alive; TensorRT keeps device memory (not counted here) plus host copies.
The pool therefore charges each load with the RSS it added (and at least the
bytes of its weight set, in case freed memory was reused meanwhile).
"""

from __future__ import annotations

import os


def rss_bytes() -> int | None:
    """This process's resident set size in bytes (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """Peak resident set size so far (ru_maxrss: KiB on Linux)."""
    import resource  # Unix only

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Growth:
    """`with Growth() as g: ...` then `g.bytes`: RSS added inside the block (None if unknown)."""

    def __enter__(self) -> "Growth":
        self.bytes, self._start = None, rss_bytes()
        return self

    def __exit__(self, *exc) -> None:
        end = rss_bytes()
        if self._start is not None and end is not None:
            self.bytes = end - self._start
