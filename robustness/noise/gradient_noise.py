"""The optimizer side of annealed Gaussian gradient noise (Neelakantan et al., 2015, arXiv 1511.06807).

At update ``t`` (the number of updates already taken, starting at 0) every
gradient element gets independent Gaussian noise *after* gradient clipping::

    g_t <- clip(g_t) + N(0, sigma_t^2),    sigma_t^2 = eta / (1 + t) ** gamma

``sigma_t^2`` is a **variance**; the standard deviation is its square root.
Public implementations got this wrong in three ways that the tests here rule
out: noise added before clipping (so clipping shrinks it), eta used as a
standard deviation, and noise added to a rebound loop variable so that it
never reached the optimizer. Each wrapper also owns its generator, so parallel
models never share a noise stream.

Noise is drawn as **one flat standard-normal vector per update**, covering the
parameters that have gradients in ``param_groups`` order. The restart-pack
trainer draws exactly the same vector for each restart, which is what makes a
restart trained in a pack equal to the same restart trained alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch

from robustness.noise.schedules import NoiseSchedule

__all__ = ["GradientNoise", "clip_coefficient"]


def clip_coefficient(total_norm: torch.Tensor, clip_norm: float | torch.Tensor) -> torch.Tensor:
    """The factor ``torch.nn.utils.clip_grad_norm_`` scales gradients by (at most 1)."""
    return torch.clamp(clip_norm / (total_norm + 1e-6), max=1.0)


class GradientNoise:
    """Wrap any ``torch.optim.Optimizer`` so that each ``step()`` clips, adds noise, then steps.

    ``step()`` (1) clips the global gradient norm to ``clip_norm`` when set,
    (2) adds independent N(0, sigma_t^2) to every gradient element, in place on
    ``p.grad`` so the wrapped optimizer really sees it, (3) calls the wrapped
    optimizer's ``step``, and (4) advances ``t``.

    Example::

        opt = GradientNoise(torch.optim.SGD(model.parameters(), lr=0.01),
                            AnnealedNoise(eta=0.3, gamma=0.55), clip_norm=10.0, seed=7)
        loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: NoiseSchedule,
        clip_norm: float | None = None,
        seed: int | None = None,
    ) -> None:
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm}")
        self.optimizer = optimizer
        self.schedule = schedule
        self.clip_norm = clip_norm
        self.t = 0
        device = self._device()
        # Our own generator: the global RNG is never touched, and two wrappers
        # never share a stream.
        self.generator = torch.Generator(device=device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    # -- pass-through -------------------------------------------------------
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:
        return self.optimizer.state

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _params_with_grad(self) -> Iterator[torch.Tensor]:
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield p

    def _device(self) -> torch.device:
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                return p.device
        return torch.device("cpu")

    # -- the update -----------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for p in self._params_with_grad()]
        if grads and self.clip_norm is not None:
            # Clip first: noise added before clipping would be shrunk by it.
            norms = torch.stack([torch.linalg.vector_norm(g) for g in grads])
            coef = clip_coefficient(torch.linalg.vector_norm(norms), self.clip_norm)
            torch._foreach_mul_(grads, coef)
        if grads and self.schedule.is_noisy:
            std = self.schedule.std(self.t)
            noise = torch.randn(
                sum(g.numel() for g in grads), generator=self.generator, device=grads[0].device, dtype=grads[0].dtype
            )
            # In place on p.grad: `for g in grads: g = g + noise` would never reach the optimizer.
            for g, chunk in zip(grads, torch.split(noise, [g.numel() for g in grads])):
                g.add_(chunk.view_as(g), alpha=std)
        self.optimizer.step()
        self.t += 1
        return loss

    # -- resume ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "t": self.t,
            "generator": self.generator.get_state(),
            "clip_norm": self.clip_norm,
            "schedule": {"name": self.schedule.name, **dataclasses.asdict(self.schedule)},  # type: ignore[call-overload]
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["schedule"]
        mine = {"name": self.schedule.name, **dataclasses.asdict(self.schedule)}  # type: ignore[call-overload]
        if saved != mine:
            # Continuing another schedule at the saved t would silently change the experiment.
            raise ValueError(f"checkpoint was saved with noise schedule {saved}, this wrapper has {mine}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.t = int(state["t"])
        self.generator.set_state(state["generator"])
        self.clip_norm = state["clip_norm"]

    def __repr__(self) -> str:
        return f"GradientNoise({self.optimizer.__class__.__name__}, {self.schedule!r}, clip_norm={self.clip_norm}, t={self.t})"


