"""`compiler build`: preference grid -> deduplicated, BN-folded, verified engines.

A pipeline of values: each stage is a function that takes what it needs and
returns what the next one needs (each timed, long ones with a progress bar).
  targets the backends of --backend (auto: every one usable here), checked first (compiler/targets.py)
  load    checkpoint, grid, model identity                            -> Source
  derive  every grid point -> argmax tree (edge hypernet) + BN deltas (weight hypernet),
          each distinct tree's params and FLOPs                       -> Plan
  adapt   the anchor's arrays once -> anchor/<id>.safetensors; per point its adaptation (the
          BN deltas of its tree's used nodes) -> deltas/<id>.safetensors (bundle format 3)
  export  per signature: ONNX graph of the unadapted tree (cached by content; the bundle's
          copy holds the structure only)
  engine  per signature and backend: engine (cached by content, keyed by its graph's key)
  parity  per point and backend: engine with the point's weights (folded from the stored
          anchor and deltas, as the runtime folds them) vs the PyTorch tree model
  measure several backends of one device kind: each timed here; the order the runtime's
          auto follows (build["auto"] in the manifest)
  publish manifest.json written last, the staging folder renamed into place
Everything is written to a staging directory next to BUNDLE_DIR and renamed
into place at the end: a failed, interrupted or parity-failing build leaves
no bundle behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from compiler.cache import CompileCache, Entry
from compiler.errors import CompilerError, ParityError
from compiler.export import INPUT_NAME, OPSET, export_graph
from compiler.grid import GridPoint, load_grid
from compiler.hypernets import export_hypernets
from compiler.targets import Target, Timing, auto_order, measure_latency, select_targets
from compiler.workers import Workers
from edgecore.arrays import SUFFIX, save_arrays, write_arrays
from edgecore.fileio import atomic_write_text, file_sha256
from runtime.backends import BuildOptions, get_runner
from runtime.backends.onnxruntime import externalise
from runtime.manifest import EngineRef, GridEntry, InputSpec, Manifest, SignatureInfo, TaskInfo
from runtime.sources import SAMPLES
from runtime.weights import ANCHOR_DIR, DELTAS_DIR, WeightStore
from trainer.checkpoint import load_checkpoint
from trainer.errors import TrainerError
from trainer.families import ModelFamily, family_of, model_family
from trainer.models.blocks import count_params

# Reduced-precision engines: relative error budget (fp32 uses BuildConfig.parity_tol). bf16 keeps
# 8 significant bits to fp16's 11: the tiny nets measure 1.2e-2 worst case in bf16.
REDUCED_TOL = {"fp16": 1e-2, "bf16": 3e-2}


@dataclass(frozen=True)
class BuildConfig:
    """Everything `compiler build` needs; the CLI parses into this."""

    checkpoint: str
    prefs: str
    out: str
    backend: str = "auto"  # auto (every backend usable here), a backend, or a comma-separated list
    precision: str = "fp32"  # for the backends that build it; the others build fp32
    cache: str | None = None  # None: the user cache (~/.cache/edgemtl/compile or $EDGEMTL_CACHE)
    jobs: int = 1  # worker processes for export and parity, threads for engine builds
    parity_inputs: int = 2  # random frames per grid point
    # Check every grid point's weights on a parity_size x parity_size input (a second,
    # small graph and engine per signature) and each signature once at full size;
    # None: every point at full size. For paper-scale inputs, where a full-size check
    # costs ~1 s per point on a CPU.
    parity_size: int | None = None
    parity_tol: float = 1e-4  # fp32: max abs error / output scale
    workspace_mb: int = 1024  # TensorRT builder workspace
    seed: int = 0
    hypernets: bool = True  # export hypernets.onnx + hypernets.json for the runtime's exact mode


@dataclass(frozen=True)
class Source:
    """What the build reads: the trained model, its family, the grid and the target."""

    models: object  # trainer.models.Models
    family: ModelFamily
    payload: dict
    fit_cfg: object  # trainer.config.FitConfig
    grid: list[GridPoint]
    shape: tuple[int, ...]
    identity: str  # content hash of what engines depend on

    @property
    def anchor(self):
        return self.models.anchor

    @property
    def task_names(self) -> list[str]:
        return [t["name"] for t in self.payload["tasks"]]


@dataclass(frozen=True)
class Point:
    grid: GridPoint
    spec: tuple  # the family's sub-network spec (a tree for dymu-tree)
    signature: str
    adaptation: object  # the family's weight adaptation (BN deltas for dymu-tree)


@dataclass(frozen=True)
class Plan:
    """The derived points, their distinct specs and each spec's cost."""

    points: list[Point]
    specs: dict[str, tuple]  # signature -> canonical spec
    costs: dict[str, tuple[int, float]]  # signature -> (params, FLOPs)
    full: tuple[int, float]  # the whole anchor net

    def first_points(self) -> dict[str, int]:
        """Signature -> index of its first grid point, in grid order: the point whose
        weights stand for the signature's engine (full-size parity, backend timing)."""
        first: dict[str, int] = {}
        for i, p in enumerate(self.points):
            first.setdefault(p.signature, i)
        return first


