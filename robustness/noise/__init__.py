"""Annealed Gaussian gradient noise (Neelakantan et al., 2015, arXiv 1511.06807).

- :mod:`robustness.noise.schedules`: sigma_t^2 for update t, the schedule
  registry and the noise axes of a study (no torch);
- :mod:`robustness.noise.gradient_noise`: :class:`GradientNoise`, which clips,
  adds the noise in place and steps any ``torch.optim`` optimizer.

``GradientNoise`` is loaded on first use, so that reading schedules (the
statistics and figures do) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from robustness.noise.schedules import (
    SCHEDULES,
    AnnealedNoise,
    ConstantNoise,
    NoiseSchedule,
    NoNoise,
    make_schedule,
    noise_axes,
    register_schedule,
    schedule_class,
    schedule_fields,
    schedule_from_cell,
)

_TORCH_EXPORTS = ("GradientNoise", "clip_coefficient")


def __getattr__(name: str) -> Any:
    if name in _TORCH_EXPORTS:
        return getattr(importlib.import_module("robustness.noise.gradient_noise"), name)
    raise AttributeError(f"module 'robustness.noise' has no attribute {name!r}")


__all__ = [
    "SCHEDULES",
    "AnnealedNoise",
    "ConstantNoise",
    "GradientNoise",
    "NoNoise",
    "NoiseSchedule",
    "clip_coefficient",
    "make_schedule",
    "noise_axes",
    "register_schedule",
    "schedule_class",
    "schedule_fields",
    "schedule_from_cell",
]
