"""Paper-style tables: best and average final metric per arm, and successes at several thresholds.

The gradient-noise paper reports "best / average test accuracy over 40 runs"
per setting, and "successful runs out of 7,290 at test error < 1% and < 2%"
for binary multiplication. Both are built here from the stored final metrics.

``scipy.stats`` is imported inside :func:`bootstrap_mean_interval`, the one
function that uses it: it costs about 1 s of import, which ``robustness
stats`` must not pay on its default path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from robustness.criterion import Criterion
from robustness.records import FrozenMap
from robustness.stats._data import (
    check_confidence,
    frozen_params,
    infer_direction,
    jsonable,
    judge,
    metric_values,
)
from robustness.stats._groups import group_rows
from robustness.table import RestartTable

__all__ = ["ArmSummary", "SuccessCounts", "arm_summary", "bootstrap_mean_interval", "success_counts"]


@dataclasses.dataclass(frozen=True)
class ArmSummary:
    """Best and average final metric of one arm (cell, or pooled cells).

    Attributes:
        params: the arm's grid coordinates.
        metric: the metric summarized.
        direction: ``"minimize"`` or ``"maximize"``: which end is "best".
        n: restarts in the arm.
        n_used: restarts whose value entered the summary (diverged and
            non-finite ones are left out unless ``fill_diverged`` was given).
        best, mean: over the ``n_used`` values (NaN if there are none).
        mean_low, mean_high: percentile bootstrap interval for ``mean``.
        confidence: the interval's level.
    """

    params: FrozenMap
    metric: str
    direction: str
    n: int
    n_used: int
    best: float
    mean: float
    mean_low: float
    mean_high: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self) | {"params": dict(self.params)})


@dataclasses.dataclass(frozen=True)
class SuccessCounts:
    """Successful restarts out of ``n`` under several criteria, for one arm.

    Attributes:
        params: the arm's grid coordinates.
        n: restarts in the arm (diverged ones included, as failures).
        criteria: the criteria, as text (e.g. ``"test_error < 0.01"``), shape ``(T,)``.
        successes: successes under each criterion, shape ``(T,)``.
    """

    params: FrozenMap
    n: int
    criteria: tuple[str, ...]
    successes: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self) | {"params": dict(self.params)})


def bootstrap_mean_interval(
    values: ArrayLike,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    method: str = "percentile",
    rng: np.random.Generator | int = 0,
) -> tuple[float, float]:
    """Bootstrap interval for the mean of ``values`` (Efron & Tibshirani 1993).

    Via ``scipy.stats.bootstrap`` (``method`` ``"percentile"``, ``"basic"``
    or ``"BCa"``) with an explicit generator, so a seed reproduces the
    interval exactly.

    Args:
        values: shape ``(R,)``; NaNs are dropped.
        rng: a ``np.random.Generator``, or an int seed for one.

    Returns:
        ``(low, high)``; NaN for no values, ``(x, x)`` for one value.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])  # every resample has the same mean
    from scipy import stats  # here, not at the top: see the module docstring

    res = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=check_confidence(confidence),
        n_resamples=n_resamples,
        method=method,
        rng=np.random.default_rng(rng),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def arm_summary(
    table: RestartTable,
    *,
    by: Sequence[str] | None = None,
    metric: str | None = None,
    direction: str | None = None,
    criterion: Criterion | None = None,
    fill_diverged: float | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    rng: np.random.Generator | int = 0,
) -> list[ArmSummary]:
    """Best and average final metric per arm, with a bootstrap interval for the average.

    Args:
        table: ``N`` restarts.
        by: axes defining an arm; default every axis (one arm per cell).
        metric: default the table's primary metric (or the criterion's metric).
        direction: ``"minimize"`` or ``"maximize"``; inferred from
            ``criterion`` (``<`` means minimize) when not given.
        criterion: used only to infer ``metric`` and ``direction``.
        fill_diverged: value for diverged / non-finite restarts (e.g. chance
            accuracy); default leave them out, which flatters unstable arms.
        confidence, n_resamples: of the bootstrap interval
            (:func:`bootstrap_mean_interval`, percentile method).
        rng: generator or seed; arms draw from it in their sorted order, so
            the same seed gives the same intervals.

    Returns:
        One :class:`ArmSummary` per arm, sorted by grid coordinates.
    """
    direction = infer_direction(direction, criterion)
    metric = metric or (criterion.metric if criterion else table.primary_metric)
    values = metric_values(table, metric, fill_diverged=fill_diverged)
    groups = group_rows(table, by)
    rng = np.random.default_rng(rng)
    pick = np.nanmin if direction == "minimize" else np.nanmax
    out = []
    for key, v in zip(groups.keys, groups.split(values)):
        used = v[~np.isnan(v)]
        low, high = bootstrap_mean_interval(used, confidence=confidence, n_resamples=n_resamples, rng=rng)
        out.append(
            ArmSummary(
                params=frozen_params(groups.axes, key),
                metric=metric,
                direction=direction,
                n=int(v.size),
                n_used=int(used.size),
                best=float(pick(used)) if used.size else float("nan"),
                mean=float(used.mean()) if used.size else float("nan"),
                mean_low=low,
                mean_high=high,
                confidence=confidence,
            )
        )
    return out


def success_counts(
    table: RestartTable, criteria: Sequence[Criterion], *, by: Sequence[str] | None = None
) -> list[SuccessCounts]:
    """Successful restarts out of N at several thresholds at once.

    As in the paper's binary-multiplication table: ``criteria=[Criterion(
    "test_error", "<", 0.01), Criterion("test_error", "<", 0.02)]`` and
    ``by=("schedule",)`` give "successes out of all restarts" per arm.
    Diverged restarts count as failures (:func:`judge`).

    Args:
        table: ``N`` restarts.
        criteria: ``T`` criteria, each re-judged from the stored final metrics.
        by: axes defining an arm; default every axis.

    Returns:
        One :class:`SuccessCounts` per arm, sorted by grid coordinates.
    """
    groups = group_rows(table, by)
    counts = np.stack([groups.count(judge(table, c)) for c in criteria], axis=1) if criteria else None
    return [
        SuccessCounts(
            params=frozen_params(groups.axes, key),
            n=int(n),
            criteria=tuple(str(c) for c in criteria),
            successes=tuple(int(x) for x in counts[g]) if counts is not None else (),
        )
        for g, (key, n) in enumerate(zip(groups.keys, groups.sizes.tolist()))
    ]
