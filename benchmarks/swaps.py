"""Runtime swaps and overhead (issue P4/P6): hot swap (warm pool), cold swap
(load from the bundle), weight rebind on the same signature, preference
resolution (nearest and exact), and the runtime's per-call overhead against
calling the ONNX Runtime session directly, interleaved in one process."""

from __future__ import annotations

import time

import numpy as np

import runtime
from benchmarks.common import machine, pct, write


def _swap_times(rt, points, rounds: int) -> list[float]:
    n0 = len(rt.swaps)
    for i in range(rounds):
        e = points[i % len(points)]
        rt.set_preference(list(e.r), e.c)
    return [s["ms"] for s in rt.swaps[n0:]], [s["warm"] for s in rt.swaps[n0:]]


def measure(bundle: str, rounds: int = 200, calls: int = 500, threads: int = 1) -> dict:
    m = runtime.manifest.load_manifest(bundle)
    by_sig = {}
    for e in m.grid:
        by_sig.setdefault(e.signature, e)
    points = list(by_sig.values())[:8] if len(by_sig) > 1 else list(m.grid[:8])
    with runtime.load(bundle, "onnxruntime", threads=threads) as rt:  # everything fits the pool: hot
        rt.prewarm(list(points))
        hot, warm = _swap_times(rt, points, rounds)
        assert all(warm)
    with runtime.load(bundle, "onnxruntime", threads=threads, pool_mb=0) as rt:  # pool of one: cold
        cold, warm = _swap_times(rt, points, max(rounds // 4, 20))
        assert not any(warm)
    biggest = max(by_sig, key=lambda sig: sum(e.signature == sig for e in m.grid))
    same_sig = [e for e in m.grid if e.signature == biggest][:8]
    with runtime.load(bundle, "onnxruntime", threads=threads, pool_mb=0) as rt:
        rebind, _ = _swap_times(rt, same_sig, max(rounds // 4, 20)) if len(same_sig) > 1 else ([], [])
    return {
        "hot_swap_ms": pct(hot),
        "cold_swap_ms": pct(cold),
        "rebind_same_signature_ms": pct(rebind or [0.0]),
        **_resolution(bundle, m, threads),
        **_overhead(bundle, calls, threads),
    }


def _resolution(bundle, m, threads) -> dict:
    rng = np.random.default_rng(0)
    prefs = [(list(rng.dirichlet([1] * len(m.tasks))), float(rng.uniform())) for _ in range(100)]
    t = []
    for r, c in prefs:
        t0 = time.perf_counter()
        runtime.resolve.nearest(m, r, c)
        t.append((time.perf_counter() - t0) * 1e3)
    out = {"resolve_nearest_ms": pct(t)}
    if m.hypernets:
        with runtime.load(bundle, "onnxruntime", threads=threads) as rt:
            rt.set_preference(*prefs[0], exact=True)  # load the resolver once
            t = []
            for r, c in prefs[1:41]:
                t0 = time.perf_counter()
                rt.resolve(r, c, exact=True)
                t.append((time.perf_counter() - t0) * 1e3)
            out["resolve_exact_ms"] = pct(t)  # hypernets + numpy fold (binding is a cold swap)
    return out


def _overhead(bundle, calls: int, threads: int) -> dict:
    """Same engine, same input: Runtime.run / Runtime.__call__ vs session.run, interleaved."""
    with runtime.load(bundle, "onnxruntime", threads=threads) as rt:
        runner = rt.open_runner(rt.current.entry)  # same engine and weights, its own session
        try:
            raw, run, call = _interleaved(rt, runner, calls)
        finally:
            runner.close()
    r, u, c = pct(raw), pct(run), pct(call)
    return {
        "session_run_ms": r,
        "runtime_run_ms": u,
        "runtime_call_with_preprocess_ms": c,
        "overhead_run_us_p50": (u["p50"] - r["p50"]) * 1e3,
        "overhead_call_us_p50": (c["p50"] - r["p50"]) * 1e3,
    }


def _interleaved(rt, runner, calls: int) -> tuple[list, list, list]:
    """ms per call of raw session.run, Runtime.run and Runtime(frame), alternating."""
    sess, feed_name, names = runner.session, runner.input_name, runner.output_names
    h, w = rt.manifest.input.shape[1:]
    x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
    frame = np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)
    raw, run, call = [], [], []
    for _ in range(20):
        sess.run(names, {feed_name: x})
        rt.run(x)
    for _ in range(calls):
        t0 = time.perf_counter()
        sess.run(names, {feed_name: x})
        t1 = time.perf_counter()
        rt.run(x)
        t2 = time.perf_counter()
        rt(frame)
        t3 = time.perf_counter()
        raw.append((t1 - t0) * 1e3)
        run.append((t2 - t1) * 1e3)
        call.append((t3 - t2) * 1e3)
    return raw, run, call


def markdown(res: dict) -> str:
    rows = [
        ("hot swap (warm pool)", "hot_swap_ms"),
        ("cold swap (load engine + weights)", "cold_swap_ms"),
        ("weight rebind, same signature (cold)", "rebind_same_signature_ms"),
        ("resolve nearest point", "resolve_nearest_ms"),
        ("resolve exact (hypernets + fold)", "resolve_exact_ms"),
        ("ORT session.run (raw)", "session_run_ms"),
        ("Runtime.run (same engine)", "runtime_run_ms"),
        ("Runtime(frame) incl. preprocessing", "runtime_call_with_preprocess_ms"),
    ]
    lines = [
        f"# Runtime swaps and overhead ({res['machine']['cpu']}, {res['machine']['cores']} cores, "
        f"ORT threads {res['threads']})",
        "",
        f"bundle `{res['bundle']}`",
        "",
        "| measurement | p50 ms | p90 ms | p99 ms | n |",
        "|---|---|---|---|---|",
    ]
    for label, key in rows:
        if key in res:
            v = res[key]
            lines.append(f"| {label} | {v['p50']:.4f} | {v['p90']:.4f} | {v['p99']:.4f} | {v['n']} |")
    lines += [
        "",
        f"Runtime overhead per call (p50, vs raw session): run {res['overhead_run_us_p50']:.1f} us, "
        f"with preprocessing {res['overhead_call_us_p50']:.1f} us.",
    ]
    return "\n".join(lines) + "\n"


def main(bundle: str, rounds: int = 200, calls: int = 500, threads: int = 1, out=None) -> dict:
    res = {"bundle": str(bundle), "threads": threads, "machine": machine(), **measure(bundle, rounds, calls, threads)}
    d = write("swaps", res, markdown(res), out)
    print(markdown(res))
    print(f"wrote {d}/swaps.json and swaps.md")
    return res
