"""Figures: the numbers behind each plot, on tables small enough to check by hand.

The grid used throughout: learning rates 0.01 and 0.1, the baseline and
annealed noise (eta 0.3, gamma 0.55), init "simple", clip 10. Restart k of
every cell has seed k, so the arms pair on seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest

from robustness.criterion import Criterion
from robustness.figures import (
    arm_label,
    curve_arrays,
    curve_band_data,
    default_thresholds,
    ecdf_data,
    forest_data,
    heatmap_data,
    importance_data,
    metric_direction,
    paper_tables_data,
    plot_curve_bands,
    plot_ecdf,
    plot_forest,
    plot_heatmap,
    plot_importance,
    plot_restart_curves,
    plot_schedules,
    restart_curves_by_cell,
    restart_curves_data,
    schedule_data,
    update_grid,
)
from robustness.records import CurvePoint, RestartOutcome
from robustness.stats import binomial_interval
from robustness.table import RestartTable

NONE = {"schedule": "none", "eta": None, "gamma": None}
NOISE = {"schedule": "annealed", "eta": 0.3, "gamma": 0.55}


def restart(
    arm: dict[str, Any],
    *,
    lr: float = 0.01,
    init: str = "simple",
    k: int = 0,
    accuracy: float = 0.9,
    success: bool | None = None,
    diverged: bool = False,
    curve: Sequence[float] = (),
) -> RestartOutcome:
    """One restart; success means accuracy >= 0.5 unless given."""
    return RestartOutcome(
        params={"lr": lr, "clip": 10.0, "init": init, **arm},
        restart=k,
        seed=k,
        metrics={"test_accuracy": math.nan if diverged else accuracy},
        primary_metric="test_accuracy",
        success=(not diverged and accuracy >= 0.5) if success is None else success,
        diverged=diverged,
        curve=tuple(CurvePoint(step=10 * (i + 1), train_loss=1.0, metric=m) for i, m in enumerate(curve)),
    )


def cell(arm: dict[str, Any], successes: Sequence[bool], **kw: Any) -> list[RestartOutcome]:
    """Restarts 0..n-1 of one cell, succeeding as listed (accuracy 0.9 or 0.1)."""
    return [restart(arm, k=k, accuracy=0.9 if s else 0.1, **kw) for k, s in enumerate(successes)]


@pytest.fixture
def grid() -> RestartTable:
    """2 x 2 grid: (lr 0.01: none 1/4, noise 3/4), (lr 0.1: none 0/2 with one diverged, noise 2/2)."""
    rows = (
        cell(NONE, [True, False, False, False], lr=0.01)
        + cell(NOISE, [True, True, True, False], lr=0.01)
        + [restart(NONE, lr=0.1, k=0, accuracy=0.1), restart(NONE, lr=0.1, k=1, diverged=True)]
        + cell(NOISE, [True, True], lr=0.1)
    )
    return RestartTable.from_outcomes(rows)


# -- labels ---------------------------------------------------------------------------------


def test_labels_and_directions() -> None:
    assert arm_label(NONE) == "none"
    assert arm_label(NOISE) == "annealed η=0.3 γ=0.55"
    assert arm_label({"schedule": "constant", "eta": 0.001, "gamma": None}) == "constant η=0.001"
    assert metric_direction("test_error") == metric_direction("test_loss") == "minimize"
    assert metric_direction("test_accuracy") == "maximize"
    assert metric_direction("test_accuracy", Criterion("test_accuracy", "<", 0.5)) == "minimize"


# -- heatmap --------------------------------------------------------------------------------


def test_heatmap_counts_each_cell(grid: RestartTable) -> None:
    data = heatmap_data(grid)
    assert data.row_axis == "lr" and data.rows == (0.01, 0.1)
    assert data.arm_labels == ("none", "annealed η=0.3 γ=0.55")
    np.testing.assert_array_equal(data.eta, [0.0, 0.3])
    [panel] = data.panels
    assert dict(panel.setting) == {"clip": 10.0, "init": "simple"}
    np.testing.assert_array_equal(panel.successes, [[1, 3], [0, 2]])
    np.testing.assert_array_equal(panel.n, [[4, 4], [2, 2]])  # the diverged restart is a failure, not dropped
    np.testing.assert_allclose(panel.rate, [[0.25, 0.75], [0.0, 1.0]])
    low, high = binomial_interval([[1, 3], [0, 2]], [[4, 4], [2, 2]])
    np.testing.assert_allclose(panel.ci_low, low)
    np.testing.assert_allclose(panel.ci_high, high)
    assert panel.ci_low[1, 0] == 0.0 and panel.ci_high[1, 1] == 1.0


def test_heatmap_panels_missing_cells_and_criterion(grid: RestartTable) -> None:
    rows = [restart(NONE, init="zero", k=0, accuracy=0.7)]
    table = RestartTable.from_outcomes([*_outcomes_of(grid), *rows])
    data = heatmap_data(table, criterion=Criterion("test_accuracy", ">=", 0.8))
    assert [p.label for p in data.panels] == ["clip=10, init=simple", "clip=10, init=zero"]
    zero = data.panels[1]
    np.testing.assert_array_equal(zero.n, [[1, 0], [0, 0]])
    assert zero.successes[0, 0] == 0  # 0.7 fails the re-judged criterion
    assert np.isnan(zero.rate[0, 1]) and np.isnan(zero.rate[1, 1])
    assert data.criterion == "test_accuracy >= 0.8"


def test_plot_heatmap_puts_the_rates_in_the_figure(grid: RestartTable) -> None:
    fig = plot_heatmap(heatmap_data(grid))
    assert isinstance(fig, go.Figure)
    [trace] = fig.data
    assert [list(r) for r in trace.z] == [[0.25, 0.75], [0.0, 1.0]]
    assert list(trace.y) == ["0.01", "0.1"]
    assert "3/4" in trace.hovertext[0][1] and "CI" in trace.hovertext[0][1]


# -- forest ---------------------------------------------------------------------------------


def test_forest_risk_differences_and_adjusted_p(grid: RestartTable) -> None:
    data = forest_data(grid)
    assert len(data.labels) == 2
    assert data.labels[0] == "clip=10, init=simple, lr=0.01 · annealed η=0.3 γ=0.55"
    # lr 0.01, paired on seeds 0..3: both succeed on seed 0, noise only on 1 and 2 (b=2, c=0).
    assert data.risk_difference[0] == pytest.approx(0.75 - 0.25)
    assert data.p_value[0] == pytest.approx(2 * 0.5**2)  # exact McNemar: two-sided binomial on b + c = 2
    # lr 0.1: noise only on both seeds (b=2, c=0): rd = 1 - 0, p = 0.5.
    assert data.risk_difference[1] == pytest.approx(1.0)
    assert data.p_value[1] == pytest.approx(0.5)
    # Holm over two: the smaller p doubled, then monotone.
    np.testing.assert_allclose(data.p_adjusted, [1.0, 1.0])
    assert data.tests == ("mcnemar-exact", "mcnemar-exact")
    assert np.all(data.low <= data.risk_difference) and np.all(data.risk_difference <= data.high)
    np.testing.assert_array_equal(data.noise_successes, [3, 2])
    np.testing.assert_array_equal(data.baseline_n, [4, 2])
    assert [dict(a) for a in data.arms] == [NOISE, NOISE]


def test_plot_forest_error_bars_are_the_intervals(grid: RestartTable) -> None:
    data = forest_data(grid)
    [trace] = plot_forest(data).data
    np.testing.assert_allclose(trace.x, data.risk_difference)
    np.testing.assert_allclose(trace.error_x.array, data.high - data.risk_difference)
    np.testing.assert_allclose(trace.error_x.arrayminus, data.risk_difference - data.low)
    assert all("p_adj=" in y for y in trace.y)


def test_forest_lists_noise_arms_without_a_baseline() -> None:
    table = RestartTable.from_outcomes(cell(NOISE, [True, False]))
    data = forest_data(table)
    assert data.labels == () and len(data.unmatched) == 1


# -- schedules ------------------------------------------------------------------------------


def test_sigma_is_the_square_root_of_the_variance(grid: RestartTable) -> None:
    data = schedule_data(grid, steps=20)
    assert data.labels == ("none", "annealed η=0.3 γ=0.55")
    np.testing.assert_array_equal(data.t, np.arange(21))
    np.testing.assert_array_equal(data.sigma[0], 0.0)
    t = np.arange(21)
    np.testing.assert_allclose(data.sigma[1], np.sqrt(0.3 / (1 + t) ** 0.55))
    assert data.sigma[1][0] == pytest.approx(math.sqrt(0.3))  # eta is a variance, not a std
    # Pooled over both learning rates: baseline 1/6, noise 5/6.
    np.testing.assert_array_equal(data.successes, [1, 5])
    np.testing.assert_array_equal(data.n, [6, 6])
    np.testing.assert_allclose(data.rate, [1 / 6, 5 / 6])


def test_constant_schedule_and_long_runs() -> None:
    table = RestartTable.from_outcomes(cell({"schedule": "constant", "eta": 0.04, "gamma": None}, [True]))
    data = schedule_data(table, steps=10**6)
    np.testing.assert_allclose(data.sigma, 0.2)
    assert data.t[0] == 0 and data.t[-1] == 10**6 and data.t.size == 501
    np.testing.assert_array_equal(update_grid(3), [0, 1, 2, 3])
    fig = plot_schedules(data)
    assert len(fig.data) == 2  # one σ_t line, one bar trace


# -- learning-curve bands -------------------------------------------------------------------


def test_curve_quartiles_on_known_curves() -> None:
    rows = [restart(NOISE, k=k, curve=(k + 1.0, 2.0 * (k + 1))) for k in range(4)]
    rows.append(restart(NOISE, k=4, curve=(5.0, math.nan)))  # diverged before its second evaluation
    data = curve_band_data(rows, metric="test_accuracy")
    [band] = data.bands
    np.testing.assert_array_equal(band.steps, [10, 20])
    # Step 10: 1..5 -> quartiles 2, 3, 4. Step 20: 2, 4, 6, 8 (NaN left out) -> 3.5, 5, 6.5.
    np.testing.assert_allclose(band.q25, [2.0, 3.5])
    np.testing.assert_allclose(band.median, [3.0, 5.0])
    np.testing.assert_allclose(band.q75, [4.0, 6.5])
    np.testing.assert_array_equal(band.n_finite, [5, 4])
    assert band.n_restarts == 5 and band.label == "annealed η=0.3 γ=0.55"


def test_curves_align_on_the_union_of_steps_and_accept_arrays() -> None:
    rows = [restart(NONE, k=0, curve=(1.0, 2.0, 3.0)), restart(NONE, k=1, curve=(5.0,)), restart(NOISE, k=0)]
    arrays = curve_arrays(rows)
    assert len(arrays) == 1  # a restart without a curve is skipped
    [(steps, values)] = arrays.values()
    np.testing.assert_array_equal(steps, [10, 20, 30])
    np.testing.assert_array_equal(values, [[1.0, 2.0, 3.0], [5.0, np.nan, np.nan]])
    band = curve_band_data(arrays).bands[0]
    np.testing.assert_allclose(band.median, [3.0, 2.0, 3.0])
    np.testing.assert_array_equal(band.n_finite, [2, 1, 1])
    # An arm with no finite value at a step gets NaN there, not an error.
    nan_band = curve_band_data({next(iter(arrays)): (np.array([1]), np.array([[np.nan]]))}).bands[0]
    assert np.isnan(nan_band.median[0]) and nan_band.n_finite[0] == 0


def test_plot_curve_bands_draws_each_arm() -> None:
    rows = [restart(arm, k=k, curve=(0.1 * k, 0.2 * k)) for arm in (NONE, NOISE) for k in range(3)]
    data = curve_band_data(rows)
    assert [b.label for b in data.bands] == ["none", "annealed η=0.3 γ=0.55"]
    fig = plot_curve_bands(data)
    medians = [t for t in fig.data if t.name.endswith("median") and t.name != "baseline median"]
    np.testing.assert_allclose(medians[1].y, data.bands[1].median)


# -- ECDF -----------------------------------------------------------------------------------


def test_ecdf_per_arm_leaves_out_diverged(grid: RestartTable) -> None:
    data = ecdf_data(grid, criterion=Criterion("test_accuracy", ">=", 0.5))
    assert data.metric == "test_accuracy" and data.threshold == 0.5
    base, noise = data.curves
    # Baseline: 0.9, 0.1, 0.1, 0.1 (lr 0.01) and 0.1 (lr 0.1); one diverged restart left out.
    np.testing.assert_allclose(base.values, [0.1, 0.9])
    np.testing.assert_allclose(base.probabilities, [0.8, 1.0])
    assert (base.n, base.n_used) == (6, 5)
    np.testing.assert_allclose(noise.values, [0.1, 0.9])
    np.testing.assert_allclose(noise.probabilities, [1 / 6, 1.0])
    assert (noise.n, noise.n_used) == (6, 6)
    fig = plot_ecdf(data)
    assert "1 diverged left out" in fig.data[0].name
    np.testing.assert_allclose(fig.data[1].y, noise.probabilities)


# -- paper-style tables ---------------------------------------------------------------------


def test_default_thresholds() -> None:
    assert default_thresholds(Criterion("test_error", "<", 0.02)) == (0.01, 0.02)
    assert default_thresholds(Criterion("test_accuracy", ">=", 0.8)) == pytest.approx((0.8, 0.9))
    assert default_thresholds(Criterion("test_loss", ">", 3.0)) == (3.0,)


def test_paper_tables(grid: RestartTable) -> None:
    data = paper_tables_data(grid, criterion=Criterion("test_accuracy", ">=", 0.5), thresholds=[0.5, 0.95])
    assert data.summary_axes == ("clip", "init", "schedule", "eta", "gamma")  # learning rates pooled
    base, noise = data.summary
    assert dict(base.params)["schedule"] == "none"
    assert (base.n, base.n_used, base.best, base.mean) == (6, 5, 0.9, pytest.approx((0.9 + 4 * 0.1) / 5))
    assert (noise.n, noise.best, noise.mean) == (6, 0.9, pytest.approx((5 * 0.9 + 0.1) / 6))
    assert base.mean_low <= base.mean <= base.mean_high
    assert data.criteria == ("test_accuracy >= 0.5", "test_accuracy >= 0.95")
    assert [c.successes for c in data.counts] == [(1, 0), (5, 0)]
    assert [c.n for c in data.counts] == [6, 6]
    again = paper_tables_data(grid, criterion=Criterion("test_accuracy", ">=", 0.5), thresholds=[0.5, 0.95])
    assert again.summary[0].mean_low == base.mean_low  # the bootstrap is seeded


def test_paper_tables_without_a_criterion_count_the_stored_flag(grid: RestartTable) -> None:
    data = paper_tables_data(grid)
    assert data.criteria == ("stored success",)
    assert [c.successes for c in data.counts] == [(1,), (5,)]
    assert data.direction == "maximize"


def _outcomes_of(table: RestartTable) -> list[RestartOutcome]:
    """The table's rows back as outcomes (no curves), to extend a fixture table."""
    return [
        RestartOutcome(
            params={k: v[i] for k, v in table.params.items()},
            restart=int(table.restart[i]),
            seed=int(table.seed[i]),
            metrics={k: float(v[i]) for k, v in table.metrics.items()},
            primary_metric=table.primary_metric,
            success=bool(table.success[i]),
            diverged=bool(table.diverged[i]),
        )
        for i in range(len(table))
    ]


