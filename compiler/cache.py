"""Content-addressed compile cache (graphs and engines), shared between bundles.

    <root>/<kind>/<subdir>/<key><suffix>     the artifact (graph, engine)
    <root>/<kind>/<subdir>/<key>.json        its sidecar: key fields, sha256, size

key = sha256 of the fields that determine the artifact (model identity,
signature, backend, precision, input shape, device, backend version) plus
CACHE_FORMAT_VERSION, so any change is a miss. Writers build into a temp
file and rename under a per-key file lock, so concurrent builds neither
corrupt an entry nor build it twice; readers verify size and sha256 and treat
a mismatch as a miss (the entry is rebuilt, never used).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from filelock import FileLock

from compiler.errors import CompilerError
from edgecore.fileio import atomic_write_text, file_sha256

CACHE_FORMAT_VERSION = 3  # bump when artifacts change meaning: every old entry becomes a miss
ENTRY_KEY = re.compile(r"[0-9a-f]{24}")  # cache_key(): the names of everything this cache writes
STRICT_ENV = "EDGEMTL_CACHE_STRICT"  # "1": a miss is an error (tests, CI: prove a build is all hits)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("EDGEMTL_CACHE", Path(base) / "edgemtl" / "compile"))


def cache_key(fields: dict) -> str:
    text = json.dumps({**fields, "cache_format": CACHE_FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Entry:
    path: Path
    key: str
    status: str  # hit | built | rebuilt (a corrupt entry was replaced)
    meta: dict


class CompileCache:
    """Get-or-build of verified artifacts; `strict` makes a miss an error."""

    def __init__(self, root: str | Path | None = None, strict: bool | None = None):
        self.root = Path(root) if root else default_cache_dir()
        self.strict = os.environ.get(STRICT_ENV) == "1" if strict is None else strict
        self.stats: dict[str, dict[str, int]] = {}  # kind -> {"hit": n, "built": n, "rebuilt": n}

    def paths(self, kind: str, subdir: str, key: str, suffix: str) -> tuple[Path, Path]:
        d = self.root / kind / subdir
        return d / f"{key}{suffix}", d / f"{key}.json"

    def verify(self, data: Path, meta_path: Path) -> dict | None:
        """The sidecar if the entry is intact, else None."""
        try:
            meta = json.loads(meta_path.read_text())
            if data.stat().st_size != meta["size"] or file_sha256(data) != meta["sha256"]:
                return None
            return meta
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def get_or_build(
        self, kind: str, subdir: str, fields: dict, suffix: str, build: Callable[[Path], dict | None]
    ) -> Entry:
        """The verified entry for `fields`; `build(tmp_path)` writes a missing one
        (and may return extra sidecar fields)."""
        entry = self._get_or_build(kind, subdir, fields, suffix, build)
        counts = self.stats.setdefault(kind, {"hit": 0, "built": 0, "rebuilt": 0})
        counts[entry.status] += 1
        return entry

    def memo_json(self, kind: str, subdir: str, fields: dict, compute: Callable[[], object]) -> object:
        """`compute()`'s JSON-serialisable result, memoised under `fields` (FLOP counts,
        parity errors: pure functions of their inputs that cost seconds)."""

        def write(tmp: Path) -> None:
            tmp.write_text(json.dumps(compute()))

        return json.loads(self.get_or_build(kind, subdir, fields, ".memo", write).path.read_text())

    def _get_or_build(self, kind, subdir, fields, suffix, build) -> Entry:
        key = cache_key(fields)
        data, meta_path = self.paths(kind, subdir, key, suffix)
        if (meta := self.verify(data, meta_path)) is not None:
            _touch(meta_path)  # last use, for `compiler cache prune --older-than`
            return Entry(data, key, "hit", meta)  # lock-free: entries only appear by rename
        data.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(data) + ".lock"):
            if (meta := self.verify(data, meta_path)) is not None:  # another process built it meanwhile
                return Entry(data, key, "hit", meta)
            status = "rebuilt" if data.exists() or meta_path.exists() else "built"
            if self.strict:
                raise CompilerError(
                    f"cache miss for {kind} {key} ({status}) in {self.root} with {STRICT_ENV}=1; fields: {fields}"
                )
            meta = self._write(data, meta_path, key, fields, build)
        return Entry(data, key, status, meta)

    def _write(self, data: Path, meta_path: Path, key: str, fields: dict, build) -> dict:
        fd, tmp = tempfile.mkstemp(dir=data.parent, suffix=data.suffix + ".tmp")
        os.close(fd)
        try:
            t0 = time.perf_counter()
            extra = build(Path(tmp)) or {}
            meta = {
                "key": key,
                "fields": fields,
                "cache_format": CACHE_FORMAT_VERSION,
                **extra,
                "size": os.path.getsize(tmp),
                "sha256": file_sha256(Path(tmp)),
                "build_seconds": round(time.perf_counter() - t0, 3),
                "created": time.time(),
            }
            os.replace(tmp, data)
        finally:
            Path(tmp).unlink(missing_ok=True)
        atomic_write_text(meta_path, json.dumps(meta, indent=1))
        return meta

    def entries(self) -> list[tuple[Path, Path]]:
        """(artifact, sidecar) pairs of the entries this cache wrote: regular files named
        `<key><suffix>` beside `<key>.json` in `<kind>/<subdir...>`. Links (to files or
        folders) are never followed and nothing else is listed, so maintenance cannot
        reach or delete a file outside the cache or one it did not create."""
        out = []
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)))
            here = Path(folder)
            if here == self.root:
                continue
            regular = {f for f in files if not os.path.islink(here / f) and (here / f).is_file()}
            for meta in sorted(
                f for f in regular if ENTRY_KEY.fullmatch(f.removesuffix(".json")) and f.endswith(".json")
            ):
                key = meta.removesuffix(".json")
                out += [
                    (here / f, here / meta)
                    for f in sorted(regular)
                    if f.startswith(key + ".") and f != meta and not f.endswith((".lock", ".tmp"))
                ]
        return out

    def remove(self, data: Path, meta: Path) -> None:
        """Deletes one entry listed by `entries` (never a link, never outside the root)."""
        for path in (data, meta):
            if path.is_symlink() or self.root.resolve() not in path.resolve().parents:
                raise CompilerError(f"refusing to delete {path}: not a file of the cache {self.root}")
            path.unlink(missing_ok=True)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only cache still serves hits
        pass
