"""`trainer fit`: every training stage, top to bottom (paper Algorithm 1).

Stages, each resumable (a finished stage is skipped on a rerun; an unfinished
one continues from its last partial checkpoint, also written on Ctrl-C):
  pretrain  one hard-shared multi-task network, copied into every stream
  single    N single-task streams fine-tuned from it (= the anchor net and the
            Single-Task baseline)
  scaling   task loss weights w_i = 1 / single-task val loss (unless configured)
  affinity  RSA task affinity on the frozen anchor net (appendix D)
  edge      edge hypernet, anchor frozen: sum_i r_i w_i L_i + Omega(r, c, alpha)
  weight    weight hypernet, anchor and edge hypernet frozen: task loss only
  phn_bn    the PHN-BN baseline, started from the pretrained shared network
Then RUN_DIR/model.ckpt is written. Progress and losses go to RUN_DIR/log.jsonl.
"""

from __future__ import annotations

import copy
import json
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from edgecore.tree import identity_tree, used_nodes
from trainer.checkpoint import atomic_torch_save, make_payload
from trainer.config import FitConfig, StageConfig, to_dict
from trainer.data import load_split
from trainer.errors import TrainerError
from trainer.models import Models, build_models
from trainer.models.blocks import count_params
from trainer.paths import check_size, expected_task_loss, path_losses
from trainer.regularizer import RegularizerConfig, branching_regularizer, rsa_affinity
from trainer.tasks import get_tasks

# Images are RGB uint8; the network sees (x / 255 - MEAN) / STD. The runtime
# reproduces this from the input spec stored in the checkpoint.
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class Split:
    """One dataset split as tensors in memory, with random and ordered batches."""

    def __init__(self, arrays: dict[str, np.ndarray], task_names, device="cpu"):
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        self.x = ((torch.from_numpy(arrays["image"]).float() / 255 - mean) / std).to(device)
        self.y = [torch.from_numpy(arrays[t]).to(device) for t in task_names]
        self.n = len(self.x)

    def sample(self, gen: torch.Generator, batch_size: int):
        idx = torch.randint(0, self.n, (batch_size,), generator=gen)
        return self.x[idx], [y[idx] for y in self.y]

    def batches(self, batch_size: int = 64):
        for s in range(0, self.n, batch_size):
            yield self.x[s : s + batch_size], [y[s : s + batch_size] for y in self.y]