def test_a_schedule_with_its_own_parameter_is_an_arm_in_every_figure() -> None:
    import dataclasses

    from robustness.figures import forest_data, heatmap_data
    from robustness.noise import NoiseSchedule, register_schedule

    @register_schedule("test_figures_linear_decay")
    @dataclasses.dataclass(frozen=True)
    class LinearDecay(NoiseSchedule):
        eta: float
        steps: int

        def variance(self, t: int) -> float:
            return self.eta * max(0.0, 1 - t / self.steps)

    none = {**NONE, "steps": None}
    arms = [{"schedule": "test_figures_linear_decay", "eta": 0.25, "gamma": None, "steps": s} for s in (4, 8)]
    table = RestartTable.from_outcomes(cell(none, [False] * 4) + cell(arms[0], [True] * 3 + [False])
                                       + cell(arms[1], [True] * 4))
    data = schedule_data(table, steps=8)
    assert data.labels == ("none", "test_figures_linear_decay η=0.25 steps=4", "test_figures_linear_decay η=0.25 steps=8")
    np.testing.assert_allclose(data.sigma[1], np.sqrt(0.25 * np.clip(1 - np.arange(9) / 4, 0, None)))
    np.testing.assert_array_equal(data.successes, [0, 3, 4])
    forest = forest_data(table)
    assert len(forest.labels) == 2  # both arms compared with the baseline, none unmatched
    assert len(heatmap_data(table).arm_labels) == 3  # three arms side by side


