"""A noise schedule installed as a plugin: variance ``eta * max(0, 1 - t / horizon)``.

Registered by the entry point ``linear_decay`` in the group ``robustness.schedules``
(see ``pyproject.toml``). Its fields ``eta`` and ``horizon`` are list-valued keys of a
noise block and become grid axes; statistics compare each (eta, horizon) arm against
the ``schedule: none`` baseline of the same lr / clip / init.
"""

from __future__ import annotations

import dataclasses

from robustness.noise import NoiseSchedule

__all__ = ["LinearDecay"]


@dataclasses.dataclass(frozen=True)
class LinearDecay(NoiseSchedule):
    """sigma_t^2 = eta * max(0, 1 - t / horizon): noise that is switched off after ``horizon`` updates."""

    eta: float  # the variance at t = 0
    horizon: int  # updates until the noise reaches zero

    def __post_init__(self) -> None:
        # A ValueError here is reported by the loader as a one-line error for the YAML key.
        if not self.eta > 0:
            raise ValueError(f"eta must be > 0 (it is a variance), got {self.eta}")
        if not self.horizon >= 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")

    def variance(self, t: int) -> float:
        return self.eta * max(0.0, 1.0 - t / self.horizon)
