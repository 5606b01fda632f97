"""Importance of the grid axes for success (fANOVA main effects) and marginal success rates.

Tables are built cell by cell with exact success counts, so every cell's rate,
and with it every variance share, can be worked out by hand.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from robustness.criterion import Criterion
from robustness.records import FrozenMap
from robustness.stats import (
    NOISE_AXIS,
    binomial_interval,
    importance_axes,
    marginal_success,
    success_importance,
)
from robustness.table import RestartTable

ARMS = ({"schedule": "none", "eta": None, "gamma": None}, {"schedule": "annealed", "eta": 0.3, "gamma": 0.55})


def grid_table(axes: dict[str, Sequence[Any]], successes: Callable[[dict[str, Any]], int], restarts: int = 4,
               *, drop: Sequence[dict[str, Any]] = ()) -> RestartTable:
    """Every combination of ``axes`` values (a value may be an arm: a dict of noise axes), ``restarts`` each,
    the first ``successes(cell)`` of them succeeding (accuracy 0.9, else 0.1)."""
    rows: dict[str, list[Any]] = {}
    restart, ok = [], []
    for combo in itertools.product(*axes.values()):
        cell: dict[str, Any] = {}
        for name, value in zip(axes, combo):
            cell |= value if isinstance(value, dict) else {name: value}
        if cell in drop:
            continue
        k = successes(cell)
        for r in range(restarts):
            for name, value in cell.items():
                rows.setdefault(name, []).append(value)
            restart.append(r)
            ok.append(r < k)
    success = np.array(ok, dtype=bool)
    return RestartTable(
        params={k: np.array(v, dtype=object) for k, v in rows.items()},
        restart=np.array(restart, dtype=np.int64),
        seed=np.array(restart, dtype=np.int64),
        metrics={"test_accuracy": np.where(success, 0.9, 0.1)},
        diverged=np.zeros(success.size, dtype=bool),
        success=success,
        primary_metric="test_accuracy",
    )


def test_an_axis_that_alone_sets_the_rate_gets_all_the_variance() -> None:
    # lr 0.01: 3 of 4 succeed, lr 0.1: 1 of 4, whatever the init and the noise.
    table = grid_table({"lr": [0.01, 0.1], "init": ["he", "zero", "simple"], "noise": ARMS},
                       lambda c: 3 if c["lr"] == 0.01 else 1)
    result = success_importance(table)
    assert [a.axis for a in result.axes][0] == "lr"
    assert result.importance("lr") == pytest.approx(1.0)
    assert result.importance("init") == pytest.approx(0.0, abs=1e-12)
    assert result.importance(NOISE_AXIS) == pytest.approx(0.0, abs=1e-12)
    assert result.interactions == pytest.approx(0.0, abs=1e-12)
    assert result.variance == pytest.approx(0.25**2)  # rates 0.75 and 0.25 in equal numbers: variance 0.25²
    assert (result.method, result.complete, result.cells) == ("exact", True, 12)
    noise = next(a for a in result.axes if a.axis == NOISE_AXIS)
    assert noise.axes == ("schedule", "eta", "gamma") and noise.levels == 2


def test_additive_and_pure_interaction_grids_by_hand() -> None:
    # Rates [[1, .5], [.5, 0]] over (a, b): f = 1 - a/2 - b/2, additive. Var f = 1/8, each main effect 1/16.
    additive = grid_table({"a": [0, 1], "b": [0, 1]}, lambda c: 4 - 2 * c["a"] - 2 * c["b"])
    result = success_importance(additive)
    assert result.importance("a") == pytest.approx(0.5) and result.importance("b") == pytest.approx(0.5)
    assert result.interactions == pytest.approx(0.0, abs=1e-12) and result.variance == pytest.approx(1 / 8)
    # XOR: rate 1 where a == b, else 0. Every marginal mean is 1/2: all of it is interaction.
    xor = grid_table({"a": [0, 1], "b": [0, 1]}, lambda c: 4 * (c["a"] == c["b"]))
    result = success_importance(xor)
    assert result.importance("a") == pytest.approx(0.0) and result.importance("b") == pytest.approx(0.0)
    assert result.interactions == pytest.approx(1.0)
    # a 3-level axis: rates 0, 1/4, 1 -> marginal variance = variance of (0, .25, 1); b does nothing
    three = grid_table({"a": [0, 1, 2], "b": ["x", "y"]}, lambda c: (0, 1, 4)[c["a"]])
    result = success_importance(three)
    assert result.importance("a") == pytest.approx(1.0) and result.variance == pytest.approx(np.var([0, 0.25, 1]))


def test_sampling_share_by_hand() -> None:
    # rates 1/4 and 3/4 in 4 restarts each: binomial variance estimate p(1-p)/(n-1) = (3/16)/3 = 1/16 in both;
    # the variance across the two cells is 1/16 too, so sampling alone could make all of it.
    table = grid_table({"a": [0, 1]}, lambda c: 1 + 2 * c["a"])
    result = success_importance(table)
    assert result.sampling_share == pytest.approx(1.0)
    assert result.importance("a") == pytest.approx(1.0)  # one axis: it is the whole decomposition


def test_constant_axes_are_left_out_and_a_flat_rate_explains_nothing() -> None:
    table = grid_table({"lr": [0.1], "init": ["he", "zero"], "noise": ARMS}, lambda c: 2)
    result = success_importance(table)
    assert result.constant == ("lr",)
    assert [a.importance for a in result.axes] == [0.0, 0.0] and result.interactions == 0.0
    assert result.importance("lr") == 0.0 and result.variance == 0.0 and math.isnan(result.sampling_share)
    with pytest.raises(KeyError):
        result.importance("clip")


def test_criterion_and_explicit_axes() -> None:
    table = grid_table({"lr": [0.01, 0.1], "init": ["he", "zero"]}, lambda c: 4 if c["init"] == "he" else 0)
    assert success_importance(table).importance("init") == pytest.approx(1.0)
    # Nothing reaches 0.95: every rate is 0 under this criterion.
    strict = success_importance(table, criterion=Criterion("test_accuracy", ">=", 0.95))
    assert strict.variance == 0.0
    # Only lr asked for: init is averaged inside each lr value, and lr does nothing.
    assert success_importance(table, axes=["lr"]).importance("lr") == 0.0
    assert importance_axes(table) == {"init": ("init",), "lr": ("lr",)}
    with pytest.raises(ValueError, match="no axis 'clip'"):
        success_importance(table, axes=["clip"])


def test_exact_agrees_with_optunas_fanova_on_a_complete_grid() -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.importance import FanovaImportanceEvaluator

    # 3 x 3 x 4 cells, 20 restarts: lr matters most, init some, clip a little.
    axes = {"lr": [0, 1, 2], "init": [0, 1, 2], "clip": [0, 1, 2, 3]}
    table = grid_table(axes, lambda c: 2 + 8 * c["lr"] + 3 * (c["init"] == 1) + c["clip"], restarts=20)
    ours = success_importance(table)
    assert [a.axis for a in ours.axes] == ["lr", "init", "clip"]
    distributions = {a: CategoricalDistribution(v) for a, v in axes.items()}
    trials = []
    for combo in itertools.product(*axes.values()):
        cell = dict(zip(axes, combo))
        rate = (2 + 8 * cell["lr"] + 3 * (cell["init"] == 1) + cell["clip"]) / 20
        trials.append(optuna.trial.create_trial(params=cell, distributions=distributions, value=rate))
    study = optuna.create_study()
    study.add_trials(trials)
    theirs = FanovaImportanceEvaluator(seed=0).evaluate(study)
    assert list(theirs) == ["lr", "init", "clip"]  # the same ranking
    for axis in axes:
        assert ours.importance(axis) == pytest.approx(theirs[axis], abs=0.03), (axis, ours.importance(axis), theirs[axis])


def test_an_incomplete_grid_uses_the_seeded_forest() -> None:
    drop = [{"lr": 0.1, "init": "zero"}]  # a sweep still running: one cell has no restarts yet
    table = grid_table({"lr": [0.01, 0.1, 1.0], "init": ["he", "zero", "simple"]},
                       lambda c: 4 if c["lr"] == 0.01 else 0, drop=drop)
    first = success_importance(table, seed=3)
    assert (first.method, first.complete, first.cells) == ("forest", False, 8)
    assert first.axes[0].axis == "lr" and first.importance("lr") > 0.8
    again = success_importance(table, seed=3)
    assert [a.importance for a in again.axes] == [a.importance for a in first.axes]  # seeded: the same answer


def test_marginal_success_counts_by_hand() -> None:
    # lr 0.01: he 4/4, zero 1/4; lr 0.1: he 2/4, zero 0/4; the noise arm adds one success to each cell but the last.
    def k(c: dict[str, Any]) -> int:
        base = {(0.01, "he"): 4, (0.01, "zero"): 1, (0.1, "he"): 2, (0.1, "zero"): 0}[(c["lr"], c["init"])]
        return min(4, base + (c["schedule"] != "none" and base > 0))

    table = grid_table({"lr": [0.01, 0.1], "init": ["he", "zero"], "noise": ARMS}, k)
    margins = {m.axis: m for m in marginal_success(table)}
    assert list(margins) == ["init", "lr", NOISE_AXIS]
    lr = margins["lr"]
    assert lr.values == (0.01, 0.1) and lr.n == (16, 16)
    assert lr.successes == (4 + 1 + 4 + 2, 2 + 0 + 3 + 0)  # (none he, none zero, noise he, noise zero)
    assert lr.rate == pytest.approx((11 / 16, 5 / 16))
    low, high = binomial_interval([11, 5], [16, 16])
    assert lr.ci_low == pytest.approx(tuple(low)) and lr.ci_high == pytest.approx(tuple(high))
    noise = margins[NOISE_AXIS]
    assert noise.axes == ("schedule", "eta", "gamma")
    assert all(isinstance(v, FrozenMap) for v in noise.values)
    assert dict(zip((v["schedule"] for v in noise.values), noise.successes)) == {"none": 7, "annealed": 4 + 2 + 3 + 0}
    assert json.loads(json.dumps(noise.to_dict()))["values"][0]["schedule"] in ("annealed", "none")


def test_results_are_strict_json() -> None:
    table = grid_table({"lr": [0.1], "init": ["he", "zero"]}, lambda c: 2)
    text = json.dumps(success_importance(table).to_dict(), allow_nan=False)
    assert json.loads(text)["sampling_share"] is None  # NaN -> null