# -- split by an axis -----------------------------------------------------------------------


def two_inits() -> list[RestartOutcome]:
    """Per arm: init "he" restarts at (0.8, 0.9) and (0.9, 1.0), init "zero" at (0.1, 0.1) and (0.2, 0.3)."""
    curves = {"he": ((0.8, 0.9), (0.9, 1.0)), "zero": ((0.1, 0.1), (0.2, 0.3))}
    return [restart(arm, init=init, k=k, accuracy=c[-1], curve=c)
            for arm in (NONE, NOISE) for init, cs in curves.items() for k, c in enumerate(cs)]


def test_curve_bands_split_by_init_give_one_panel_per_init() -> None:
    rows = two_inits()
    pooled = curve_band_data(rows)
    assert pooled.split is None and len(pooled.bands) == 2
    # Pooled, the band spans both inits: step 20 values 0.1, 0.3, 0.9, 1.0 -> median 0.6, describing neither.
    np.testing.assert_allclose(pooled.bands[0].median, [0.5, 0.6])
    split = curve_band_data(rows, split="init")
    assert split.split == "init" and [dict(p) for p in split.panels] == [{"init": "he"}, {"init": "zero"}]
    assert [(b.panel_label, b.label, b.n_restarts) for b in split.bands] == [
        ("init=he", "none", 2), ("init=he", "annealed η=0.3 γ=0.55", 2),
        ("init=zero", "none", 2), ("init=zero", "annealed η=0.3 γ=0.55", 2)]
    np.testing.assert_allclose(split.bands[0].median, [0.85, 0.95])
    np.testing.assert_allclose(split.bands[2].median, [0.15, 0.2])
    np.testing.assert_allclose(split.bands[2].q75, [0.175, 0.25])


