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
After each hypernet stage its output's response to (r, c) is measured (RUN_DIR/
checks.jsonl); a hypernet that ignores its input stops the run (method.min_response).
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
from trainer.data import MEAN, STD, get_tasks, open_split
from trainer.distributed import SINGLE, Dist, Share, sync_batchnorm
from trainer.errors import TrainerError
from trainer.models import Models, build_models
from trainer.models.blocks import count_params
from trainer.models.heads import output_size
from trainer.models.hypernets import response
from trainer.paths import check_size, expected_task_loss, path_losses
from trainer.regularizer import RegularizerConfig, branching_regularizer, rsa_affinity


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

    def __init__(self, n_tasks: int, momentum: float = 0.99, reduce: Callable = lambda t: t):
        super().__init__()
        self.momentum, self.reduce = momentum, reduce  # reduce: mean over ranks
        self.register_buffer("mean", torch.zeros(n_tasks))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, losses: list[torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            m = self.momentum if int(self.steps) > 0 else 0.0
            self.mean.mul_(m).add_((1 - m) * self.reduce(torch.stack([lo.detach() for lo in losses])))
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
        cost = torch.tensor([float(tree_cost(t.tolist())) if tree_cost else 0.0 for t in trees], device=logits.device)
    values = task + cost
    used = torch.tensor([[row for row in used_nodes(t.tolist())[1:]] for t in trees], device=logits.device)
    logp = (dist.log_prob(trees) * used).sum((1, 2))
    advantage = values - (values.sum() - values) / (samples - 1)
    return (advantage * logp).mean(), task.mean(), cost.mean()


def used_cost(tree, node_cost: torch.Tensor) -> float:
    """Sum of node_cost[l, i] over the nodes `tree` uses (e.g. its parameter share)."""
    return sum(float(node_cost[l, i]) for l, row in enumerate(used_nodes(tree)) for i, u in enumerate(row) if u)


class RunDir:
    """Files of one run: config, per-stage state, partial checkpoints, log. Only
    rank 0 writes; the other ranks read what it wrote after a barrier (multi-node:
    the run folder must be on storage every node sees)."""

    def __init__(self, root: str | Path, cfg: FitConfig, d: Dist = SINGLE):
        self.root, self.dist = Path(root), d
        self.stages = self.root / "stages"
        if d.main:
            self.stages.mkdir(parents=True, exist_ok=True)
            self._check_config(cfg)
        d.barrier()

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

    def log(self, record: dict, name: str = "log.jsonl") -> None:
        if not self.dist.main:
            return
        with open(self.root / name, "a") as f:
            f.write(json.dumps(record) + "\n")


def train_stage(
    run: RunDir,
    name: str,
    module: torch.nn.Module,
    stage: StageConfig,
    step_fn: Callable[[int], tuple[torch.Tensor, dict]],
    cfg: FitConfig,
    sparse: bool = False,
) -> None:
    """Adam over `module`'s trainable parameters for stage.steps steps of step_fn,
    with partial checkpoints every cfg.train.checkpoint_every steps and on Ctrl-C.
    In a torchrun job step_fn runs under DistributedDataParallel, which averages
    the ranks' gradients before opt.step()."""
    d = run.dist
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=stage.lr, weight_decay=stage.weight_decay)
    completed, before = _resume(run.partial(name), module, opt), None
    ddp = d.wrap(_Step(module, step_fn), sparse)

    def save(s: int) -> None:
        if d.main:
            atomic_torch_save({"step": s, "module": module.state_dict(), "opt": opt.state_dict()}, run.partial(name))

    with _progress(d.main) as bar:
        task = bar.add_task(name, total=stage.steps, completed=completed, info="")
        try:
            for step in range(completed, stage.steps):
                before = _StepStart(module)
                # Random draws inside a step (Gumbel noise, sampled trees) depend only on
                # (seed, stage, step, rank): a resumed stage repeats them exactly.
                torch.manual_seed(zlib.crc32(f"{cfg.seed}/{name}/{step}/{d.rank}".encode()))
                for g in opt.param_groups:
                    g["lr"] = get_lr(step, stage)
                loss, logs = ddp(step)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                completed, before = step + 1, None
                if step % 25 == 0 or step == stage.steps - 1:
                    value = d.mean(loss).item()  # the global batch's loss (a collective: every rank)
                    run.log({"stage": name, "step": step, "loss": value, **logs})
                    bar.update(task, info=f"loss {value:.4f}")
                if completed % cfg.train.checkpoint_every == 0:
                    save(completed)
                bar.update(task, completed=completed)
        except KeyboardInterrupt:
            if before is not None:
                before.restore()
            save(completed)
            raise
    d.barrier()  # every rank has finished before rank 0 removes the partial file


