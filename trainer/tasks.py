"""Task registry: output channels, training loss and evaluation metric per task.

Each task reads its ground truth from the dataset arrays under its own name.
Losses are means over valid pixels; metrics accumulate over a whole split
(`Metric.update` per batch, `Metric.value` at the end) so they are exact, not
averages of per-batch averages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from trainer.data.scenes import CLASSES
from trainer.errors import TrainerError


class Metric:
    """Accumulates one scalar metric over batches."""

    def __init__(self, name: str, higher_is_better: bool):
        self.name, self.higher_is_better = name, higher_is_better
        self.sums: torch.Tensor | None = None

    def _add(self, stats: torch.Tensor) -> None:
        self.sums = stats if self.sums is None else self.sums + stats

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def value(self) -> float:
        raise NotImplementedError


class MeanIoU(Metric):
    def __init__(self, n_classes: int):
        super().__init__("mIoU", True)
        self.n = n_classes

    def update(self, pred, target):
        idx = target.flatten() * self.n + pred.argmax(1).flatten()
        self._add(torch.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n).double())

    def value(self):
        cm = self.sums
        union = cm.sum(0) + cm.sum(1) - cm.diag()
        present = union > 0
        return float((cm.diag()[present] / union[present]).mean())


class RMSE(Metric):
    def __init__(self):
        super().__init__("RMSE", False)

    def update(self, pred, target):
        err = (pred[:, 0] - target) ** 2
        self._add(torch.stack([err.sum(), torch.tensor(float(err.numel()))]).double())

    def value(self):
        return float((self.sums[0] / self.sums[1]).sqrt())


class MeanAngle(Metric):
    def __init__(self):
        super().__init__("mean angle (deg)", False)

    def update(self, pred, target):
        cos = (F.normalize(pred, dim=1) * target).sum(1).clamp(-1, 1)
        deg = torch.rad2deg(torch.acos(cos))
        self._add(torch.stack([deg.sum(), torch.tensor(float(deg.numel()))]).double())

    def value(self):
        return float(self.sums[0] / self.sums[1])


class BinaryScore(Metric):
    """F1 (edges) or IoU (saliency) of the positive class at threshold 0.5."""

    def __init__(self, name: str):
        super().__init__(name, True)

    def update(self, pred, target):
        p, t = pred[:, 0] > 0, target > 0.5
        tp, fp, fn = (p & t).sum(), (p & ~t).sum(), (~p & t).sum()
        self._add(torch.stack([tp, fp, fn]).double())

    def value(self):
        tp, fp, fn = self.sums.tolist()
        if self.name == "F1":
            return 2 * tp / max(2 * tp + fp + fn, 1)
        return tp / max(tp + fp + fn, 1)


def _seg_loss(pred, target):
    return F.cross_entropy(pred, target.long())


def _depth_loss(pred, target):
    return F.l1_loss(pred[:, 0], target)


def _normals_loss(pred, target):
    return (1 - (F.normalize(pred, dim=1) * target).sum(1)).mean()


def _bce(pos_weight: float):
    def loss(pred, target):
        w = torch.tensor(pos_weight, device=pred.device)
        return F.binary_cross_entropy_with_logits(pred[:, 0], target.float(), pos_weight=w)

    return loss


@dataclass(frozen=True)
class TaskSpec:
    """What a task predicts and how it is scored."""

    name: str
    kind: str  # segmentation | regression | normals | binary
    channels: int
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metric: Callable[[], Metric]

    def describe(self) -> dict:
        """JSON-friendly description stored in checkpoints (and bundles)."""
        m = self.metric()
        return {
            "name": self.name,
            "kind": self.kind,
            "channels": self.channels,
            "metric": m.name,
            "higher_is_better": m.higher_is_better,
        }


TASKS: dict[str, TaskSpec] = {
    "semseg": TaskSpec("semseg", "segmentation", len(CLASSES), _seg_loss, lambda: MeanIoU(len(CLASSES))),
    "depth": TaskSpec("depth", "regression", 1, _depth_loss, RMSE),
    "normals": TaskSpec("normals", "normals", 3, _normals_loss, MeanAngle),
    # Edges are ~14% of pixels: pos_weight balances the classes roughly.
    "edges": TaskSpec("edges", "binary", 1, _bce(4.0), lambda: BinaryScore("F1")),
    "saliency": TaskSpec("saliency", "binary", 1, _bce(1.0), lambda: BinaryScore("IoU")),
}


def get_tasks(names) -> list[TaskSpec]:
    """Looks tasks up by name; unknown names are an error listing the known ones."""
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise TrainerError(f"unknown task(s) {unknown}; known tasks are {sorted(TASKS)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise TrainerError(f"tasks must be at least two distinct names, found {list(names)}")
    return [TASKS[n] for n in names]