def test_curves_grouped_per_cell_pool_or_split_later() -> None:
    rows = two_inits()
    cells = curve_arrays(rows, by=["clip", "eta", "gamma", "init", "lr", "schedule"])  # what the report and dashboard keep
    assert len(cells) == 4
    pooled = curve_band_data(cells)
    assert pooled.pooled == ("clip", "init", "lr")
    np.testing.assert_allclose(pooled.bands[0].median, curve_band_data(rows).bands[0].median)
    split = curve_band_data(cells, split="init")
    assert split.pooled == ("clip", "lr")
    np.testing.assert_allclose(split.bands[2].median, [0.15, 0.2])
    # The arms' colours agree between panels, and every panel shares one x and one y scale.
    fig = plot_curve_bands(split)
    medians = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.line.color for t in medians[:2]] == [t.line.color for t in medians[2:]]
    assert [t.showlegend for t in medians] == [True, True, False, False]  # one legend entry per arm
    assert {fig.layout[a].matches for a in ("xaxis2",)} == {"x"} and fig.layout.yaxis2.matches == "y"
    assert [a.text for a in fig.layout.annotations] == ["init=he (n=4)", "init=zero (n=4)"]
    assert fig.layout.xaxis.title.text == "step" and fig.layout.yaxis.title.text == "metric"


