"""Batches of one split as normalised tensors, for training and evaluation.

Random batches are a pure function of the torch generator the caller passes
(indices, then one seed per sample for its augmentation), so a resumed stage,
and every rank of a distributed one, draws exactly the batches an
uninterrupted single process would.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from trainer.data.base import ArraySource, Source
from trainer.data.transforms import Augment, resize_sample

# Images are RGB uint8; the network sees (x / 255 - MEAN) / STD. The runtime
# reproduces this from the input spec stored in the checkpoint.
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def normalise(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> the network's input, contiguous: freshly rendered scenes
    come channels-last in memory, and torch would keep that layout through every
    convolution (other kernels, other rounding: a cold and a warm data cache would
    train different models)."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (torch.from_numpy(np.ascontiguousarray(images)).float() / 255 - mean) / std


class Split:
    """One split: `sample` draws (augmented) training batches, `batches` walks the
    split in order at `hw`, the size its evaluation frames have."""

    def __init__(
        self,
        source: Source,
        tasks,
        augment: Augment | None = None,
        eval_hw: tuple[int, int] | None = None,
        workers: int = 1,
    ):
        self.source, self.augment, self.eval_hw = source, augment, eval_hw
        self.names = [t.name for t in tasks]
        self.kinds = {"image": "image", **{t.name: t.kind for t in tasks}}
        self.n = len(source)
        self.workers = max(1, workers)
        self.hw = tuple(eval_hw) if eval_hw else tuple(source.item(0)["image"].shape[-2:])

    def sample(self, gen: torch.Generator, batch_size: int, keep: list[int] | None = None):
        """A random batch; `keep`: only these positions of it (a rank's share), drawn
        exactly as in the whole batch."""
        idx = torch.randint(0, self.n, (batch_size,), generator=gen).numpy()
        seeds = torch.randint(0, 2**62, (batch_size,), generator=gen).numpy() if self.augment else idx
        if keep is not None:
            idx, seeds = idx[keep], seeds[keep]
        if self.augment is None:
            return self._collate(self._take(idx, self._plain))
        return self._collate(self._map(self._augmented, idx, seeds.tolist()))

    def batches(self, batch_size: int = 64):
        for s in range(0, self.n, batch_size):
            yield self._collate(self._take(np.arange(s, min(s + batch_size, self.n)), self._plain))

    def head(self, k: int):
        """The first k samples as training sees them (augmented with fixed seeds):
        the images the affinity and path-loss tables are measured on."""
        idx = np.arange(min(k, self.n))
        if self.augment is None:
            return self._collate(self._take(idx, self._plain))
        return self._collate(self._map(self._augmented, idx, idx.tolist()))

    # -- per-sample work ------------------------------------------------------
    def _plain(self, i: int) -> dict:
        sample = self.source.item(int(i))
        return resize_sample(sample, self.kinds, self.eval_hw) if self.eval_hw else sample

    def _augmented(self, i: int, seed: int) -> dict:
        return self.augment(self.source.item(int(i)), self.kinds, np.random.default_rng(seed))

    def _take(self, idx: np.ndarray, fn) -> dict:
        if isinstance(self.source, ArraySource) and not self.eval_hw:
            return self.source.take(idx)  # in memory: one indexing op per array
        return self._map(lambda i, _: fn(i), idx, idx)

    def _map(self, fn, idx, seeds) -> dict:
        if self.workers > 1 and len(idx) > 1:  # decoding and resizing release the GIL
            with ThreadPoolExecutor(min(self.workers, len(idx))) as pool:
                items = list(pool.map(fn, idx, seeds))
        else:
            items = [fn(i, s) for i, s in zip(idx, seeds)]
        return {k: np.stack([it[k] for it in items]) for k in ["image", *self.names]}

    def _collate(self, arrays: dict):
        return normalise(arrays["image"]), [torch.from_numpy(np.ascontiguousarray(arrays[t])) for t in self.names]
