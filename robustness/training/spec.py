"""What one restart is asked to do: the trainer's input record.

A :class:`RestartSpec` is a grid cell (``params``) plus a restart index. The
seed of restart ``k`` depends only on ``k`` and the study's base seed, never on
the cell, so restart ``k`` of every cell starts from the same initialization
and sees the same data order. That pairing is what makes the McNemar test
between a noise arm and its baseline possible.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from robustness.noise import NoiseSchedule
from robustness.records import FrozenMap

__all__ = ["RestartSpec", "restart_seed", "derived_seeds"]


def restart_seed(restart: int, *, base_seed: int = 0) -> int:
    """The seed of restart ``restart``: shared by every cell of a study."""
    if restart < 0:
        raise ValueError(f"restart index must be >= 0, got {restart}")
    # SeedSequence mixes (base, restart) into well-separated seeds. 31 bits keep
    # the seed exact wherever it is stored (Optuna keeps params as float64, JSON).
    return int(np.random.SeedSequence([base_seed, restart]).generate_state(1, np.uint32)[0] >> np.uint32(1))


def derived_seeds(seed: int) -> tuple[int, int, int]:
    """(init, data order, noise) seeds derived from one restart seed.

    Three independent streams, so that turning noise on does not change the
    initialization or the batches a restart sees.
    """
    children = np.random.SeedSequence(seed).spawn(3)
    return tuple(int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class RestartSpec:
    """One restart's hyperparameters.

    Attributes:
        params: the cell's grid coordinates, copied verbatim into the outcome.
        restart: index of the restart within its cell.
        seed: the restart seed (see :func:`restart_seed`).
        lr: learning rate.
        schedule: the gradient-noise schedule (``NoNoise()`` for the baseline).
        clip_norm: global-norm clipping threshold, ``None`` for no clipping.
        init: name of the initialization scheme (see ``robustness.training.models.INIT_SCHEMES``).
    """

    params: FrozenMap
    restart: int
    seed: int
    lr: float
    schedule: NoiseSchedule
    clip_norm: float | None = None
    init: str = "he"

    def __post_init__(self) -> None:
        if not isinstance(self.params, FrozenMap):
            object.__setattr__(self, "params", FrozenMap(self.params))
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm}")

    @classmethod
    def make(
        cls,
        *,
        restart: int,
        lr: float,
        schedule: NoiseSchedule,
        clip_norm: float | None = None,
        init: str = "he",
        base_seed: int = 0,
        params: dict[str, Any] | None = None,
    ) -> RestartSpec:
        """A spec whose ``params`` default to its own hyperparameters."""
        if params is None:
            params = {"lr": lr, "clip": clip_norm, "init": init, "eta": None, "gamma": None, **schedule.params()}
        return cls(params=FrozenMap(params), restart=restart, seed=restart_seed(restart, base_seed=base_seed),
                   lr=lr, schedule=schedule, clip_norm=clip_norm, init=init)
