"""Data-parallel training in processes started by torchrun (gloo on CPU, NCCL on GPUs).

`torchrun --nproc-per-node N -m trainer fit ...` sets RANK / WORLD_SIZE /
LOCAL_RANK; `Dist.from_env()` joins the process group they describe, and one
process without them is world size 1 with every collective a no-op, so the
training loop has one code path.

What makes N processes train what one process would (tests/trainer/
test_distributed.py compares them):
- every rank draws the same global batch and preferences (they depend only on
  seed, stage and step) and computes its share of it (`Share`);
- DistributedDataParallel averages the ranks' gradients, and each rank's loss
  is its share's mean, so the update is that of the global batch;
- BatchNorm in training mode normalises with statistics over the global batch
  (`SyncBatchNorm` on GPUs; `CrossRankBatchNorm` on CPU, where torch's has no
  gloo support).
Only rank 0 writes files (logs, partial and final checkpoints) and shows
progress bars; the others wait for it at barriers where they read what it wrote.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from trainer.errors import TrainerError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    cuda: bool = False  # this process trains on GPU `local_rank` (NCCL between processes)

    @staticmethod
    def from_env(device: str = "auto") -> Dist:
        """This process's place in a torchrun job (world 1 when not started by torchrun),
        and its device: `device` "auto" is CUDA when torch sees a GPU."""
        cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if cuda and not torch.cuda.is_available():
            raise TrainerError("device: 'cuda' asked for, but torch sees no GPU; use device=cpu or auto")
        world, local = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local)
        if world == 1:
            return Dist(cuda=cuda)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return Dist(dist.get_rank(), dist.get_world_size(), local, cuda)

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.cuda else torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Average of a (detached) tensor over ranks."""
        if self.world == 1:
            return values
        out = values.detach().clone()
        dist.all_reduce(out)
        return out / self.world

    def wrap(self, module: nn.Module, sparse: bool = False) -> nn.Module:
        """DistributedDataParallel around `module` (itself when world size is 1).
        sparse: some parameters get no gradient in a step (the weight hypernet's heads
        of nodes the step's trees do not use), which DDP must look for."""
        if self.world == 1:
            return module
        device_ids = [self.local_rank] if self.cuda else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=sparse)

    def check_divisible(self, what: str, value: int) -> None:
        if value % self.world:
            raise TrainerError(
                f"{what} = {value} does not split evenly over {self.world} processes; "
                f"use a multiple of {self.world} (the global batch stays what one process would use)"
            )

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = Dist()  # one process: every collective is a no-op


@dataclass(frozen=True)
class Share:
    """This rank's part of one step's work, in global positions of the batch.

    A step's batch of `size` images is cut into `groups` equal groups, one
    preference each. `by_group` gives each rank whole groups (data parallel over
    preferences: the edge and weight stages, whose anchor is frozen); otherwise
    each rank takes its slice of every group (data parallel over images: stages
    whose BatchNorm normalises with the group's statistics). `weight` is what
    each group's mean loss counts in this rank's loss, so the ranks' mean is the
    single-process mean over groups."""

    size: int
    groups: int
    rank: int = 0
    world: int = 1
    by_group: bool = True

    def parts(self) -> list[tuple[int, slice, float]]:
        """(group, global positions, weight) this rank computes, in group order."""
        k, n, w = self.groups, self.size // self.groups, self.world
        if self.by_group:
            mine = range(self.rank * k // w, (self.rank + 1) * k // w)
            return [(g, slice(g * n, (g + 1) * n), w / k) for g in mine]
        return [(g, slice(g * n + self.rank * n // w, g * n + (self.rank + 1) * n // w), 1 / k) for g in range(k)]

    def positions(self) -> list[int]:
        return [i for _, sl, _ in self.parts() for i in range(sl.start, sl.stop)]


class CrossRankBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics cover the batch of every rank
    (sums all-reduced in float64; the all-reduce is differentiable, so gradients
    flow through the shared statistics as with one process). Evaluation mode and
    world size 1 are plain BatchNorm2d. Every rank must run the same BatchNorm
    layers in the same order, which the training loop guarantees."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xd = x.double()
        count = torch.tensor([x.numel() / c], dtype=torch.float64, device=x.device)
        stats = _AllReduce.apply(torch.cat([xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        self._track(mean, var, n)
        scale = (var + self.eps).rsqrt()
        y = (xd - mean.view(1, c, 1, 1)) * scale.view(1, c, 1, 1)
        return (y.to(x.dtype) * self.weight.view(1, c, 1, 1)) + self.bias.view(1, c, 1, 1)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.mul_(1 - m).add_(m * mean.to(self.running_mean.dtype))
        unbiased = var * n / (n - 1).clamp_min(1)
        self.running_var.mul_(1 - m).add_(m * unbiased.to(self.running_var.dtype))


class _AllReduce(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum over ranks of the gradients: each
    rank's statistics feed every rank's loss."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def sync_batchnorm(module: nn.Module, cuda: bool = False) -> nn.Module:
    """Every BatchNorm2d in `module` normalising over all ranks' batches (in place:
    the state dict keys, and so the checkpoints, stay those of the plain model)."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            new = CrossRankBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, device=child.weight.device
            )
            if not child.weight.is_meta:  # meta: a shape template (the slim family's skeletons)
                new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batchnorm(child)
    return module
