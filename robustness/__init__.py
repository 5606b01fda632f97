"""Hyperparameter robustness studies: success rates across random restarts, with and
without annealed gradient noise (Neelakantan et al., 2015, arXiv 1511.06807).

The core names are re-exported here; heavier layers live in their modules:
``robustness.pack`` (restart packs), ``robustness.sweep`` (Ray Tune),
``robustness.storage`` (Optuna SQL storage), ``robustness.stats``,
``robustness.report``.
"""

from __future__ import annotations

from importlib import metadata

from robustness.criterion import Criterion
from robustness.noise import (
    SCHEDULES,
    AnnealedNoise,
    ConstantNoise,
    GradientNoise,
    NoiseSchedule,
    NoNoise,
    make_schedule,
    register_schedule,
)
from robustness.outcome import CurvePoint, FrozenMap, RestartOutcome
from robustness.spec import RestartSpec

try:
    __version__ = metadata.version("restart-robustness")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "SCHEDULES",
    "AnnealedNoise",
    "ConstantNoise",
    "Criterion",
    "CurvePoint",
    "FrozenMap",
    "GradientNoise",
    "NoNoise",
    "NoiseSchedule",
    "RestartOutcome",
    "RestartSpec",
    "make_schedule",
    "register_schedule",
]
