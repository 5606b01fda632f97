"""Empirical CDF of the final metric per arm, with the success threshold marked.

Pooled by default over every axis that is not a noise axis; ``split`` (any
grid axis) gives one panel per value of that axis, the arms inside each.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from robustness.criterion import Criterion
from robustness.figures._common import (
    arm_axes,
    arm_colour_map,
    arm_label,
    arm_sort_key,
    check_split,
    label_panels,
    setting_axes,
    setting_label,
    subplot_grid,
    value_sort_key,
)
from robustness.records import FrozenMap
from robustness.stats import cell_stats, ecdf, expected_best
from robustness.table import RestartTable

__all__ = ["EcdfCurve", "EcdfData", "ecdf_data", "plot_ecdf"]

_PANELS_PER_ROW = 3


@dataclasses.dataclass(frozen=True, eq=False)
class EcdfCurve:
    """One arm (in one panel): ``P(metric <= values[i]) = probabilities[i]``, both of shape ``(D,)``.

    ``n`` counts the arm's restarts; ``n_used`` those with a finite final
    metric (diverged restarts are left out of the curve, and counted in the label).
    ``panel`` is the split axis and its value (empty when pooled), ``panel_label`` its text.
    """

    arm: FrozenMap
    label: str
    values: np.ndarray
    probabilities: np.ndarray
    n: int
    n_used: int
    panel: FrozenMap = dataclasses.field(default_factory=FrozenMap)
    panel_label: str = "all"


@dataclasses.dataclass(frozen=True, eq=False)
class EcdfData:
    """Curves of every arm (baseline first, panel by panel) and the success threshold on this metric, if any.

    ``split`` is the axis with one panel per value (``None``: pooled), ``pooled``
    the non-noise axes pooled into each curve, ``panels`` the split's values as
    ``{split: value}`` (``(FrozenMap(),)`` when pooled).
    """

    metric: str
    curves: tuple[EcdfCurve, ...]
    threshold: float | None
    split: str | None = None
    pooled: tuple[str, ...] = ()
    panels: tuple[FrozenMap, ...] = (FrozenMap(),)


def ecdf_data(
    table: RestartTable, *, metric: str | None = None, criterion: Criterion | None = None, split: str | None = None
) -> EcdfData:
    """Per arm (schedule, eta, gamma), the ECDF of the final metric (:func:`robustness.stats.ecdf`).

    ``metric`` defaults to the criterion's metric, else the table's primary
    metric. The threshold is the criterion's when it judges this metric.
    ``split``: one grid axis; one panel per value of it.

    Raises:
        FigureError: ``split`` is not an axis of the table.
    """
    metric = metric or (criterion.metric if criterion else table.primary_metric)
    check_split(split, table.params)
    arms = arm_axes(table)
    by = arms if split is None or split in arms else (*arms, split)
    curves = ecdf(table, by=by, metric=metric)
    # expected_best with k=1 is the cheap public way to learn each group's count of usable values.
    used = {e.params: e.n_used for e in expected_best(table, [1], by=by, metric=metric, direction="maximize")}
    total = {c.params: c.n for c in cell_stats(table, by=by)}

    def panel_of(params: FrozenMap) -> FrozenMap:
        return FrozenMap({split: params[split]}) if split is not None else FrozenMap()

    def arm_of(params: FrozenMap) -> FrozenMap:
        return FrozenMap({a: params[a] for a in arms})

    panels = sorted({panel_of(c.params) for c in curves}, key=lambda p: tuple(value_sort_key(v) for v in p.values()))
    out = []
    for c in sorted(curves, key=lambda c: (panels.index(panel_of(c.params)), arm_sort_key(arm_of(c.params)))):
        out.append(
            EcdfCurve(
                arm=arm_of(c.params),
                label=arm_label(arm_of(c.params)),
                values=np.asarray(c.values, dtype=np.float64),
                probabilities=np.asarray(c.probabilities, dtype=np.float64),
                n=total[c.params],
                n_used=used[c.params],
                panel=panel_of(c.params),
                panel_label=setting_label(panel_of(c.params)),
            )
        )
    threshold = criterion.threshold if criterion is not None and criterion.metric == metric else None
    return EcdfData(metric=metric, curves=tuple(out), threshold=threshold, split=split,
                    pooled=setting_axes(table, exclude=() if split is None else (split,)),
                    panels=tuple(panels) or (FrozenMap(),))


def plot_ecdf(data: EcdfData) -> go.Figure:
    """A step curve per arm, one panel per split value (one x and one y scale); a dashed line at the success threshold."""
    titles = [setting_label(p) for p in data.panels] if data.split is not None else []
    nrows, cols = subplot_grid(len(data.panels), _PANELS_PER_ROW)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles or None, horizontal_spacing=0.05,
                        vertical_spacing=min(0.2, 0.45 / nrows))
    colours = arm_colour_map(c.arm for c in data.curves)
    shown: set[str] = set()
    for curve in data.curves:
        slot = data.panels.index(curve.panel)
        left_out = curve.n - curve.n_used
        note = f", {left_out} diverged left out" if left_out else ""
        where = f"{curve.panel_label} · " if data.split is not None else ""
        fig.add_trace(
            go.Scatter(
                x=curve.values,
                y=curve.probabilities,
                mode="lines",
                line={"shape": "hv", "color": colours[curve.arm], "width": 2},
                # Split: one legend entry per arm, which hides or shows it in every panel.
                name=curve.label if data.split is not None else f"{curve.label} (n={curve.n_used}{note})",
                legendgroup=curve.label,
                showlegend=curve.label not in shown,
                hovertemplate=f"{where}{curve.label} (n={curve.n_used}{note})<br>{data.metric} ≤ %{{x:.4g}}: "
                "%{y:.1%}<extra></extra>",
            ),
            row=slot // cols + 1,
            col=slot % cols + 1,
        )
        shown.add(curve.label)
    if data.threshold is not None:
        fig.add_vline(x=data.threshold, line_dash="dash", line_color="black", row="all", col="all",
                      annotation_text="success threshold")
    label_panels(fig, nrows, cols, x=f"final {data.metric}", y="fraction of restarts ≤ x")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    what = "per arm" if data.split is None else f"by {data.split}, arms inside each panel"
    fig.update_layout(title={"text": f"ECDF of final {data.metric} {what}"}, height=max(420, 320 * nrows))
    return fig
