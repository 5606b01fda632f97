"""SGD (with momentum) and Adam over a pack's (R, P) parameters, per-restart learning rates.

The arithmetic follows ``torch.optim.SGD`` and ``torch.optim.Adam`` (PyTorch
2.x, ``dampening=0``, no weight decay) so that a restart in a pack matches the
same restart trained with the stock optimizer. A learning rate of 0 freezes a
restart (used for diverged ones).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["PackAdam", "PackSGD", "make_pack_optimizer"]


class PackSGD:
    def __init__(self, theta: torch.Tensor, *, momentum: float = 0.0) -> None:
        self.theta, self.momentum = theta, momentum
        self.buf: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, g: torch.Tensor, lr: torch.Tensor) -> None:
        """``g`` (R, P) gradients after clipping and noise; ``lr`` (R,)."""
        d = g
        if self.momentum:
            # torch: buf = g on the first step, then buf = momentum * buf + g
            self.buf = g.clone() if self.buf is None else self.buf.mul_(self.momentum).add_(g)
            d = self.buf
        self.theta.addcmul_(d, lr.unsqueeze(1), value=-1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"buf": None if self.buf is None else self.buf.to("cpu", copy=True)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buf = None if state["buf"] is None else state["buf"].to(self.theta.device, copy=True)


class PackAdam:
    def __init__(self, theta: torch.Tensor, *, betas: tuple[float, float], eps: float) -> None:
        self.theta, self.betas, self.eps = theta, betas, eps
        self.exp_avg = torch.zeros_like(theta)
        self.exp_avg_sq = torch.zeros_like(theta)
        self.t = 0

    @torch.no_grad()
    def step(self, g: torch.Tensor, lr: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.exp_avg.lerp_(g, 1 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
        step_size = (lr / (1 - b1**self.t)).unsqueeze(1)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - b2**self.t)).add_(self.eps)
        self.theta.addcdiv_(self.exp_avg * step_size, denom, value=-1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "exp_avg": self.exp_avg.to("cpu", copy=True), "exp_avg_sq": self.exp_avg_sq.to("cpu", copy=True)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = state["t"]
        self.exp_avg = state["exp_avg"].to(self.theta.device, copy=True)
        self.exp_avg_sq = state["exp_avg_sq"].to(self.theta.device, copy=True)


def make_pack_optimizer(config: Any, theta: torch.Tensor) -> PackSGD | PackAdam:
    if config.optimizer == "sgd":
        return PackSGD(theta, momentum=config.momentum)
    return PackAdam(theta, betas=config.betas, eps=config.eps)
