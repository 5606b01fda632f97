"""Annealed Gaussian gradient noise (Neelakantan et al., 2015, arXiv 1511.06807).

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
import math
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch

__all__ = [
    "AnnealedNoise",
    "ConstantNoise",
    "GradientNoise",
    "NoNoise",
    "NoiseSchedule",
    "SCHEDULES",
    "make_schedule",
    "register_schedule",
]


class NoiseSchedule:
    """Base class: ``variance(t)`` gives sigma_t^2 for update ``t`` (t = 0, 1, ...).

    Subclasses are frozen dataclasses (hashable, picklable) registered under a
    name with :func:`register_schedule`, so that a YAML file can name them.
    """

    name: ClassVar[str] = ""

    def variance(self, t: int) -> float:
        raise NotImplementedError

    def std(self, t: int) -> float:
        return math.sqrt(self.variance(t))

    def params(self) -> dict[str, Any]:
        """Grid coordinates describing this schedule (``schedule`` plus its fields)."""
        return {"schedule": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @property
    def is_noisy(self) -> bool:
        return True


SCHEDULES: dict[str, type[NoiseSchedule]] = {}


def register_schedule(name: str) -> Callable[[type[NoiseSchedule]], type[NoiseSchedule]]:
    """Class decorator: make a schedule available by ``name`` in search spaces.

    Example::

        @register_schedule("linear_decay")
        @dataclasses.dataclass(frozen=True)
        class LinearDecay(NoiseSchedule):
            eta: float
            steps: int
            def variance(self, t): return self.eta * max(0.0, 1 - t / self.steps)
    """

    def decorate(cls: type[NoiseSchedule]) -> type[NoiseSchedule]:
        if name in SCHEDULES and SCHEDULES[name] is not cls:
            raise ValueError(f"a noise schedule named {name!r} is already registered")
        cls.name = name
        SCHEDULES[name] = cls
        return cls

    return decorate


def make_schedule(name: str, **params: Any) -> NoiseSchedule:
    """Build a registered schedule by name, e.g. ``make_schedule("annealed", eta=0.3)``."""
    try:
        cls = SCHEDULES[name]
    except KeyError:
        raise ValueError(f"unknown noise schedule {name!r}; known: {sorted(SCHEDULES)}") from None
    return cls(**params)


@register_schedule("none")
@dataclasses.dataclass(frozen=True)
class NoNoise(NoiseSchedule):
    """The baseline: no noise, and no draws from the generator."""

    def variance(self, t: int) -> float:
        return 0.0

    @property
    def is_noisy(self) -> bool:
        return False


@register_schedule("constant")
@dataclasses.dataclass(frozen=True)
class ConstantNoise(NoiseSchedule):
    """Fixed variance ``eta`` at every update."""

    eta: float

    def __post_init__(self) -> None:
        if not self.eta > 0:
            raise ValueError(f"eta must be > 0 (it is a variance), got {self.eta}")

    def variance(self, t: int) -> float:
        return float(self.eta)


@register_schedule("annealed")
@dataclasses.dataclass(frozen=True)
class AnnealedNoise(NoiseSchedule):
    """The paper's schedule: ``eta / (1 + t) ** gamma``; the paper used gamma = 0.55."""

    eta: float
    gamma: float = 0.55

    def __post_init__(self) -> None:
        if not self.eta > 0:
            raise ValueError(f"eta must be > 0 (it is a variance), got {self.eta}")
        if not self.gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")

    def variance(self, t: int) -> float:
        return self.eta / (1 + t) ** self.gamma


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


