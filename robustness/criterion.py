"""Success criteria: when does a restart count as a success?

A criterion is a metric name, a comparison and a threshold, for example
``test_error < 0.01``. It is stored with every restart and can be re-applied
later at another threshold from the stored final metrics.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable

from robustness.records import RestartOutcome

__all__ = ["Criterion", "OPERATORS"]

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclasses.dataclass(frozen=True)
class Criterion:
    """``metric op threshold``, e.g. ``Criterion("test_accuracy", ">=", 0.9)``."""

    metric: str
    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"unknown comparison {self.op!r}; expected one of {sorted(OPERATORS)}")
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be finite, got {self.threshold!r}")

    def passes(self, value: float, *, diverged: bool = False) -> bool:
        """Diverged or non-finite values always fail."""
        if diverged or not math.isfinite(value):
            return False
        return bool(OPERATORS[self.op](value, self.threshold))

    def judge(self, outcome: RestartOutcome) -> bool:
        value = outcome.metrics.get(self.metric)
        if value is None:
            raise KeyError(f"restart has no metric {self.metric!r}; it has {sorted(outcome.metrics)}")
        return self.passes(float(value), diverged=outcome.diverged)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"
