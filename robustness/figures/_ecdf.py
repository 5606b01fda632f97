"""Empirical CDF of the final metric per arm, with the success threshold marked."""

from __future__ import annotations

import dataclasses

import numpy as np
import plotly.graph_objects as go

from robustness.criterion import Criterion
from robustness.figures._common import arm_axes, arm_colours, arm_label, arm_sort_key
from robustness.records import FrozenMap
from robustness.stats import cell_stats, ecdf, expected_best
from robustness.table import RestartTable

__all__ = ["EcdfCurve", "EcdfData", "ecdf_data", "plot_ecdf"]


@dataclasses.dataclass(frozen=True, eq=False)
class EcdfCurve:
    """One arm: ``P(metric <= values[i]) = probabilities[i]``, both of shape ``(D,)``.

    ``n`` counts the arm's restarts; ``n_used`` those with a finite final
    metric (diverged restarts are left out of the curve, and counted in the label).
    """

    arm: FrozenMap
    label: str
    values: np.ndarray
    probabilities: np.ndarray
    n: int
    n_used: int


@dataclasses.dataclass(frozen=True, eq=False)
class EcdfData:
    """Curves of every arm (baseline first) and the success threshold on this metric, if any."""

    metric: str
    curves: tuple[EcdfCurve, ...]
    threshold: float | None


def ecdf_data(table: RestartTable, *, metric: str | None = None, criterion: Criterion | None = None) -> EcdfData:
    """Per arm (schedule, eta, gamma), the ECDF of the final metric (:func:`robustness.stats.ecdf`).

    ``metric`` defaults to the criterion's metric, else the table's primary
    metric. The threshold is the criterion's when it judges this metric.
    """
    metric = metric or (criterion.metric if criterion else table.primary_metric)
    by = arm_axes(table)
    curves = ecdf(table, by=by, metric=metric)
    # expected_best with k=1 is the cheap public way to learn each arm's count of usable values.
    used = {e.params: e.n_used for e in expected_best(table, [1], by=by, metric=metric, direction="maximize")}
    total = {c.params: c.n for c in cell_stats(table, by=by)}
    out = []
    for c in sorted(curves, key=lambda c: arm_sort_key(c.params)):
        out.append(
            EcdfCurve(
                arm=c.params,
                label=arm_label(c.params),
                values=np.asarray(c.values, dtype=np.float64),
                probabilities=np.asarray(c.probabilities, dtype=np.float64),
                n=total[c.params],
                n_used=used[c.params],
            )
        )
    threshold = criterion.threshold if criterion is not None and criterion.metric == metric else None
    return EcdfData(metric=metric, curves=tuple(out), threshold=threshold)


def plot_ecdf(data: EcdfData) -> go.Figure:
    """A step curve per arm; a dashed line at the success threshold."""
    fig = go.Figure()
    for curve, colour in zip(data.curves, arm_colours([c.arm for c in data.curves])):
        left_out = curve.n - curve.n_used
        note = f", {left_out} diverged left out" if left_out else ""
        fig.add_trace(
            go.Scatter(
                x=curve.values,
                y=curve.probabilities,
                mode="lines",
                line={"shape": "hv", "color": colour, "width": 2},
                name=f"{curve.label} (n={curve.n_used}{note})",
                hovertemplate=f"{curve.label}<br>{data.metric} ≤ %{{x:.4g}}: %{{y:.1%}}<extra></extra>",
            )
        )
    if data.threshold is not None:
        fig.add_vline(x=data.threshold, line_dash="dash", line_color="black", annotation_text="success threshold")
    fig.update_xaxes(title_text=f"final {data.metric}")
    fig.update_yaxes(title_text="fraction of restarts ≤ x", range=[0, 1.02], tickformat=".0%")
    fig.update_layout(title={"text": f"ECDF of final {data.metric} per arm"}, height=420)
    return fig
