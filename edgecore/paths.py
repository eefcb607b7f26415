"""Where every path and id read from an untrusted file is checked.

Bundles are copied between machines, caches are shared, schedules and latency
tables are edited by hand: whoever writes them writes the sha256 beside a path
too, so hashes do not make a path safe. Every path or id that comes from such a
file goes through here before it is opened: ids must match a strict pattern;
paths must be relative, without `..`, and stay inside their root after symlinks
are resolved. Anything else is one error (of the caller's package type) naming
the field and the value.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgecore.errors import EdgeError

PATTERNS = {
    "hex16": re.compile(r"[0-9a-f]{16}"),  # signatures, weight ids
    "hex24": re.compile(r"[0-9a-f]{24}"),  # cache keys, model identities
    "sha256": re.compile(r"[0-9a-f]{64}"),
    "name": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"),  # backends, devices, machines, precisions
}


def check_id(value: object, kind: str, where: str, error: type[Exception] = EdgeError) -> str:
    """`value` if it is a string matching PATTERNS[kind] in full, else `error`."""
    if not isinstance(value, str) or not PATTERNS[kind].fullmatch(value) or value in (".", ".."):
        raise error(f"{where}: expected {kind} ({PATTERNS[kind].pattern}), found {value!r}")
    return value


def check_relative(value: object, where: str, error: type[Exception] = EdgeError) -> str:
    """`value` if it is a relative POSIX path without '..', empty or odd parts."""
    if not isinstance(value, str) or not value or "\\" in value or "\0" in value or ":" in value:
        raise error(f"{where}: expected a relative path inside the folder, found {value!r}")
    if value.startswith("/") or any(p in ("..", ".") for p in value.split("/")):
        raise error(f"{where}: expected a relative path inside the folder, found {value!r}")
    return value


def confine(root: str | Path, rel: object, where: str, error: type[Exception] = EdgeError) -> Path:
    """root/rel, resolved, after checking it stays inside root once symlinks are followed."""
    check_relative(rel, where, error)
    base = Path(root).resolve()
    path = (base / rel).resolve()
    if path != base and base not in path.parents:
        raise error(f"{where}: {rel!r} leaves {root} (it resolves to {path}, through a symlink)")
    return path