@dataclass(frozen=True)
class Graph:
    path: Path  # in the cache
    key: str
    weight_names: tuple[str, ...]
    output_names: tuple[str, ...]


@dataclass
class BuildReport:
    bundle: Path
    points: int
    signatures: int
    weight_sets: int
    cache: dict  # kind (costs, graphs, engines, parity) -> {"hit": n, "built": n, "rebuilt": n}
    params_rel: tuple[float, float, float]  # min / median / max of signature params / full net
    flops_rel: tuple[float, float, float]
    parity_worst: float
    stages: dict  # stage -> seconds
    auto: dict  # the manifest's build["auto"]: backend order for the runtime, and why

    def builds(self, kind: str = "engines") -> int:
        """Entries of `kind` built or rebuilt (0 on a repeated identical build)."""
        c = self.cache.get(kind, {})
        return c.get("built", 0) + c.get("rebuilt", 0)


class Stages:
    """Seconds per stage: `with stages("fold"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def model_identity(anchor: torch.nn.Module, payload: dict) -> str:
    """Content hash of what an engine depends on: anchor weights, tasks, input spec."""
    h = hashlib.sha256()
    for name, t in sorted(anchor.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([payload.get("tasks"), payload.get("input_spec")], sort_keys=True).encode())
    return h.hexdigest()[:24]


# -- stages ---------------------------------------------------------------------------
def check_config(cfg: BuildConfig) -> None:
    if cfg.jobs < 1:
        raise CompilerError(f"--jobs must be >= 1, found {cfg.jobs}")
    if cfg.parity_size is not None and not 8 <= cfg.parity_size:
        raise CompilerError(f"--parity-size must be at least 8 pixels, found {cfg.parity_size}")


def build_targets(cfg: BuildConfig, cache: CompileCache, console: Console) -> list[Target]:
    """The backends this build compiles for, each checked before anything heavy is loaded."""
    check_config(cfg)

    def options(name: str) -> BuildOptions:  # one timing cache per backend (TensorRT's tactic timings)
        return BuildOptions(cfg.workspace_mb, cache.root / "timing" / f"{name}.cache")

    return select_targets(cfg.backend, cfg.precision, options, say=console.print)


def load(cfg: BuildConfig) -> Source:
    try:
        fit_cfg, models, payload = load_checkpoint(cfg.checkpoint)
        family = model_family(family_of(payload["config"]))
    except TrainerError as exc:
        raise CompilerError(str(exc)) from None
    models.anchor.set_output_size(tuple(payload["input_spec"]["shape"][1:]))  # the deployed (H, W)
    return Source(
        models,
        family,
        payload,
        fit_cfg,
        load_grid(cfg.prefs, len(payload["tasks"])),
        tuple(payload["input_spec"]["shape"]),
        model_identity(models.anchor, payload),
    )


def derive_points(src: Source) -> list[Point]:
    """Spec (argmax tree), signature and weight adaptation (BN deltas) of every grid point."""
    points = []
    for gp in src.grid:
        spec, adaptation = src.family.derive(
            src.models, torch.tensor(gp.preference.r, dtype=torch.float32), gp.preference.c
        )
        points.append(Point(gp, spec, src.family.info.signature(spec), adaptation))
    return points


def derive(src: Source, cache: CompileCache) -> Plan:
    points = derive_points(src)
    specs = {p.signature: p.spec for p in points}
    costs = {sig: spec_costs(src, spec, cache) for sig, spec in specs.items()}
    full = spec_costs(src, src.family.full_spec(src.models), cache)
    return Plan(points, specs, costs, (count_params(src.anchor), full[1]))  # every stream and head


def spec_costs(src: Source, spec, cache: CompileCache) -> tuple[int, float]:
    """(params, FLOPs) of a spec; memoised, FLOP counting costs ~0.5 s per spec."""
    fields = {
        "model": src.identity,
        "family": src.family.name,
        "tree": json.loads(json.dumps(spec)),  # the spec as JSON lists, whatever its family
        "shape": list(src.shape),
        "torch": torch.__version__,
    }
    params, flops = cache.memo_json("costs", "flops", fields, lambda: src.family.cost(src.models, spec, src.shape[1:]))
    return int(params), float(flops)


@dataclass(frozen=True)
class Adapted:
    """What the adapt stage stored: the anchor (once) and every point's adaptation."""

    anchor: dict  # the manifest's anchor entry: {"id", "plan"}
    ids: list[str]  # per point, in point order: deltas/<id>.safetensors

    def store(self, bundle: Path, family: str) -> WeightStore:
        """The runtime's reader of these files (parity folds through it)."""
        return WeightStore(bundle, SimpleNamespace(anchor=self.anchor, family=family))


