"""One frozen dataclass per concern, loaded from YAML with strict key checking.

`load_config("scenes3")` reads a shipped config (trainer/configs/scenes3.yaml);
a path reads a user file. `overrides` are "a.b=value" strings (CLI --set) whose
values are parsed as YAML scalars/lists. Unknown keys are errors that name the
key and the valid ones, so a typo never silently trains the default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainer.errors import TrainerError

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, which of its tasks, and how samples become training crops.

    `dataset` names an entry of trainer/data (scenes, nyud, pascal, cifar100); all but
    the procedural scenes read files under `root`. n_*, seed, max_objects and
    cache_dir shape the scenes only."""

    dataset: str = "scenes"
    root: str | None = None  # the dataset's folder (public benchmarks; nothing is downloaded)
    tasks: tuple[str, ...] = ("semseg", "depth", "normals")
    size: int = 32  # side of the square training crops (the scenes: their rendered size)
    # Augmentation (None: the dataset's default): random scale relative to the deployed
    # frame size, padding on every side, a random size x size crop, a horizontal flip.
    augment: bool | None = None
    scale_range: tuple[float, ...] | None = None
    pad: int | None = None
    flip: bool = True
    workers: int = 4  # threads decoding and augmenting samples of one batch
    n_train: int = 2048
    n_val: int = 256
    n_test: int = 256
    seed: int = 0
    max_objects: int = 4
    cache_dir: str | None = None  # None: ~/.cache/edgemtl/scenes
    # (H, W) of the frames the compiled bundle takes; None: size x size. The nets are
    # fully convolutional, so a model trained on size x size crops deploys at the
    # camera's resolution (the paper-scale configs train small and deploy at 288x384).
    deploy_size: tuple[int, ...] | None = None

    def __post_init__(self):
        sr = self.scale_range
        if sr is not None and (len(sr) != 2 or not 0 < sr[0] <= sr[1]):
            raise TrainerError(f"data.scale_range: expected [low, high] with 0 < low <= high, found {list(sr)}")
        ds = self.deploy_size
        if ds is not None and (len(ds) != 2 or not all(isinstance(v, int) and v > 0 for v in ds)):
            raise TrainerError(f"data.deploy_size: expected [height, width] in pixels, found {list(ds)}")

    @property
    def input_hw(self) -> tuple[int, int]:
        """(H, W) of the deployed input."""
        return tuple(self.deploy_size) if self.deploy_size else (self.size, self.size)


@dataclass(frozen=True)
class ModelConfig:
    """Model family, backbone (preset from the registry) and head sizes.

    family "dymu-tree": trees over an N-stream anchor net (CVPR 2022); "slim-width":
    one width-slimmable encoder and slimmable task decoders (ICCV 2023 follow-up),
    whose widths are chosen from `widths` (percent)."""

    family: str = "dymu-tree"
    widths: tuple[int, ...] = (25, 50, 75, 100)
    backbone: str = "tiny-resnet"
    width: float = 1.0  # channel multiplier applied to the preset
    shared_init: bool = True  # all streams start from the same weights (see AnchorNet)
    # A file holding one stream's initial weights (AnchorNet.stream_state's format, e.g. an
    # ImageNet-trained backbone converted to it): every stream starts there. None: random.
    backbone_weights: str | None = None

    def __post_init__(self):
        if self.family not in ("dymu-tree", "slim-width"):
            raise TrainerError(f"model.family: expected 'dymu-tree' or 'slim-width', found {self.family!r}")
        w = self.widths
        if len(w) < 2 or list(w) != sorted(set(w)) or w[0] < 1 or w[-1] != 100:
            raise TrainerError(f"model.widths: expected increasing percentages ending at 100, found {list(w)}")

    head_channels: int = 32


@dataclass(frozen=True)
class StageConfig:
    """Optimiser settings of one training stage."""

    steps: int = 500
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0


