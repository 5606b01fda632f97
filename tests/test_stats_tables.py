"""Paper-style tables and budget views: best/average with a bootstrap, thresholds, Dodge et al."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import robustness.stats as rs
from robustness.criterion import Criterion
from robustness.records import RestartOutcome
from robustness.table import RestartTable

NONE = {"schedule": "none", "eta": None, "gamma": None}
ANNEALED = {"schedule": "annealed", "eta": 0.3, "gamma": 0.55}


def table(cells: dict[str, Sequence[float]], diverged: Sequence[tuple[str, int]] = ()) -> RestartTable:
    """Accuracy per restart for cells keyed "none"/"annealed"; NaN or listed restarts diverge."""
    arms = {"none": NONE, "annealed": ANNEALED}
    return RestartTable.from_outcomes(
        RestartOutcome(
            params={"lr": 0.1} | arms[name],
            restart=r,
            seed=r,
            metrics={"test_accuracy": acc, "test_error": 1 - acc},
            primary_metric="test_accuracy",
            success=bool(acc >= 0.9),
            diverged=(name, r) in diverged or math.isnan(acc),
        )
        for name, accs in cells.items()
        for r, acc in enumerate(accs)
    )


# --- best / average ------------------------------------------------------------


def test_best_and_mean_per_arm() -> None:
    t = table({"none": [0.10, 0.50, 0.90], "annealed": [0.95, 0.97, math.nan]})
    rows = {s.params["schedule"]: s for s in rs.arm_summary(t, direction="maximize")}
    assert (rows["none"].best, rows["none"].mean, rows["none"].n_used) == (0.9, pytest.approx(0.5), 3)
    assert (rows["annealed"].best, rows["annealed"].n, rows["annealed"].n_used) == (0.97, 3, 2)
    assert rows["none"].mean_low <= rows["none"].mean <= rows["none"].mean_high
    err = {s.params["schedule"]: s for s in rs.arm_summary(t, metric="test_error", direction="minimize")}
    assert err["none"].best == pytest.approx(0.1)


def test_diverged_restarts_can_be_filled_instead_of_dropped() -> None:
    t = table({"annealed": [0.9, 0.7, math.nan]})
    (dropped,) = rs.arm_summary(t, direction="maximize")
    (filled,) = rs.arm_summary(t, direction="maximize", fill_diverged=0.1)
    assert dropped.mean == pytest.approx(0.8) and filled.mean == pytest.approx(1.7 / 3)
    assert (dropped.n_used, filled.n_used) == (2, 3)


def test_direction_is_inferred_from_a_criterion_or_required() -> None:
    t = table({"none": [0.2, 0.6]})
    (s,) = rs.arm_summary(t, criterion=Criterion("test_error", "<", 0.5))
    assert (s.metric, s.direction, s.best) == ("test_error", "minimize", pytest.approx(0.4))
    with pytest.raises(ValueError, match="direction"):
        rs.arm_summary(t)
    with pytest.raises(ValueError, match="direction"):
        rs.arm_summary(t, direction="up")


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    x = np.random.default_rng(0).normal(size=30)
    assert rs.bootstrap_mean_interval(x, rng=7) == rs.bootstrap_mean_interval(x, rng=7)
    assert rs.bootstrap_mean_interval(x, rng=7) == rs.bootstrap_mean_interval(x, rng=np.random.default_rng(7))
    assert rs.bootstrap_mean_interval(x, rng=7) != rs.bootstrap_mean_interval(x, rng=8)
    t = table({"none": list(np.linspace(0.1, 0.9, 9)), "annealed": list(np.linspace(0.5, 1.0, 9))})
    first = rs.arm_summary(t, direction="maximize", rng=3)
    assert first == rs.arm_summary(t, direction="maximize", rng=3)
    assert first != rs.arm_summary(t, direction="maximize", rng=4)


def test_bootstrap_edge_cases() -> None:
    assert all(math.isnan(v) for v in rs.bootstrap_mean_interval([]))
    assert rs.bootstrap_mean_interval([0.3]) == (0.3, 0.3)
    assert rs.bootstrap_mean_interval([0.3, 0.3, np.nan]) == (0.3, 0.3)
    (s,) = rs.arm_summary(table({"none": [math.nan, math.nan]}), direction="maximize")
    assert s.n_used == 0 and math.isnan(s.best) and math.isnan(s.mean)
    assert s.to_dict()["mean"] is None
    json.dumps(s.to_dict(), allow_nan=False)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=40), st.integers(0, 2**32 - 1))
def test_bootstrap_interval_brackets_the_mean(values: list[float], seed: int) -> None:
    low, high = rs.bootstrap_mean_interval(values, n_resamples=200, rng=seed)
    assert min(values) - 1e-12 <= low <= high <= max(values) + 1e-12


def test_success_counts_at_several_thresholds() -> None:
    # As in the paper's binary multiplication table: error < 1% and < 2%, per arm.
    t = table({"none": [0.995, 0.985, 0.97, 0.999], "annealed": [0.995, 0.992, 0.985, math.nan]})
    criteria = [Criterion("test_error", "<", 0.01), Criterion("test_error", "<", 0.02)]
    rows = {r.params["schedule"]: r for r in rs.success_counts(t, criteria, by=("schedule",))}
    assert rows["none"].successes == (2, 3) and rows["none"].n == 4
    assert rows["annealed"].successes == (2, 3)
    assert rows["none"].criteria == ("test_error < 0.01", "test_error < 0.02")
    json.dumps(rows["none"].to_dict(), allow_nan=False)


# --- budgets -------------------------------------------------------------------


def test_expected_max_by_hand() -> None:
    # [1, 2, 3], k = 2: 1*(1/9) + 2*(4/9 - 1/9) + 3*(1 - 4/9) = 22/9.
    assert rs.expected_max([3.0, 1.0, 2.0], 2) == pytest.approx(22 / 9)
    np.testing.assert_allclose(rs.expected_max([1.0, 2.0, 3.0], [1, 2, 1000]), [2.0, 22 / 9, 3.0])
    assert math.isnan(rs.expected_max([np.nan], 3))
    with pytest.raises(ValueError):
        rs.expected_max([1.0], 0)


def test_expected_max_matches_brute_force_enumeration() -> None:
    v = np.array([0.3, 0.1, 0.7, 0.7])
    draws = np.array(np.meshgrid(v, v, v)).reshape(3, -1)  # every ordered triple, equally likely
    assert rs.expected_max(v, 3) == pytest.approx(draws.max(axis=0).mean())


def test_expected_best_per_arm_minimizing() -> None:
    t = table({"none": [0.9, 0.8, 0.7]})
    (e,) = rs.expected_best(t, [1, 2], metric="test_error", direction="minimize")
    # errors [0.1, 0.2, 0.3], k = 2: 0.1 * (1 - 4/9) + 0.2 * (4/9 - 1/9) + 0.3 * 1/9 = 1.4 / 9.
    assert e.expected == pytest.approx((0.2, 1.4 / 9))
    assert e.n_used == 3 and e.k == (1, 2)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=20), st.integers(1, 30))
def test_expected_max_grows_with_budget_and_stays_in_range(values: list[float], k: int) -> None:
    small, large = rs.expected_max(values, [k, k + 1])
    assert min(values) - 1e-9 <= small <= large + 1e-9 and large <= max(values) + 1e-9


def test_p_at_least_one_by_hand_and_interval() -> None:
    p, low, high = rs.p_at_least_one(1, 4, [1, 2, 3])
    np.testing.assert_allclose(p, [0.25, 1 - 0.75**2, 1 - 0.75**3])
    wl, wh = rs.binomial_interval(1, 4)
    np.testing.assert_allclose(low, 1 - (1 - wl) ** np.array([1, 2, 3]))
    np.testing.assert_allclose(high, 1 - (1 - wh) ** np.array([1, 2, 3]))
    p, low, high = rs.p_at_least_one(0, 10, 5)
    assert (float(p), float(low)) == (0.0, 0.0) and 0 < high < 1


def test_success_within_per_arm() -> None:
    t = table({"none": [0.95, 0.5, 0.5, 0.5], "annealed": [0.95, 0.95, math.nan, 0.5]})
    rows = {b.params["schedule"]: b for b in rs.success_within(t, [1, 4])}
    assert rows["none"].p == pytest.approx((0.25, 1 - 0.75**4))
    assert rows["annealed"].successes == 2 and rows["annealed"].k == (1, 4)
    assert all(lo <= p <= hi for lo, p, hi in zip(rows["none"].low, rows["none"].p, rows["none"].high))
    json.dumps(rows["none"].to_dict(), allow_nan=False)


def test_ecdf_per_arm() -> None:
    t = table({"none": [0.2, 0.1, 0.2, math.nan], "annealed": [math.nan]})
    rows = {e.params["schedule"]: e for e in rs.ecdf(t)}
    assert rows["none"].values == (0.1, 0.2) and rows["none"].probabilities == pytest.approx((1 / 3, 1.0))
    assert rows["annealed"].values == ()
    (filled,) = rs.ecdf(t, by=(), fill_diverged=0.0)
    assert filled.values == (0.0, 0.1, 0.2) and filled.probabilities == pytest.approx((0.4, 0.6, 1.0))
