"""The paper-style tables: best / average final metric per setting and arm, successes at several thresholds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from robustness.criterion import Criterion
from robustness.figures._common import (
    arm_axes,
    arm_sort_key,
    metric_direction,
    setting_axes,
    value_sort_key,
)
from robustness.stats import (
    ArmSummary,
    SuccessCounts,
    arm_summary,
    cell_stats,
    success_counts,
)
from robustness.table import RestartTable

__all__ = ["PaperTables", "default_thresholds", "paper_tables_data"]


@dataclasses.dataclass(frozen=True)
class PaperTables:
    """Numbers for the two tables of the paper, as the statistics library returns them.

    Attributes:
        metric, direction: the metric summarized and which end is best.
        summary_axes: the axes of a summary row (setting axes, then arm axes).
        summary: best and mean (with a seeded percentile-bootstrap interval) per
            row, as in "best / average test accuracy over 40 runs"; diverged
            restarts are left out of best and mean, and counted in ``n - n_used``.
        count_axes: the arm axes of a counts row.
        criteria: the thresholds as text, e.g. ``("test_error < 0.01", "test_error < 0.02")``.
        counts: successes per arm under each criterion, as in "successful runs
            out of 7,290"; diverged restarts are failures.
    """

    metric: str
    direction: str
    summary_axes: tuple[str, ...]
    summary: tuple[ArmSummary, ...]
    count_axes: tuple[str, ...]
    criteria: tuple[str, ...]
    counts: tuple[SuccessCounts, ...]


def default_thresholds(criterion: Criterion) -> tuple[float, ...]:
    """The criterion's threshold and one twice as strict, like the paper's 1% and 2% error.

    ``<`` halves the threshold (error 0.02 -> 0.01); ``>`` on a rate in (0, 1)
    halves the distance to 1 (accuracy 0.8 -> 0.9); otherwise only the threshold.
    """
    t = criterion.threshold
    if criterion.op in ("<", "<="):
        stricter = t / 2 if t > 0 else None
    else:
        stricter = 1 - (1 - t) / 2 if 0 < t < 1 else None
    return tuple(sorted({t, stricter} - {None}))  # type: ignore[operator]


def paper_tables_data(
    table: RestartTable,
    *,
    criterion: Criterion | None = None,
    thresholds: Sequence[float] | None = None,
    summary_by: Sequence[str] | None = None,
    metric: str | None = None,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    rng: np.random.Generator | int = 0,
) -> PaperTables:
    """Best / mean per (setting, arm) and successes per arm at several thresholds.

    Args:
        table: ``N`` restarts.
        criterion: the success criterion; its metric and comparison are applied
            at every threshold. Without one the counts table has one column,
            the stored success flag.
        thresholds: default :func:`default_thresholds`.
        summary_by: axes of a summary row; default every axis but ``lr``
            (pooling the learning rates of a setting, as a "setting" in the
            paper), noise axes last.
        metric: summarized metric; default the criterion's, else the primary.
        rng: seed or generator for the bootstrap, so a report is reproducible.
    """
    metric = metric or (criterion.metric if criterion else table.primary_metric)
    direction = metric_direction(metric, criterion)
    arms = arm_axes(table)
    by = tuple(summary_by) if summary_by is not None else (*setting_axes(table, exclude=("lr",)), *arms)
    summary = arm_summary(
        table, by=by, metric=metric, direction=direction, confidence=confidence, n_resamples=n_resamples, rng=rng
    )
    summary = sorted(summary, key=lambda s: _row_key(s.params, by, arms))
    if criterion is None:
        pooled = cell_stats(table, by=arms)
        counts = [SuccessCounts(c.params, c.n, ("stored success",), (c.successes,)) for c in pooled]
    else:
        ts = tuple(thresholds) if thresholds is not None else default_thresholds(criterion)
        criteria = [Criterion(criterion.metric, criterion.op, float(t)) for t in ts]
        counts = success_counts(table, criteria, by=arms)
    counts = sorted(counts, key=lambda c: arm_sort_key(c.params))
    return PaperTables(
        metric=metric,
        direction=direction,
        summary_axes=by,
        summary=tuple(summary),
        count_axes=arms,
        criteria=counts[0].criteria if counts else (),
        counts=tuple(counts),
    )


def _row_key(params: dict, by: Sequence[str], arms: Sequence[str]) -> tuple:
    # Settings in value order, and within a setting the baseline first, as in the paper's columns.
    setting = tuple(value_sort_key(params[a]) for a in by if a not in arms)
    return (setting, arm_sort_key(params))