def adapt(src: Source, points: list[Point], stage: Path, progress: Progress) -> Adapted:
    """Writes the anchor's arrays once and each point's adaptation (bundle format 2 on)."""
    bar = progress.add_task("adapt", total=len(points))
    arrays, plan = src.family.anchor_arrays(src.models)
    anchor = {"id": save_arrays(arrays, stage / ANCHOR_DIR), "plan": plan}
    ids = []
    for p in points:
        ids.append(save_arrays(src.family.adaptation_arrays(p.spec, p.adaptation), stage / DELTAS_DIR))
        progress.advance(bar)
    return Adapted(anchor, ids)


def export_one(src: Source, cache: CompileCache, item) -> Graph:
    """One signature's unadapted sub-network as an ONNX graph at `shape` (cached by content)."""
    sig, spec, precision, shape = item
    fields = {
        "model": src.identity,
        "signature": sig,
        "precision": precision,
        "opset": OPSET,
        "torch": torch.__version__,
        "shape": list(shape),
    }

    def write(tmp: Path) -> dict:
        src.family.set_input_size(src.models, shape[1:])
        module = src.family.subnet(src.models, spec)
        info = export_graph(module, shape, src.task_names, tmp, precision)
        return {"weight_names": list(info.weight_names), "output_names": list(info.output_names)}

    entry = cache.get_or_build("graphs", precision, fields, ".onnx", write)
    return Graph(entry.path, entry.key, tuple(entry.meta["weight_names"]), tuple(entry.meta["output_names"]))


def export(
    src: Source, specs: dict[str, tuple], precision: str, shape: tuple, workers: Workers, progress: Progress, label: str
) -> dict[str, Graph]:
    """Per signature: the unadapted sub-network's graph (grid-independent, so cacheable)."""
    bar = progress.add_task(label, total=len(specs))
    graphs = {}
    items = [(sig, spec, precision, tuple(shape)) for sig, spec in specs.items()]
    for sig, graph in zip(specs, workers.map(export_one, items)):
        graphs[sig] = graph
        progress.advance(bar)
    return graphs


def bundle_graphs(graphs: dict[str, Graph], stage: Path) -> None:
    (stage / "graphs").mkdir(exist_ok=True)
    for sig, g in graphs.items():
        weightless_copy(g.path, stage / "graphs" / f"{sig}.onnx", g.weight_names)


