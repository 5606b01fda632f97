"""One cell's restarts, curve by curve, over the cell's median and quartile band: the drill-down.

A success rate says how many restarts of a cell failed; this figure says how:
whether the failures never left chance, stalled late, or diverged (and at
which step), and which seeds they were.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from robustness.criterion import Criterion
from robustness.figures._common import (
    BASELINE_COLOUR,
    FigureError,
    arm_label,
    arm_of,
    arm_sort_key,
    setting_label,
    value_sort_key,
)
from robustness.figures._curves import CurveBand, _band, _stack
from robustness.records import FrozenMap, RestartOutcome

__all__ = ["CellRestartCurves", "RestartCurve", "RestartCurvesData", "plot_restart_curves", "restart_curves_by_cell",
           "restart_curves_data"]

FAILED_COLOUR = "#D63031"
SUCCEEDED_COLOUR = "rgba(99,110,114,0.55)"  # the baseline grey, faded: many of them overlap
# The curves record the task's evaluation metric (CurvePoint.metric) and the training loss.
TRAIN_LOSS = "train_loss"


@dataclasses.dataclass(frozen=True, eq=False)
class RestartCurve:
    """One restart. ``steps`` and ``values`` have shape ``(P,)`` (``P = 0`` without a curve).

    Attributes:
        restart, seed: its index in the cell and its seed.
        success: under the criterion (the stored flag without one); diverged restarts fail.
        diverged: it diverged (recorded, or its curve turned non-finite).
        diverged_step: the recorded update of divergence, else the first
            evaluation step with a non-finite value; ``None`` if it did not diverge.
        final: the final value of the figure's metric (NaN where absent or non-finite).
        metrics: every final metric of the restart.
    """

    restart: int
    seed: int
    success: bool
    diverged: bool
    diverged_step: int | None
    final: float
    metrics: FrozenMap
    steps: np.ndarray
    values: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class RestartCurvesData:
    """One cell's restarts and the band over all of them.

    Attributes:
        cell: the cell's grid coordinates; ``label`` as text (setting · arm).
        metric: the curve metric (the task's evaluation metric, or ``train_loss``).
        criterion: the success criterion as text; ``threshold`` its threshold
            when it judges ``metric`` (else ``None``).
        restarts: the restarts drawn, by restart index (the first ``max_restarts``).
        band: median and quartiles per step over every restart with a curve.
        n_restarts, n_success, n_diverged: over all of the cell's restarts.
    """

    cell: FrozenMap
    label: str
    metric: str
    criterion: str
    threshold: float | None
    restarts: tuple[RestartCurve, ...]
    band: CurveBand
    n_restarts: int
    n_success: int
    n_diverged: int


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def restart_curves_data(
    outcomes: Iterable[RestartOutcome],
    *,
    metric: str | None = None,
    criterion: Criterion | None = None,
    max_restarts: int | None = None,
) -> RestartCurvesData:
    """Per restart of one cell: seed, success, divergence, final metrics and its curve; plus the cell's band.

    Args:
        outcomes: the restarts of one cell (same grid coordinates).
        metric: the outcomes' primary metric (the default; its curve is
            ``CurvePoint.metric``) or ``"train_loss"`` (``CurvePoint.train_loss``).
        criterion: re-judge success (a restart without the criterion's metric
            keeps its stored flag); diverged restarts fail either way.
        max_restarts: draw only the first this many restarts (by index); the
            band and the counts still cover all of them.

    Raises:
        FigureError: no outcomes, outcomes of several cells, or a metric the curves do not record.
    """
    rows = sorted(outcomes, key=lambda o: o.restart)
    if not rows:
        raise FigureError("no restarts to draw")
    cells = {FrozenMap({k: _clean(v) for k, v in o.params.items()}) for o in rows}
    if len(cells) > 1:
        raise FigureError(f"restart curves take one cell's restarts; these come from {len(cells)} cells")
    [cell] = cells
    primary = rows[0].primary_metric
    metric = metric or primary
    if metric not in (primary, TRAIN_LOSS):
        raise FigureError(f"curves record {primary!r} and {TRAIN_LOSS!r} only, not {metric!r}")
    curves = tuple(_restart(o, metric, criterion) for o in rows)
    drawn = [c for c in curves if c.steps.size]
    if drawn:
        band = _band(cell, *_stack([(c.steps, c.values) for c in drawn]))
    else:
        empty = np.empty(0)
        band = CurveBand(arm=cell, label=arm_label(cell), steps=empty.astype(np.int64), q25=empty, median=empty,
                         q75=empty, n_finite=empty.astype(np.int64), n_restarts=0)
    arm = arm_of(cell)
    setting = {k: v for k, v in cell.items() if k not in arm}
    threshold = criterion.threshold if criterion is not None and criterion.metric == metric else None
    return RestartCurvesData(
        cell=cell,
        label=f"{setting_label(setting)} · {arm_label(arm)}" if arm else setting_label(setting),
        metric=metric,
        criterion=str(criterion) if criterion else "stored success",
        threshold=threshold,
        restarts=curves if max_restarts is None else curves[: max(0, max_restarts)],
        band=band,
        n_restarts=len(curves),
        n_success=sum(c.success for c in curves),
        n_diverged=sum(c.diverged for c in curves),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class CellRestartCurves:
    """Several cells' :class:`RestartCurvesData`, and what was left out to keep a page small.

    Attributes:
        cells: the cells drawn, in the heatmap's order (settings sorted, then
            arms baseline first); each cell's band and counts cover all its restarts.
        n_cells: the cells with a curve, drawn or not.
        per_cell: the most restarts drawn per cell (``None``: all).
        sampled: fewer cells drawn than there are: they are spread evenly over
            the cells sorted by success rate, from the lowest to the highest.
    """

    cells: tuple[RestartCurvesData, ...]
    n_cells: int
    per_cell: int | None
    sampled: bool


def restart_curves_by_cell(
    outcomes: Iterable[RestartOutcome],
    *,
    metric: str | None = None,
    criterion: Criterion | None = None,
    max_cells: int | None = None,
    max_restarts: int | None = None,
    max_points: int | None = None,
) -> CellRestartCurves:
    """:func:`restart_curves_data` for every cell in ``outcomes`` (restarts without a curve are skipped).

    Args:
        max_cells: draw at most this many cells, spread evenly from the lowest
            success rate to the highest (the worst and the best cell are always in).
        max_restarts: draw at most the first this many restarts of each cell.
        max_points: fewer restarts per cell (at least one) when the cells drawn
            would hold more curve points than this in all.
    """
    grouped: dict[FrozenMap, list[RestartOutcome]] = {}
    for o in outcomes:
        if o.curve:
            grouped.setdefault(FrozenMap({k: _clean(v) for k, v in o.params.items()}), []).append(o)

    def order(cell: FrozenMap) -> tuple[Any, ...]:
        arm = arm_of(cell)
        return tuple(value_sort_key(cell[a]) for a in cell if a not in arm), arm_sort_key(arm)

    everything = [restart_curves_data(grouped[c], metric=metric, criterion=criterion) for c in sorted(grouped, key=order)]
    chosen = everything
    if max_cells is not None and len(everything) > max_cells:
        by_rate = sorted(range(len(everything)), key=lambda i: (everything[i].n_success / everything[i].n_restarts, i))
        picks = {by_rate[j] for j in np.linspace(0, len(everything) - 1, max(1, max_cells)).round().astype(int).tolist()}
        chosen = [d for i, d in enumerate(everything) if i in picks]
    per_cell = max_restarts
    if max_points is not None and chosen:
        longest = max(c.steps.size for d in chosen for c in d.restarts)
        per_cell = max(1, min(per_cell or math.inf, max_points // max(1, longest * len(chosen))))
    if per_cell is not None and any(d.n_restarts > per_cell for d in chosen):
        chosen = [dataclasses.replace(d, restarts=d.restarts[:per_cell]) for d in chosen]
    else:
        per_cell = None
    return CellRestartCurves(cells=tuple(chosen), n_cells=len(everything), per_cell=per_cell,
                             sampled=len(chosen) < len(everything))


def _restart(o: RestartOutcome, metric: str, criterion: Criterion | None) -> RestartCurve:
    steps = np.array([p.step for p in o.curve], dtype=np.int64)
    values = np.array([p.train_loss if metric == TRAIN_LOSS else p.metric for p in o.curve], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    step = o.diverged_step if o.diverged_step is not None else (int(steps[bad[0]]) if bad.size else None)
    diverged = o.diverged or step is not None
    if criterion is not None and criterion.metric in o.metrics:
        success = criterion.judge(o)
    else:
        success = bool(o.success)
    final = float(o.metrics.get(metric, math.nan))
    return RestartCurve(
        restart=o.restart,
        seed=o.seed,
        success=success and not diverged,
        diverged=diverged,
        diverged_step=step if diverged else None,
        final=final if math.isfinite(final) else math.nan,
        metrics=o.metrics,
        steps=steps,
        values=values,
    )


def _lines(curves: Sequence[RestartCurve]) -> tuple[list[Any], list[Any], list[Any]]:
    """Many curves as one trace: points joined per restart, a ``None`` gap between restarts."""
    x: list[Any] = []
    y: list[Any] = []
    custom: list[Any] = []
    for c in curves:
        x += [*c.steps.tolist(), None]
        y += [*(v if math.isfinite(v) else None for v in c.values.tolist()), None]
        custom += [[c.restart, c.seed, None if math.isnan(c.final) else c.final]] * c.steps.size + [[None] * 3]
    return x, y, custom


def _cell_traces(data: RestartCurvesData, *, visible: bool) -> list[go.Scatter]:
    """Six traces, the same six for every cell (so a dropdown can switch them): band edges, succeeded,
    failed, diverged, median."""
    band, show = data.band, {"visible": visible}
    ok = [c for c in data.restarts if c.success]
    failed = [c for c in data.restarts if not c.success]
    hover = (f"restart %{{customdata[0]}} · seed %{{customdata[1]}}<br>step %{{x}}: %{{y:.4g}}<br>"
             f"final {data.metric} %{{customdata[2]:.4g}}")
    traces = [
        go.Scatter(x=band.steps, y=band.q75, mode="lines", line={"width": 0}, hoverinfo="skip", showlegend=False,
                   name="q75", **show),
        go.Scatter(x=band.steps, y=band.q25, mode="lines", line={"width": 0}, fill="tonexty",
                   fillcolor="rgba(99,110,114,0.18)", hoverinfo="skip", name="interquartile band", **show),
    ]
    for name, colour, width, group in (("succeeded", SUCCEEDED_COLOUR, 1, ok), ("failed", FAILED_COLOUR, 1.5, failed)):
        x, y, custom = _lines(group)
        traces.append(go.Scatter(x=x, y=y, customdata=custom, mode="lines", connectgaps=False,
                                 line={"color": colour, "width": width}, name=f"{name} ({len(group)})",
                                 hovertemplate=hover + f"<extra>{name}</extra>", **show))
    gone = [c for c in data.restarts if c.diverged and c.diverged_step is not None]
    traces.append(go.Scatter(
        x=[c.diverged_step for c in gone], y=[_last_finite(c) for c in gone],
        customdata=[[c.restart, c.seed] for c in gone], mode="markers", name=f"diverged ({len(gone)})",
        marker={"symbol": "x", "size": 10, "color": FAILED_COLOUR, "line": {"width": 1}},
        hovertemplate="restart %{customdata[0]} · seed %{customdata[1]}<br>diverged at step %{x}<extra></extra>",
        **show,
    ))
    # The median last, so that no restart's curve hides it.
    traces.append(go.Scatter(x=band.steps, y=band.median, mode="lines", line={"color": "black", "width": 2.5},
                             name="median", hovertemplate="median %{y:.4g} at step %{x}<extra></extra>", **show))
    return traces


def _last_finite(c: RestartCurve) -> float | None:
    """Where to mark a divergence: the restart's last finite value at or before the step (its curve stops there)."""
    ok = np.isfinite(c.values) & (c.steps <= (c.diverged_step or 0))
    if not ok.any():
        ok = np.isfinite(c.values)
    return float(c.values[ok][-1]) if ok.any() else None


