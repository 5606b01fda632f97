"""SGD (momentum, Nesterov), Adam and AdamW over a pack's (R, P) parameters, per-restart learning rates.

The arithmetic follows ``torch.optim.SGD``, ``torch.optim.Adam`` and
``torch.optim.AdamW`` (PyTorch 2.x, ``dampening=0``, no amsgrad) so that a
restart in a pack matches the same restart trained with the stock optimizer.
Weight decay acts where torch applies it: inside ``step``, on the gradient the
optimizer is handed, i.e. after clipping and gradient noise. A learning rate
of 0 freezes a restart (used for diverged ones).
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["PackAdam", "PackSGD", "make_pack_optimizer"]


class PackSGD:
    def __init__(self, theta: torch.Tensor, *, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0) -> None:
        if nesterov and not momentum > 0:
            raise ValueError("Nesterov momentum requires a momentum > 0")  # as torch.optim.SGD
        self.theta, self.momentum, self.nesterov, self.weight_decay = theta, momentum, nesterov, weight_decay
        self.buf: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, g: torch.Tensor, lr: torch.Tensor) -> None:
        """``g`` (R, P) gradients after clipping and noise, overwritten as scratch; ``lr`` (R,)."""
        d = g
        if self.weight_decay:
            g.add_(self.theta, alpha=self.weight_decay)  # torch: g = g + wd * theta, before momentum
        if self.momentum:
            # torch: buf = g on the first step, then buf = momentum * buf + g
            self.buf = g.clone() if self.buf is None else self.buf.mul_(self.momentum).add_(g)
            d = g.add_(self.buf, alpha=self.momentum) if self.nesterov else self.buf
        self.theta.addcmul_(d, lr.unsqueeze(1), value=-1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"buf": None if self.buf is None else self.buf.to("cpu", copy=True)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buf = None if state["buf"] is None else state["buf"].to(self.theta.device, copy=True)


class PackAdam:
    """Adam, or AdamW with ``decoupled=True`` (theta *= 1 - lr * wd before the Adam update)."""

    def __init__(self, theta: torch.Tensor, *, betas: tuple[float, float], eps: float, weight_decay: float = 0.0,
                 decoupled: bool = False) -> None:
        self.theta, self.betas, self.eps = theta, betas, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled
        self.exp_avg = torch.zeros_like(theta)
        self.exp_avg_sq = torch.zeros_like(theta)
        self.t = 0

    @torch.no_grad()
    def step(self, g: torch.Tensor, lr: torch.Tensor) -> None:
        """``g`` (R, P) gradients after clipping and noise, overwritten as scratch; ``lr`` (R,)."""
        b1, b2 = self.betas
        self.t += 1
        if self.weight_decay:
            if self.decoupled:  # a frozen restart's lr 0 multiplies its row by exactly 1
                self.theta.mul_((1 - lr * self.weight_decay).unsqueeze(1))
            else:
                g.add_(self.theta, alpha=self.weight_decay)
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
    """The pack optimizer a :class:`~robustness.training.config.TrainConfig` names."""
    if config.optimizer == "sgd":
        return PackSGD(theta, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay)
    return PackAdam(theta, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay,
                    decoupled=config.optimizer == "adamw")
