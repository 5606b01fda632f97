"""Success-rate heatmap: noise arm (x, η) by learning rate (y), one panel per setting (init, clip)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from robustness.criterion import Criterion
from robustness.figures._common import (
    arm_axes,
    arm_label,
    arm_sort_key,
    fmt,
    setting_axes,
    setting_label,
    value_sort_key,
)
from robustness.records import FrozenMap
from robustness.stats import cell_stats
from robustness.table import RestartTable

__all__ = ["HeatmapData", "HeatmapPanel", "heatmap_data", "plot_heatmap"]

# Above this many cells per panel the "k/n" labels overlap; the hover still has them.
_MAX_LABELLED_CELLS = 120
_PANELS_PER_ROW = 3


@dataclasses.dataclass(frozen=True, eq=False)
class HeatmapPanel:
    """One setting's grid. Arrays have shape ``(R, C)``: rows (learning rates) by arms.

    Attributes:
        setting: the panel's coordinates (e.g. init and clip).
        label: the setting as text, e.g. ``"clip=10, init=zero"``.
        rate: successes / n; NaN where the grid has no such cell.
        successes, n: int64 counts (0 where the cell is missing).
        ci_low, ci_high: the binomial interval of each rate (NaN where missing).
    """

    setting: FrozenMap
    label: str
    rate: np.ndarray
    successes: np.ndarray
    n: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class HeatmapData:
    """Success rate per cell, laid out for a heatmap.

    Attributes:
        row_axis: the y axis (``"lr"``).
        rows: its ``R`` values, ascending.
        arms: the ``C`` noise arms (schedule, eta, gamma), baseline first, then by eta.
        arm_labels: the arms as text (x tick labels).
        eta: eta per arm, 0.0 for the baseline, shape ``(C,)``.
        panels: one per setting, in sorted order.
        method, confidence: of the intervals (Wilson 1927 by default).
        criterion: the success criterion as text.
    """

    row_axis: str
    rows: tuple[Any, ...]
    arms: tuple[FrozenMap, ...]
    arm_labels: tuple[str, ...]
    eta: np.ndarray
    panels: tuple[HeatmapPanel, ...]
    method: str
    confidence: float
    criterion: str


def heatmap_data(
    table: RestartTable,
    *,
    row_axis: str = "lr",
    criterion: Criterion | None = None,
    method: str = "wilson",
    confidence: float = 0.95,
) -> HeatmapData:
    """Successes out of restarts per cell (:func:`robustness.stats.cell_stats`), as ``(R, C)`` grids.

    Every axis other than ``row_axis`` and the noise axes makes a panel; a
    table without ``row_axis`` gets a single row.
    """
    arms_axes = arm_axes(table)
    panel_axes = setting_axes(table, exclude=(row_axis,))
    has_rows = row_axis in table.params
    by = (*panel_axes, *((row_axis,) if has_rows else ()), *arms_axes)
    cells = cell_stats(table, by=by, criterion=criterion, method=method, confidence=confidence)

    def arm_of(params: FrozenMap) -> FrozenMap:
        return FrozenMap({a: params[a] for a in arms_axes})

    arms = sorted({arm_of(c.params) for c in cells}, key=arm_sort_key)
    rows = sorted({c.params[row_axis] if has_rows else None for c in cells}, key=value_sort_key)
    settings = sorted({tuple(c.params[a] for a in panel_axes) for c in cells}, key=lambda k: tuple(map(value_sort_key, k)))
    col = {arm: j for j, arm in enumerate(arms)}
    row = {value: i for i, value in enumerate(rows)}
    shape = (len(settings), len(rows), len(arms))
    k, n = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    rate, low, high = (np.full(shape, np.nan) for _ in range(3))
    panel_of = {key: p for p, key in enumerate(settings)}
    for c in cells:
        at = (
            panel_of[tuple(c.params[a] for a in panel_axes)],
            row[c.params[row_axis] if has_rows else None],
            col[arm_of(c.params)],
        )
        k[at], n[at], rate[at], low[at], high[at] = c.successes, c.n, c.rate, c.ci_low, c.ci_high
    panels = tuple(
        HeatmapPanel(
            setting=FrozenMap(dict(zip(panel_axes, key))),
            label=setting_label(dict(zip(panel_axes, key)), panel_axes),
            rate=rate[p],
            successes=k[p],
            n=n[p],
            ci_low=low[p],
            ci_high=high[p],
        )
        for p, key in enumerate(settings)
    )
    return HeatmapData(
        row_axis=row_axis if has_rows else "all",
        rows=tuple(rows),
        arms=tuple(arms),
        arm_labels=tuple(arm_label(a) for a in arms),
        eta=np.array([0.0 if a.get("eta") is None else float(a["eta"]) for a in arms]),
        panels=panels,
        method=method,
        confidence=confidence,
        criterion=str(criterion) if criterion else "stored success",
    )


def _hover(data: HeatmapData, panel: HeatmapPanel) -> list[list[str]]:
    pct = f"{data.confidence:.0%}"
    out = []
    for i, row in enumerate(data.rows):
        line = []
        for j, label in enumerate(data.arm_labels):
            head = f"{panel.label}<br>{data.row_axis}={fmt(row)}<br>noise: {label}<br>"
            if panel.n[i, j] == 0:
                line.append(head + "no restarts")
                continue
            line.append(
                head
                + f"success {panel.successes[i, j]}/{panel.n[i, j]} = {panel.rate[i, j]:.1%}<br>"
                + f"{pct} CI ({data.method}) [{panel.ci_low[i, j]:.1%}, {panel.ci_high[i, j]:.1%}]"
            )
        out.append(line)
    return out


def plot_heatmap(data: HeatmapData) -> go.Figure:
    """One heatmap per panel on a shared 0-1 colour scale; hover gives k/n and the interval."""
    count = max(len(data.panels), 1)
    cols = min(_PANELS_PER_ROW, count)
    nrows = math.ceil(count / cols)
    fig = make_subplots(
        rows=nrows,
        cols=cols,
        subplot_titles=[p.label for p in data.panels],
        horizontal_spacing=0.08,
        vertical_spacing=min(0.25, 0.5 / nrows),
    )
    y = [fmt(r) for r in data.rows]
    # One word per line keeps the tick labels horizontal and clear of their neighbours.
    x = [label.replace(" ", "<br>") for label in data.arm_labels]
    label_cells = len(data.rows) * len(data.arms) <= _MAX_LABELLED_CELLS
    for p, panel in enumerate(data.panels):
        # Plain lists with None for missing cells: the page then holds exactly these numbers.
        z = [[None if math.isnan(v) else float(v) for v in line] for line in panel.rate.tolist()]
        text = [[f"{k}/{n}" if n else "" for k, n in zip(kl, nl)] for kl, nl in zip(panel.successes.tolist(), panel.n.tolist())]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=x,
                y=y,
                zmin=0.0,
                zmax=1.0,
                colorscale="Viridis",
                showscale=p == 0,
                colorbar={"title": {"text": "success rate"}, "tickformat": ".0%", "x": 1.02},
                text=text,
                texttemplate="%{text}" if label_cells else None,
                hovertext=_hover(data, panel),
                hovertemplate="%{hovertext}<extra></extra>",
                xgap=2,
                ygap=2,
                name=panel.label,
            ),
            row=p // cols + 1,
            col=p % cols + 1,
        )
    fig.update_xaxes(type="category", tickangle=0)
    fig.update_yaxes(type="category")
    for c in range(1, cols + 1):
        fig.update_xaxes(title_text="noise (η)", row=nrows, col=c)
    for r in range(1, nrows + 1):
        fig.update_yaxes(title_text=data.row_axis, row=r, col=1)
    fig.update_layout(
        title={"text": f"Success rate per cell ({data.criterion})"},
        height=max(380, 330 * nrows),
        margin={"t": 90, "r": 90},
    )
    return fig
