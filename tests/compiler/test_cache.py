import json
import multiprocessing as mp
import threading
import time

import pytest

from compiler.cache import CACHE_FORMAT_VERSION, CompileCache, cache_key
from compiler.errors import CompilerError

FIELDS = {
    "model": "m1",
    "signature": "s1",
    "backend": "onnxruntime",
    "precision": "fp32",
    "shape": [3, 16, 16],
    "device": "cpu-x86_64",
    "backend_version": "1.0",
}


def _writer(payload: bytes, calls: list | None = None, delay: float = 0.0):
    def build(tmp):
        if calls is not None:
            calls.append(1)
        time.sleep(delay)
        tmp.write_bytes(payload)
        return {"note": "x"}

    return build


def test_hit_after_build_and_every_key_field_matters(tmp_path):
    cache, calls = CompileCache(tmp_path), []
    e1 = cache.get_or_build("engines", "ort/cpu", FIELDS, ".onnx", _writer(b"abc", calls))
    e2 = cache.get_or_build("engines", "ort/cpu", FIELDS, ".onnx", _writer(b"abc", calls))
    assert (e1.status, e2.status, len(calls)) == ("built", "hit", 1)
    assert e2.path.read_bytes() == b"abc" and e2.meta["note"] == "x" and e2.meta["fields"] == FIELDS
    assert cache.stats["engines"] == {"hit": 1, "built": 1, "rebuilt": 0}
    keys = {cache_key(FIELDS)} | {cache_key({**FIELDS, k: "other"}) for k in FIELDS}
    assert len(keys) == len(FIELDS) + 1
    assert CACHE_FORMAT_VERSION >= 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "sidecar", "missing-sidecar"])
def test_damaged_entries_are_rebuilt_not_used(tmp_path, damage):
    cache = CompileCache(tmp_path)
    entry = cache.get_or_build("engines", "ort/cpu", FIELDS, ".onnx", _writer(b"0123456789"))
    sidecar = entry.path.with_suffix(".json")
    if damage == "flip":
        data = bytearray(entry.path.read_bytes())
        data[3] ^= 0xFF
        entry.path.write_bytes(bytes(data))
    elif damage == "truncate":
        entry.path.write_bytes(b"01234")
    elif damage == "sidecar":
        sidecar.write_text("{broken")
    else:
        sidecar.unlink()
    again = cache.get_or_build("engines", "ort/cpu", FIELDS, ".onnx", _writer(b"0123456789"))
    assert again.status == "rebuilt" and again.path.read_bytes() == b"0123456789"
    assert json.loads(sidecar.read_text())["size"] == 10


def test_strict_mode_fails_on_a_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEMTL_CACHE_STRICT", "1")
    with pytest.raises(CompilerError, match="cache miss"):
        CompileCache(tmp_path).get_or_build("engines", "x", FIELDS, ".onnx", _writer(b"a"))
    assert not list(tmp_path.rglob("*.onnx"))


def test_failed_build_leaves_nothing(tmp_path):
    def boom(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError):
        CompileCache(tmp_path).get_or_build("engines", "x", FIELDS, ".onnx", boom)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".lock")] == []


def test_concurrent_threads_build_once(tmp_path):
    cache, calls, results = CompileCache(tmp_path), [], []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                cache.get_or_build("engines", "x", FIELDS, ".onnx", _writer(b"zz", calls, delay=0.2)).status
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(results) == ["built", "hit", "hit", "hit"]


def _process_build(root, queue):
    entry = CompileCache(root).get_or_build("engines", "x", FIELDS, ".onnx", _writer(b"proc", delay=0.3))
    queue.put(entry.status)


def test_concurrent_processes_build_once(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_process_build, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(queue.get(timeout=5) for _ in procs) == ["built", "hit"]
    assert len(list(tmp_path.rglob("*.onnx"))) == 1


def test_a_hit_marks_the_entry_as_used(tmp_path):
    import os

    cache = CompileCache(tmp_path)
    entry = cache.get_or_build("engines", "x", FIELDS, ".onnx", _writer(b"a"))
    sidecar = entry.path.with_suffix(".json")
    os.utime(sidecar, (1_000_000, 1_000_000))  # pretend it was last used in 1970
    cache.get_or_build("engines", "x", FIELDS, ".onnx", _writer(b"a"))
    assert sidecar.stat().st_mtime > time.time() - 60


def test_maintenance_never_follows_links_or_touches_files_it_did_not_create(tmp_path):
    import os

    from compiler.cli import main

    cache = CompileCache(tmp_path / "cache")
    entry = cache.get_or_build("graphs", "fp32", FIELDS, ".onnx", _writer(b"graph"))
    outside = tmp_path / "outside" / "graphs" / "fp32"  # looks exactly like a cache folder
    outside.mkdir(parents=True)
    for name in (entry.path.name, entry.path.with_suffix(".json").name):
        (outside / name).write_bytes((entry.path.parent / name).read_bytes())
    os.symlink(tmp_path / "outside" / "graphs", tmp_path / "cache" / "linked")  # a folder link inside the cache
    os.symlink(outside / entry.path.name, entry.path.parent / ("f" * 24 + ".onnx"))  # a file link
    (entry.path.parent / "notes.txt").write_text("mine")  # a file the cache did not write
    assert [d for d, _ in cache.entries()] == [entry.path]
    assert main(["cache", "prune", "--all", "--cache", str(tmp_path / "cache")]) == 0
    assert not entry.path.exists() and (entry.path.parent / "notes.txt").is_file()
    assert sorted(p.name for p in outside.iterdir()) == sorted([entry.path.name, entry.path.stem + ".json"])