@dataclass(frozen=True)
class MethodConfig:
    """Hypernets and branching regulariser (paper section 3.3, appendix G)."""

    embed_dim: int = 32
    edge_hidden: tuple[int, ...] = (100, 100)
    edge_init_identity: float = 0.0  # logit bias towards parent j for child j at init
    weight_hidden: tuple[int, ...] = (100, 100, 100)
    # Our extension: the weight hypernet also reads which tasks run through each node of
    # the tree the edge hypernet picks (trainer.models.hypernets.tree_features).
    weight_tree_input: bool = True
    tau: float | None = None  # None: 0.6 / N (appendix H)
    lambda_active: float = 1.0
    lambda_inactive: float = 0.1
    # Our extension (README): c * lambda_cost * expected parameter share of the tree.
    # 0 is the paper's regulariser.
    lambda_cost: float = 0.0
    graded_inactive: bool = False  # our extension: inactive task j weighted by (tau - r_j) / tau
    dirichlet: float = 0.2
    # Our extension: the Dirichlet concentration of the edge stage's preferences
    # (None: `dirichlet`). With 0.2 most draws have one active task, so the edge
    # hypernet rarely sees the balanced preferences where c changes the best tree
    # and does not learn to follow c (README, "Edge hypernet training").
    edge_dirichlet: float | None = None
    prefs_per_step: int = 4  # preferences per batch (the batch is split between them)
    temp_init: float = 5.0
    temp_decay: float = 0.97
    temp_every: int | None = None  # None: 300 steps scaled from the paper's 30K
    gumbel_hard: bool = False  # straight-through instead of soft mixing
    # How the task loss reaches the edge hypernet: "relaxed" runs the Gumbel-softmax
    # mixture of parents (paper eq. 1/4); "reinforce" scores sampled discrete trees;
    # "exact" takes the expectation over trees from a table of path losses
    # (trainer/paths.py; anchors with N^L <= 4096 paths per task).
    edge_gradient: str = "relaxed"
    # "exact": divide the logits by min(1, Gumbel temperature), so the expected loss it
    # minimises approaches the loss of the argmax tree that is deployed as the schedule
    # anneals (False: softmax at temperature 1 throughout).
    exact_temperature: bool = True
    path_images: int = 512  # training images the "exact" path-loss table is measured on
    edge_prefs_per_step: int | None = None  # None: prefs_per_step ("exact" steps cost no images)
    reinforce_samples: int = 4
    # Temperature of the trees REINFORCE samples (softmax(alpha / T)); None: the Gumbel
    # temperature, which anneals to ~0.25 and freezes the policy wherever it stands then.
    reinforce_temp: float | None = None
    loss_weights: tuple[float, ...] | None = None  # None: 1 / single-task val loss
    # After each hypernet stage, `trainer fit` measures how much the hypernet's output
    # moves over a fixed probe of preferences (relative spread, trainer.models.hypernets.
    # response) and between c = 0 and 1; below this it stops with an error instead of
    # publishing a hypernet that ignores its input. 0 switches the check off.
    min_response: float = 1e-3
    affinity_samples: int = 64
    # Table 6 ablations: switch off parts of the active loss / task split.
    # slim-width: configurations per step besides the largest and the smallest (the
    # sandwich rule), and the weight of configuration-invariant distillation (MSE of the
    # encoder's features against the largest configuration's, on the shared channels).
    sandwich_random: int = 2
    lambda_kd: float = 1.0
    layer_weighting: bool = True
    use_affinity: bool = True
    task_split: bool = True

    def __post_init__(self):
        if self.edge_gradient not in ("relaxed", "reinforce", "exact"):
            raise TrainerError(
                f"method.edge_gradient: expected 'relaxed', 'reinforce' or 'exact', found {self.edge_gradient!r}"
            )
        if self.reinforce_samples < 2 or self.prefs_per_step < 1:
            raise TrainerError(
                "method.reinforce_samples must be >= 2 and method.prefs_per_step >= 1, "
                f"found {self.reinforce_samples} and {self.prefs_per_step}"
            )
        for name in ("dirichlet", "edge_dirichlet"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise TrainerError(f"method.{name}: expected a Dirichlet concentration > 0, found {value}")
        if not self.min_response >= 0:
            raise TrainerError(f"method.min_response: expected a relative spread >= 0, found {self.min_response}")
        if self.tau is not None and not 0 < self.tau <= 1:
            raise TrainerError(f"method.tau: expected a threshold in (0, 1], found {self.tau}")


@dataclass(frozen=True)
class TrainConfig:
    # steps: 0 skips the stage (streams then start from model.shared_init alone).
    pretrain: StageConfig = field(default_factory=StageConfig)
    single: StageConfig = field(default_factory=StageConfig)
    edge: StageConfig = field(default_factory=StageConfig)
    weight: StageConfig = field(default_factory=StageConfig)
    phn_bn: StageConfig = field(default_factory=StageConfig)
    slim: StageConfig = field(default_factory=StageConfig)  # slim-width: the sandwich-rule training
    checkpoint_every: int = 200  # steps between resumable partial checkpoints
    # torchrun jobs: BatchNorm statistics over the global batch (each rank's step is the
    # single-process step). False: each rank normalises its own share, as plain DDP does;
    # faster where collectives are slow (one per BatchNorm layer), but not the same model.
    sync_batchnorm: bool = True


@dataclass(frozen=True)
class EvalConfig:
    n_prefs: int = 20  # preferences for HV / uniformity (section 4.4)
    n_cost_prefs: int = 1000  # preferences for mean params / FLOPs
    hv_ref: float = 2.0  # reference point, per task, in scaled-loss units
    seed: int = 123
    split: str = "test"


@dataclass(frozen=True)
class FitConfig:
    """Everything `trainer fit` needs; saved resolved in every checkpoint."""

    name: str = "custom"
    seed: int = 0
    threads: int | None = None  # None: torch default
    # "auto": CUDA when torch sees a GPU (torchrun: the GPU of the process's LOCAL_RANK), else CPU.
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        if self.device not in ("auto", "cpu", "cuda"):
            raise TrainerError(f"device: expected 'auto', 'cpu' or 'cuda', found {self.device!r}")


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Builds dataclass `cls` from a nested dict, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise TrainerError(f"{where}: expected a mapping, found {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TrainerError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TrainerError(f"{where}: expected a list, found {value!r}")
        return tuple(_coerce(args[0], v, where) for v in value)
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }
    if tp in ok and not ok[tp]:
        raise TrainerError(f"{where}: expected {tp.__name__}, found {value!r}")
    return float(value) if tp is float else value


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (lists instead of tuples) for YAML/JSON/checkpoints."""

    def conv(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(dataclasses.asdict(cfg))


def _resolve_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise TrainerError(f"config file {path} does not exist")
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise TrainerError(
            f"config {name_or_path!r} is neither a file nor a shipped config; shipped configs are {names}"
        )
    return shipped


def _apply_override(data: dict, item: str) -> None:
    if "=" not in item:
        raise TrainerError(f"override {item!r}: expected KEY.PATH=VALUE")
    key, raw = item.split("=", 1)
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise TrainerError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(name_or_path: str, overrides: typing.Sequence[str] = ()) -> FitConfig:
    """Loads a shipped config by name or a YAML file, then applies overrides."""
    path = _resolve_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TrainerError(f"config {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise TrainerError(f"config {path}: expected a mapping at top level")
    data.setdefault("name", path.stem)
    for item in overrides:
        _apply_override(data, item)
    return from_dict(FitConfig, data, where=str(path.name))