def test_ecdf_split_by_init(grid: RestartTable) -> None:
    table = RestartTable.from_outcomes(two_inits())
    data = ecdf_data(table, criterion=Criterion("test_accuracy", ">=", 0.5), split="init")
    assert data.split == "init" and data.pooled == ("clip", "lr")
    assert [(c.panel_label, c.label) for c in data.curves] == [
        ("init=he", "none"), ("init=he", "annealed η=0.3 γ=0.55"),
        ("init=zero", "none"), ("init=zero", "annealed η=0.3 γ=0.55")]
    np.testing.assert_allclose(data.curves[2].values, [0.1, 0.3])
    np.testing.assert_allclose(data.curves[2].probabilities, [0.5, 1.0])
    assert (data.curves[2].n, data.curves[2].n_used) == (2, 2)
    fig = plot_ecdf(data)
    assert len(fig.data) == 4 and fig.layout.xaxis2.matches == "x" and list(fig.layout.yaxis2.range) == [0, 1.02]
    assert len([s for s in fig.layout.shapes if s.type == "line"]) == 2  # the threshold in each panel
    assert ecdf_data(grid).pooled == ("clip", "init", "lr")


def test_an_unknown_split_axis_is_a_one_line_error(grid: RestartTable) -> None:
    from robustness.errors import RobustnessError
    from robustness.figures import FigureError

    with pytest.raises(FigureError, match="no axis 'nope' to split by; the axes are clip, eta, gamma, init, lr, schedule"):
        ecdf_data(grid, split="nope")
    arms_only = curve_arrays(two_inits())  # grouped per arm: init is gone
    with pytest.raises(FigureError, match="no axis 'init'"):
        curve_band_data(arms_only, split="init")
    assert issubclass(FigureError, RobustnessError) and issubclass(FigureError, ValueError)


