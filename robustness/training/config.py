"""How every restart of a pack is trained: the optimizer names, their defaults, the
learning-rate schedule, and TrainConfig.

The one source of truth for optimizer and LR-schedule names and defaults: the
search-space schema, the pack optimizers and the plain reference loop all read
them here. Torch-free, so that validating a file does not load torch for this.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Optional

__all__ = [
    "DEFAULT_LR_SCHEDULE", "DEFAULT_OPTIMIZER", "DEFAULT_RNG", "LR_SCHEDULES", "LR_SCHEDULE_DEFAULTS", "OPTIMIZERS",
    "OPTIMIZER_DEFAULTS", "RNGS", "LRSchedule", "TrainConfig",
]

_ADAM = {"betas": (0.9, 0.999), "eps": 1e-8}
# Each optimizer's own keys and their defaults: PyTorch's (torch.optim.SGD, Adam, AdamW;
# AdamW is the one that decays by default).
OPTIMIZER_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "sgd": MappingProxyType({"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
    "adam": MappingProxyType({**_ADAM, "weight_decay": 0.0}),
    "adamw": MappingProxyType({**_ADAM, "weight_decay": 1e-2}),
})
OPTIMIZERS = tuple(OPTIMIZER_DEFAULTS)
DEFAULT_OPTIMIZER = "sgd"  # the paper used plain SGD for MNIST, Adam elsewhere

# Each LR schedule's own keys and their defaults; ``warmup`` applies to every schedule.
# step: StepLR's gamma; step_size has no default. cosine: CosineAnnealingLR's eta_min = 0.
LR_SCHEDULE_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "constant": MappingProxyType({}),
    "step": MappingProxyType({"step_size": None, "gamma": 0.1}),
    "cosine": MappingProxyType({"final_factor": 0.0}),
})
LR_SCHEDULES = tuple(LR_SCHEDULE_DEFAULTS)
DEFAULT_LR_SCHEDULE = "constant"  # the paper's setting: a fixed learning rate per cell


@dataclasses.dataclass(frozen=True)
class LRSchedule:
    """The factor f(t) every restart's own learning rate is multiplied by at update t (from 0).

    One f for the whole pack, a pure function of the update count, so a resumed
    pack needs no scheduler state. With ``warmup`` W > 0, f(t) = (t + 1) / (W + 1)
    for t < W (nanoGPT's linear warmup: the first update is not wasted at lr 0),
    then the schedule runs over the remaining S = steps - W updates, s = t - W:

    - constant: 1
    - step: gamma ** (s // step_size)  (``torch.optim.lr_scheduler.StepLR``)
    - cosine: final + (1 - final) * (1 + cos(pi * s / S)) / 2
      (``CosineAnnealingLR`` with T_max = S and eta_min = final * lr)

    The plain loop reproduces it with ``LambdaLR(opt, lambda t: schedule.factor(t, steps))``.
    """

    name: str = DEFAULT_LR_SCHEDULE
    warmup: int = 0  # linear warmup updates, before the schedule itself
    step_size: Optional[int] = None  # step only: updates between decays
    gamma: float = LR_SCHEDULE_DEFAULTS["step"]["gamma"]  # step only: the decay per step_size updates
    final_factor: float = LR_SCHEDULE_DEFAULTS["cosine"]["final_factor"]  # cosine only: f at the end

    def __post_init__(self) -> None:
        if self.name not in LR_SCHEDULES:
            raise ValueError(f"unknown lr schedule {self.name!r}; known: {list(LR_SCHEDULES)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.name == "step" and (self.step_size is None or self.step_size < 1):
            raise ValueError(f"the step schedule needs step_size >= 1, got {self.step_size}")
        if not self.gamma > 0 or not self.final_factor >= 0:
            raise ValueError(f"gamma must be > 0 and final_factor >= 0, got {self.gamma} and {self.final_factor}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> LRSchedule:
        """A schedule from its YAML keys (None or missing: the default)."""
        options = dict(options or {})
        name = options.pop("name", None) or DEFAULT_LR_SCHEDULE
        own = {*LR_SCHEDULE_DEFAULTS.get(name, {}), "warmup"}
        return cls(name=name, **{k: v for k, v in options.items() if v is not None and k in own})

    def factor(self, step: int, steps: int) -> float:
        """f(step) for a run of ``steps`` updates."""
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        s = step - self.warmup
        if self.name == "step":
            return self.gamma ** (s // self.step_size)  # type: ignore[operator]
        if self.name == "cosine":
            # A warmup as long as the run leaves no updates to anneal over: S >= 1 keeps f defined.
            total = max(steps - self.warmup, 1)
            return self.final_factor + (1 - self.final_factor) * (1 + math.cos(math.pi * s / total)) / 2
        return 1.0


# A pack's random streams (noise and data order), per restart either way:
# - generator: one torch.Generator per restart and stream, drawn restart by restart;
#   bit-identical to the plain loop (torch.optim + GradientNoise) on one device.
# - philox: counter-based Philox keyed by the restart's seeds (robustness.training.philox):
#   every restart's draws in one call per update, the GPU path (a fused Triton kernel).
RNGS = ("generator", "philox")
DEFAULT_RNG = "generator"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How every restart of a pack is trained (the per-restart knobs live in RestartSpec)."""

    steps: int = 1000  # number of updates
    batch_size: int = 128  # the benchmark batch; the paper did not state its own
    eval_every: int = 100  # updates between learning-curve points
    optimizer: str = DEFAULT_OPTIMIZER
    momentum: float = OPTIMIZER_DEFAULTS["sgd"]["momentum"]  # SGD only
    nesterov: bool = OPTIMIZER_DEFAULTS["sgd"]["nesterov"]  # SGD only; needs momentum > 0, as in torch
    # None: the optimizer's own default (PyTorch's: 0 for sgd and adam, 0.01 for adamw).
    weight_decay: Optional[float] = None
    betas: tuple[float, float] = OPTIMIZER_DEFAULTS["adam"]["betas"]  # Adam and AdamW only
    eps: float = OPTIMIZER_DEFAULTS["adam"]["eps"]  # Adam and AdamW only
    lr_schedule: LRSchedule = LRSchedule()  # one factor for the whole pack, times each restart's lr
    eval_chunk: int = 2048  # evaluation examples per forward: bounds memory at R x chunk x width
    # Where a pack's noise and data order come from (see RNGS). Changing it changes every restart's draws.
    rng: str = DEFAULT_RNG

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {list(OPTIMIZERS)}")
        if self.rng not in RNGS:
            raise ValueError(f"unknown rng {self.rng!r}; known: {list(RNGS)}")
        for name in ("steps", "batch_size", "eval_every", "eval_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.weight_decay is None:  # frozen: resolve the default once, here
            object.__setattr__(self, "weight_decay", OPTIMIZER_DEFAULTS[self.optimizer]["weight_decay"])
        if not self.weight_decay >= 0:  # type: ignore[operator]
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.nesterov and (self.optimizer != "sgd" or not self.momentum > 0):
            raise ValueError("nesterov needs optimizer sgd with momentum > 0")

    @classmethod
    def from_options(cls, optimizer: str, options: Mapping[str, Any], **rest: Any) -> TrainConfig:
        """A config from an optimizer name and its own keys (None or missing: the default).

        ``options["lr_schedule"]``, if there, is the schedule's mapping (see :meth:`LRSchedule.from_options`).
        """
        given = {k: v for k, v in options.items() if v is not None and k in OPTIMIZER_DEFAULTS.get(optimizer, {})}
        if "betas" in given:
            given["betas"] = tuple(given["betas"])
        if options.get("lr_schedule") is not None:
            given["lr_schedule"] = LRSchedule.from_options(options["lr_schedule"])
        return cls(optimizer=optimizer, **given, **rest)
