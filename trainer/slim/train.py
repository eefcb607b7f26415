"""`trainer fit` for the width-slimmable family, top to bottom.

Stages (resumable like the tree family's; torchrun splits every batch by rank):
  slim     sandwich rule: every step trains the largest and the smallest width
           configuration and `method.sandwich_random` random ones on the same
           images. Random ones come from a sampled preference r: decoder widths
           sorted like r (the preferred task gets the wider decoder, the rule the
           search keeps) and task losses weighted by N r_i. Every narrower
           configuration also distils its encoder features towards the largest
           configuration's (configuration-invariant distillation: MSE on the
           channels they share, the target detached).
  scaling  w_i = 1 / (largest configuration's val loss of task i) (or method.loss_weights)
  search   the search table: scaled val loss of every task at every (encoder width,
           decoder width) and the FLOPs of every unit; stored in the network's
           state, so the checkpoint carries it to the compiler.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.cost import flops, flops_on
from trainer.distributed import Dist
from trainer.slim.family import all_units
from trainer.train import Fit, LossScale


class SlimFit(Fit):
    STAGES = ("slim", "scaling", "search")  # run in this order by trainer.train.fit

    def prepare(self, d: Dist) -> None:
        if d.world > 1:
            d.check_divisible("train.slim.batch_size", self.cfg.train.slim.batch_size)
        self.net = self.models.anchor
        self.net.sync_bn = d.world > 1 and self.cfg.train.sync_batchnorm  # skeletons' BN across ranks

    def sample_config(self, rng: np.random.Generator) -> tuple[tuple[int, ...], torch.Tensor]:
        """A random configuration whose decoder widths follow a sampled preference, and the
        task weights N r_i that preference gives the losses."""
        widths, n = self.net.widths, self.n
        r = rng.dirichlet([self.cfg.method.dirichlet] * n)
        e = int(rng.choice(widths))
        ds = np.sort(rng.choice(widths, size=n))[::-1]  # widest first
        dec = np.empty(n, int)
        dec[np.argsort(-r, kind="stable")] = ds
        return (e, *(int(v) for v in dec)), torch.tensor(n * r, dtype=torch.float32, device=self.device)

    def stage_slim(self) -> None:
        net, st, m = self.net, self.cfg.train.slim, self.cfg.method
        scale = LossScale(self.n, reduce=self.dist.mean).to(self.device)
        net.train()

        def step_fn(step):
            x, ys = self.batch(st, step, "slim")
            rng = self.rng("slim", step)
            outs, target = net(x, net.largest())
            losses = [t.loss(o, y) for t, o, y in zip(self.tasks, outs, ys)]
            total, logs = scale(losses), {f"L_{t.name}": lo.item() for t, lo in zip(self.tasks, losses)}
            target = target.detach()
            uniform = torch.ones(self.n, device=self.device)
            configs = [(net.smallest(), uniform)] + [self.sample_config(rng) for _ in range(m.sandwich_random)]
            kd_sum = 0.0
            for spec, weight in configs:
                outs, feat = net(x, spec)
                parts = zip(weight, self.tasks, outs, ys, scale.mean)
                task = sum(w * t.loss(o, y) / s.clamp_min(1e-8) for w, t, o, y, s in parts)
                kd = F.mse_loss(feat, target[:, : feat.shape[1]])
                total = total + task + m.lambda_kd * kd
                kd_sum += kd.item()
            return total / (1 + len(configs)), {**logs, "kd": kd_sum / len(configs)}

        save = lambda: {"anchor": net.state_dict()}  # noqa: E731
        self._stage("slim", nn.ModuleDict({"net": net, "scale": scale}), st, step_fn, save=save)

    def _full_forward(self, x: torch.Tensor):
        return self.net(x, self.net.largest())[0]

    def stage_search(self) -> None:
        self._once("search", self.search_table)
        table = self.state("search")
        with torch.no_grad():
            for name in ("search_loss", "enc_flops", "dec_flops"):
                getattr(self.net, name).copy_(table[name])

    @torch.no_grad()
    def search_table(self) -> dict:
        """K x N x K scaled val losses (each decoder only depends on the encoder's width)
        and the FLOPs of every unit at the deployed input size."""
        net, widths, w = self.net, self.net.widths, self.weights().cpu()
        k = len(widths)
        loss = torch.zeros(k, self.n, k)
        for a, e in enumerate(widths):
            for b, d in enumerate(widths):
                spec = (e, *([d] * self.n))
                loss[a, :, b] = torch.tensor(self.val_losses(lambda x, spec=spec: net(x, spec)[0])) * w
        enc, dec = torch.zeros(k), torch.zeros(k, self.n, k)
        hw = tuple(self.cfg.data.input_hw)
        with deployed(net, hw):
            for a, e in enumerate(widths):
                encoder = net.unit_module(("enc", e))
                enc[a] = flops(encoder, hw)
                feat = encoder(torch.zeros(1, 3, *hw))
                for unit in [u for u in all_units(net) if u[0] != "enc" and u[1] == e]:
                    decoder, i = net.unit_module(unit), int(unit[0].removeprefix("dec"))
                    dec[a, i, widths.index(unit[2])] = flops_on(decoder, feat)
        return {"search_loss": loss, "enc_flops": enc, "dec_flops": dec}

    def publish_extra(self) -> dict:
        return {}

    def outputs_at(self, hw):
        return deployed(self.net, hw)


@contextmanager
def deployed(net, hw):
    """The dense decoders' outputs at hw for a with-block (training crops are another size)."""
    old = net.out_size
    net.set_output_size(hw)
    try:
        yield
    finally:
        net.set_output_size(old if isinstance(old, tuple) else (old, old))