def engines(
    src: Source,
    graphs: dict[str, Graph],
    target: Target,
    cfg: BuildConfig,
    cache: CompileCache,
    shape: tuple,
    progress: Progress,
    label: str = "engine",
) -> dict[str, Entry]:
    """Per signature: the target's engine of its graph at `shape`, keyed by the graph's
    key (a graph rebuilt by a new exporter never reuses an old engine); built on
    `cfg.jobs` threads (engine builders release the GIL)."""
    bar = progress.add_task(label, total=len(graphs))
    builder = target.builder
    subdir = f"{builder.name}/{target.device['device']}"

    def one(sig: str):
        g = graphs[sig]
        fields = {
            "model": src.identity,
            "signature": sig,
            "graph": g.key,
            "backend": builder.name,
            "precision": target.precision,
            "shape": list(shape),
            **target.device,
        }
        entry = cache.get_or_build(
            "engines",
            subdir,
            fields,
            builder.suffix,
            lambda tmp: builder.build(g.path, tmp, target.precision, g.weight_names),
        )
        progress.advance(bar)
        return sig, entry

    with ThreadPoolExecutor(cfg.jobs) as pool:
        return dict(pool.map(one, graphs))


def bundle_engines(entries: dict[str, Entry], target: Target, stage: Path) -> dict[str, EngineRef]:
    """Copies the target's engines into the bundle; their manifest references."""
    refs, device = {}, target.device["device"]
    for sig, entry in entries.items():
        rel = Path("engines") / target.name / device / entry.path.name
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        copy_entry(entry.path, stage / rel)
        refs[sig] = EngineRef(target.name, target.precision, device, entry.key, str(rel), entry.meta["sha256"])
    return refs


@dataclass(frozen=True)
class Check:
    """One parity check: a grid point's stored weights on one engine, on `n` inputs of `shape`."""

    point: Point
    adaptation: str
    engine: Path
    engine_key: str
    backend: str
    device: str
    precision: str
    shape: tuple
    n: int
    seed: int
    stage: Path
    adapted: Adapted


_STORES: dict[tuple, WeightStore] = {}  # per process: the staged anchor is read once, not per check


def parity_one(src: Source, cache: CompileCache, c: Check) -> dict:
    """{task: errors} of one check; memoised: a pure function of engine, weights and inputs."""
    key = (str(c.stage), c.adapted.anchor["id"])
    if key not in _STORES:
        _STORES.clear()
        _STORES[key] = c.adapted.store(c.stage, src.family.name)
    fields = {"engine": c.engine_key, "anchor": key[1], "adaptation": c.adaptation, "seed": c.seed, "n": c.n}

    def compute() -> dict:
        xs = np.random.default_rng(c.seed).standard_normal((c.n, *c.shape)).astype(np.float32)
        return check_point(src, c.point, c.backend, c.engine, _STORES[key], c.adaptation, xs)

    return cache.memo_json("parity", f"{c.backend}/{c.device}", fields, compute)


def parity_checks(
    plan: Plan, adapted: Adapted, cfg: BuildConfig, target: Target, stage: Path, full: tuple, small: tuple | None
):
    """(point index, Check) pairs of one target; `full` and `small` are (input shape,
    {signature: (engine path, engine key)}). Every point on its full-size engine; with
    `small` (--parity-size), every point on its signature's small-input engine and each
    signature's first point at full size."""

    def check(i: int, shape: tuple, engines_: dict) -> tuple[int, Check]:
        p = plan.points[i]
        path, key = engines_[p.signature]
        where = (target.name, target.device["device"], target.precision)
        return i, Check(p, adapted.ids[i], path, key, *where, shape, cfg.parity_inputs, cfg.seed, stage, adapted)

    everything = range(len(plan.points))
    if small is None:
        return [check(i, *full) for i in everything]
    first = plan.first_points()
    return [check(i, *full) for i in sorted(first.values())] + [check(i, *small) for i in everything]


def tolerance(cfg: BuildConfig, precision: str) -> float:
    """Parity budget of an engine precision, relative to the output scale."""
    return cfg.parity_tol if precision == "fp32" else REDUCED_TOL[precision]


@dataclass(frozen=True)
class Parity:
    points: list[dict]  # per point: {task: worst errors over its checks, every backend}
    worst: dict[str, float]  # per backend: its worst relative error


