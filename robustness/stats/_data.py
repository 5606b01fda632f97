"""What the statistics read from a :class:`~robustness.table.RestartTable`.

Success is re-judged here when a criterion is given at query time, from the
stored final metrics, so the file's own criterion can be overridden. Diverged
restarts and non-finite metrics are failures either way: dropping them would
inflate success rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from robustness.criterion import OPERATORS, Criterion
from robustness.records import FrozenMap
from robustness.table import RestartTable

__all__ = ["judge", "metric_values"]

DIRECTIONS = ("minimize", "maximize")


def judge(table: RestartTable, criterion: Criterion | None = None) -> np.ndarray:
    """Success of every restart, shape ``(N,)`` bool.

    Args:
        table: the restarts.
        criterion: if given, success is re-judged from ``table.metrics``
            (``metric op threshold``), overriding the stored ``success``;
            if ``None``, the stored ``success`` is used.

    Diverged restarts and non-finite metric values always fail, as in
    :meth:`Criterion.passes`.
    """
    diverged = np.asarray(table.diverged, dtype=bool)
    if criterion is None:
        return np.asarray(table.success, dtype=bool) & ~diverged
    values = _metric(table, criterion.metric)
    with np.errstate(invalid="ignore"):
        passes = OPERATORS[criterion.op](values, criterion.threshold)
    return np.asarray(passes, dtype=bool) & np.isfinite(values) & ~diverged


def metric_values(
    table: RestartTable, metric: str | None = None, *, fill_diverged: float | None = None
) -> np.ndarray:
    """Final metric per restart, shape ``(N,)`` float64, NaN where unusable.

    Diverged restarts and non-finite values become NaN, or ``fill_diverged``
    when given (e.g. chance-level accuracy): a summary that drops them
    describes only the restarts that trained, which flatters unstable arms.
    """
    values = _metric(table, metric or table.primary_metric).copy()
    bad = ~np.isfinite(values) | np.asarray(table.diverged, dtype=bool)
    values[bad] = np.nan if fill_diverged is None else float(fill_diverged)
    return values


def infer_direction(direction: str | None, criterion: Criterion | None) -> str:
    """``"minimize"``/``"maximize"``; from a criterion's comparison if not given."""
    if direction is None:
        if criterion is None:
            raise ValueError("give direction='minimize' or 'maximize' (or a criterion to infer it from)")
        return "minimize" if criterion.op in ("<", "<=") else "maximize"
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction


def check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


def jsonable(value: Any) -> Any:
    """Plain JSON types: NaN and infinities -> None, NumPy scalars -> Python, mappings -> dict.

    ``None`` for an interval end means "undefined or unbounded" (e.g. the upper
    end of a risk ratio whose baseline has no successes).
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def frozen_params(names: tuple[str, ...], values: tuple[Any, ...]) -> FrozenMap:
    return FrozenMap({n: (v.item() if isinstance(v, np.generic) else v) for n, v in zip(names, values)})


def _metric(table: RestartTable, name: str) -> np.ndarray:
    if len(table) == 0:
        return np.empty(0, dtype=np.float64)  # an empty study has no metrics to name
    if name not in table.metrics:
        raise KeyError(f"no metric {name!r} in the table; it has {sorted(table.metrics)}")
    return np.asarray(table.metrics[name], dtype=np.float64)
