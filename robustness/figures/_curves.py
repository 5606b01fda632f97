"""Learning-curve bands: median and quartiles of the evaluation metric at each step, per arm.

Pooled by default over every axis that is not a noise axis; ``split="init"``
(any grid axis) gives one panel per value of that axis with the arms inside
it, because pooling settings that behave differently (two inits) makes a band
whose median describes neither.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from robustness.figures._common import (
    BASELINE_COLOUR,
    arm_colour_map,
    arm_label,
    arm_of,
    arm_sort_key,
    check_split,
    is_baseline,
    label_panels,
    rgba,
    setting_label,
    subplot_grid,
    value_sort_key,
)
from robustness.noise import noise_axes
from robustness.records import FrozenMap, RestartOutcome

__all__ = ["CurveBand", "CurveBandData", "Curves", "curve_arrays", "curve_band_data", "plot_curve_bands"]

# group -> (steps, shape (P,); metric values, shape (R, P): one row per restart, NaN where missing).
# A group is an arm, or a whole cell (every axis) when the caller wants to pool or split later.
Curves = Mapping[FrozenMap, tuple[np.ndarray, np.ndarray]]
CurveSource = Union[Iterable[RestartOutcome], Curves]
_PANELS_PER_ROW = 3


@dataclasses.dataclass(frozen=True, eq=False)
class CurveBand:
    """One arm's curves (in one panel) summarized per evaluation step. Arrays have shape ``(P,)``.

    Attributes:
        arm: the arm's grid coordinates; ``label`` as text.
        steps: evaluation steps, ascending.
        q25, median, q75: quantiles (linear interpolation) over the restarts
            with a finite value at that step; NaN where there is none.
        n_finite: int64 restarts with a finite value at each step (diverged
            restarts drop out once their metric is NaN).
        n_restarts: restarts in the arm (in this panel).
        panel: the split axis and its value, e.g. ``{"init": "zero"}``; empty when pooled.
        panel_label: ``panel`` as text (``"all"`` when pooled).
    """

    arm: FrozenMap
    label: str
    steps: np.ndarray
    q25: np.ndarray
    median: np.ndarray
    q75: np.ndarray
    n_finite: np.ndarray
    n_restarts: int
    panel: FrozenMap = dataclasses.field(default_factory=FrozenMap)
    panel_label: str = "all"


@dataclasses.dataclass(frozen=True, eq=False)
class CurveBandData:
    """Bands of every arm, panel by panel, arms in the order of the other figures (baseline first).

    Attributes:
        metric: the curve metric's name.
        bands: one per (panel, arm), panels in ``panels`` order.
        split: the axis with one panel per value; ``None`` when pooled.
        pooled: the axes the curves' groups had that were pooled into each band.
        panels: the split's values as ``{split: value}``, sorted; ``(FrozenMap(),)`` when pooled.
    """

    metric: str
    bands: tuple[CurveBand, ...]
    split: str | None = None
    pooled: tuple[str, ...] = ()
    panels: tuple[FrozenMap, ...] = (FrozenMap(),)


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def curve_arrays(
    outcomes: Iterable[RestartOutcome], *, by: Sequence[str] | None = None, split: str | None = None
) -> dict[FrozenMap, tuple[np.ndarray, np.ndarray]]:
    """Group the restarts' learning curves into ``(steps (P,), values (R, P))`` arrays.

    Groups are arms (each restart's noise axes), or the ``by`` axes; ``split``
    adds that axis to the group (``by=sorted(table.params)`` keeps whole cells,
    which :func:`curve_band_data` can pool or split on any axis later).
    Restarts of one group that were evaluated at different steps (e.g. a run
    stopped early) are aligned on the union of steps, NaN where a restart has
    no point. Restarts without a curve are skipped.

    Raises:
        FigureError: a restart has no axis ``split``.
    """
    grouped: dict[FrozenMap, list[tuple[tuple[int, ...], list[float]]]] = {}
    for o in outcomes:
        if not o.curve:
            continue
        axes = noise_axes(o.params, schedules=[o.params.get("schedule")]) if by is None else tuple(by)  # its arm
        if split is not None:
            check_split(split, o.params)
            axes = (*axes, split) if split not in axes else axes
        key = FrozenMap({a: _clean(o.params[a]) for a in axes if a in o.params})
        grouped.setdefault(key, []).append((tuple(p.step for p in o.curve), [p.metric for p in o.curve]))
    return {key: _stack(curves) for key, curves in grouped.items()}


def _stack(curves: Sequence[tuple[Sequence[int], Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Curves ``(steps, values (R_i, P_i) or (P_i,))`` as one ``(steps (P,), values (R, P))``, on the union of steps."""
    parts = []
    for s, v in curves:
        v = np.asarray(v, dtype=np.float64)
        parts.append((np.asarray(s, dtype=np.int64), v.reshape(v.shape[0] if v.ndim == 2 else 1, len(s))))
    first = parts[0][0]
    if all(s.shape == first.shape and np.array_equal(s, first) for s, _ in parts):
        return first, np.concatenate([v for _, v in parts], axis=0)  # the usual case: same steps throughout
    steps = np.unique(np.concatenate([s for s, _ in parts]))
    rows = []
    for s, v in parts:
        aligned = np.full((v.shape[0], steps.size), np.nan)
        aligned[:, np.searchsorted(steps, s)] = v
        rows.append(aligned)
    return steps, np.concatenate(rows, axis=0)


def _band(arm: FrozenMap, steps: np.ndarray, values: np.ndarray) -> CurveBand:
    values = np.where(np.isfinite(values), values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN step is expected after divergence
        q25, median, q75 = np.nanquantile(values, [0.25, 0.5, 0.75], axis=0)
    return CurveBand(
        arm=arm,
        label=arm_label(arm),
        steps=np.asarray(steps, dtype=np.int64),
        q25=q25,
        median=median,
        q75=q75,
        n_finite=np.isfinite(values).sum(axis=0).astype(np.int64),
        n_restarts=int(values.shape[0]),
    )


def curve_band_data(
    curves: CurveSource, *, by: Sequence[str] | None = None, metric: str = "metric", split: str | None = None
) -> CurveBandData:
    """Median and 25/75% quantiles of the metric at each evaluation step, per arm (per value of ``split``).

    Args:
        curves: restart outcomes (grouped with :func:`curve_arrays` on ``by``
            and ``split``), or already a mapping group -> ``(steps (P,), values
            (R, P))``. Groups are pooled into arms: their noise axes (and
            ``split``) are kept, every other axis of the group is pooled
            (``pooled`` names them). Pass groups that are whole cells
            (``curve_arrays(outcomes, by=all axes)``) to split on any axis later.
        metric: the curve metric's name, for labels.
        split: one grid axis; one panel per value of it, arms inside each.

    Non-finite values are left out step by step (``n_finite`` says how many
    entered), so a band describes the restarts still training at that step.

    Raises:
        FigureError: ``split`` is not an axis of every group.
    """
    arrays = curves if isinstance(curves, Mapping) else curve_arrays(curves, by=by, split=split)
    pooled: set[str] = set()
    grouped: dict[tuple[FrozenMap, FrozenMap], list[tuple[Any, Any]]] = {}
    for key, (steps, values) in arrays.items():
        if split is not None:
            check_split(split, key)
        arm = arm_of(key)
        panel = FrozenMap({split: key[split]}) if split is not None else FrozenMap()
        pooled |= set(key) - set(arm) - set(panel)
        grouped.setdefault((panel, arm), []).append((steps, values))
    panels = sorted({p for p, _ in grouped}, key=lambda p: tuple(value_sort_key(v) for v in p.values()))
    order = sorted(grouped, key=lambda pa: (panels.index(pa[0]), arm_sort_key(pa[1])))
    bands = []
    for panel, arm in order:
        steps, values = _stack(grouped[(panel, arm)])
        band = _band(arm, steps, values)
        bands.append(dataclasses.replace(band, panel=panel, panel_label=setting_label(panel)))
    return CurveBandData(metric=metric, bands=tuple(bands), split=split, pooled=tuple(sorted(pooled)),
                         panels=tuple(panels) or (FrozenMap(),))


def plot_curve_bands(data: CurveBandData) -> go.Figure:
    """Bands on panels with one x and one y scale, so panels compare at a glance.

    Pooled: one panel per arm, the median as a line and the interquartile
    range as a band; every noise arm's panel repeats the baseline's median as
    a dashed grey line, so each arm is read against the same reference. Split:
    one panel per value of the split axis, every arm's band inside it (click
    an arm in the legend to hide it in every panel).
    """
    if data.split is None:
        titles = [f"{b.label} (n={b.n_restarts})" for b in data.bands]
        slots = list(range(len(data.bands)))
    else:
        counts = {p: sum(b.n_restarts for b in data.bands if b.panel == p) for p in data.panels}
        titles = [f"{setting_label(p)} (n={counts[p]})" for p in data.panels]
        slots = [data.panels.index(b.panel) for b in data.bands]
    nrows, cols = subplot_grid(len(titles), _PANELS_PER_ROW)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, horizontal_spacing=0.05,
                        vertical_spacing=min(0.2, 0.45 / nrows))
    colours = arm_colour_map(b.arm for b in data.bands)
    baseline = next((b for b in data.bands if is_baseline(b.arm)), None) if data.split is None else None
    shown: set[str] = set()
    for band, slot in zip(data.bands, slots):
        at = {"row": slot // cols + 1, "col": slot % cols + 1}
        if baseline is not None and band is not baseline:
            fig.add_trace(go.Scatter(x=baseline.steps, y=baseline.median, mode="lines", name="baseline median",
                                     line={"color": BASELINE_COLOUR, "dash": "dash", "width": 1.5}, showlegend=False,
                                     hovertemplate="baseline median %{y:.4g}<extra></extra>"), **at)
        for trace in _band_traces(band, colours[band.arm], data.split is not None, first=band.label not in shown):
            fig.add_trace(trace, **at)
        shown.add(band.label)
    label_panels(fig, nrows, cols, x="step", y=data.metric)
    what = "per arm" if data.split is None else f"by {data.split}, arms inside each panel"
    fig.update_layout(
        title={"text": f"Learning curves {what}: median, interquartile band"
               + (", baseline median dashed" if data.split is None else "")},
        height=max(380, 300 * nrows),
        showlegend=data.split is not None,
    )
    return fig


def _band_traces(band: CurveBand, colour: str, split: bool, *, first: bool) -> list[go.Scatter]:
    """The interquartile band (two edges, filled between) and the median line of one arm in one panel."""
    group = {"legendgroup": band.label, "showlegend": False}
    where = f"{band.panel_label} · " if split else ""
    return [
        go.Scatter(x=band.steps, y=band.q75, mode="lines", line={"width": 0}, hoverinfo="skip",
                   name=f"{band.label} q75", **group),
        go.Scatter(x=band.steps, y=band.q25, mode="lines", line={"width": 0}, fill="tonexty",
                   fillcolor=rgba(colour, 0.15 if split else 0.25), hoverinfo="skip", name=f"{band.label} q25", **group),
        go.Scatter(
            x=band.steps,
            y=band.median,
            mode="lines+markers",
            line={"color": colour, "width": 2},
            marker={"size": 4},
            name=band.label if split else f"{band.label} median",
            legendgroup=band.label,
            showlegend=split and first,
            customdata=np.stack([band.q25, band.q75, band.n_finite], axis=1),
            hovertemplate=(
                f"{where}{band.label}<br>step %{{x}}<br>median %{{y:.4g}}<br>"
                "quartiles [%{customdata[0]:.4g}, %{customdata[1]:.4g}]<br>finite: %{customdata[2]}<extra></extra>"
            ),
        ),
    ]