def parity(checks: list, n_points: int, cfg: BuildConfig, workers: Workers, progress: Progress) -> Parity:
    """Every check's errors, merged per point and per backend; raises ParityError
    (nothing published) if any check exceeds its precision's tolerance."""
    bar = progress.add_task("parity", total=len(checks))
    results: list[dict] = [{} for _ in range(n_points)]
    worst_of: dict[str, float] = {}
    failures = []
    for (i, c), errors in zip(checks, workers.map(parity_one, [c for _, c in checks])):
        for task, e in errors.items():
            old = results[i].get(task)
            results[i][task] = e if old is None or e["rel"] > old["rel"] else old
        worst = max(e["rel"] for e in errors.values())
        worst_of[c.backend] = max(worst_of.get(c.backend, 0.0), worst)
        tol = tolerance(cfg, c.precision)
        if not worst <= tol:  # also catches NaN
            size = "x".join(map(str, c.shape[1:]))
            failures.append((worst, tol, c.point.grid.name, c.backend, c.precision, c.point.signature, size))
        progress.advance(bar)
    _STORES.clear()  # the staged anchor is not needed after parity (hundreds of MB at paper scale)
    if failures:
        worst, tol, name, backend, precision, sig, size = max(failures)
        raise ParityError(
            f"{len(failures)} of {len(checks)} parity checks ({n_points} grid points) exceed the parity "
            f"tolerance; worst {worst:.3g} (budget {tol:g} relative to the output scale) at {name!r} "
            f"({backend} {precision}, signature {sig}, {size} input). Nothing was published."
        )
    return Parity(results, worst_of)


@torch.no_grad()
def check_point(
    src: Source, p: Point, backend: str, engine: Path, store: WeightStore, aid: str, xs: np.ndarray
) -> dict:
    """Engine with the point's stored weights bound vs the unfolded PyTorch tree model."""
    src.family.set_input_size(src.models, xs.shape[-2:])
    refs = [o.numpy() for o in src.family.reference(src.models, torch.from_numpy(xs), p.spec, p.adaptation)]
    weights = store.weights(p.spec, store.adaptation(aid))
    # A fresh runner per point: one thread skips spinning up a thread pool each time.
    with get_runner(backend)(engine, weights, threads=1) as runner:
        outs = [runner.run(x[None]) for x in xs]
    return _errors(src.task_names, refs, outs)


def _errors(names: list[str], refs: list[np.ndarray], outs: list[list[np.ndarray]]) -> dict:
    """Per task: max abs error and that error relative to the output scale (max |ref|).
    refs[task] is batched over inputs, outs[input][task] has batch 1."""
    errs = {}
    for i, name in enumerate(names):
        got = np.concatenate([o[i] for o in outs]).astype(np.float64)
        diff = float(np.max(np.abs(got - refs[i])))
        scale = float(np.max(np.abs(refs[i])))
        errs[name] = {"max_abs": diff, "rel": diff / max(scale, 1e-12)}
    return errs


def samples(src: Source, cache: CompileCache, stage: Path, n: int | None = None) -> None:
    """Sample frames for `runtime run --source synthetic`: the first test images of the
    model's dataset when it is on this machine (NYUD-MT, PASCAL-MT, ...), else rendered
    scenes (the runtime cannot render: the scene generator lives in the trainer)."""
    if src.fit_cfg.data.dataset != "scenes" and (frames := dataset_frames(src.fit_cfg.data, n or 16)) is not None:
        write_arrays(stage / SAMPLES, {"frames": frames})
        return
    rendered_samples(src, cache, stage, n)


def dataset_frames(data, n: int) -> np.ndarray | None:
    """Up to n test images (N, H, W, 3) at the deployed size; None when the data is not here."""
    from trainer.data import get_dataset
    from trainer.data.transforms import resize

    try:
        source = get_dataset(data.dataset).open(data, "test")
        images = [resize(source.item(i)["image"], "image", data.input_hw) for i in range(min(n, len(source)))]
    except TrainerError:
        return None
    return np.ascontiguousarray(np.stack(images).transpose(0, 2, 3, 1))


