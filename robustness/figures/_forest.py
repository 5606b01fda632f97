"""Forest plot: the risk difference (noise minus baseline) of every matched comparison, with intervals."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from robustness.criterion import Criterion
from robustness.figures._common import arm_label, setting_label
from robustness.records import FrozenMap
from robustness.stats import compare_arms
from robustness.table import RestartTable

__all__ = ["ForestData", "forest_data", "plot_forest"]

# Rows whose adjusted p-value is below this are drawn in colour.
SIGNIFICANCE = 0.05


@dataclasses.dataclass(frozen=True, eq=False)
class ForestData:
    """One row per comparison, in :func:`robustness.stats.compare_arms` order. Arrays have shape ``(M,)``.

    Attributes:
        groups: each row's match group (lr, clip, init, ...).
        arms: each row's noise arm (schedule, eta, gamma).
        labels: "group · arm" as text.
        risk_difference, low, high: noise rate minus baseline rate and its
            interval (Newcombe 1998; paired on seeds when possible).
        p_value, p_adjusted: the exact test's p-value (McNemar 1947 when
            paired, else Fisher) and its adjustment across all rows (Holm 1979
            by default).
        noise_successes, noise_n, baseline_successes, baseline_n: int64 counts.
        tests: the test used per row.
        adjust, confidence: adjustment method and interval level.
        unmatched: noise arms with no baseline in their group (not tested).
    """

    groups: tuple[FrozenMap, ...]
    arms: tuple[FrozenMap, ...]
    labels: tuple[str, ...]
    risk_difference: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_value: np.ndarray
    p_adjusted: np.ndarray
    noise_successes: np.ndarray
    noise_n: np.ndarray
    baseline_successes: np.ndarray
    baseline_n: np.ndarray
    tests: tuple[str, ...]
    adjust: str
    confidence: float
    unmatched: tuple[FrozenMap, ...]


def forest_data(
    table: RestartTable,
    *,
    criterion: Criterion | None = None,
    adjust: str = "holm",
    confidence: float = 0.95,
    match: Sequence[str] | None = None,
) -> ForestData:
    """Every noise arm against its matched baseline (:func:`robustness.stats.compare_arms`).

    ``match``: the axes a comparison holds fixed (default every non-noise axis);
    the others are pooled, restarts still paired within their own cell.
    """
    result = compare_arms(table, criterion=criterion, adjust=adjust, confidence=confidence,
                          match=None if match is None else list(match))
    rows = list(result)

    def column(name: str, dtype: type = np.float64) -> np.ndarray:
        return np.array([getattr(c, name) for c in rows], dtype=dtype)

    return ForestData(
        groups=tuple(c.group for c in rows),
        arms=tuple(FrozenMap({a: c.noise[a] for a in c.noise if a not in c.group}) for c in rows),
        labels=tuple(f"{setting_label(c.group)} · {arm_label(c.noise)}" for c in rows),
        risk_difference=column("risk_difference"),
        low=column("rd_low"),
        high=column("rd_high"),
        p_value=column("p_value"),
        p_adjusted=column("p_adjusted"),
        noise_successes=column("noise_successes", np.int64),
        noise_n=column("noise_n", np.int64),
        baseline_successes=column("baseline_successes", np.int64),
        baseline_n=column("baseline_n", np.int64),
        tests=tuple(c.test for c in rows),
        adjust=adjust,
        confidence=confidence,
        unmatched=tuple(result.unmatched),
    )


def plot_forest(data: ForestData) -> go.Figure:
    """Points at the risk difference with interval bars; the adjusted p-value in each row's label."""
    m = len(data.labels)
    labels = [f"{label}  (p_adj={p:.2g})" for label, p in zip(data.labels, data.p_adjusted)]
    significant = data.p_adjusted < SIGNIFICANCE
    hover = [
        f"{data.labels[i]}<br>noise {data.noise_successes[i]}/{data.noise_n[i]}"
        f" vs baseline {data.baseline_successes[i]}/{data.baseline_n[i]}<br>"
        f"risk difference {data.risk_difference[i]:+.1%} [{data.low[i]:+.1%}, {data.high[i]:+.1%}]<br>"
        f"{data.tests[i]} p={data.p_value[i]:.3g}, {data.adjust} p_adj={data.p_adjusted[i]:.3g}"
        for i in range(m)
    ]
    fig = go.Figure(
        go.Scatter(
            x=data.risk_difference,
            y=labels,
            mode="markers",
            marker={"size": 9, "color": np.where(significant, "#EF553B", "#636E72").tolist(), "symbol": "square"},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": data.high - data.risk_difference,
                "arrayminus": data.risk_difference - data.low,
                "thickness": 1.5,
                "color": "#444",  # the default (marker colour) cannot be a per-point array
            },
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
            name="risk difference",
        )
    )
    fig.add_vline(x=0.0, line_dash="dash", line_color="black")
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    fig.update_xaxes(
        title_text=f"success rate, noise minus baseline ({data.confidence:.0%} CI)", tickformat="+.0%", zeroline=False
    )
    fig.update_layout(
        title={"text": f"Noise vs baseline: risk difference (red: {data.adjust}-adjusted p < {SIGNIFICANCE})"},
        height=max(300, 140 + 26 * m),
        showlegend=False,
    )
    return fig
