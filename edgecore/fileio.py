"""Small file helpers shared by every package: content hashes, atomic writes (temp file
in the same directory + rename, so a crash or Ctrl-C never leaves a half-written file
under the final name) and JSON parsing with a nesting limit for files from elsewhere."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

# Nesting limit of every JSON file a runtime reads from a bundle or the user (manifests,
# latency tables, schedules, plans); the C++ runtime refuses the same (kMaxJsonDepth in
# native/include/edgemtl/common.hpp). Ours nest 6 levels at most.
MAX_JSON_DEPTH = 64


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar 0, [] 1, [[]] 2), without recursion."""
    depth, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            depth = max(depth, d + 1)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return depth


def loads_untrusted(text: str) -> Any:
    """json.loads for text from elsewhere: a ValueError (which JSONDecodeError is too) for
    invalid JSON and for nesting deeper than MAX_JSON_DEPTH, never a RecursionError."""
    try:
        data = json.loads(text)
    except RecursionError:
        data = None
    else:
        if json_depth(data) <= MAX_JSON_DEPTH:
            return data
    raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temp path beside `path` for a writer that wants a file name (safetensors);
    renames it to `path` when the block succeeds, deletes it when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[IO], None], mode: str = "wb") -> Path:
    """Calls `write(file)` on a temp file beside `path`, then renames it to `path`."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write(f)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), "w")