class _Step(torch.nn.Module):
    """One training step as a module's forward, so that DistributedDataParallel
    (which hooks forward) can wrap any stage's step function."""

    def __init__(self, module: torch.nn.Module, step_fn: Callable):
        super().__init__()
        self.module, self.step_fn = module, step_fn

    def forward(self, step: int):
        return self.step_fn(step)


class _StepStart:
    """Buffers at the start of a step. A step cut off before opt.step() has
    already moved BN running statistics (and loss running means); restoring them
    makes the Ctrl-C checkpoint the state after the last whole step, so a resumed
    stage ends where an uninterrupted one does (parameters and optimiser only
    change in opt.step())."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.buffers = {k: b.detach().clone() for k, b in module.named_buffers()}

    def restore(self) -> None:
        with torch.no_grad():
            for k, b in self.module.named_buffers():
                b.copy_(self.buffers[k])


def load_backbone(anchor, path: str) -> None:
    """model.backbone_weights into every stream (read as weights only: the file may come
    from elsewhere, and a pickled object could run code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainerError(f"model.backbone_weights: {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise TrainerError(
            f"model.backbone_weights: {path} is not a torch state dict ({exc.__class__.__name__})"
        ) from None
    if not isinstance(state, dict):
        raise TrainerError(f"model.backbone_weights: {path} holds {type(state).__name__}, expected a state dict")
    try:
        anchor.load_backbone(state)
    except (ValueError, RuntimeError) as exc:
        raise TrainerError(
            f"model.backbone_weights: {path} does not fit model.backbone ({exc}); keys are "
            f"'<layer>.<name>' of one stream (layer 0: the stem), as AnchorNet.stream_state() writes them"
        ) from None


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
        return int(state["step"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise TrainerError(
            f"partial stage file {path} does not fit this run ({exc.__class__.__name__}: {exc}); "
            f"delete it to restart that stage"
        ) from None


def _progress(show: bool = True) -> Progress:
    return Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not show,
    )


class Fit:
    """State shared by the stages: config, data, models, run directory."""

    STAGES = ("pretrain", "single", "scaling", "affinity", "edge", "weight", "phn_bn")  # run in this order

    def __init__(self, cfg: FitConfig, out: str | Path, d: Dist = SINGLE):
        # Tasks and models first: a config they reject leaves no run directory behind.
        self.cfg, self.tasks, self.dist = cfg, get_tasks(cfg.data.tasks, cfg.data.dataset), d
        self.models: Models = build_models(cfg)
        self.prepare(d)
        self.device = d.device
        for module in self.models.modules().values():
            module.to(self.device)
        self.run = RunDir(out, cfg, d)
        self.n = len(self.tasks)
        self.train = open_split(cfg.data, "train", train=True)
        self.val = open_split(cfg.data, "val")
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def prepare(self, d: Dist) -> None:
        """Checks and conversions before anything is written."""
        cfg = self.cfg
        if cfg.model.backbone_weights:
            load_backbone(self.models.anchor, cfg.model.backbone_weights)
        if cfg.method.edge_gradient == "exact":
            check_size(len(self.tasks), self.models.anchor.n_layers)
        if d.world > 1:
            self.check_shares()
        if d.world > 1 and cfg.train.sync_batchnorm:
            sync_batchnorm(self.models.anchor, d.cuda)
            sync_batchnorm(self.models.phn_bn, d.cuda)

    def rng(self, stage: str, step: int) -> np.random.Generator:
        # Draws depend only on (seed, stage, step): a resumed stage repeats them exactly.
        return np.random.default_rng([self.cfg.seed, zlib.crc32(stage.encode()), step])

    def share(self, size: int, groups: int = 1, by_group: bool = False) -> Share:
        return Share(size, groups, self.dist.rank, self.dist.world, by_group)

    def check_shares(self) -> None:
        """Every stage's batch (and preference groups) must split evenly over the ranks."""
        d, m, k = self.dist, self.cfg.method, self.cfg.method.prefs_per_step
        for name in ("pretrain", "single", "edge", "weight", "phn_bn"):
            st = getattr(self.cfg.train, name)
            if st.steps:
                d.check_divisible(f"train.{name}.batch_size", st.batch_size)
        d.check_divisible("method.prefs_per_step", k)
        if self.cfg.train.phn_bn.steps:
            d.check_divisible("train.phn_bn.batch_size / method.prefs_per_step", self.cfg.train.phn_bn.batch_size // k)
        if m.edge_gradient == "exact":
            d.check_divisible("method.edge_prefs_per_step", m.edge_prefs_per_step or k)

    def preference(self, rng: np.random.Generator, eta: float) -> tuple[torch.Tensor, float]:
        r, c = sample_preference(rng, self.n, eta)
        return r.to(self.device), c

    def batch(self, stage: StageConfig, step: int, name: str, share: Share | None = None):
        """This rank's share of the step's global batch (all of it with one process)."""
        seed = int(self.rng(name + "/batch", step).integers(2**62))
        share = share or self.share(stage.batch_size)
        return self.to_device(
            *self.train.sample(torch.Generator().manual_seed(seed), stage.batch_size, share.positions())
        )

    def to_device(self, x: torch.Tensor, ys: list[torch.Tensor]):
        return x.to(self.device, non_blocking=True), [y.to(self.device, non_blocking=True) for y in ys]

    def groups(self, stage: StageConfig, step: int, name: str, eta: float | None = None, by_group: bool = True):
        """Splits one batch into prefs_per_step groups, each with its own (r, c)
        (r ~ Dirichlet(eta), default method.dirichlet): the hypernets see several
        preferences per update for the same compute. Yields (r, c, x, ys, weight) for
        this rank's share (`Share`): the step's loss is sum(weight * group loss)."""
        k = self.cfg.method.prefs_per_step
        share = self.share(stage.batch_size, k, by_group)
        x, ys = self.batch(stage, step, name, share)
        rng = self.rng(name, step)
        prefs = [self.preference(rng, eta or self.cfg.method.dirichlet) for _ in range(k)]
        start = 0
        for g, sl, weight in share.parts():
            local = slice(start, start + sl.stop - sl.start)
            start = local.stop
            yield *prefs[g], x[local], [y[local] for y in ys], weight

    # -- stages -------------------------------------------------------------
    def stage_pretrain(self) -> None:
        anchor, st = self.models.anchor, self.cfg.train.pretrain
        if st.steps == 0:
            return
        scale = LossScale(self.n, reduce=self.dist.mean).to(self.device)
        anchor.train()

        def step_fn(step):
            x, ys = self.batch(st, step, "pretrain")
            losses = [t.loss(o, y) for t, o, y in zip(self.tasks, anchor.forward_shared(x), ys)]
            return scale(losses), {f"L_{t.name}": lo.item() for t, lo in zip(self.tasks, losses)}

        def save():
            anchor.share_stream(0)  # every stream starts from the shared backbone
            return {"anchor": anchor.state_dict()}

        # sparse: the shared network is stream 0; the other streams get no gradient
        self._stage("pretrain", nn.ModuleDict({"anchor": anchor, "scale": scale}), st, step_fn, save=save, sparse=True)

    def stage_single(self) -> None:
        anchor, st = self.models.anchor, self.cfg.train.single
        anchor.train()

        def step_fn(step):
            x, ys = self.batch(st, step, "single")
            outs = [anchor.forward_stream(x, i) for i in range(self.n)]
            total, raw = weighted_task_loss(self.tasks, outs, ys, torch.ones(self.n, device=self.device))
            return total, {f"L_{t.name}": v for t, v in zip(self.tasks, raw)}

        self._stage("single", anchor, st, step_fn, save=lambda: {"anchor": anchor.state_dict()})

    def _full_forward(self, x: torch.Tensor):
        """The full network's task outputs (the scaling stage's single-task val losses)."""
        return self.models.anchor.forward_tree(x, identity_tree(self.models.anchor.n_layers, self.n))

    def stage_scaling(self) -> None:
        def compute():
            losses = self.val_losses(self._full_forward)
            w = self.cfg.method.loss_weights or tuple(1.0 / max(v, 1e-8) for v in losses)
            if len(w) != self.n:
                raise TrainerError(f"method.loss_weights: expected {self.n} values (one per task), found {len(w)}")
            return {"single_task_val_losses": losses, "loss_weights": list(w)}

        self._once("scaling", compute)

    def stage_affinity(self) -> None:
        def compute():
            x = self.train.head(self.cfg.method.affinity_samples)[0].to(self.device)
            self.models.anchor.eval()  # the frozen anchor the hypernets see; leaves BN statistics alone
            with torch.no_grad():
                feats = [self.models.anchor.stream_features(x, i) for i in range(self.n)]
            return {"affinity": rsa_affinity(feats).tolist()}

        self._once("affinity", compute)

    def stage_edge(self) -> None:
        m, anchor, edge = self.cfg.method, self.models.anchor, self.models.edge
        st, w = self.cfg.train.edge, self.weights()
        reg = self.regularizer_config()
        aff = torch.tensor(self.state("affinity")["affinity"], device=self.device)
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
                # At the end of the stage the distribution is sharpened (the Gumbel schedule,
                # capped at 1) so that the expectation it optimises is the argmax tree's
                # loss, the tree that is deployed (issue 23).
                t = min(1.0, temp) if m.exact_temperature else 1.0
                probs = list(torch.softmax(logits / t, -1))
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
            for r, c, x, ys, weight in groups:
                surrogate, omega, parts = objective(r, c, x, ys, temp)
                losses.append(weight * (surrogate + omega))
                for k, v in parts.items():
                    logs[k] = logs.get(k, 0.0) + v / len(groups)
            return torch.stack(losses).sum(), {"temp": temp, **logs}

        self._stage("edge", edge, st, step_fn, save=lambda: {"edge_hypernet": edge.state_dict()})
        self.check_response("edge", "edge hypernet", edge, uses_cost=True)

    def edge_groups(self, st: StageConfig, step: int) -> list:
        """The edge stage's preferences for one step: with the exact estimator no
        images are needed, so edge_prefs_per_step preferences cost little."""
        m = self.cfg.method
        eta = m.edge_dirichlet or m.dirichlet
        if m.edge_gradient != "exact":
            return list(self.groups(st, step, "edge", eta))
        rng, k = self.rng("edge", step), m.edge_prefs_per_step or m.prefs_per_step
        prefs = [self.preference(rng, eta) for _ in range(k)]
        return [(*prefs[g], None, None, weight) for g, _, weight in self.share(k, k, by_group=True).parts()]

    def path_table(self) -> torch.Tensor:
        """Task losses of every path on the first method.path_images training images (stages/paths.pt)."""
        images = lambda: self.to_device(*self.train.head(self.cfg.method.path_images))  # noqa: E731
        self._once("paths", lambda: {"table": path_losses(self.models.anchor, self.tasks, *images())})
        return self.state("paths")["table"].to(self.device)

    def stage_weight(self) -> None:
        anchor, edge, hyper = self.models.anchor, self.models.edge, self.models.weight
        st, w = self.cfg.train.weight, self.weights()
        self.freeze(anchor)
        self.freeze(edge)

        def loss(r, c, x, ys):
            tree = edge.tree(r, c)
            return weighted_task_loss(self.tasks, anchor.forward_tree(x, tree, hyper(r, c, tree)), ys, w, r)[0]

        def step_fn(step):
            losses = [weight * loss(r, c, x, ys) for r, c, x, ys, weight in self.groups(st, step, "weight")]
            return torch.stack(losses).sum(), {}

        save = lambda: {"weight_hypernet": hyper.state_dict()}  # noqa: E731
        self._stage("weight", hyper, st, step_fn, save=save, sparse=True)
        self.check_response("weight", "weight hypernet", self.models.adaptation, uses_cost=True)

    def stage_phn_bn(self) -> None:
        phn, st, w = self.models.phn_bn, self.cfg.train.phn_bn, self.weights()
        phn.train()  # batch statistics, as any network trains (trainer eval gives each r its own)

        def step_fn(step):
            # by image, not by preference: each group's BatchNorm statistics span all ranks
            losses = [
                weight * weighted_task_loss(self.tasks, phn(x, r), ys, w, r)[0]
                for r, _, x, ys, weight in self.groups(st, step, "phn_bn", by_group=False)
            ]
            return torch.stack(losses).sum(), {}

        self._stage("phn_bn", phn, st, step_fn, save=lambda: {"phn_bn": phn.state_dict()}, init=self._init_phn_bn)
        self.check_response("phn_bn", "PHN-BN hypernet", phn.hypernet, uses_cost=False)

    def _init_phn_bn(self) -> None:
        """PHN-BN starts from the pretrained shared network, as our anchor does."""
        if self.run.done("pretrain") is None:
            return
        shared = copy.deepcopy(self.models.anchor)
        shared.load_state_dict(self.state("pretrain")["anchor"])
        self.models.phn_bn.init_from(shared)

    # -- helpers ------------------------------------------------------------
    def check_response(self, stage: str, what: str, hypernet: Callable, uses_cost: bool) -> None:
        """Refuses a hypernet whose output does not depend on its input (issue 23: both BN
        hypernets once output the same deltas for every preference and passed every test).
        Runs on a finished stage and on one loaded from the run folder alike."""
        if getattr(self.cfg.train, stage).steps == 0:  # a stage switched off trains nothing to check
            return
        res = response(hypernet, self.n, uses_cost, self.device)
        self.run.log({"stage": stage, "response": res}, "checks.jsonl")
        floor = self.cfg.method.min_response
        low = [f"{k} {res[k]:.1e}" for k in ("spread_r", "spread_c") if res[k] is not None and res[k] < floor]
        if floor > 0 and low:
            raise TrainerError(
                f"stage {stage}: the {what}'s output barely depends on the preference ({', '.join(low)} over "
                f"{res['probes']} probe preferences; method.min_response = {floor:g}). Check what that stage "
                f"trains on (method.dirichlet, train.{stage}.steps and lr) and the hypernet's conditioning "
                f"(method.embed_dim); delete {self.run.stages / (stage + '.pt')} and rerun, or set "
                f"method.min_response=0 in a new run to accept a constant hypernet"
            )

    def _stage(self, name, module, st, step_fn, save, init=None, sparse=False) -> None:
        if (path := self.run.done(name)) is None:
            if init is not None:
                init()  # a resumed stage then loads its partial state over this
            t0 = time.time()
            train_stage(self.run, name, module, st, step_fn, self.cfg, sparse)
            if self.dist.main:
                atomic_torch_save({**save(), "seconds": time.time() - t0}, self.run.stages / f"{name}.pt")
                self.run.partial(name).unlink(missing_ok=True)
            self.dist.barrier()
            path = self.run.done(name)
        self._load_stage(path)

    def _once(self, name: str, compute: Callable[[], dict]) -> None:
        """A stage without training steps: rank 0 computes and writes it, the others wait."""
        if self.run.done(name) is None and self.dist.main:
            atomic_torch_save(compute(), self.run.stages / f"{name}.pt")
        self.dist.barrier()

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
        return torch.tensor(self.state("scaling")["loss_weights"], dtype=torch.float32, device=self.device)

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
            [[count_params(anchor.node(l, i)) / full for i in range(self.n)] for l in range(anchor.n_layers + 1)],
            device=self.device,
        )

    def publish_extra(self) -> dict:
        """The family's own entries of the checkpoint payload (once every stage is done)."""
        return {"affinity": self.state("affinity")["affinity"]}

    def outputs_at(self, hw):
        """A with-block in which the dense outputs have size hw (validation frames)."""
        return output_size(self.models.anchor, hw)

    @staticmethod
    def freeze(module: torch.nn.Module) -> None:
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def val_losses(self, forward) -> list[float]:
        self.models.anchor.eval()
        sums, count = np.zeros(self.n), 0
        with self.outputs_at(self.val.hw):
            for x, ys in map(lambda b: self.to_device(*b), self.val.batches()):
                outs = forward(x)
                sums += np.array([float(t.loss(o, y)) * len(x) for t, o, y in zip(self.tasks, outs, ys)])
                count += len(x)
        return (sums / count).tolist()


def fit(cfg: FitConfig, out: str | Path) -> Path:
    """Runs (or resumes) every stage and writes OUT/model.ckpt; returns its path.
    Started by torchrun, every rank runs this and rank 0 writes the checkpoint."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = Dist.from_env(cfg.device)
    try:
        if cfg.model.family == "slim-width":
            from trainer.slim.train import SlimFit

            return _fit(SlimFit, cfg, out, d)
        return _fit(Fit, cfg, out, d)
    finally:
        d.close()


def _fit(fit_class: type[Fit], cfg: FitConfig, out: str | Path, d: Dist) -> Path:
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    f = fit_class(cfg, out, d)
    for name in f.STAGES:
        getattr(f, f"stage_{name}")()
    return publish(f, f.STAGES, **f.publish_extra())


def input_spec(cfg: FitConfig) -> dict:
    """What the deployed network takes (the runtime preprocesses camera frames to it)."""
    return {
        "shape": [3, *cfg.data.input_hw],
        "dtype": "uint8",
        "colour_order": "RGB",
        "scale": 1 / 255,
        "mean": list(MEAN),
        "std": list(STD),
    }


def publish(f: Fit, stages, **extra) -> Path:
    """Writes RUN_DIR/model.ckpt (rank 0) once every stage is done; returns its path."""
    scaling = f.state("scaling")
    payload = make_payload(
        to_dict(f.cfg),
        f.models,
        tasks=[t.describe() for t in f.tasks],
        input_spec=input_spec(f.cfg),
        loss_weights=scaling["loss_weights"],
        single_task_val_losses=scaling["single_task_val_losses"],
        torch_version=str(torch.__version__),
        stage_seconds={s: float(f.state(s).get("seconds", 0.0)) for s in stages if f.run.done(s)},
        **extra,
    )
    path = Path(f.run.root) / "model.ckpt"
    if f.dist.main:
        atomic_torch_save(payload, path)
    f.dist.barrier()
    return path
