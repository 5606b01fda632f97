"""Noise against baseline in matched cells: exact tests, effect sizes, adjustment.

Two cells are matched when they agree on the ``match`` axes (by default every
axis that does not describe the noise: learning rate, clip, init, ...). In
each match group the baseline arm is the one cell that fits ``baseline``
(``schedule == "none"``); every other cell of the group is a noise arm and is
compared with it. Restart k of every cell shares its seed, so the two arms are
paired on the seed: the exact McNemar test uses only the discordant pairs and
has more power than comparing two independent samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from robustness.criterion import Criterion
from robustness.noise import noise_axes
from robustness.records import FrozenMap
from robustness.stats._data import check_confidence, frozen_params, jsonable, judge
from robustness.stats._groups import Groups, group_rows
from robustness.stats._intervals import (
    newcombe_interval,
    newcombe_paired_interval,
    ratio_interval,
    ratio_paired_interval,
)
from robustness.stats._pvalues import adjust_pvalues, mcnemar_exact, unpaired_exact
from robustness.table import RestartTable

__all__ = ["Comparison", "Comparisons", "compare_arms"]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One noise arm against the baseline arm of its match group.

    Counts ``noise_n``/``noise_successes`` and ``baseline_*`` cover each whole
    cell. When ``paired``, the test and the effect sizes use the ``n_pairs``
    restarts present in both arms (matched on seed); ``noise_only`` (McNemar's
    b) and ``baseline_only`` (c) are the discordant pairs. Unpaired, those
    three are ``None`` and everything uses the whole cells.

    Effect sizes are noise minus baseline and noise over baseline:
    ``risk_difference`` with a Newcombe (1998) interval (paired: Newcombe
    1998b), ``risk_ratio`` with a MOVER-R Wilson interval (paired: Bonett &
    Price 2006). ``risk_ratio`` is ``inf`` when only the baseline has no
    successes and NaN when neither arm has any.
    """

    group: FrozenMap
    noise: FrozenMap
    baseline: FrozenMap
    noise_n: int
    noise_successes: int
    baseline_n: int
    baseline_successes: int
    paired: bool
    n_pairs: int | None
    noise_only: int | None
    baseline_only: int | None
    test: str
    p_value: float
    p_adjusted: float
    adjust: str
    risk_difference: float
    rd_low: float
    rd_high: float
    risk_ratio: float
    rr_low: float
    rr_high: float
    confidence: float

    @property
    def noise_rate(self) -> float:
        return self.noise_successes / self.noise_n if self.noise_n else float("nan")

    @property
    def baseline_rate(self) -> float:
        return self.baseline_successes / self.baseline_n if self.baseline_n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: grid coordinates as dicts, NaN and infinities as ``None``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out |= {"noise_rate": self.noise_rate, "baseline_rate": self.baseline_rate}
        return jsonable(out)


@dataclasses.dataclass(frozen=True)
class Comparisons(Sequence[Comparison]):
    """All comparisons of a study, adjusted together; a sequence of :class:`Comparison`.

    Attributes:
        comparisons: one per noise arm with a matched baseline.
        unmatched: grid coordinates of noise arms with no baseline in their
            match group; they are skipped, not tested.
        match: the axes that defined the match groups.
        pooled: non-noise axes left out of ``match``: each comparison sums the
            counts and seed pairs of its cells over these axes' values.
    """

    comparisons: tuple[Comparison, ...]
    unmatched: tuple[FrozenMap, ...]
    match: tuple[str, ...]
    pooled: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.comparisons)

    def __getitem__(self, i: Any) -> Any:
        return self.comparisons[i]

    def __iter__(self) -> Iterator[Comparison]:
        return iter(self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "match": list(self.match),
            "pooled": list(self.pooled),
            "comparisons": [c.to_dict() for c in self.comparisons],
            "unmatched": [jsonable(u) for u in self.unmatched],
        }