def rendered_samples(src: Source, cache: CompileCache, stage: Path, n: int | None = None) -> None:
    """Rendered scenes: RGB uint8, larger than a small network's input as a camera's would
    be (4x, at most 256 px; a large input's own size). Cached: rendering takes seconds."""
    from trainer.data.scenes import GENERATOR_VERSION, render_scenes

    data, side = src.fit_cfg.data, max(src.shape[1:])
    size = max(side, min(4 * side, 256))
    n = n or (48 if size <= 256 else 16)  # large frames: fewer (rendering ~0.4 s and ~0.3 MB each)
    fields = {
        "n": n,
        "size": size,
        "seed": data.seed + 7919,
        "max_objects": data.max_objects,
        "generator": GENERATOR_VERSION,
        "format": "safetensors",
    }

    def render(tmp: Path) -> None:
        images = render_scenes(n, size, seed=fields["seed"], max_objects=data.max_objects)["image"]
        write_arrays(tmp, {"frames": np.ascontiguousarray(images.astype(np.uint8).transpose(0, 2, 3, 1))})

    entry = cache.get_or_build("samples", "scenes", fields, SUFFIX, render)
    (stage / SAMPLES).parent.mkdir()
    copy_entry(entry.path, stage / SAMPLES)


@dataclass(frozen=True)
class Compiled:
    """Everything the manifest records, once every stage has run."""

    plan: Plan
    targets: list[Target]
    graphs: dict[str, Graph]  # the bundle's copies (fp32 where a target builds from fp32)
    engines: dict[str, Engines]  # per backend
    adapted: Adapted
    parity: Parity
    auto: dict  # build["auto"]: the runtime's backend order and how it was decided
    hypernets: dict | None


def manifest(cfg: BuildConfig, src: Source, c: Compiled, build_info: dict) -> Manifest:
    sigs = {}
    for sig, spec in c.plan.specs.items():
        g, (params, flops) = c.graphs[sig], c.plan.costs[sig]
        sigs[sig] = SignatureInfo(
            sig,
            spec,
            src.family.info.units_per_layer(spec),
            params,
            flops,
            f"graphs/{sig}.onnx",
            INPUT_NAME,
            g.output_names,
            g.weight_names,
            tuple(c.engines[t.name].refs[sig] for t in c.targets),
        )
    grid = tuple(
        GridEntry(p.grid.name, p.grid.preference.r, p.grid.preference.c, p.signature, aid, par)
        for p, aid, par in zip(c.plan.points, c.adapted.ids, c.parity.points)
    )
    spec = src.payload["input_spec"]
    # The checkpoint by identity, not by path: a moved bundle keeps working.
    model = {
        "identity": src.identity,
        "checkpoint": {"name": Path(cfg.checkpoint).name, "sha256": file_sha256(cfg.checkpoint)},
        "backbone": src.fit_cfg.model.backbone,
        "config": src.payload["config"],
    }
    tasks = tuple(TaskInfo(t["name"], t["kind"], t["channels"]) for t in src.payload["tasks"])
    return Manifest(
        model=model,
        tasks=tasks,
        input=InputSpec(
            tuple(spec["shape"]), spec["colour_order"], spec["scale"], tuple(spec["mean"]), tuple(spec["std"])
        ),
        full_net={"params": c.plan.full[0], "flops": c.plan.full[1]},
        signatures=sigs,
        grid=grid,
        anchor=c.adapted.anchor,
        hypernets=c.hypernets,
        build=build_info,
        family=src.family.name,
    )


def report(out: Path, c: Compiled, cache: CompileCache, seconds: dict) -> BuildReport:
    def rel(values):
        return (min(values), statistics.median(values), max(values))

    full = c.plan.full
    return BuildReport(
        out,
        len(c.plan.points),
        len(c.plan.specs),
        len(set(c.adapted.ids)),
        cache.stats,
        rel([p / full[0] for p, _ in c.plan.costs.values()]),
        rel([f / full[1] for _, f in c.plan.costs.values()]),
        max(e["rel"] for errs in c.parity.points for e in errs.values()),
        seconds,
        c.auto,
    )


