"""Importance of each grid axis for success, beside each axis's success rate per value.

The numbers are :func:`robustness.stats.success_importance` (fANOVA main
effects of the per-cell success rate) and
:func:`robustness.stats.marginal_success` (pooled rates with intervals).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from robustness.criterion import Criterion
from robustness.figures._common import (
    FigureError,
    arm_colour_map,
    arm_label,
    arm_sort_key,
    fmt,
    subplot_grid,
    value_sort_key,
)
from robustness.records import FrozenMap
from robustness.stats import NOISE_AXIS, MarginalSuccess, SuccessImportance, marginal_success, success_importance
from robustness.table import RestartTable

__all__ = ["ImportanceData", "MarginalPanel", "importance_data", "plot_importance"]

_PANELS_PER_ROW = 3
_AXIS_COLOUR = "#636EFA"  # plotly's first colour: the palette left it for what is not an arm
_INTERACTIONS_COLOUR = "#B2BEC3"


@dataclasses.dataclass(frozen=True, eq=False)
class MarginalPanel:
    """One axis's success rate per value, pooled over the other axes. Arrays have shape ``(V,)``.

    Attributes:
        axis: the axis (``"noise"`` for the noise axes together).
        importance: its fANOVA main-effect share.
        values: its values, sorted (noise: arms as :class:`FrozenMap`, baseline first).
        labels: the values as text (arm labels for the noise axis).
        arms: ``values`` again when they are arms (for their colours), else ``()``.
        n, successes: int64 restarts and successes per value.
        rate, ci_low, ci_high: float64 rate and its interval.
    """

    axis: str
    importance: float
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    arms: tuple[FrozenMap, ...]
    n: np.ndarray
    successes: np.ndarray
    rate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class ImportanceData:
    """Importances (most important first) and one marginal panel per axis in that order.

    Attributes:
        axes: the axes with more than one value, most important first.
        importance: ``(A,)`` main-effect shares, in ``axes`` order.
        interactions: the share no axis explains alone.
        result: the full :class:`robustness.stats.SuccessImportance`.
        marginals: one per axis, in ``axes`` order.
        criterion: the success criterion as text.
        confidence: of the marginal intervals (Wilson 1927).
        method_note: one paragraph saying what was computed and how, for a page.
    """

    axes: tuple[str, ...]
    importance: np.ndarray
    interactions: float
    result: SuccessImportance
    marginals: tuple[MarginalPanel, ...]
    criterion: str
    confidence: float
    method_note: str


def importance_data(
    table: RestartTable,
    *,
    criterion: Criterion | None = None,
    axes: Sequence[str] | None = None,
    confidence: float = 0.95,
    seed: int = 0,
) -> ImportanceData:
    """Which axes move the success rate most, and each axis's success rate per value.

    ``axes`` as in :func:`robustness.stats.importance_axes` (default every
    axis, the noise axes together as ``"noise"``). ``seed`` is the fallback
    forest's, used only when the grid is incomplete.

    Raises:
        FigureError: an axis the table does not have.
    """
    try:
        result = success_importance(table, axes=axes, criterion=criterion, seed=seed)
        margins = {m.axis: m for m in marginal_success(table, axes=axes, criterion=criterion, confidence=confidence)}
    except ValueError as e:
        raise FigureError(str(e)) from None
    panels = tuple(_panel(margins[a.axis], a.importance) for a in result.axes)
    return ImportanceData(
        axes=tuple(a.axis for a in result.axes),
        importance=np.array([a.importance for a in result.axes], dtype=np.float64),
        interactions=result.interactions,
        result=result,
        marginals=panels,
        criterion=str(criterion) if criterion else "stored success",
        confidence=confidence,
        method_note=_note(result, confidence),
    )


def _panel(margin: MarginalSuccess, importance: float) -> MarginalPanel:
    is_arm = margin.axis == NOISE_AXIS and margin.axes != (NOISE_AXIS,)
    key = (lambda i: arm_sort_key(margin.values[i])) if is_arm else (lambda i: value_sort_key(margin.values[i]))
    order = sorted(range(len(margin.values)), key=key)
    values = tuple(margin.values[i] for i in order)

    def pick(seq: Sequence[Any], dtype: type) -> np.ndarray:
        return np.array([seq[i] for i in order], dtype=dtype)

    return MarginalPanel(
        axis=margin.axis,
        importance=importance,
        values=values,
        labels=tuple(arm_label(v) if is_arm else fmt(v) for v in values),
        arms=values if is_arm else (),
        n=pick(margin.n, np.int64),
        successes=pick(margin.successes, np.int64),
        rate=pick(margin.rate, np.float64),
        ci_low=pick(margin.ci_low, np.float64),
        ci_high=pick(margin.ci_high, np.float64),
    )


def _note(result: SuccessImportance, confidence: float) -> str:
    how = ("computed exactly on the complete grid" if result.method == "exact"
           else "estimated by Optuna's fANOVA random forest (seeded), because not every combination of values has restarts")
    parts = [
        f"fANOVA (Hutter, Hoos & Leyton-Brown 2014): the share of the variance of the success rate across "
        f"{result.cells:,} cells that each axis explains on its own, {how}; every cell weighs the same.",
    ]
    if result.variance > 0:
        parts.append(f"{result.interactions:.0%} is left to interactions between axes.")
        if math.isfinite(result.sampling_share):
            # Pure noise of variance s² per cell gives an axis with L values an expected (L-1)/(C-1) of the total.
            parts.append(f"Binomial sampling of the restarts alone would produce about {min(result.sampling_share, 9.99):.0%} "
                         "of that variance; by chance an axis with L values takes (L-1)/(cells-1) of that part, "
                         "and the rest lands in interactions.")
    else:
        parts.append("The success rate is the same in every cell, so no axis explains anything.")
    if result.constant:
        parts.append(f"Left out (one value only): {', '.join(result.constant)}.")
    parts.append(f"Beside it: the success rate per value of each axis, pooled over the other axes, "
                 f"with Wilson {confidence:.0%} intervals.")
    return " ".join(parts)


def plot_importance(data: ImportanceData) -> go.Figure:
    """A bar per axis (and one for interactions), then one panel per axis of success rate per value (y 0-1 in all)."""
    nrows, cols = subplot_grid(1 + len(data.marginals), _PANELS_PER_ROW)
    titles = ["importance (fANOVA main effect)", *(f"{p.axis} (importance {p.importance:.0%})" for p in data.marginals)]
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.08,
                        vertical_spacing=min(0.25, 0.55 / nrows))
    names = [*data.axes, "interactions"]
    shares = [*data.importance.tolist(), data.interactions]
    fig.add_trace(go.Bar(
        x=shares[::-1], y=names[::-1], orientation="h", name="importance",  # the most important on top
        marker={"color": ([_INTERACTIONS_COLOUR] + [_AXIS_COLOUR] * len(data.axes))},
        text=[f"{s:.0%}" for s in shares[::-1]], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.1%} of the variance across cells<extra></extra>",
    ), row=1, col=1)
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title_text="share of variance", row=1, col=1)
    colours = arm_colour_map(a for p in data.marginals for a in p.arms)
    pct = f"{data.confidence:.0%}"
    for i, panel in enumerate(data.marginals, start=1):
        at = {"row": i // cols + 1, "col": i % cols + 1}
        hover = [f"{panel.axis} = {label}<br>success {k}/{n} = {r:.1%}<br>{pct} CI [{lo:.1%}, {hi:.1%}]"
                 for label, k, n, r, lo, hi in zip(panel.labels, panel.successes.tolist(), panel.n.tolist(),
                                                   panel.rate.tolist(), panel.ci_low.tolist(), panel.ci_high.tolist())]
        fig.add_trace(go.Bar(
            x=[label.replace(" ", "<br>") for label in panel.labels], y=panel.rate, name=panel.axis,
            marker={"color": [colours[a] for a in panel.arms] if panel.arms else _AXIS_COLOUR},
            error_y={"type": "data", "symmetric": False, "array": panel.ci_high - panel.rate,
                     "arrayminus": panel.rate - panel.ci_low, "color": "#2D3436"},
            hovertext=hover, hovertemplate="%{hovertext}<extra></extra>",
        ), **at)
        fig.update_xaxes(type="category", title_text=panel.axis, **at)
        fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title_text="success rate", **at)
    fig.update_layout(
        title={"text": f"Which axes move the success rate ({data.criterion})"},
        height=max(380, 320 * nrows),
        showlegend=False,
        margin={"t": 90},
    )
    return fig