# -- each cell's restarts -------------------------------------------------------------------


def one_cell() -> list[RestartOutcome]:
    """Restarts 0-1 succeed, 2 fails, 3 diverges at update 25 (recorded), 4 turns NaN at step 30 (not recorded)."""
    rows = [
        restart(NOISE, k=0, accuracy=0.9, curve=(0.5, 0.8, 0.9)),
        restart(NOISE, k=1, accuracy=0.7, curve=(0.4, 0.6, 0.7)),
        restart(NOISE, k=2, accuracy=0.2, curve=(0.1, 0.2, 0.2)),
        dataclasses.replace(restart(NOISE, k=3, diverged=True, curve=(0.3, 0.35, math.nan)), diverged_step=25),
        restart(NOISE, k=4, accuracy=0.6, success=True, curve=(0.2, 0.3, math.nan)),
    ]
    return rows[::-1]  # any order in


def test_restart_curves_per_restart_and_band() -> None:
    data = restart_curves_data(one_cell())
    assert data.label == "clip=10, init=simple, lr=0.01 · annealed η=0.3 γ=0.55"
    assert data.metric == "test_accuracy" and data.criterion == "stored success" and data.threshold is None
    assert [c.restart for c in data.restarts] == [0, 1, 2, 3, 4] and [c.seed for c in data.restarts] == [0, 1, 2, 3, 4]
    assert [c.success for c in data.restarts] == [True, True, False, False, False]  # restart 4: its curve diverged
    assert [c.diverged_step for c in data.restarts] == [None, None, None, 25, 30]
    assert data.restarts[1].final == 0.7 and math.isnan(data.restarts[3].final)
    assert (data.n_restarts, data.n_success, data.n_diverged) == (5, 2, 2)
    # Step 10: 0.5, 0.4, 0.1, 0.3, 0.2 -> median 0.3; step 30: 0.9, 0.7, 0.2 (two NaN left out) -> 0.7.
    np.testing.assert_allclose(data.band.median, [0.3, 0.35, 0.7])
    np.testing.assert_array_equal(data.band.n_finite, [5, 5, 3])
    np.testing.assert_array_equal(data.restarts[0].steps, [10, 20, 30])

    judged = restart_curves_data(one_cell(), criterion=Criterion("test_accuracy", ">=", 0.8), max_restarts=2)
    assert [c.success for c in judged.restarts] == [True, False] and judged.n_success == 1
    assert judged.threshold == 0.8 and judged.n_restarts == 5  # the band and counts over all five
    assert judged.band.n_finite[0] == 5

    losses = restart_curves_data(one_cell(), metric="train_loss")
    np.testing.assert_allclose(losses.band.median, [1.0, 1.0, 1.0])


