"""`compiler build`: preference grid -> deduplicated, BN-folded, verified engines.

Stages (each timed, long ones with a progress bar):
  derive  every grid point -> argmax tree (edge hypernet) + BN deltas (weight hypernet)
  fold    per point: the tree's used nodes with BN (+ deltas) folded -> weights/<id>.npz
  export  per signature: ONNX graph of the unadapted tree (cached by content)
  engine  per signature: backend engine (cached by content)
  parity  per point: engine with the point's weights bound vs the PyTorch tree model
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from compiler.cache import CompileCache
from compiler.errors import CompilerError, ParityError
from compiler.export import INPUT_NAME, OPSET, export_graph
from compiler.grid import GridPoint, load_grid
from compiler.hyper import export_hypernets
from edgecore.fileio import atomic_write_text
from edgecore.tree import canonical_tree, identity_tree, tree_signature, used_nodes
from runtime.backends import BuildOptions, get_builder, get_runner, precisions
from runtime.errors import EdgeRuntimeError
from runtime.manifest import EngineRef, GridEntry, InputSpec, Manifest, SignatureInfo, TaskInfo
from runtime.weights import load_weights, save_weights
from trainer.checkpoint import load_checkpoint
from trainer.cost import tree_cost
from trainer.errors import TrainerError
from trainer.models.blocks import count_params
from trainer.models.subnet import TreeFolder

FP16_TOL = 1e-2  # fp16 engines: relative error budget (fp32 uses BuildConfig.parity_tol)


@dataclass(frozen=True)
class BuildConfig:
    """Everything `compiler build` needs; the CLI parses into this."""

    checkpoint: str
    prefs: str
    out: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    cache: str | None = None  # None: the user cache (~/.cache/edgemtl/compile or $EDGEMTL_CACHE)
    jobs: int = 1  # parallel engine builds
    parity_inputs: int = 2  # random frames per grid point
    parity_tol: float = 1e-4  # fp32: max abs error / output scale
    workspace_mb: int = 1024  # TensorRT builder workspace
    seed: int = 0
    hypernets: bool = True  # export hypernets.onnx + anchor.npz for the runtime's exact mode


@dataclass
class Point:
    grid: GridPoint
    tree: tuple
    signature: str
    deltas: dict
    weights_id: str = ""
    parity: dict = field(default_factory=dict)


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

    def builds(self, kind: str = "engines") -> int:
        """Entries of `kind` built or rebuilt (0 on a repeated identical build)."""
        c = self.cache.get(kind, {})
        return c.get("built", 0) + c.get("rebuilt", 0)


class Stages:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


def model_identity(anchor: torch.nn.Module, payload: dict) -> str:
    """Content hash of what an engine depends on: anchor weights, tasks, input spec."""
    h = hashlib.sha256()
    for name, t in sorted(anchor.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([payload.get("tasks"), payload.get("input_spec")], sort_keys=True).encode())
    return h.hexdigest()[:24]


@torch.no_grad()
def derive_points(models, grid: list[GridPoint]) -> list[Point]:
    """Argmax tree, signature and BN deltas of every grid point."""
    points = []
    for gp in grid:
        r = torch.tensor(gp.preference.r, dtype=torch.float32)
        tree = canonical_tree(models.edge.tree(r, gp.preference.c))
        deltas = {node: {k: v.detach().clone() for k, v in d.items()}
                  for node, d in models.weight(r, gp.preference.c).items()}
        points.append(Point(gp, tree, tree_signature(tree), deltas))
    return points


class Builder:
    """One build: holds the loaded model, cache, staging dir and the per-stage results."""

    def __init__(self, cfg: BuildConfig, console: Console):
        self.cfg, self.console = cfg, console
        self.stages = Stages()
        self.cache = CompileCache(cfg.cache)
        if cfg.precision not in precisions():
            raise CompilerError(f"--precision must be one of {precisions()}, found {cfg.precision!r}")
        if cfg.jobs < 1:
            raise CompilerError(f"--jobs must be >= 1, found {cfg.jobs}")
        try:
            self.engine_builder = get_builder(cfg.backend, BuildOptions(cfg.workspace_mb,
                                                                        self.cache.root / "timing" / f"{cfg.backend}.cache"))
            self.engine_builder.check(cfg.precision)  # fail fast, before loading anything heavy
        except EdgeRuntimeError as exc:
            raise CompilerError(str(exc)) from None

    def load(self) -> None:
        with self.stages("load"):
            try:
                fit_cfg, self.models, self.payload = load_checkpoint(self.cfg.checkpoint)
            except TrainerError as exc:
                raise CompilerError(str(exc)) from None
            self.anchor = self.models.anchor
            self.tasks = self.payload["tasks"]
            self.grid = load_grid(self.cfg.prefs, len(self.tasks))
            self.shape = tuple(self.payload["input_spec"]["shape"])
            self.identity = model_identity(self.anchor, self.payload)
            self.device = self.engine_builder.identity()
            self.fit_cfg = fit_cfg

    def derive(self) -> None:
        with self.stages("derive"):
            self.points = derive_points(self.models, self.grid)
            self.trees = {p.signature: p.tree for p in self.points}
            self.costs = {sig: self._cost(tree) for sig, tree in self.trees.items()}
            full = self._cost(identity_tree(self.anchor.n_layers, len(self.tasks)))
            self.full = (count_params(self.anchor), full[1])  # every stream and head: all anchor params

    def _cost(self, tree) -> tuple[int, float]:
        """(params, FLOPs) of a tree; cached, FLOP counting costs ~0.5 s per tree."""
        fields = {"model": self.identity, "tree": [list(r) for r in tree], "shape": list(self.shape),
                  "torch": torch.__version__}

        def count(tmp: Path) -> None:
            tmp.write_text(json.dumps(tree_cost(self.anchor, tree, self.shape[1])))
        params, flops = json.loads(self.cache.get_or_build("costs", "flops", fields, ".cost", count).path.read_text())
        return int(params), float(flops)

    def fold(self, stage: Path, progress: Progress) -> None:
        with self.stages("fold"):
            bar = progress.add_task("fold", total=len(self.points))
            folder = TreeFolder(self.anchor)
            for p in self.points:
                p.weights_id = save_weights(folder.weights(p.tree, p.deltas), stage / "weights")
                progress.advance(bar)

    def export(self, stage: Path, progress: Progress) -> None:
        with self.stages("export"):
            bar = progress.add_task("export", total=len(self.trees))
            self.graphs: dict[str, tuple[Path, dict]] = {}
            gp = self.engine_builder.graph_precision(self.cfg.precision)
            for sig, tree in self.trees.items():
                fields = {"model": self.identity, "signature": sig, "precision": gp, "opset": OPSET,
                          "torch": torch.__version__, "shape": list(self.shape)}
                def build(tmp: Path, tree=tree) -> dict:
                    module = self.anchor.subnet(tree)  # unadapted weights: grid-independent, cacheable
                    info = export_graph(module, self.shape, [t["name"] for t in self.tasks], tmp, gp)
                    return {"weight_names": list(info.weight_names), "output_names": list(info.output_names)}

                entry = self.cache.get_or_build("graphs", gp, fields, ".onnx", build)
                (stage / "graphs").mkdir(exist_ok=True)
                shutil.copyfile(entry.path, stage / "graphs" / f"{sig}.onnx")
                self.graphs[sig] = (entry.path, entry.meta)
                progress.advance(bar)

    def engines(self, stage: Path, progress: Progress) -> None:
        with self.stages("engine"):
            bar = progress.add_task("engine", total=len(self.trees))
            b, dev = self.engine_builder, self.device
            subdir = f"{b.name}/{dev['device']}"

            def one(sig: str):
                graph, meta = self.graphs[sig]
                fields = {"model": self.identity, "signature": sig, "backend": b.name, "precision": self.cfg.precision,
                          "shape": list(self.shape), **dev}
                names = tuple(meta["weight_names"])
                entry = self.cache.get_or_build("engines", subdir, fields, b.suffix,
                                                lambda tmp: b.build(graph, tmp, self.cfg.precision, names))
                progress.advance(bar)
                return sig, entry

            with ThreadPoolExecutor(self.cfg.jobs) as pool:
                entries = dict(pool.map(one, self.trees))
            self.engine_refs = {}
            for sig, entry in entries.items():
                rel = Path("engines") / subdir / entry.path.name
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(entry.path, stage / rel)
                self.engine_refs[sig] = EngineRef(b.name, self.cfg.precision, dev["device"], entry.key, str(rel),
                                                  entry.meta["sha256"])

    def parity(self, stage: Path, progress: Progress) -> None:
        with self.stages("parity"):
            bar = progress.add_task("parity", total=len(self.points))
            rng = np.random.default_rng(self.cfg.seed)
            xs = rng.standard_normal((self.cfg.parity_inputs, *self.shape)).astype(np.float32)
            tol = self.cfg.parity_tol if self.cfg.precision == "fp32" else FP16_TOL
            failures = []
            for p in self.points:
                ref = self.engine_refs[p.signature]
                # A pure function of engine, weights and inputs: cached, so a repeated build skips it.
                fields = {"engine": ref.key, "weights": p.weights_id, "seed": self.cfg.seed, "n": len(xs)}
                entry = self.cache.get_or_build("parity", f"{ref.backend}/{ref.device}", fields, ".parity",
                                                lambda tmp, p=p: self._check(stage, p, xs, tmp))
                p.parity = json.loads(entry.path.read_text())
                worst = max(e["rel"] for e in p.parity.values())
                if not worst <= tol:  # also catches NaN
                    failures.append((worst, p.grid.name, p.signature))
                progress.advance(bar)
            if failures:
                worst, name, sig = max(failures)
                raise ParityError(f"{len(failures)} of {len(self.points)} grid points exceed the parity tolerance "
                                  f"{tol:g} (relative to the output scale); worst {worst:.3g} at {name!r} "
                                  f"(signature {sig}). Nothing was published.")

    @torch.no_grad()
    def _check(self, stage: Path, p: Point, xs: np.ndarray, out: Path) -> None:
        """Engine with the point's weights bound vs the unfolded PyTorch tree model."""
        refs = [o.numpy() for o in self.anchor.forward_tree(torch.from_numpy(xs), p.tree, p.deltas)]
        weights = load_weights(stage / "weights" / f"{p.weights_id}.npz")
        # A fresh runner per point: one thread skips spinning up a thread pool each time.
        with get_runner(self.cfg.backend)(stage / self.engine_refs[p.signature].path, weights, threads=1) as runner:
            outs = [runner.run(x[None]) for x in xs]
        out.write_text(json.dumps(_errors([t["name"] for t in self.tasks], refs, outs)))

    def samples(self, stage: Path, n: int = 48, upscale: int = 4) -> None:
        """Sample frames for `runtime run --source synthetic` (the runtime cannot render:
        the scene generator lives in the trainer): RGB uint8, larger than the
        network input, as a camera's would be. Cached: rendering takes seconds."""
        from trainer.data.scenes import GENERATOR_VERSION, render_scenes
        data, size = self.fit_cfg.data, self.shape[1] * upscale
        fields = {"n": n, "size": size, "seed": data.seed + 7919, "max_objects": data.max_objects,
                  "generator": GENERATOR_VERSION}

        def render(tmp: Path) -> None:
            images = render_scenes(n, size, seed=fields["seed"], max_objects=data.max_objects)["image"]
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(images.astype(np.uint8).transpose(0, 2, 3, 1)))
        with self.stages("samples"):
            entry = self.cache.get_or_build("samples", "scenes", fields, ".npy", render)
            (stage / "samples").mkdir()
            shutil.copyfile(entry.path, stage / "samples" / "frames.npy")

    def manifest(self) -> Manifest:
        sigs = {}
        for sig, tree in self.trees.items():
            _, meta = self.graphs[sig]
            params, flops = self.costs[sig]
            sigs[sig] = SignatureInfo(sig, tree, tuple(sum(r) for r in used_nodes(tree)), params, flops,
                                      f"graphs/{sig}.onnx", INPUT_NAME, tuple(meta["output_names"]),
                                      tuple(meta["weight_names"]), (self.engine_refs[sig],))
        grid = tuple(GridEntry(p.grid.name, p.grid.preference.r, p.grid.preference.c, p.signature, p.weights_id,
                               p.parity) for p in self.points)
        spec = self.payload["input_spec"]
        model = {"identity": self.identity, "checkpoint": str(Path(self.cfg.checkpoint).resolve()),
                 "backbone": self.fit_cfg.model.backbone, "config": self.payload["config"]}
        tasks = tuple(TaskInfo(t["name"], t["kind"], t["channels"]) for t in self.tasks)
        return Manifest(model=model, tasks=tasks,
                        input=InputSpec(tuple(spec["shape"]), spec["colour_order"], spec["scale"],
                                        tuple(spec["mean"]), tuple(spec["std"])),
                        full_net={"params": self.full[0], "flops": self.full[1]}, signatures=sigs, grid=grid,
                        hypernets=getattr(self, "hypernets", None),
                        build={"backend": self.cfg.backend, "precision": self.cfg.precision, "device": self.device,
                               "config": vars(self.cfg) | {}, "cache": self.cache.stats, "stages": self.stages.seconds,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

    def report(self, out: Path) -> BuildReport:
        def rel(values):
            return (min(values), statistics.median(values), max(values))
        return BuildReport(out, len(self.points), len(self.trees), len({p.weights_id for p in self.points}),
                           self.cache.stats, rel([c[0] / self.full[0] for c in self.costs.values()]),
                           rel([c[1] / self.full[1] for c in self.costs.values()]),
                           max(e["rel"] for p in self.points for e in p.parity.values()), self.stages.seconds)


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


def publish(stage: Path, out: Path) -> None:
    """Moves the finished staging dir to `out`, replacing an older bundle there."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


def build(cfg: BuildConfig, console: Console | None = None) -> BuildReport:
    """Runs every stage and publishes BUNDLE_DIR; raises CompilerError / ParityError."""
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    # Compile work is many tiny ops (batch-1 reference passes of small nets, next to
    # ONNX Runtime's own pool): one torch thread avoids OpenMP spin contention,
    # which made each small conv ~10x slower on 2 cores.
    torch.set_num_threads(1)
    b = Builder(cfg, console)
    out = Path(cfg.out)
    if out.exists() and not (out / "manifest.json").is_file():
        raise CompilerError(f"--out {out} exists and is not a bundle: refusing to replace it")
    b.load()
    b.derive()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        stage.mkdir()
        with _progress(console) as progress:
            b.fold(stage, progress)
            b.export(stage, progress)
            b.engines(stage, progress)
            b.parity(stage, progress)
        b.samples(stage)
        if cfg.hypernets:
            with b.stages("hypernets"):
                b.hypernets = export_hypernets(b.models, stage)
        b.stages.seconds["total"] = round(time.perf_counter() - t0, 3)
        atomic_write_text(stage / "manifest.json", json.dumps(b.manifest().to_dict(), indent=1))
        publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return b.report(out)
