"""Budget views: what k restarts buy.

- the chance that at least one of k restarts succeeds, with an interval;
- the expected best final metric over k restarts (Dodge et al. 2019,
  "Show Your Work: Improved Reporting of Experimental Results", EMNLP);
- the empirical CDF of final metrics per arm.

``scipy.stats`` is imported inside :func:`ecdf`, the one function that uses it:
it costs about 1 s of import, which ``robustness stats`` must not pay on its
default path.
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
    frozen_params,
    infer_direction,
    jsonable,
    judge,
    metric_values,
)
from robustness.stats._groups import group_rows
from robustness.stats._intervals import binomial_interval
from robustness.table import RestartTable

__all__ = [
    "BudgetCurve",
    "Ecdf",
    "ExpectedBest",
    "ecdf",
    "expected_best",
    "expected_max",
    "p_at_least_one",
    "success_within",
]


@dataclasses.dataclass(frozen=True)
class BudgetCurve:
    """P(at least one success in k restarts) for one arm, for several k.

    Attributes:
        params: the arm's grid coordinates.
        n, successes: the arm's restarts and successes (the rate estimate).
        k: budgets, shape ``(K,)``.
        p, low, high: estimate and interval per budget, shape ``(K,)``.
    """

    params: FrozenMap
    n: int
    successes: int
    k: tuple[int, ...]
    p: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self) | {"params": dict(self.params)})


@dataclasses.dataclass(frozen=True)
class ExpectedBest:
    """Expected best final metric over k restarts for one arm (Dodge et al. 2019).

    Attributes:
        params: the arm's grid coordinates.
        metric, direction: what was summarized and which end is best.
        n_used: restarts whose value entered (see ``fill_diverged``).
        k: budgets, shape ``(K,)``; ``expected``: shape ``(K,)``.
    """

    params: FrozenMap
    metric: str
    direction: str
    n_used: int
    k: tuple[int, ...]
    expected: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self) | {"params": dict(self.params)})


@dataclasses.dataclass(frozen=True)
class Ecdf:
    """Empirical CDF of one arm's final metric: ``P(X <= values[i]) = probabilities[i]``.

    Attributes:
        params: the arm's grid coordinates.
        metric: the metric.
        values: distinct sorted values, shape ``(D,)``.
        probabilities: shape ``(D,)``, nondecreasing, last 1.
    """

    params: FrozenMap
    metric: str
    values: tuple[float, ...]
    probabilities: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self) | {"params": dict(self.params)})


def p_at_least_one(
    successes: ArrayLike, n: ArrayLike, k: ArrayLike, *, method: str = "wilson", confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(at least one success in k independent restarts) = ``1 - (1 - p)**k``.

    The map ``p -> 1 - (1 - p)**k`` is increasing, so the binomial interval's
    endpoints (Wilson 1927 or Clopper & Pearson 1934) map to an interval with
    the same coverage.

    Args:
        successes, n: shape ``S`` (broadcast against ``k``).
        k: budgets, shape broadcastable with ``S``.

    Returns:
        ``(p, low, high)`` in the broadcast shape; ``p`` is NaN where ``n = 0``.
    """
    kk = np.asarray(k, dtype=np.float64)
    if np.any(kk < 0):
        raise ValueError("budgets k must be >= 0")
    low, high = binomial_interval(successes, n, method=method, confidence=confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.asarray(successes, dtype=np.float64) / np.asarray(n, dtype=np.float64)

    def curve(q: np.ndarray) -> np.ndarray:
        return 1.0 - (1.0 - q) ** kk

    return curve(rate), curve(low), curve(high)


def expected_max(values: ArrayLike, k: ArrayLike) -> np.ndarray:
    """Expected maximum of k draws with replacement from ``values`` (Dodge et al. 2019).

    Exact from the empirical CDF: with ``v_(1) <= ... <= v_(n)``,
    ``E[max] = sum_i v_(i) * ((i/n)**k - ((i-1)/n)**k)``. For the expected
    minimum use ``-expected_max(-values, k)``.

    Args:
        values: shape ``(n,)``; NaNs are dropped.
        k: budgets, shape ``(K,)`` (or scalar), each >= 1.

    Returns:
        float64, shape of ``k``; NaN when there are no values.
    """
    v = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    v = v[~np.isnan(v)]
    kk = np.asarray(k, dtype=np.float64)
    if np.any(kk < 1):
        raise ValueError("budgets k must be >= 1")
    if v.size == 0:
        return np.full(kk.shape, np.nan)
    cdf = np.arange(v.size + 1) / v.size  # (i / n) for i = 0..n
    weights = np.diff(cdf[:, None] ** kk.reshape(1, -1), axis=0)  # (n, K)
    return (v @ weights).reshape(kk.shape)


def success_within(
    table: RestartTable,
    k: Sequence[int],
    *,
    by: Sequence[str] | None = None,
    criterion: Criterion | None = None,
    method: str = "wilson",
    confidence: float = 0.95,
) -> list[BudgetCurve]:
    """Per arm, P(at least one success in k restarts) with an interval (:func:`p_at_least_one`).

    Args:
        table: ``N`` restarts; diverged ones are failures.
        k: ``K`` budgets.
        by: axes defining an arm; default every axis.
        criterion: re-judge success from the stored final metrics.
    """
    groups = group_rows(table, by)
    n, s = groups.sizes, groups.count(judge(table, criterion))
    ks = np.asarray(k, dtype=np.int64).reshape(1, -1)
    p, low, high = p_at_least_one(s[:, None], n[:, None], ks, method=method, confidence=confidence)
    return [
        BudgetCurve(
            params=frozen_params(groups.axes, key),
            n=int(n[g]),
            successes=int(s[g]),
            k=tuple(int(x) for x in ks[0]),
            p=tuple(p[g].tolist()),
            low=tuple(low[g].tolist()),
            high=tuple(high[g].tolist()),
        )
        for g, key in enumerate(groups.keys)
    ]


def expected_best(
    table: RestartTable,
    k: Sequence[int],
    *,
    by: Sequence[str] | None = None,
    metric: str | None = None,
    direction: str | None = None,
    criterion: Criterion | None = None,
    fill_diverged: float | None = None,
) -> list[ExpectedBest]:
    """Per arm, the expected best final metric over k restarts (:func:`expected_max`).

    Args:
        table: ``N`` restarts.
        k: ``K`` budgets.
        by: axes defining an arm; default every axis.
        metric: default the table's primary metric (or the criterion's metric).
        direction: ``"minimize"`` or ``"maximize"``; inferred from ``criterion``.
        fill_diverged: value for diverged / non-finite restarts; default leave
            them out (then the curve describes restarts that did not diverge).
    """
    direction = infer_direction(direction, criterion)
    metric = metric or (criterion.metric if criterion else table.primary_metric)
    sign = -1.0 if direction == "minimize" else 1.0
    values = sign * metric_values(table, metric, fill_diverged=fill_diverged)
    out = []
    for params, v in _split(table, values, by):
        used = v[~np.isnan(v)]
        expected = sign * expected_max(used, np.asarray(k))
        budgets = tuple(int(x) for x in k)
        out.append(ExpectedBest(params, metric, direction, int(used.size), budgets, tuple(expected.tolist())))
    return out


def ecdf(
    table: RestartTable,
    *,
    by: Sequence[str] | None = None,
    metric: str | None = None,
    fill_diverged: float | None = None,
) -> list[Ecdf]:
    """Per arm, the empirical CDF of the final metric, via ``scipy.stats.ecdf``.

    Diverged / non-finite restarts are left out unless ``fill_diverged`` is
    given. An arm with no usable values gets empty arrays.
    """
    from scipy import stats  # here, not at the top: see the module docstring

    metric = metric or table.primary_metric
    values = metric_values(table, metric, fill_diverged=fill_diverged)
    out = []
    for params, v in _split(table, values, by):
        v = v[~np.isnan(v)]
        if v.size:
            cdf = stats.ecdf(v).cdf
            out.append(Ecdf(params, metric, tuple(cdf.quantiles.tolist()), tuple(cdf.probabilities.tolist())))
        else:
            out.append(Ecdf(params, metric, (), ()))
    return out


def _split(table: RestartTable, values: np.ndarray, by: Sequence[str] | None) -> list[tuple[FrozenMap, np.ndarray]]:
    """``values`` (``(N,)``) split by arm, in sorted arm order."""
    groups = group_rows(table, by)
    return [(frozen_params(groups.axes, key), part) for key, part in zip(groups.keys, groups.split(values))]