def compare_arms(
    table: RestartTable,
    *,
    baseline: Mapping[str, Any] | None = None,
    match: Sequence[str] | None = None,
    criterion: Criterion | None = None,
    paired: bool = True,
    pair_by: str = "seed",
    unpaired_test: str = "fisher",
    adjust: str = "holm",
    confidence: float = 0.95,
) -> Comparisons:
    """Compare every noise arm with the baseline arm of its match group.

    Tests: paired on shared seeds, the exact McNemar test (McNemar 1947) on
    discordant pairs; otherwise (``paired=False``, or no shared seeds)
    Fisher's exact test (Fisher 1935) or, with ``unpaired_test="boschloo"``,
    Boschloo's (1970). P-values are adjusted across all comparisons returned
    by Holm (1979, default) or Benjamini & Hochberg (1995, ``"fdr_bh"``).

    Args:
        table: ``N`` restarts.
        baseline: grid values that identify the baseline arm; default
            ``{"schedule": "none"}``.
        match: axes on which the two arms must agree; default every axis not
            that describes the noise (:func:`robustness.noise.noise_axes`: the
            schedule and every registered schedule's parameters) nor in ``baseline``.
            Non-noise axes left out are pooled: restarts still pair with the
            baseline restart of their own cell (same seed, same values on every
            non-noise axis), and one comparison sums those cells' counts and pairs
            (McNemar on the pooled discordant pairs; unpaired tests on summed counts).
        criterion: re-judge success from the stored final metrics.
        paired: pair restarts across arms on ``pair_by`` when possible.
        pair_by: ``"seed"`` (default) or ``"restart"``.
        unpaired_test: ``"fisher"`` or ``"boschloo"``.
        adjust: ``"holm"``, ``"fdr_bh"`` or ``"none"``.
        confidence: level of the effect-size intervals.

    Returns:
        :class:`Comparisons`, sorted by the noise arm's grid coordinates.

    Raises:
        KeyError: an axis in ``baseline`` or ``match`` is not in the table.
        ValueError: a noise cell has several baseline cells even on every
            non-noise axis, or a cell repeats a seed while pairing.
    """
    explicit = baseline is not None
    baseline = {"schedule": "none"} if baseline is None else dict(baseline)
    check_confidence(confidence)
    if len(table) == 0:
        return Comparisons(comparisons=(), unmatched=(), match=tuple(match or ()))
    cells = group_rows(table)
    if explicit:
        _check_baseline_values(cells, baseline)
    schedules = _schedules_in(table)
    every = _match_axes(cells.axes, baseline, None, schedules=schedules)
    match = _match_axes(cells.axes, baseline, match, schedules=schedules)
    # Cells pair on every non-noise axis (and any extra match axis); axes left out of
    # `match` are then pooled: a comparison sums its strata's counts and seed pairs.
    fine = tuple(a for a in cells.axes if a in every or a in match)
    pooled = tuple(a for a in fine if a not in match)
    noise, base, unmatched = _pair_cells(cells, baseline, fine)
    success = judge(table, criterion)
    n, k = cells.sizes, cells.count(success)
    if paired:
        if pair_by not in ("seed", "restart"):
            raise ValueError(f"pair_by must be 'seed' or 'restart', got {pair_by!r}")
        table2x2 = _paired_tables(cells, np.asarray(getattr(table, pair_by)), success, noise, base)
    else:
        table2x2 = np.zeros((len(noise), 4), dtype=np.int64)
    params = [frozen_params(cells.axes, key) for key in cells.keys]
    kept = [a for a in cells.axes if a not in pooled]
    # One comparison per noise cell with the pooled axes dropped; `first` holds a representative
    # (noise cell, baseline cell) of each, for its coordinates.
    arms: dict[FrozenMap, int] = {}
    first: list[tuple[int, int]] = []
    of = np.empty(len(noise), dtype=np.int64)
    for at, (i, j) in enumerate(zip(noise.tolist(), base.tolist())):
        arm = FrozenMap({a: params[i][a] for a in kept})
        if arm not in arms:
            arms[arm] = len(arms)
            first.append((i, j))
        of[at] = arms[arm]
    M = len(arms)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(of, weights=values, minlength=M).astype(np.int64) if M else np.zeros(0, np.int64)

    n1, k1, n0, k0 = total(n[noise]), total(k[noise]), total(n[base]), total(k[base])
    pairs2x2 = np.stack([total(table2x2[:, j]) for j in range(4)], axis=1) if M else np.zeros((0, 4), np.int64)
    stats = _statistics(n1, k1, n0, k0, pairs2x2, unpaired_test=unpaired_test, confidence=confidence)
    stats["p_adjusted"] = adjust_pvalues(stats["p_value"], method=adjust)
    comparisons = []
    for m, (i, j) in enumerate(first):
        pairs = pairs2x2[m].tolist() if stats["paired"][m] else None
        comparisons.append(
            Comparison(
                group=FrozenMap({a: params[i][a] for a in match}),
                noise=FrozenMap({a: params[i][a] for a in kept}),
                baseline=FrozenMap({a: params[j][a] for a in kept}),
                noise_n=int(n1[m]),
                noise_successes=int(k1[m]),
                baseline_n=int(n0[m]),
                baseline_successes=int(k0[m]),
                n_pairs=sum(pairs) if pairs else None,
                noise_only=pairs[1] if pairs else None,
                baseline_only=pairs[2] if pairs else None,
                adjust=adjust,
                confidence=confidence,
                **{name: _scalar(values[m]) for name, values in stats.items()},
            )
        )
    return Comparisons(comparisons=tuple(comparisons), unmatched=tuple(params[u] for u in unmatched), match=match,
                       pooled=pooled)


