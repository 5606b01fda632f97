"""Restart budgets: P(at least one success in k restarts) and the expected best metric against k, per arm."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from robustness.criterion import Criterion
from robustness.figures._common import arm_axes, arm_colours, arm_label, arm_sort_key, metric_direction, rgba
from robustness.records import FrozenMap
from robustness.stats import expected_best, success_within
from robustness.table import RestartTable

__all__ = ["BudgetData", "budget_data", "plot_budget"]


@dataclasses.dataclass(frozen=True, eq=False)
class BudgetData:
    """Per arm (pooled over every non-noise axis), curves over the budgets ``k``. Arrays have shape ``(A, K)``.

    Attributes:
        arms: the ``A`` arms, baseline first.
        labels: the arms as text.
        k: the ``K`` budgets.
        n, successes: ``(A,)`` restarts and successes per arm.
        p, low, high: P(>= 1 success in k) and its interval (the rate's Wilson
            interval carried through ``1 - (1 - q)^k``, which is monotone in q).
        metric, direction: what the expected best summarizes.
        best: the expected best final metric over k restarts (Dodge et al. 2019),
            diverged restarts left out; NaN for an arm without finite values.
        criterion: the success criterion as text.
    """

    arms: tuple[FrozenMap, ...]
    labels: tuple[str, ...]
    k: np.ndarray
    n: np.ndarray
    successes: np.ndarray
    p: np.ndarray
    low: np.ndarray
    high: np.ndarray
    metric: str
    direction: str
    best: np.ndarray
    criterion: str


def default_budgets(max_k: int) -> np.ndarray:
    """1..max_k: every k up to 10, then about 20 points per decade (what a log-x plot can show)."""
    small = np.arange(1, min(max_k, 10) + 1)
    if max_k <= 10:
        return small
    large = np.unique(np.round(np.logspace(1, np.log10(max_k), 20 * max(1, int(np.ceil(np.log10(max_k))))))).astype(int)
    return np.unique(np.concatenate([small, large[large <= max_k]]))


def budget_data(
    table: RestartTable,
    *,
    k: Sequence[int] | None = None,
    criterion: Criterion | None = None,
    metric: str | None = None,
) -> BudgetData:
    """:func:`robustness.stats.success_within` and :func:`robustness.stats.expected_best` for every arm.

    Default budgets: 1 up to the largest arm's restart count, capped at 1000.
    """
    axes = arm_axes(table)
    metric = metric or (criterion.metric if criterion else table.primary_metric)
    direction = metric_direction(metric, criterion)
    if k is None:
        largest = max((c.n for c in success_within(table, [1], by=axes, criterion=criterion)), default=1)
        k = default_budgets(min(1000, max(largest, 1))).tolist()
    ks = np.asarray(k, dtype=np.int64)
    curves = success_within(table, ks.tolist(), by=axes, criterion=criterion)
    best = expected_best(table, ks.tolist(), by=axes, metric=metric, direction=direction, criterion=criterion)
    curves = sorted(curves, key=lambda c: arm_sort_key(c.params))
    by_arm = {b.params: b for b in best}
    arms = tuple(c.params for c in curves)
    return BudgetData(
        arms=arms,
        labels=tuple(arm_label(a) for a in arms),
        k=ks,
        n=np.array([c.n for c in curves], dtype=np.int64),
        successes=np.array([c.successes for c in curves], dtype=np.int64),
        p=np.array([c.p for c in curves], dtype=np.float64).reshape(len(arms), ks.size),
        low=np.array([c.low for c in curves], dtype=np.float64).reshape(len(arms), ks.size),
        high=np.array([c.high for c in curves], dtype=np.float64).reshape(len(arms), ks.size),
        metric=metric,
        direction=direction,
        best=np.array([by_arm[a].expected for a in arms], dtype=np.float64).reshape(len(arms), ks.size),
        criterion=str(criterion) if criterion else "stored success flag",
    )


def plot_budget(data: BudgetData) -> go.Figure:
    """Left: P(>= 1 success in k) with its interval band; right: expected best metric. k on a log axis."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        f"P(at least one success in k restarts)<br><sub>{data.criterion}</sub>",
        f"Expected best {data.metric} over k restarts<br><sub>diverged restarts left out</sub>"))
    for i, (label, colour) in enumerate(zip(data.labels, arm_colours(data.arms))):
        name = f"{label} ({data.successes[i]}/{data.n[i]})"
        fig.add_trace(go.Scatter(x=data.k, y=data.high[i], mode="lines", line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=label), row=1, col=1)
        fig.add_trace(go.Scatter(x=data.k, y=data.low[i], mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=rgba(colour, 0.2), hoverinfo="skip", showlegend=False, legendgroup=label),
                      row=1, col=1)
        fig.add_trace(go.Scatter(
            x=data.k, y=data.p[i], mode="lines", line={"color": colour, "width": 2}, name=name, legendgroup=label,
            customdata=np.stack([data.low[i], data.high[i]], axis=1),
            hovertemplate=f"{label}<br>k=%{{x}}<br>P=%{{y:.3f}} [%{{customdata[0]:.3f}}, %{{customdata[1]:.3f}}]<extra></extra>",
        ), row=1, col=1)
        fig.add_trace(go.Scatter(x=data.k, y=data.best[i], mode="lines", line={"color": colour, "width": 2},
                                 name=name, legendgroup=label, showlegend=False,
                                 hovertemplate=f"{label}<br>k=%{{x}}<br>expected best %{{y:.4g}}<extra></extra>"),
                      row=1, col=2)
    fig.update_xaxes(type="log", title_text="restarts k")
    fig.update_yaxes(title_text="P(≥ 1 success)", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text=f"expected best {data.metric}", row=1, col=2)
    fig.update_layout(height=460, legend={"title": {"text": "arm (successes/restarts)"}}, margin={"t": 120},
                      title={"text": "Restart budget per arm, pooled over the other axes", "y": 0.97, "yanchor": "top"})
    return fig
