"""Which grid axes move the success rate most: a functional ANOVA of the per-cell success rates.

The method is fANOVA (Hutter, Hoos & Leyton-Brown 2014, "An Efficient
Approach for Assessing Hyperparameter Importance", ICML), the decomposition
behind ``optuna.importance.FanovaImportanceEvaluator``. The success rate of a
cell is a function ``f`` of its coordinates; under the uniform distribution
over the grid its variance splits into a part per axis (the variance of that
axis's marginal mean, ``f`` averaged over every other axis) plus interactions
(Hooker 2007, "Generalized functional ANOVA diagnostics"). An axis's
importance is its part's share of the total variance.

fANOVA fits a random forest first because it is made for scattered
configurations. A restart study's cells form a full grid, where the
decomposition needs no model: every marginal mean is an average of observed
cells. That exact computation is the default here; it takes about 10 ms on
1,000 cells (0.15 s on 10,000), where Optuna's evaluator (64 trees) takes
about 8 s on 1,000 cells on two cores. When the grid is incomplete (a sweep
still running), the function falls back to Optuna's evaluator on a smaller,
seeded forest. tests/test_importance.py checks the exact shares against
Optuna's on a complete grid (they agree within a few points: the forest
smooths, and it averages categorical axes over their one-hot encoding).

Cells are weighted equally (the uniform measure of fANOVA), whatever their
number of restarts; ``sampling_share`` says how much of the variance across
cells binomial sampling alone would produce.

The noise axes (schedule and its parameters) are nested (gamma only exists
for annealed noise), so by default they make one axis, ``"noise"``, whose
values are the arms; every other grid axis is an axis of its own.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from robustness.criterion import Criterion
from robustness.noise import noise_axes
from robustness.records import FrozenMap
from robustness.stats._cells import cell_stats
from robustness.stats._data import jsonable, judge
from robustness.stats._groups import _sort_key, group_rows
from robustness.table import RestartTable

__all__ = ["NOISE_AXIS", "AxisImportance", "MarginalSuccess", "SuccessImportance", "importance_axes",
           "marginal_success", "success_importance"]

NOISE_AXIS = "noise"
# The fallback forest: Optuna's default 64 trees of depth 64 take ~8 s on 1,000 cells on two
# cores; 16 trees of depth 6 take ~0.5-1.5 s there and rank the axes as the exact path does on
# the tests' grids (shares within a few points; a forest blurs small effects either way).
FOREST_TREES = 16
FOREST_DEPTH = 6
_STUDY_PREFIX = "robustness-importance-"


@dataclasses.dataclass(frozen=True)
class AxisImportance:
    """One axis's share of the variance of the cell success rates.

    Attributes:
        axis: its name (``"noise"`` for the noise axes together).
        axes: the grid axes it stands for, e.g. ``("schedule", "eta", "gamma")``.
        levels: its distinct values in the table.
        importance: the variance of its marginal mean over the total variance, in [0, 1].
    """

    axis: str
    axes: tuple[str, ...]
    levels: int
    importance: float


@dataclasses.dataclass(frozen=True)
class SuccessImportance:
    """fANOVA main effects of the grid axes on the per-cell success rate.

    Attributes:
        axes: one per axis with more than one value, most important first.
        interactions: ``1 - sum(importance)``: the share no axis explains alone.
        variance: the variance of the cell success rates (uniform over cells).
        sampling_share: the variance binomial sampling alone would give, as a
            share of ``variance`` (mean over cells of ``p(1-p)/(n-1)``, NaN
            without a cell of two restarts); near or above 1 means the cells
            differ little more than their restarts' noise.
        cells: the cells (combinations of the axes' values) that entered.
        complete: every combination of the axes' values has restarts.
        method: ``"exact"`` (the decomposition on the complete grid) or
            ``"forest"`` (Optuna's ``FanovaImportanceEvaluator``, seeded).
        constant: grid axes with a single value, left out.
    """

    axes: tuple[AxisImportance, ...]
    interactions: float
    variance: float
    sampling_share: float
    cells: int
    complete: bool
    method: str
    constant: tuple[str, ...]

    def importance(self, axis: str) -> float:
        """The importance of ``axis`` (0.0 for a constant one)."""
        for a in self.axes:
            if a.axis == axis:
                return a.importance
        if axis in self.constant:
            return 0.0
        raise KeyError(f"no axis {axis!r}; there are {[a.axis for a in self.axes] + list(self.constant)}")

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class MarginalSuccess:
    """Success rate per value of one axis, pooled over all the other axes. Sequences have length ``V``.

    Attributes:
        axis, axes: as in :class:`AxisImportance`.
        values: the axis's values, sorted; for ``"noise"`` each is a
            :class:`FrozenMap` of the noise axes (an arm).
        n, successes: restarts and successes with that value.
        rate: ``successes / n``.
        ci_low, ci_high: the rate's interval (:func:`robustness.stats.binomial_interval`).
        method, confidence: of the interval.
    """

    axis: str
    axes: tuple[str, ...]
    values: tuple[Any, ...]
    n: tuple[int, ...]
    successes: tuple[int, ...]
    rate: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    method: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        values = [dict(v) if isinstance(v, FrozenMap) else v for v in self.values]
        return jsonable(dataclasses.asdict(self) | {"values": values})


def importance_axes(table: RestartTable, axes: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Axis name -> the grid axes it stands for.

    Default: every grid axis that is not a noise axis, then ``"noise"`` for
    the noise axes together (when the table has any). Given ``axes``, each is
    its own axis, and ``"noise"`` (unless the grid has an axis of that name)
    stands for the noise axes together.

    Raises:
        ValueError: an axis the table does not have.
    """
    schedules = {v for v in table.params.get("schedule", ()) if isinstance(v, str)}
    noise = noise_axes(table.params, schedules=schedules)
    if axes is None:
        out = {a: (a,) for a in sorted(table.params) if a not in noise}
        return out | ({NOISE_AXIS: noise} if noise and NOISE_AXIS not in out else {})
    out = {}
    for a in axes:
        if a in table.params:
            out[a] = (a,)
        elif a == NOISE_AXIS and noise:
            out[a] = noise
        else:
            raise ValueError(f"no axis {a!r} in the table; it has {', '.join(sorted(table.params))}")
    return out


def success_importance(
    table: RestartTable,
    *,
    axes: Sequence[str] | None = None,
    criterion: Criterion | None = None,
    seed: int = 0,
) -> SuccessImportance:
    """How much of the variation of the success rate across cells each axis explains (fANOVA main effects).

    Args:
        table: ``N`` restarts. Restarts are pooled into cells over ``axes``
            (an axis left out is averaged over inside each cell).
        axes: see :func:`importance_axes`; default every axis, the noise axes as one.
        criterion: re-judge success (see :func:`robustness.stats.judge`);
            diverged restarts fail.
        seed: of the fallback forest (an incomplete grid); the exact path has no randomness.

    Returns:
        The importances, most important first. When the rate is the same in
        every cell there is nothing to explain: every importance is 0.
    """
    factors = importance_axes(table, axes)
    columns = tuple(a for f in factors.values() for a in f)
    groups = group_rows(table, columns)
    n = groups.sizes
    rate = groups.count(judge(table, criterion)) / np.maximum(n, 1)
    codes, levels = {}, {}
    for name, f in factors.items():
        at = [columns.index(a) for a in f]
        keys = [tuple(k[i] for i in at) for k in groups.keys]
        distinct = sorted(set(keys), key=lambda key: tuple(_sort_key(v) for v in key))
        position = {key: i for i, key in enumerate(distinct)}
        codes[name], levels[name] = np.array([position[k] for k in keys], dtype=np.int64), len(distinct)
    varying = [f for f in factors if levels[f] > 1]
    constant = tuple(f for f in factors if levels[f] <= 1)
    cells = len(groups.keys)
    complete = cells == math.prod(levels[f] for f in varying)
    variance = float(rate.var()) if cells else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        sampling = float(np.mean((rate * (1 - rate) / (n - 1))[n > 1])) if np.any(n > 1) else math.nan
    share = sampling / variance if variance > 0 else math.nan
    if not varying or not variance > 0:
        main = dict.fromkeys(varying, 0.0)
        method = "exact"
    elif complete:
        main = _exact_main_effects(rate, [codes[f] for f in varying], [levels[f] for f in varying])
        main = dict(zip(varying, main))
        method = "exact"
    else:
        main = _forest_main_effects(rate, {f: codes[f] for f in varying}, {f: levels[f] for f in varying}, seed)
        method = "forest"
    ranked = sorted(varying, key=lambda f: (-main[f], f))
    explained = sum(main.values())
    return SuccessImportance(
        axes=tuple(AxisImportance(f, factors[f], levels[f], float(main[f])) for f in ranked),
        interactions=float(max(0.0, 1.0 - explained)) if variance > 0 else 0.0,
        variance=variance,
        sampling_share=share,
        cells=cells,
        complete=complete,
        method=method,
        constant=constant,
    )


def _exact_main_effects(rate: np.ndarray, codes: list[np.ndarray], levels: list[int]) -> list[float]:
    """On a complete grid: ``Var(mean of f over the other axes) / Var(f)`` per axis, uniform over cells."""
    grid = np.empty(levels)
    grid[tuple(codes)] = rate
    total = grid.var()
    others = range(grid.ndim)
    return [float(grid.mean(axis=tuple(j for j in others if j != i)).var() / total) for i in range(grid.ndim)]


class _OwnStudiesQuiet(logging.Filter):
    """Drops Optuna's "A new study created in memory" line for this module's throwaway studies only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _STUDY_PREFIX not in record.getMessage()


def _forest_main_effects(rate: np.ndarray, codes: dict[str, np.ndarray], levels: dict[str, int], seed: int) -> dict[str, float]:
    """Optuna's fANOVA (a random forest on the observed cells), one trial per cell, the axes categorical."""
    import optuna  # here: importing optuna costs ~1 s, which the exact path does not need
    from optuna.distributions import CategoricalDistribution
    from optuna.importance import FanovaImportanceEvaluator

    quiet = logging.getLogger("optuna.storages._in_memory")
    if not any(isinstance(f, _OwnStudiesQuiet) for f in quiet.filters):
        quiet.addFilter(_OwnStudiesQuiet())
    distributions = {f: CategoricalDistribution(list(range(levels[f]))) for f in codes}
    trials = [
        optuna.trial.create_trial(params={f: int(codes[f][c]) for f in codes}, distributions=distributions,
                                  value=float(rate[c]))
        for c in range(rate.size)
    ]
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name=f"{_STUDY_PREFIX}{id(trials)}")
    study.add_trials(trials)
    evaluator = FanovaImportanceEvaluator(n_trees=FOREST_TREES, max_depth=FOREST_DEPTH, seed=seed)
    found = evaluator.evaluate(study, params=list(codes))
    return {f: float(found.get(f, 0.0)) for f in codes}


def marginal_success(
    table: RestartTable,
    *,
    axes: Sequence[str] | None = None,
    criterion: Criterion | None = None,
    method: str = "wilson",
    confidence: float = 0.95,
) -> tuple[MarginalSuccess, ...]:
    """Per axis, successes out of restarts for each of its values, pooled over every other axis.

    ``axes`` as in :func:`importance_axes`. Rates pool restarts (cells with
    more restarts weigh more; with equal restarts per cell this is the
    marginal mean that :func:`success_importance` decomposes). Intervals are
    :func:`robustness.stats.binomial_interval` (Wilson 1927 by default), via
    :func:`robustness.stats.cell_stats`; diverged restarts fail.
    """
    out = []
    for name, f in importance_axes(table, axes).items():
        stats = cell_stats(table, by=f, criterion=criterion, method=method, confidence=confidence)
        if name == NOISE_AXIS and f != (name,):
            values: tuple[Any, ...] = tuple(s.params for s in stats)
        else:
            values = tuple(s.params[f[0]] for s in stats)
        out.append(MarginalSuccess(
            axis=name, axes=f, values=values, n=tuple(s.n for s in stats), successes=tuple(s.successes for s in stats),
            rate=tuple(s.rate for s in stats), ci_low=tuple(s.ci_low for s in stats),
            ci_high=tuple(s.ci_high for s in stats), method=method, confidence=confidence,
        ))
    return tuple(out)