def test_restart_curves_errors() -> None:
    from robustness.figures import FigureError

    with pytest.raises(FigureError, match="one cell"):
        restart_curves_data(one_cell() + [restart(NONE, k=0, curve=(0.1,))])
    with pytest.raises(FigureError, match="not 'test_loss'"):
        restart_curves_data(one_cell(), metric="test_loss")
    with pytest.raises(FigureError, match="no restarts"):
        restart_curves_data([])


def test_plot_restart_curves_marks_failures_and_divergence() -> None:
    data = restart_curves_data(one_cell(), criterion=Criterion("test_accuracy", ">=", 0.5))
    fig = plot_restart_curves(data)
    by_name = {t.name.split(" (")[0]: t for t in fig.data}
    ok, failed, diverged = by_name["succeeded"], by_name["failed"], by_name["diverged"]
    assert list(ok.y) == [0.5, 0.8, 0.9, None, 0.4, 0.6, 0.7, None]  # one trace, restarts split by gaps
    assert [c[:2] for c in ok.customdata if c[0] is not None] == [[0, 0]] * 3 + [[1, 1]] * 3
    assert failed.line.color == "#D63031" and failed.name == "failed (3)"
    assert list(diverged.x) == [25, 30] and list(diverged.y) == [0.35, 0.3]  # at the last finite value
    assert fig.data[-1].name == "median" and list(fig.data[-1].y) == list(data.band.median)
    assert fig.layout.xaxis.title.text == "step" and fig.layout.yaxis.title.text == "test_accuracy"
    assert "2/5 succeed" in fig.layout.title.text

    other = restart_curves_data([restart(NONE, k=k, accuracy=0.1, curve=(0.1, 0.2)) for k in range(2)])
    menu = plot_restart_curves([data, other])
    [dropdown] = menu.layout.updatemenus
    assert [b.label for b in dropdown.buttons] == [f"{data.label} (2/5)", f"{other.label} (0/2)"]
    per = len(menu.data) // 2
    assert dropdown.buttons[1].args[0]["visible"] == [False] * per + [True] * per
    assert [t.visible for t in menu.data] == [True] * per + [False] * per


