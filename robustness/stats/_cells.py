"""Per-cell success rates: restarts, successes and a binomial interval per grid cell."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from robustness.criterion import Criterion
from robustness.records import FrozenMap
from robustness.stats._data import frozen_params, jsonable, judge
from robustness.stats._groups import group_rows
from robustness.stats._intervals import binomial_interval
from robustness.table import RestartTable

__all__ = ["CellStats", "cell_stats"]


@dataclasses.dataclass(frozen=True)
class CellStats:
    """Success rate of one cell (or of a pooled group of cells when ``by`` is given).

    Attributes:
        params: the cell's grid coordinates (only the ``by`` axes when pooled).
        n: restarts in the cell.
        successes: restarts that passed the criterion (diverged ones never do).
        diverged: restarts that diverged.
        rate: ``successes / n`` (NaN when ``n == 0``).
        ci_low, ci_high: the interval for the rate.
        method: ``"wilson"`` or ``"clopper-pearson"``.
        confidence: the interval's confidence level.
    """

    params: FrozenMap
    n: int
    successes: int
    diverged: int
    rate: float
    ci_low: float
    ci_high: float
    method: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``params`` as a dict, NaN as ``None``."""
        return jsonable(dataclasses.asdict(self) | {"params": dict(self.params)})


def cell_stats(
    table: RestartTable,
    *,
    by: Sequence[str] | None = None,
    criterion: Criterion | None = None,
    method: str = "wilson",
    confidence: float = 0.95,
) -> list[CellStats]:
    """Successes out of restarts per cell, with a confidence interval.

    Args:
        table: ``N`` restarts.
        by: grid axes that define a cell; default every axis. Fewer axes pool
            the restarts of all cells that share those values (e.g.
            ``by=("schedule",)`` gives one row per arm, as in the paper's
            "successful runs out of 7,290").
        criterion: re-judge success from the stored final metrics (see
            :func:`judge`); default the stored success.
        method: ``"wilson"`` (Wilson 1927) or ``"clopper-pearson"``
            (Clopper & Pearson 1934); see :func:`binomial_interval`.
        confidence: the interval's confidence level.

    Returns:
        One :class:`CellStats` per cell, sorted by grid coordinates; empty for
        an empty table. Diverged restarts count as failures.
    """
    groups = group_rows(table, by)
    n = groups.sizes
    k = groups.count(judge(table, criterion))
    diverged = groups.count(np.asarray(table.diverged, dtype=bool))
    low, high = binomial_interval(k, n, method=method, confidence=confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = k / n
    return [
        CellStats(
            params=frozen_params(groups.axes, key),
            n=int(n[g]),
            successes=int(k[g]),
            diverged=int(diverged[g]),
            rate=float(rate[g]),
            ci_low=float(low[g]),
            ci_high=float(high[g]),
            method=method,
            confidence=confidence,
        )
        for g, key in enumerate(groups.keys)
    ]