def _schedules_in(table: RestartTable) -> set[Any]:
    values = table.params.get("schedule")
    return set() if values is None else set(np.asarray(values, dtype=object).tolist())


def _match_axes(axes: tuple[str, ...], baseline: Mapping[str, Any], match: Sequence[str] | None, *,
                schedules: set[Any]) -> tuple[str, ...]:
    missing = [a for a in baseline if a not in axes]
    if missing:
        raise KeyError(f"baseline axis {missing} not in the table; it has {list(axes)}")
    if match is None:
        noise = noise_axes(axes, schedules=schedules)
        return tuple(a for a in axes if a not in noise and a not in baseline)
    match = tuple(match)
    missing = [a for a in match if a not in axes]
    if missing:
        raise KeyError(f"match axis {missing} not in the table; it has {list(axes)}")
    clash = [a for a in match if a in baseline]
    if clash:
        raise ValueError(f"match axes {clash} also define the baseline, so no noise arm could match it")
    return match


def _check_baseline_values(cells: Groups, baseline: Mapping[str, Any]) -> None:
    """A baseline value no cell has is a typo (``schedule=nnoe``), not a study without pairs."""
    for axis, value in baseline.items():
        if axis not in cells.axes:
            continue  # reported by _match_axes
        at = cells.axes.index(axis)
        values = {key[at] for key in cells.keys}
        if value not in values:
            known = ", ".join(sorted(map(str, values)))
            raise ValueError(f"baseline {axis}={value!r} matches no cell; the study's {axis} values: {known}")