def remove_stale_staging(out: Path) -> list[Path]:
    """Deletes the staging and replaced-bundle folders (`.NAME.partial-PID`, `.NAME.old-PID`)
    that killed builds of `out` left behind; folders of live processes are kept."""
    removed = []
    for path in out.parent.glob(f".{out.name}.*-*"):
        kind, _, pid = path.name.removeprefix(f".{out.name}.").rpartition("-")
        if kind in ("partial", "old") and pid.isdigit() and not path.is_symlink() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def copy_entry(src: Path, dst: Path) -> None:
    """Copies a cache entry into the bundle being staged; an entry deleted meanwhile (a
    concurrent `compiler cache prune`) is one CompilerError, and nothing is published."""
    try:
        shutil.copyfile(src, dst)
    except FileNotFoundError:
        raise _vanished(src) from None


def _vanished(entry: Path) -> CompilerError:
    return CompilerError(
        f"cache entry {entry} vanished while this build read it (was the cache pruned meanwhile?); rerun the build"
    )


def weightless_copy(src: Path, dst: Path, weight_names) -> None:
    """The bundle's copy of a graph: structure only, its parameters marked as external
    data that is never written (the anchor and a point's deltas fold into them), so
    graphs do not store the anchor's weights once per signature."""
    import onnx

    try:
        model = onnx.load(str(src))
    except FileNotFoundError:
        raise _vanished(src) from None
    missing = externalise(model, set(weight_names))
    if missing:
        raise CompilerError(f"graph {src.name} lacks weights {sorted(missing)[:3]} its cache entry lists")
    onnx.save(model, str(dst))


def publish(stage: Path, out: Path) -> None:
    """Moves the finished staging dir to `out`, replacing an older bundle there."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


# -- the pipeline ---------------------------------------------------------------------
def build(cfg: BuildConfig, console: Console | None = None) -> BuildReport:
    """Runs every stage and publishes BUNDLE_DIR; raises CompilerError / ParityError."""
    console = console or Console(stderr=True)
    t0, timed, cache = time.perf_counter(), Stages(), CompileCache(cfg.cache)
    # Compile work is many tiny ops (batch-1 reference passes of small nets, next to
    # ONNX Runtime's own pool): one torch thread avoids OpenMP spin contention,
    # which made each small conv ~10x slower on 2 cores.
    torch.set_num_threads(1)
    targets = build_targets(cfg, cache, console)  # fail fast, before loading anything heavy
    out = Path(cfg.out)
    if out.exists() and not (out / "manifest.json").is_file():
        raise CompilerError(f"--out {out} exists and is not a bundle: refusing to replace it")
    with timed("load"):
        src = load(cfg)
    with timed("derive"):
        plan = derive(src, cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        stage.mkdir()
        compiled = _compile(cfg, src, plan, targets, cache, stage, timed, console)
        timed.seconds["total"] = round(time.perf_counter() - t0, 3)
        # No paths of the build machine: a bundle is copied to devices and must not depend on them.
        config = {k: v for k, v in vars(cfg).items() if k not in ("checkpoint", "out", "cache")}
        config["prefs"] = Path(cfg.prefs).name
        info = {
            "backend": cfg.backend,  # as requested
            "precision": cfg.precision,
            "backends": {t.name: {"precision": t.precision, "device": t.device} for t in targets},
            "auto": compiled.auto,
            "parity_worst": compiled.parity.worst,
            "config": config,
            "cache": cache.stats,
            "stages": timed.seconds,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic_write_text(stage / "manifest.json", json.dumps(manifest(cfg, src, compiled, info).to_dict(), indent=1))
        publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return report(out, compiled, cache, timed.seconds)


def _compile(
    cfg: BuildConfig,
    src: Source,
    plan: Plan,
    targets: list[Target],
    cache: CompileCache,
    stage: Path,
    timed: Stages,
    console: Console,
) -> Compiled:
    small_shape = (src.shape[0], cfg.parity_size, cfg.parity_size) if _small_parity(cfg, src) else None
    precisions = graph_precisions(targets)
    with _progress(console) as progress, Workers(cfg, src, cache) as workers:
        with timed("adapt"):
            adapted = adapt(src, plan.points, stage, progress)
        with timed("export"):
            graphs, small_graphs = {}, {}
            for gp in precisions:
                label = "export" if gp == precisions[0] else f"export-{gp}"
                graphs[gp] = export(src, plan.specs, gp, src.shape, workers, progress, label)
                if small_shape:
                    small_graphs[gp] = export(src, plan.specs, gp, small_shape, workers, progress, f"{label}-s")
            bundle_graphs(graphs[precisions[0]], stage)
        with timed("engine"):
            built = {}
            for t in targets:
                label = "engine" if len(targets) == 1 else f"engine {t.name}"
                shapes = (src.shape, small_shape)
                built[t.name] = target_engines(src, t, graphs, small_graphs, shapes, cfg, cache, stage, progress, label)
        with timed("parity"):
            checks = [c for t in targets for c in parity_checks(plan, adapted, cfg, t, stage, *built[t.name].checked)]
            errors = parity(checks, len(plan.points), cfg, workers, progress)
            src.family.set_input_size(src.models, src.shape[1:])
        with timed("measure"):
            auto = rank(src, plan, adapted, targets, built, stage, progress)
    with timed("samples"):
        samples(src, cache, stage)
    hypernets = None
    if cfg.hypernets and src.family.hypernets:
        with timed("hypernets"):
            hypernets = export_hypernets(src.models, stage)
    return Compiled(plan, targets, graphs[precisions[0]], built, adapted, errors, auto, hypernets)


def graph_precisions(targets: list[Target]) -> list[str]:
    """The graph precisions the targets build from, the bundle's own copy's first (fp32
    when any target builds from fp32: the runtime folds fp32 weights)."""
    wanted = list(dict.fromkeys(t.graph_precision for t in targets))
    return sorted(wanted, key=lambda p: p != "fp32")


@dataclass(frozen=True)
class Engines:
    """One target's engines: in the bundle, and what parity checks (full and --parity-size)."""

    refs: dict[str, EngineRef]  # signature -> the bundle's engine
    full: tuple  # (input shape, {signature: (engine path, engine key)})
    small: tuple | None  # the same at --parity-size, or None

    @property
    def checked(self) -> tuple:
        return self.full, self.small