def _title(data: RestartCurvesData) -> str:
    shown = "" if len(data.restarts) == data.n_restarts else f", first {len(data.restarts)} drawn"
    return (f"{data.label}: {data.n_success}/{data.n_restarts} succeed ({data.criterion}), "
            f"{data.n_diverged} diverged{shown}")


def plot_restart_curves(data: RestartCurvesData | Sequence[RestartCurvesData]) -> go.Figure:
    """Each restart's curve over the cell's band: successes thin grey, failures red, divergence an ✕.

    Given several cells, one figure with a dropdown that switches between
    them (the first shown); every cell keeps its own y range.
    """
    cells = [data] if isinstance(data, RestartCurvesData) else list(data)
    if not cells:
        raise FigureError("no cells to draw")
    fig = go.Figure()
    for i, cell in enumerate(cells):
        fig.add_traces(_cell_traces(cell, visible=i == 0))
    first = cells[0]
    if first.threshold is not None:
        fig.add_hline(y=first.threshold, line_dash="dash", line_color=BASELINE_COLOUR,
                      annotation_text="success threshold", annotation_position="bottom right")
    per = len(fig.data) // len(cells)
    if len(cells) > 1:
        buttons = [
            {"label": f"{c.label} ({c.n_success}/{c.n_restarts})", "method": "update",
             "args": [{"visible": [j // per == i for j in range(len(fig.data))]}, {"title.text": _title(c)}]}
            for i, c in enumerate(cells)
        ]
        fig.update_layout(updatemenus=[{"buttons": buttons, "direction": "down", "x": 0, "xanchor": "left",
                                        "y": 1.13, "yanchor": "bottom", "showactive": True}])
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=first.metric)
    fig.update_layout(title={"text": _title(first), "y": 0.97}, height=480, margin={"t": 130 if len(cells) > 1 else 80},
                      legend={"orientation": "h", "y": -0.18, "traceorder": "normal"})
    return fig