def _pair_cells(
    cells: Groups, baseline: Mapping[str, Any], match: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Noise cells, their baseline cells, and noise cells left without one."""
    pos = {a: cells.axes.index(a) for a in (*baseline, *match)}
    base_of: dict[tuple[Any, ...], int] = {}
    noise: list[tuple[int, tuple[Any, ...]]] = []
    for c, key in enumerate(cells.keys):
        group = tuple(key[pos[a]] for a in match)
        if all(key[pos[a]] == v for a, v in baseline.items()):
            if group in base_of:
                other = cells.keys[base_of[group]]
                raise ValueError(
                    f"match group {dict(zip(match, group))} has several baseline cells ({dict(zip(cells.axes, other))}"
                    f" and {dict(zip(cells.axes, key))}); add the axis that tells them apart to `match`"
                )
            base_of[group] = c
        else:
            noise.append((c, group))
    matched = [(c, base_of[g]) for c, g in noise if g in base_of]
    unmatched = [c for c, g in noise if g not in base_of]
    noise_cells = np.array([c for c, _ in matched], dtype=np.int64)
    base_cells = np.array([b for _, b in matched], dtype=np.int64)
    return noise_cells, base_cells, unmatched


def _paired_tables(
    cells: Groups, pair_key: np.ndarray, success: np.ndarray, noise: np.ndarray, base: np.ndarray
) -> np.ndarray:
    """``(M, 4)`` paired 2x2 tables, columns (both, noise only, baseline only, neither).

    A vectorized join on (cell, seed): every row's key is looked up among the
    rows of its partner cell with ``searchsorted``.
    """
    _, seed_code = np.unique(pair_key, return_inverse=True)
    seed_code = seed_code.reshape(-1).astype(np.int64)
    width = int(seed_code.max(initial=0)) + 1
    row_key = cells.index * width + seed_code
    order = np.argsort(row_key, kind="stable")
    sorted_key = row_key[order]
    if np.any(sorted_key[1:] == sorted_key[:-1]):
        raise ValueError("a cell has two restarts with the same seed; pair them with pair_by='restart' or paired=False")
    comparison_of = np.full(len(cells.keys), -1, dtype=np.int64)
    comparison_of[noise] = np.arange(len(noise))
    partner = np.full(len(cells.keys), -1, dtype=np.int64)
    partner[noise] = base
    rows = np.flatnonzero(comparison_of[cells.index] >= 0)
    query = partner[cells.index[rows]] * width + seed_code[rows]
    at = np.minimum(np.searchsorted(sorted_key, query), len(sorted_key) - 1)
    found = sorted_key[at] == query
    rows, other = rows[found], order[at[found]]
    category = 2 * (~success[rows]) + (~success[other])  # 0 both, 1 noise only, 2 baseline only, 3 neither
    flat = comparison_of[cells.index[rows]] * 4 + category
    return np.bincount(flat, minlength=4 * len(noise)).reshape(len(noise), 4).astype(np.int64)


def _statistics(
    n1: np.ndarray,
    k1: np.ndarray,
    n0: np.ndarray,
    k0: np.ndarray,
    table2x2: np.ndarray,
    *,
    unpaired_test: str,
    confidence: float,
) -> dict[str, np.ndarray]:
    """Tests and effect sizes for M comparisons at once (noise 1, baseline 0)."""
    a, b, c, d = table2x2.T
    paired = table2x2.sum(axis=1) > 0
    p = np.where(paired, mcnemar_exact(b, c), 1.0)
    p[~paired] = unpaired_exact(k1[~paired], n1[~paired], k0[~paired], n0[~paired], test=unpaired_test)
    rd_lo, rd_hi = newcombe_interval(k1, n1, k0, n0, confidence=confidence)
    prd_lo, prd_hi = newcombe_paired_interval(a, b, c, d, confidence=confidence)
    rr_lo, rr_hi = ratio_interval(k1, n1, k0, n0, confidence=confidence)
    prr_lo, prr_hi = ratio_paired_interval(a, b, c, d, confidence=confidence)
    # Paired estimates come from the pairs' margins: (a + b) / pairs vs (a + c) / pairs.
    x1, m1 = np.where(paired, a + b, k1), np.where(paired, a + b + c + d, n1)
    x0, m0 = np.where(paired, a + c, k0), np.where(paired, a + b + c + d, n0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r1, r0 = x1 / m1, x0 / m0
        ratio = r1 / r0
    return {
        "paired": paired,
        "test": np.where(paired, "mcnemar-exact", f"{unpaired_test}-exact"),
        "p_value": p,
        "risk_difference": r1 - r0,
        "rd_low": np.where(paired, prd_lo, rd_lo),
        "rd_high": np.where(paired, prd_hi, rd_hi),
        "risk_ratio": ratio,
        "rr_low": np.where(paired, prr_lo, rr_lo),
        "rr_high": np.where(paired, prr_hi, rr_hi),
    }


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
