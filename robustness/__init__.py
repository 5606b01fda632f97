"""Hyperparameter robustness studies: success rates across random restarts, with and
without annealed gradient noise (Neelakantan et al., 2015, arXiv 1511.06807).

The core names are re-exported here; the layers live in folders by role:
``robustness.training`` (restart packs, models, tasks, data), ``robustness.study``
(search spaces, planning, the Ray Tune sweep), ``robustness.noise``,
``robustness.storage`` (Optuna SQL storage), ``robustness.stats``,
``robustness.figures`` and ``robustness.report``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Re-exported lazily (PEP 562): `import robustness` must not import torch, so that
# commands that only read storage (`robustness stats`, `status`) start fast.
_EXPORTS = {
    "Criterion": "robustness.criterion",
    "CurvePoint": "robustness.records",
    "FrozenMap": "robustness.records",
    "RestartOutcome": "robustness.records",
    "RobustnessError": "robustness.errors",
    "RestartSpec": "robustness.training.spec",
    "SCHEDULES": "robustness.noise",
    "AnnealedNoise": "robustness.noise",
    "ConstantNoise": "robustness.noise",
    "GradientNoise": "robustness.noise",
    "NoNoise": "robustness.noise",
    "NoiseSchedule": "robustness.noise",
    "make_schedule": "robustness.noise",
    "register_schedule": "robustness.noise",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name == "__version__":
        # Looked up on use: reading package metadata costs ~35 ms, on every command.
        from importlib import metadata

        try:
            return metadata.version("restart-robustness")
        except metadata.PackageNotFoundError:  # running from a source tree without installing
            return "0.0.0"
    raise AttributeError(f"module 'robustness' has no attribute {name!r}")


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
    "RobustnessError",
    "make_schedule",
    "register_schedule",
]