def test_restart_curves_by_cell_orders_samples_and_caps() -> None:
    # Three cells: lr 0.01 none (2/3 succeed), lr 0.01 noise (3/3), lr 0.1 none (0/3); curves of 2 points.
    rows = (cell(NOISE, [True] * 3, lr=0.01, curve=(0.5, 0.9)) + cell(NONE, [True, True, False], lr=0.01, curve=(0.5, 0.9))
            + cell(NONE, [False] * 3, lr=0.1, curve=(0.1, 0.1)) + [restart(NONE, lr=0.1, k=3, accuracy=0.1)])  # no curve
    every = restart_curves_by_cell(rows)
    assert [d.label for d in every.cells] == ["clip=10, init=simple, lr=0.01 · none", "clip=10, init=simple, lr=0.01 · "
                                             "annealed η=0.3 γ=0.55", "clip=10, init=simple, lr=0.1 · none"]
    assert (every.n_cells, every.per_cell, every.sampled) == (3, None, False)
    assert [d.n_restarts for d in every.cells] == [3, 3, 3]  # the restart without a curve is not drawn
    two = restart_curves_by_cell(rows, max_cells=2, max_restarts=1)
    assert [(d.n_success, d.n_restarts) for d in two.cells] == [(3, 3), (0, 3)]  # the best and the worst cell
    assert two.sampled and two.per_cell == 1 and [len(d.restarts) for d in two.cells] == [1, 1]
    # 3 cells x 2 points: a budget of 12 points leaves 2 restarts per cell.
    assert restart_curves_by_cell(rows, max_points=12).per_cell == 2


# -- importance -----------------------------------------------------------------------------


def test_importance_data_and_marginal_panels() -> None:
    # Success depends on lr alone: lr 0.01 3/4, lr 0.1 1/4, in both inits and both arms.
    rows = [restart(arm, lr=lr, init=init, k=k, accuracy=0.9 if k < (3 if lr == 0.01 else 1) else 0.1)
            for arm in (NONE, NOISE) for lr in (0.01, 0.1) for init in ("he", "zero") for k in range(4)]
    data = importance_data(RestartTable.from_outcomes(rows))
    assert data.axes[0] == "lr" and data.importance[0] == pytest.approx(1.0)
    assert data.importance[1:] == pytest.approx([0.0, 0.0], abs=1e-12) and data.result.constant == ("clip",)
    panels = {p.axis: p for p in data.marginals}
    lr = panels["lr"]
    assert lr.labels == ("0.01", "0.1")
    np.testing.assert_array_equal(lr.successes, [12, 4])
    np.testing.assert_array_equal(lr.n, [16, 16])
    low, high = binomial_interval([12, 4], [16, 16])
    np.testing.assert_allclose(lr.ci_low, low)
    np.testing.assert_allclose(lr.ci_high, high)
    noise = panels["noise"]
    assert noise.labels == ("none", "annealed η=0.3 γ=0.55") and len(noise.arms) == 2  # baseline first
    np.testing.assert_array_equal(noise.successes, [8, 8])
    assert "fANOVA" in data.method_note and "Hutter" in data.method_note and "clip" in data.method_note

    fig = plot_importance(data)
    bars = fig.data[0]
    assert list(bars.y) == ["interactions", "noise", "init", "lr"]  # most important on top
    np.testing.assert_allclose(bars.x[-1], 1.0)
    for trace in fig.data[1:]:
        assert list(fig.layout[trace.yaxis.replace("y", "yaxis")].range) == [0, 1.05]  # one 0-1 scale
    lr_bar = next(t for t in fig.data[1:] if t.name == "lr")
    np.testing.assert_allclose(lr_bar.y, [0.75, 0.25])
    np.testing.assert_allclose(lr_bar.error_y.array, high - [0.75, 0.25])
    noise_bar = next(t for t in fig.data[1:] if t.name == "noise")
    assert list(noise_bar.marker.color) == ["#636E72", "#EF553B"]  # the arms' colours of every figure


def test_importance_data_unknown_axis_is_a_figure_error(grid: RestartTable) -> None:
    from robustness.figures import FigureError

    with pytest.raises(FigureError, match="no axis 'nope'"):
        importance_data(grid, axes=["nope"])
