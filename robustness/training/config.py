"""How every restart of a pack is trained: the optimizer names, their defaults, and TrainConfig.

The one source of truth for optimizer names and defaults: the search-space
schema, the pack optimizers and the plain reference loop all read them here.
Torch-free, so that validating a file does not load torch for this.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["DEFAULT_OPTIMIZER", "OPTIMIZERS", "OPTIMIZER_DEFAULTS", "TrainConfig"]

# Each optimizer's own keys and their defaults: PyTorch's (torch.optim.SGD, torch.optim.Adam).
OPTIMIZER_DEFAULTS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "sgd": MappingProxyType({"momentum": 0.0}),
    "adam": MappingProxyType({"betas": (0.9, 0.999), "eps": 1e-8}),
})
OPTIMIZERS = tuple(OPTIMIZER_DEFAULTS)
DEFAULT_OPTIMIZER = "sgd"  # the paper used plain SGD for MNIST, Adam elsewhere


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How every restart of a pack is trained (the per-restart knobs live in RestartSpec)."""

    steps: int = 1000  # number of updates
    batch_size: int = 128  # the benchmark batch; the paper did not state its own
    eval_every: int = 100  # updates between learning-curve points
    optimizer: str = DEFAULT_OPTIMIZER
    momentum: float = OPTIMIZER_DEFAULTS["sgd"]["momentum"]  # SGD only
    betas: tuple[float, float] = OPTIMIZER_DEFAULTS["adam"]["betas"]  # Adam only
    eps: float = OPTIMIZER_DEFAULTS["adam"]["eps"]  # Adam only
    eval_chunk: int = 2048  # evaluation examples per forward: bounds memory at R x chunk x width

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; known: {list(OPTIMIZERS)}")
        for name in ("steps", "batch_size", "eval_every", "eval_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_options(cls, optimizer: str, options: Mapping[str, Any], **rest: Any) -> TrainConfig:
        """A config from an optimizer name and its own keys (None or missing: the default)."""
        given = {k: v for k, v in options.items() if v is not None and k in OPTIMIZER_DEFAULTS.get(optimizer, {})}
        if "betas" in given:
            given["betas"] = tuple(given["betas"])
        return cls(optimizer=optimizer, **given, **rest)