def get_lr(step: int, stage: StageConfig) -> float:
    """Adam lr, x0.3 at 14/30 and 28/30 of the stage (the paper's 14K of 30K)."""
    every = max(1, round(stage.steps * 14 / 30))
    return stage.lr * 0.3 ** (step // every)


def get_temperature(step: int, steps: int, cfg: FitConfig) -> float:
    """Gumbel-softmax temperature: init x decay every `every` steps (300 of 30K, scaled)."""
    m = cfg.method
    every = m.temp_every or max(1, round(300 * steps / 30000))
    return m.temp_init * m.temp_decay ** (step // every)


def sample_preference(rng: np.random.Generator, n: int, eta: float) -> tuple[torch.Tensor, float]:
    r = rng.dirichlet([eta] * n)
    return torch.tensor(r, dtype=torch.float32), float(rng.uniform())


def weighted_task_loss(tasks, outs, ys, weights, r=None):
    """sum_i r_i w_i L_i (r=None: plain sum of w_i L_i); also returns raw losses."""
    losses = [t.loss(o, y) for t, o, y in zip(tasks, outs, ys)]
    coef = weights if r is None else r * weights
    return sum(cf * lo for cf, lo in zip(coef, losses)), [float(lo.detach()) for lo in losses]


class LossScale(nn.Module):
    """Running mean of each task loss (a buffer, so a resumed stage continues it).

    The pretrain stage minimises sum_i L_i / mean(L_i): every task contributes
    about 1 whatever its raw scale, so no task owns the shared trunk. Why a
    pretrain stage at all: the paper's streams all start from one ImageNet
    backbone, so a child reading another stream's node gets features it can use;
    streams trained from one random init drift apart and every cross-stream
    edge costs 1.2-6x the task's own loss (README, "Edge hypernet training").
    """

    def __init__(self, n_tasks: int, momentum: float = 0.99):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(n_tasks))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, losses: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            m = self.momentum if int(self.steps) > 0 else 0.0
            self.mean.mul_(m).add_((1 - m) * torch.stack([lo.detach() for lo in losses]))
            self.steps += 1
        return sum(lo / s.clamp_min(1e-8) for lo, s in zip(losses, self.mean))


def reinforce_task_loss(anchor, tasks, logits, temp, x, ys, w, r, samples: int, tree_cost=None):
    """Score-function estimate of grad E_T[sum_i r_i w_i L_i(T) + tree_cost(T)] for
    trees T drawn from softmax(logits / temp), with a leave-one-out baseline over
    `samples` trees on the same images. Only used children's choices enter log p(T).

    Returns (surrogate whose gradient is the estimate, mean task loss, mean tree
    cost). Why: with a frozen anchor the relaxed (mixing) gradient can point away
    from the best discrete parent (see README); this one scores the trees
    actually run, and prices them (the cost term) on the same scale.
    """
    dist = torch.distributions.Categorical(logits=logits / temp)
    trees = dist.sample((samples,))  # (K, L, N): parent of child j at layer l
    with torch.no_grad():
        task = torch.stack([weighted_task_loss(tasks, anchor.forward_tree(x, t.tolist()), ys, w, r)[0] for t in trees])
        cost = torch.tensor([float(tree_cost(t.tolist())) if tree_cost else 0.0 for t in trees])
    values = task + cost
    used = torch.tensor([[row for row in used_nodes(t.tolist())[1:]] for t in trees])
    logp = (dist.log_prob(trees) * used).sum((1, 2))
    advantage = values - (values.sum() - values) / (samples - 1)
    return (advantage * logp).mean(), task.mean(), cost.mean()


def used_cost(tree, node_cost: torch.Tensor) -> float:
    """Sum of node_cost[l, i] over the nodes `tree` uses (e.g. its parameter share)."""
    return sum(float(node_cost[l, i]) for l, row in enumerate(used_nodes(tree)) for i, u in enumerate(row) if u)


class RunDir:
    """Files of one run: config, per-stage state, partial checkpoints, log."""

    def __init__(self, root: str | Path, cfg: FitConfig):
        self.root = Path(root)
        self.stages = self.root / "stages"
        self.stages.mkdir(parents=True, exist_ok=True)
        self._check_config(cfg)

    def _check_config(self, cfg: FitConfig) -> None:
        path, text = self.root / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False)
        if path.is_file() and path.read_text() != text:
            raise TrainerError(
                f"{self.root} holds a run with a different config; use another --out or delete the run to start over"
            )
        path.write_text(text)

    def done(self, stage: str) -> Path | None:
        p = self.stages / f"{stage}.pt"
        return p if p.is_file() else None

    def partial(self, stage: str) -> Path:
        return self.stages / f"{stage}.partial.pt"

    def log(self, record: dict) -> None:
        with open(self.root / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def train_stage(
    run: RunDir,
    name: str,
    module: torch.nn.Module,
    stage: StageConfig,
    step_fn: Callable[[int], tuple[torch.Tensor, dict]],
    cfg: FitConfig,
) -> None:
    """Adam over `module`'s trainable parameters for stage.steps steps of step_fn,
    with partial checkpoints every cfg.train.checkpoint_every steps and on Ctrl-C."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=stage.lr, weight_decay=stage.weight_decay)
    completed, before = _resume(run.partial(name), module, opt), None

    def state(s: int) -> dict:
        return {"step": s, "module": module.state_dict(), "opt": opt.state_dict(), "torch_rng": torch.get_rng_state()}

    with _progress() as bar:
        task = bar.add_task(name, total=stage.steps, completed=completed, info="")
        try:
            for step in range(completed, stage.steps):
                before = _StepStart(module)
                for g in opt.param_groups:
                    g["lr"] = get_lr(step, stage)
                loss, logs = step_fn(step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                completed, before = step + 1, None
                if step % 25 == 0 or step == stage.steps - 1:
                    run.log({"stage": name, "step": step, "loss": loss.item(), **logs})
                    bar.update(task, info=f"loss {loss.item():.4f}")
                if completed % cfg.train.checkpoint_every == 0:
                    atomic_torch_save(state(completed), run.partial(name))
                bar.update(task, completed=completed)
        except KeyboardInterrupt:
            if before is not None:
                before.restore()
            atomic_torch_save(state(completed), run.partial(name))
            raise
    run.partial(name).unlink(missing_ok=True)


class _StepStart:
    """Buffers and torch RNG state at the start of a step. A step cut off before
    opt.step() has already moved BN running statistics (and loss running means)
    and drawn random numbers; restoring them makes the Ctrl-C checkpoint the
    state after the last whole step, so a resumed stage ends where an
    uninterrupted one does (parameters and optimiser only change in opt.step())."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.buffers = {k: b.detach().clone() for k, b in module.named_buffers()}
        self.rng = torch.get_rng_state()

    def restore(self) -> None:
        with torch.no_grad():
            for k, b in self.module.named_buffers():
                b.copy_(self.buffers[k])
        torch.set_rng_state(self.rng)


def load_stage_file(path: Path) -> dict:
    """A stage file of a run folder (weights only: a pickled object could run code); a
    truncated or foreign file is one TrainerError that says how to recover."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise TrainerError(
            f"stage file {path} is unreadable ({exc.__class__.__name__}); delete it to redo "
            f"that stage, then rerun the same command"
        ) from None
    if not isinstance(state, dict):
        raise TrainerError(f"stage file {path} holds {type(state).__name__}, not a stage; delete it and rerun")
    return state


def _resume(path: Path, module, opt) -> int:
    if not path.is_file():
        return 0
    state = load_stage_file(path)
    try:
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise TrainerError(
            f"partial stage file {path} does not fit this run ({exc.__class__.__name__}: {exc}); "
            f"delete it to restart that stage"
        ) from None


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )


class Fit:
    """State shared by the stages: config, data, models, run directory."""

    def __init__(self, cfg: FitConfig, out: str | Path):
        # Tasks and models first: a config they reject leaves no run directory behind.
        self.cfg, self.tasks = cfg, get_tasks(cfg.data.tasks)
        self.models: Models = build_models(cfg)
        if cfg.method.edge_gradient == "exact":
            check_size(len(self.tasks), self.models.anchor.n_layers)
        self.run = RunDir(out, cfg)
        self.n = len(self.tasks)
        names = [t.name for t in self.tasks]
        self.train = Split(load_split(cfg.data, "train"), names)
        self.val = Split(load_split(cfg.data, "val"), names)
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def rng(self, stage: str, step: int) -> np.random.Generator:
        # Draws depend only on (seed, stage, step): a resumed stage repeats them exactly.
        return np.random.default_rng([self.cfg.seed, zlib.crc32(stage.encode()), step])

    def batch(self, stage: StageConfig, step: int, name: str):
        seed = int(self.rng(name + "/batch", step).integers(2**62))
        return self.train.sample(torch.Generator().manual_seed(seed), stage.batch_size)

    def groups(self, stage: StageConfig, step: int, name: str, eta: float | None = None):
        """Splits one batch into prefs_per_step groups, each with its own (r, c)
        (r ~ Dirichlet(eta), default method.dirichlet): the hypernets see several
        preferences per update for the same compute."""
        x, ys = self.batch(stage, step, name)
        k = self.cfg.method.prefs_per_step
        rng = self.rng(name, step)
        for g in range(k):
            r, c = sample_preference(rng, self.n, eta or self.cfg.method.dirichlet)
            sl = slice(g * len(x) // k, (g + 1) * len(x) // k)
            yield r, c, x[sl], [y[sl] for y in ys]

    # -- stages -------------------------------------------------------------
    def stage_pretrain(self) -> None:
        anchor, st = self.models.anchor, self.cfg.train.pretrain
        if st.steps == 0:
            return
        scale = LossScale(self.n)
        anchor.train()

        def step_fn(step):
            x, ys = self.batch(st, step, "pretrain")
            losses = [t.loss(o, y) for t, o, y in zip(self.tasks, anchor.forward_shared(x), ys)]
            return scale(losses), {f"L_{t.name}": lo.item() for t, lo in zip(self.tasks, losses)}

        def save():
            anchor.share_stream(0)  # every stream starts from the shared backbone
            return {"anchor": anchor.state_dict()}

        self._stage("pretrain", nn.ModuleDict({"anchor": anchor, "scale": scale}), st, step_fn, save=save)

    def stage_single(self) -> None:
        anchor, st = self.models.anchor, self.cfg.train.single
        anchor.train()

        def step_fn(step):
            x, ys = self.batch(st, step, "single")
            outs = [anchor.forward_stream(x, i) for i in range(self.n)]
            total, raw = weighted_task_loss(self.tasks, outs, ys, torch.ones(self.n))
            return total, {f"L_{t.name}": v for t, v in zip(self.tasks, raw)}

        self._stage("single", anchor, st, step_fn, save=lambda: {"anchor": anchor.state_dict()})

    def stage_scaling(self) -> None:
        def compute():
            losses = self.val_losses(
                lambda x: self.models.anchor.forward_tree(x, identity_tree(self.models.anchor.n_layers, self.n))
            )
            w = self.cfg.method.loss_weights or tuple(1.0 / max(v, 1e-8) for v in losses)
            if len(w) != self.n:
                raise TrainerError(f"method.loss_weights: expected {self.n} values (one per task), found {len(w)}")
            return {"single_task_val_losses": losses, "loss_weights": list(w)}

        self._once("scaling", compute)

    def stage_affinity(self) -> None:
        def compute():
            k = min(self.cfg.method.affinity_samples, self.train.n)
            x = self.train.x[:k]
            with torch.no_grad():
                feats = [self.models.anchor.stream_features(x, i) for i in range(self.n)]
            return {"affinity": rsa_affinity(feats).tolist()}

        self._once("affinity", compute)

    def stage_edge(self) -> None:
        m, anchor, edge = self.cfg.method, self.models.anchor, self.models.edge
        st, w = self.cfg.train.edge, self.weights()
        reg = self.regularizer_config()
        aff = torch.tensor(self.state("affinity")["affinity"])
        node_cost = self.node_cost()
        self.freeze(anchor)
        if m.edge_gradient == "exact":
            table = self.path_table()

        def objective(r, c, x, ys, temp):
            """(surrogate for the task term [+ cost term], Omega, logs) of one preference."""
            logits = edge(r, c)
            if m.edge_gradient == "exact":
                # Expectations, not samples, for every term: the distance between two
                # Gumbel samples is > 0 even when their distributions agree, so Omega on
                # samples keeps pushing every preference's logits to one saturated tree.
                probs = list(torch.softmax(logits, -1))
                task = expected_task_loss(probs, table, r * w)
                omega, parts = branching_regularizer(probs, r, c, aff, reg, node_cost)
                return task, omega, {"task": float(task.detach()), "omega": omega.item(), **parts}
            nus = [F.gumbel_softmax(lg, tau=temp, hard=m.gumbel_hard, dim=-1) for lg in logits]
            if m.edge_gradient == "reinforce":
                # The cost term prices the sampled trees next to their task loss (exact
                # for each discrete tree); the relaxed path uses its P_use expectation.
                price = (lambda t: c * m.lambda_cost * used_cost(t, node_cost)) if m.lambda_cost else None
                surrogate, task, cost = reinforce_task_loss(
                    anchor, self.tasks, logits, m.reinforce_temp or temp, x, ys, w, r, m.reinforce_samples, price
                )
                omega, parts = branching_regularizer(nus, r, c, aff, reg)
                parts["cost"] = float(cost)
            else:
                task = surrogate = weighted_task_loss(self.tasks, anchor.forward_mixed(x, nus), ys, w, r)[0]
                omega, parts = branching_regularizer(nus, r, c, aff, reg, node_cost)
            return surrogate, omega, {"task": float(task.detach()), "omega": omega.item(), **parts}

        def step_fn(step):
            temp = get_temperature(step, st.steps, self.cfg)
            losses, logs = [], {}
            groups = self.edge_groups(st, step)
            for r, c, x, ys in groups:
                surrogate, omega, parts = objective(r, c, x, ys, temp)
                losses.append(surrogate + omega)
                for k, v in parts.items():
                    logs[k] = logs.get(k, 0.0) + v / len(groups)
            return torch.stack(losses).mean(), {"temp": temp, **logs}

        self._stage("edge", edge, st, step_fn, save=lambda: {"edge_hypernet": edge.state_dict()})

    def edge_groups(self, st: StageConfig, step: int) -> list:
        """The edge stage's preferences for one step: with the exact estimator no
        images are needed, so edge_prefs_per_step preferences cost little."""
        m = self.cfg.method
        eta = m.edge_dirichlet or m.dirichlet
        if m.edge_gradient != "exact":
            return list(self.groups(st, step, "edge", eta))
        rng = self.rng("edge", step)
        return [
            (*sample_preference(rng, self.n, eta), None, None) for _ in range(m.edge_prefs_per_step or m.prefs_per_step)
        ]

    def path_table(self) -> torch.Tensor:
        """Task losses of every path on the first method.path_images training images (stages/paths.pt)."""
        k = min(self.cfg.method.path_images, self.train.n)
        self._once(
            "paths",
            lambda: {
                "table": path_losses(self.models.anchor, self.tasks, self.train.x[:k], [y[:k] for y in self.train.y])
            },
        )
        return self.state("paths")["table"]

    def stage_weight(self) -> None:
        anchor, edge, hyper = self.models.anchor, self.models.edge, self.models.weight
        st, w = self.cfg.train.weight, self.weights()
        self.freeze(anchor)
        self.freeze(edge)

        def step_fn(step):
            losses = [
                weighted_task_loss(self.tasks, anchor.forward_tree(x, edge.tree(r, c), hyper(r, c)), ys, w, r)[0]
                for r, c, x, ys in self.groups(st, step, "weight")
            ]
            return torch.stack(losses).mean(), {}

        self._stage("weight", hyper, st, step_fn, save=lambda: {"weight_hypernet": hyper.state_dict()})

    def stage_phn_bn(self) -> None:
        phn, st, w = self.models.phn_bn, self.cfg.train.phn_bn, self.weights()
        phn.train()

        def step_fn(step):
            losses = [
                weighted_task_loss(self.tasks, phn(x, r), ys, w, r)[0]
                for r, _, x, ys in self.groups(st, step, "phn_bn")
            ]
            return torch.stack(losses).mean(), {}

        self._stage("phn_bn", phn, st, step_fn, save=lambda: {"phn_bn": phn.state_dict()}, init=self._init_phn_bn)

    def _init_phn_bn(self) -> None:
        """PHN-BN starts from the pretrained shared network, as our anchor does."""
        if self.run.done("pretrain") is None:
            return
        shared = copy.deepcopy(self.models.anchor)
        shared.load_state_dict(self.state("pretrain")["anchor"])
        self.models.phn_bn.init_from(shared)

    # -- helpers ------------------------------------------------------------
    def _stage(self, name, module, st, step_fn, save, init=None) -> None:
        if (path := self.run.done(name)) is None:
            if init is not None:
                init()  # a resumed stage then loads its partial state over this
            t0 = time.time()
            train_stage(self.run, name, module, st, step_fn, self.cfg)
            atomic_torch_save({**save(), "seconds": time.time() - t0}, self.run.stages / f"{name}.pt")
            path = self.run.done(name)
        self._load_stage(path)

    def _once(self, name: str, compute: Callable[[], dict]) -> None:
        if self.run.done(name) is None:
            atomic_torch_save(compute(), self.run.stages / f"{name}.pt")

    def _load_stage(self, path: Path) -> None:
        state = load_stage_file(path)
        try:
            for key, module in self.models.modules().items():
                if key in state:
                    module.load_state_dict(state[key])
        except RuntimeError as exc:
            raise TrainerError(
                f"stage file {path} does not fit this run's models ({exc}); delete it to redo that stage"
            ) from None

    def state(self, name: str) -> dict:
        return load_stage_file(self.run.stages / f"{name}.pt")

    def weights(self) -> torch.Tensor:
        return torch.tensor(self.state("scaling")["loss_weights"], dtype=torch.float32)

    def regularizer_config(self) -> RegularizerConfig:
        m = self.cfg.method
        tau = m.tau if m.tau is not None else 0.6 / self.n
        return RegularizerConfig(
            tau,
            m.lambda_active,
            m.lambda_inactive,
            m.layer_weighting,
            m.use_affinity,
            m.task_split,
            m.lambda_cost,
            m.graded_inactive,
        )

    def node_cost(self) -> torch.Tensor:
        """(L + 1, N) parameter share of every node in the anchor (for the cost term)."""
        anchor = self.models.anchor
        full = count_params(anchor)
        return torch.tensor(
            [[count_params(anchor.node(l, i)) / full for i in range(self.n)] for l in range(anchor.n_layers + 1)]
        )

    @staticmethod
    def freeze(module: torch.nn.Module) -> None:
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def val_losses(self, forward) -> list[float]:
        self.models.anchor.eval()
        sums, count = np.zeros(self.n), 0
        for x, ys in self.val.batches():
            outs = forward(x)
            sums += np.array([float(t.loss(o, y)) * len(x) for t, o, y in zip(self.tasks, outs, ys)])
            count += len(x)
        return (sums / count).tolist()


STAGES = ("pretrain", "single", "scaling", "affinity", "edge", "weight", "phn_bn")


def fit(cfg: FitConfig, out: str | Path) -> Path:
    """Runs (or resumes) every stage and writes OUT/model.ckpt; returns its path."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    f = Fit(cfg, out)
    for name in STAGES:
        getattr(f, f"stage_{name}")()
    scaling, affinity = f.state("scaling"), f.state("affinity")
    input_spec = {
        "shape": [3, *cfg.data.input_hw],
        "dtype": "uint8",
        "colour_order": "RGB",
        "scale": 1 / 255,
        "mean": list(MEAN),
        "std": list(STD),
    }
    payload = make_payload(
        to_dict(cfg),
        f.models,
        tasks=[t.describe() for t in f.tasks],
        input_spec=input_spec,
        affinity=affinity["affinity"],
        loss_weights=scaling["loss_weights"],
        single_task_val_losses=scaling["single_task_val_losses"],
        torch_version=str(torch.__version__),
        stage_seconds={s: float(f.state(s).get("seconds", 0.0)) for s in STAGES if f.run.done(s)},
    )
    path = Path(out) / "model.ckpt"
    atomic_torch_save(payload, path)
    return path