def target_engines(src, target, graphs, small_graphs, shapes, cfg, cache, stage, progress, label) -> Engines:
    """Builds (or finds cached) one target's engines at full size and, with --parity-size,
    at the small size, and copies the full-size ones into the bundle."""
    shape, small_shape = shapes
    gp = target.graph_precision
    entries = engines(src, graphs[gp], target, cfg, cache, shape, progress, label)
    refs = bundle_engines(entries, target, stage)
    full = (shape, {sig: (stage / refs[sig].path, entries[sig].key) for sig in refs})
    if not small_shape:
        return Engines(refs, full, None)
    small_entries = engines(src, small_graphs[gp], target, cfg, cache, small_shape, progress, f"{label}-s")
    return Engines(refs, full, (small_shape, {sig: (e.path, e.key) for sig, e in small_entries.items()}))


def rank(src, plan: Plan, adapted: Adapted, targets: list[Target], built: dict, stage: Path, progress) -> dict:
    """The runtime's `auto` order (compiler/targets.py): where several backends share a
    device kind, each signature's engines timed with its first grid point's weights."""

    def measure(names: list[str]) -> dict[str, float]:
        first = plan.first_points()
        bar = progress.add_task("measure", total=len(first))
        store = adapted.store(stage, src.family.name)
        timings = (  # lazily: one signature's weights at a time
            Timing(
                sig,
                {n: stage / built[n].refs[sig].path for n in names},
                store.weights(plan.points[i].spec, store.adaptation(adapted.ids[i])),
            )
            for sig, i in first.items()
        )
        return measure_latency(timings, src.shape, lambda: progress.advance(bar))

    return auto_order(targets, measure)


def _small_parity(cfg: BuildConfig, src: Source) -> bool:
    return cfg.parity_size is not None and cfg.parity_size < min(src.shape[1:])
