"""A GRU on sequence parity, trained by the user's own loop (``train(ctx)``), not in a pack.

Why its own loop: ``nn.GRU`` runs a fused recurrent kernel that ``torch.func.vmap``
cannot batch over restarts, and this task wants its own optimizer (AdamW) and LR
scheduler (cosine). Each restart is then one Ray Tune trial; what it records is the
same as a pack's restart (seeds, init, clip + annealed noise, curve, metrics).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from robustness.training.loop import LoopContext
from robustness.training.tasks import ClassificationTask, SampledData, TaskFieldError


class ParityGRU(nn.Module):
    """Embedding -> nn.GRU -> linear on the last hidden state: logits (B, 2) for tokens (B, T)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(2, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(self.emb(tokens))  # h: (1, B, hidden)
        return self.head(h[-1])


@dataclasses.dataclass(frozen=True)
class GRUParity(ClassificationTask):
    """Is the number of 1s in a random 0/1 sequence of ``length`` odd? Fresh batches every step."""

    length: int = 6  # parity of 6 bits: learnable in a few hundred Adam steps, not by every restart
    hidden: int = 16
    weight_decay: float = 0.0  # AdamW's, the user's own optimizer setting

    def __post_init__(self) -> None:
        for key in ("length", "hidden"):
            if getattr(self, key) < 1:
                raise TaskFieldError(key, "an integer >= 1")
        if self.weight_decay < 0:
            raise TaskFieldError("weight_decay", "a number >= 0")

    def load_data(self) -> SampledData:
        def sample(generator: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = torch.randint(0, 2, (batch, self.length), generator=generator)
            return x, x.sum(1) % 2

        # A fixed test set, the same for every restart.
        test_x = torch.randint(0, 2, (512, self.length), generator=torch.Generator().manual_seed(12345))
        return SampledData(sample, test_x, test_x.sum(1) % 2)

    def build_module(self, data: SampledData) -> nn.Module:
        return ParityGRU(self.hidden)

    def train(self, ctx: LoopContext) -> dict[str, float]:
        """One restart: set lr, sample, forward, backward, (clip + noise in step), step, log."""
        data, steps = ctx.data.to(ctx.device), ctx.config.steps
        module = ctx.init(self.build_module(data)).to(ctx.device)  # the restart's init scheme and stream
        opt = torch.optim.AdamW(module.parameters(), lr=ctx.spec.lr, weight_decay=self.weight_decay)
        ctx.attach_noise(opt)  # clip to the cell's clip, then the cell's noise, before every opt.step()
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        gen = ctx.data_generator()  # the restart's data stream: restart k sees the same batches in every cell
        losses: list[float] = []
        for step in range(steps):
            x, y = data.sample(gen, ctx.config.batch_size)
            loss = self.loss(module(x.to(ctx.device)), y.to(ctx.device)).mean()
            if not math.isfinite(loss.item()):
                ctx.diverged(step)  # a failure, recorded, never dropped
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if (step + 1) % ctx.config.eval_every == 0:
                ctx.report(step + 1, train_loss=sum(losses) / len(losses), **self._evaluate(module, data))
                losses = []
        return self._evaluate(module, data)

    @torch.no_grad()
    def _evaluate(self, module: nn.Module, data: SampledData) -> dict[str, float]:
        return {k: v.mean().item() for k, v in self.metrics(module(data.test_x), data.test_y).items()}
