"""Annealed Gaussian gradient noise (Neelakantan et al., 2015, arXiv 1511.06807).

- :mod:`robustness.noise.schedules`: sigma_t^2 for update t, the schedule
  registry and the noise axes of a study (no torch);
- :mod:`robustness.noise.hook`: :func:`attach_gradient_noise`, which makes any
  existing ``torch.optim`` optimizer clip and add the noise in place before each
  ``step()`` (a step pre-hook; the optimizer object stays the user's own);
- :mod:`robustness.noise.gradient_noise`: :class:`GradientNoise`, the same
  noise as a ``torch.optim.Optimizer`` that wraps another one.

The torch-side names are loaded on first use, so that reading schedules (the
statistics and figures do) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from robustness.noise.schedules import (
    SCHEDULE_GROUP,
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

_TORCH_EXPORTS = {
    "GradientNoise": "robustness.noise.gradient_noise",
    "GradientNoiseHook": "robustness.noise.hook",
    "attach_gradient_noise": "robustness.noise.hook",
    "clip_coefficient": "robustness.noise.hook",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_EXPORTS:
        return getattr(importlib.import_module(_TORCH_EXPORTS[name]), name)
    raise AttributeError(f"module 'robustness.noise' has no attribute {name!r}")


__all__ = [
    "SCHEDULE_GROUP",
    "SCHEDULES",
    "AnnealedNoise",
    "ConstantNoise",
    "GradientNoise",
    "GradientNoiseHook",
    "NoNoise",
    "NoiseSchedule",
    "attach_gradient_noise",
    "clip_coefficient",
    "make_schedule",
    "noise_axes",
    "register_schedule",
    "schedule_class",
    "schedule_fields",
    "schedule_from_cell",
]
