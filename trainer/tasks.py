"""Task registry: output channels, training loss and evaluation metric per task.

Each task reads its ground truth from the dataset arrays under its own name.
Losses are means over valid pixels; metrics accumulate over a whole split
(`Metric.update` per batch, `Metric.value` at the end) so they are exact, not
averages of per-batch averages.

This module knows no dataset: each dataset (trainer/data/) declares its tasks
from these parts. The public benchmarks use the masked losses and metrics, with
the conventions of the multi-task codebases: IGNORE (255) in label maps, depth 0
and zero-norm normals are invalid pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

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


IGNORE = 255  # label value of unlabelled pixels (and of images a classification task skips)


def _valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `valid`; 0 (with a gradient path) when nothing is valid,
    e.g. a crop that holds no labelled pixel or a batch without a task's images."""
    valid = valid.to(values.dtype)
    return (values * valid).sum() / valid.sum().clamp_min(1.0)


def ignore_ce_loss(pred, target):
    """Cross-entropy over labelled pixels (or images): target IGNORE is skipped."""
    target = target.long()
    valid = target != IGNORE
    per = F.cross_entropy(pred, target.masked_fill(~valid, 0), reduction="none")
    return _valid_mean(per, valid)


def masked_depth_loss(pred, target):
    """L1 over pixels with a depth reading (0 = no reading, as the sensors deliver it)."""
    return _valid_mean((pred[:, 0] - target).abs(), target > 0)


def normals_l1_loss(pred, target):
    """L1 between the unit-normalised prediction and the unit target, per component,
    over pixels whose target has non-zero norm (the MTL codebases' normals loss)."""
    valid = (target.norm(dim=1, keepdim=True) > 0).expand_as(target)
    return _valid_mean((F.normalize(pred, dim=1) - target).abs(), valid)


def balanced_bce(pos_weight: float | None = None):
    """Binary cross-entropy with positives weighted w and negatives 1 - w (IGNORE
    skipped), as the multi-task codebases weight edges and saliency: w is the batch's
    fraction of negatives, or a fixed `pos_weight` (their edges: 0.95)."""

    def loss(pred, target):
        logits, target = pred[:, 0], target.float()
        valid = target != IGNORE
        pos = (target == 1) & valid
        w = pos_weight if pos_weight is not None else 1 - pos.sum() / valid.sum().clamp_min(1)
        w = torch.as_tensor(w, dtype=logits.dtype, device=logits.device)
        per = F.binary_cross_entropy_with_logits(logits, pos.to(logits.dtype), reduction="none")
        return _valid_mean(per * torch.where(pos, w, 1 - w), valid)

    return loss


class MeanIoU(Metric):
    """Mean IoU over classes present in the prediction or the labels, skipping IGNORE."""

    def __init__(self, n_classes: int):
        super().__init__("mIoU", True)
        self.n = n_classes

    def update(self, pred, target):
        target = target.long().flatten()
        valid = target != IGNORE
        idx = target[valid] * self.n + pred.argmax(1).flatten()[valid]
        self._add(torch.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n).double())

    def value(self):
        cm = self.sums
        union = cm.sum(0) + cm.sum(1) - cm.diag()
        present = union > 0
        return float((cm.diag()[present] / union[present]).mean())


class RMSE(Metric):
    """Over pixels with a depth reading (target > 0: every pixel of the scenes)."""

    def __init__(self):
        super().__init__("RMSE", False)

    def update(self, pred, target):
        valid = target > 0
        err = (pred[:, 0] - target)[valid] ** 2
        self._add(torch.stack([err.sum(), torch.tensor(float(err.numel()))]).double())

    def value(self):
        return float((self.sums[0] / self.sums[1].clamp_min(1)).sqrt())


class MeanAngle(Metric):
    """Over pixels with a normal (non-zero target: every pixel of the scenes)."""

    def __init__(self):
        super().__init__("mean angle (deg)", False)

    def update(self, pred, target):
        valid = target.norm(dim=1) > 0
        cos = (F.normalize(pred, dim=1) * target).sum(1).clamp(-1, 1)[valid]
        deg = torch.rad2deg(torch.acos(cos))
        self._add(torch.stack([deg.sum(), torch.tensor(float(deg.numel()))]).double())

    def value(self):
        return float(self.sums[0] / self.sums[1].clamp_min(1))


class MaxF(Metric):
    """F-measure at the best single threshold over the whole split (ODS), from
    histograms of sigmoid scores on positive and negative pixels. Saliency uses
    beta^2 = 0.3 (maxF); edges beta^2 = 1 without the boundary-matching tolerance
    of the BSDS benchmark, so it is a pixel-exact (stricter) odsF."""

    BINS = 100

    def __init__(self, name: str, beta2: float):
        super().__init__(name, True)
        self.beta2 = beta2

    def update(self, pred, target):
        valid = target != IGNORE
        score = torch.sigmoid(pred[:, 0].float())[valid]
        pos = target[valid] == 1
        bins = (score * self.BINS).long().clamp_max(self.BINS - 1)
        hist = [torch.bincount(bins[m], minlength=self.BINS) for m in (pos, ~pos)]
        self._add(torch.stack(hist).double())

    def value(self):
        # Above threshold k/BINS: cumulative counts from the top bin down.
        tp, fp = (self.sums.flip(1).cumsum(1).flip(1)).unbind(0)
        p = tp / (tp + fp).clamp_min(1)
        r = tp / self.sums[0].sum().clamp_min(1)
        f = (1 + self.beta2) * p * r / (self.beta2 * p + r).clamp_min(1e-12)
        return float(f.max())


class Accuracy(Metric):
    """Top-1 accuracy over the images a classification task labels (IGNORE skipped)."""

    def __init__(self):
        super().__init__("accuracy", True)

    def update(self, pred, target):
        valid = target != IGNORE
        hits = (pred.argmax(1) == target.long())[valid]
        self._add(torch.stack([hits.sum(), torch.tensor(hits.numel())]).double())

    def value(self):
        return float(self.sums[0] / self.sums[1].clamp_min(1))


def ce_loss(pred, target):
    return F.cross_entropy(pred, target.long())


def l1_depth_loss(pred, target):
    return F.l1_loss(pred[:, 0], target)


def cosine_normals_loss(pred, target):
    return (1 - (F.normalize(pred, dim=1) * target).sum(1)).mean()


def fixed_bce(pos_weight: float):
    def loss(pred, target):
        w = torch.tensor(pos_weight, device=pred.device)
        return F.binary_cross_entropy_with_logits(pred[:, 0], target.float(), pos_weight=w)

    return loss


@dataclass(frozen=True)
class TaskSpec:
    """What a task predicts and how it is scored."""

    name: str
    kind: str  # segmentation | regression | normals | binary | classification
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


def select_tasks(names, known: dict[str, TaskSpec], dataset: str) -> list[TaskSpec]:
    """Looks tasks up by name among a dataset's `known` tasks; unknown names are an
    error listing the known ones."""
    unknown = [n for n in names if n not in known]
    if unknown:
        raise TrainerError(f"unknown task(s) {unknown} for dataset {dataset!r}; its tasks are {sorted(known)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise TrainerError(f"tasks must be at least two distinct names, found {list(names)}")
    return [known[n] for n in names]
