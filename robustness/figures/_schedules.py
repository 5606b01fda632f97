"""Schedule comparison: the noise standard deviation σ_t of each schedule beside its pooled success rate."""

from __future__ import annotations

import dataclasses

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from robustness.criterion import Criterion
from robustness.figures._common import arm_axes, arm_colours, arm_label, arm_sort_key
from robustness.noise import schedule_from_cell
from robustness.records import FrozenMap
from robustness.stats import cell_stats
from robustness.table import RestartTable

__all__ = ["ScheduleData", "plot_schedules", "schedule_data"]

# σ_t is smooth, so a few hundred evaluations draw it exactly enough for any T.
_MAX_POINTS = 501


@dataclasses.dataclass(frozen=True, eq=False)
class ScheduleData:
    """``S`` distinct schedules (arms) of a study.

    Attributes:
        arms: the schedules' grid coordinates (schedule, eta, gamma), baseline first.
        labels: as text.
        t: update indices where σ_t is evaluated, shape ``(P,)``, from 0 to ``steps``.
        sigma: ``sqrt(variance(t))`` per schedule, shape ``(S, P)`` (0 for no noise).
        n, successes: int64 restarts and successes pooled over all cells of
            each schedule, shape ``(S,)``.
        rate, ci_low, ci_high: pooled success rate and its binomial interval, ``(S,)``.
        method, confidence: of the intervals.
    """

    arms: tuple[FrozenMap, ...]
    labels: tuple[str, ...]
    t: np.ndarray
    sigma: np.ndarray
    n: np.ndarray
    successes: np.ndarray
    rate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    method: str
    confidence: float


def _sigma(arm: FrozenMap, t: np.ndarray) -> np.ndarray:
    try:
        schedule = schedule_from_cell(arm)
    except (TypeError, ValueError):
        # A schedule that is not registered in this process (its plugin is not
        # installed here): its curve is left blank rather than drawn wrong.
        return np.full(t.size, np.nan)
    return np.sqrt(np.array([schedule.variance(int(step)) for step in t], dtype=np.float64))


def update_grid(steps: int, max_points: int = _MAX_POINTS) -> np.ndarray:
    """Integer updates 0..steps, every one when few, else ``max_points`` evenly spread; shape ``(P,)``."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if steps + 1 <= max_points:
        return np.arange(steps + 1, dtype=np.int64)
    return np.unique(np.linspace(0, steps, max_points).round().astype(np.int64))


def schedule_data(
    table: RestartTable,
    *,
    steps: int = 1000,
    criterion: Criterion | None = None,
    method: str = "wilson",
    confidence: float = 0.95,
) -> ScheduleData:
    """σ_t of every schedule in the study and its success rate pooled over the other axes.

    ``σ_t = sqrt(variance(t))`` from the schedule rebuilt with
    :func:`robustness.noise.schedule_from_cell` (``eta / (1 + t) ** gamma`` for the
    paper's annealed schedule: the variance, not the standard deviation).
    Rates come from ``cell_stats(table, by=arm_axes(table))``.
    """
    pooled = cell_stats(table, by=arm_axes(table), criterion=criterion, method=method, confidence=confidence)
    pooled = sorted(pooled, key=lambda c: arm_sort_key(c.params))
    t = update_grid(steps)
    sigma = np.zeros((len(pooled), t.size))
    for s, cell in enumerate(pooled):
        sigma[s] = _sigma(cell.params, t)
    return ScheduleData(
        arms=tuple(c.params for c in pooled),
        labels=tuple(arm_label(c.params) for c in pooled),
        t=t,
        sigma=sigma,
        n=np.array([c.n for c in pooled], dtype=np.int64),
        successes=np.array([c.successes for c in pooled], dtype=np.int64),
        rate=np.array([c.rate for c in pooled]),
        ci_low=np.array([c.ci_low for c in pooled]),
        ci_high=np.array([c.ci_high for c in pooled]),
        method=method,
        confidence=confidence,
    )


def plot_schedules(data: ScheduleData) -> go.Figure:
    """Left: σ_t against t per schedule. Right: pooled success rate per schedule with its interval."""
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.6, 0.4],
        subplot_titles=["noise standard deviation σ_t", f"success rate, pooled ({data.confidence:.0%} CI)"],
        horizontal_spacing=0.12,
    )
    colours = arm_colours(data.arms)
    for s, label in enumerate(data.labels):
        fig.add_trace(
            go.Scatter(
                x=data.t,
                y=data.sigma[s],
                mode="lines",
                name=label,
                legendgroup=label,
                line={"color": colours[s], "width": 2},
                hovertemplate=f"{label}<br>t=%{{x}}<br>σ_t=%{{y:.4g}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Bar(
            # One word per line keeps tick labels horizontal; k/n sits under each bar, not on it.
            x=[f"{label.replace(' ', '<br>')}<br><b>{k}/{n}</b>" for label, k, n in zip(data.labels, data.successes, data.n)],
            y=data.rate,
            marker_color=colours,
            error_y={"type": "data", "symmetric": False, "array": data.ci_high - data.rate, "arrayminus": data.rate - data.ci_low},
            hovertext=[
                f"{label}<br>{k}/{n} = {r:.1%}<br>CI [{lo:.1%}, {hi:.1%}]"
                for label, k, n, r, lo, hi in zip(data.labels, data.successes, data.n, data.rate, data.ci_low, data.ci_high)
            ],
            hovertemplate="%{hovertext}<extra></extra>",
            showlegend=False,
            name="success rate",
        ),
        row=1,
        col=2,
    )
    fig.update_xaxes(title_text="update t", row=1, col=1)
    fig.update_yaxes(title_text="σ_t = sqrt(variance(t))", row=1, col=1)
    fig.update_xaxes(type="category", tickangle=0, row=1, col=2)
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%", row=1, col=2)
    fig.update_layout(title={"text": "Noise schedules and their success rates"}, height=460)
    return fig
