"""Learning-curve bands: median and quartiles of the evaluation metric at each step, per arm."""

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
    arm_colours,
    arm_label,
    arm_sort_key,
    is_baseline,
)
from robustness.noise import noise_axes
from robustness.records import FrozenMap, RestartOutcome

__all__ = ["CurveBand", "CurveBandData", "Curves", "curve_arrays", "curve_band_data", "plot_curve_bands"]

# arm -> (steps, shape (P,); metric values, shape (R, P): one row per restart, NaN where missing)
Curves = Mapping[FrozenMap, tuple[np.ndarray, np.ndarray]]
CurveSource = Union[Iterable[RestartOutcome], Curves]
_PANELS_PER_ROW = 3


@dataclasses.dataclass(frozen=True, eq=False)
class CurveBand:
    """One arm's curves summarized per evaluation step. Arrays have shape ``(P,)``.

    Attributes:
        arm: the arm's grid coordinates; ``label`` as text.
        steps: evaluation steps, ascending.
        q25, median, q75: quantiles (linear interpolation) over the restarts
            with a finite value at that step; NaN where there is none.
        n_finite: int64 restarts with a finite value at each step (diverged
            restarts drop out once their metric is NaN).
        n_restarts: restarts in the arm.
    """

    arm: FrozenMap
    label: str
    steps: np.ndarray
    q25: np.ndarray
    median: np.ndarray
    q75: np.ndarray
    n_finite: np.ndarray
    n_restarts: int


@dataclasses.dataclass(frozen=True, eq=False)
class CurveBandData:
    """Bands of every arm, in the arm order of the other figures (baseline first)."""

    metric: str
    bands: tuple[CurveBand, ...]


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def curve_arrays(outcomes: Iterable[RestartOutcome], *, by: Sequence[str] | None = None) -> dict[FrozenMap, tuple[np.ndarray, np.ndarray]]:
    """Group the restarts' learning curves by arm into ``(steps (P,), values (R, P))`` arrays.

    Restarts of one arm that were evaluated at different steps (e.g. a run
    stopped early) are aligned on the union of steps, NaN where a restart has
    no point. Restarts without a curve are skipped.
    """
    grouped: dict[FrozenMap, list[tuple[tuple[int, ...], list[float]]]] = {}
    for o in outcomes:
        if not o.curve:
            continue
        axes = noise_axes(o.params, schedules=[o.params.get('schedule')]) if by is None else by  # its arm
        arm = FrozenMap({a: _clean(o.params[a]) for a in axes if a in o.params})
        grouped.setdefault(arm, []).append((tuple(p.step for p in o.curve), [p.metric for p in o.curve]))
    out = {}
    for arm, curves in grouped.items():
        shapes = {steps for steps, _ in curves}
        if len(shapes) == 1:  # the usual case: every restart evaluated at the same steps
            steps = np.array(next(iter(shapes)), dtype=np.int64)
            values = np.array([v for _, v in curves], dtype=np.float64)
        else:
            steps = np.array(sorted(set().union(*shapes)), dtype=np.int64)
            values = np.full((len(curves), steps.size), np.nan)
            for r, (s, v) in enumerate(curves):
                values[r, np.searchsorted(steps, s)] = v
        out[arm] = (steps, values)
    return out


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


def curve_band_data(curves: CurveSource, *, by: Sequence[str] | None = None, metric: str = "metric") -> CurveBandData:
    """Median and 25/75% quantiles of the metric at each evaluation step, per arm.

    Args:
        curves: restart outcomes (grouped with :func:`curve_arrays` on ``by``),
            or already a mapping arm -> ``(steps (P,), values (R, P))``.
        metric: the curve metric's name, for labels.

    Non-finite values are left out step by step (``n_finite`` says how many
    entered), so a band describes the restarts still training at that step.
    """
    arrays = curves if isinstance(curves, Mapping) else curve_arrays(curves, by=by)
    arms = sorted(arrays, key=arm_sort_key)
    bands = []
    for arm in arms:
        steps, values = arrays[arm]
        values = np.asarray(values, dtype=np.float64).reshape(-1, np.asarray(steps).size)
        bands.append(_band(FrozenMap(arm), np.asarray(steps), values))
    return CurveBandData(metric=metric, bands=tuple(bands))


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def plot_curve_bands(data: CurveBandData) -> go.Figure:
    """One panel per arm (shared y): the median as a line and the interquartile range as a band.

    Every noise arm's panel repeats the baseline's median as a dashed grey line,
    so each arm is read against the same reference.
    """
    count = max(len(data.bands), 1)
    cols = min(_PANELS_PER_ROW, count)
    nrows = math.ceil(count / cols)
    titles = [f"{b.label} (n={b.n_restarts})" for b in data.bands]
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=min(0.2, 0.45 / nrows))
    colours = arm_colours([b.arm for b in data.bands])
    baseline = next((b for b in data.bands if is_baseline(b.arm)), None)
    for i, (band, colour) in enumerate(zip(data.bands, colours)):
        at = {"row": i // cols + 1, "col": i % cols + 1}
        if baseline is not None and band is not baseline:
            fig.add_trace(go.Scatter(x=baseline.steps, y=baseline.median, mode="lines", name="baseline median",
                                     line={"color": BASELINE_COLOUR, "dash": "dash", "width": 1.5},
                                     hovertemplate="baseline median %{y:.4g}<extra></extra>"), **at)
        fig.add_trace(go.Scatter(x=band.steps, y=band.q75, mode="lines", line={"width": 0}, hoverinfo="skip",
                                 name=f"{band.label} q75"), **at)
        fig.add_trace(go.Scatter(x=band.steps, y=band.q25, mode="lines", line={"width": 0}, fill="tonexty",
                                 fillcolor=_rgba(colour, 0.25), hoverinfo="skip", name=f"{band.label} q25"), **at)
        fig.add_trace(
            go.Scatter(
                x=band.steps,
                y=band.median,
                mode="lines+markers",
                line={"color": colour, "width": 2},
                marker={"size": 4},
                name=f"{band.label} median",
                customdata=np.stack([band.q25, band.q75, band.n_finite], axis=1),
                hovertemplate=(
                    f"{band.label}<br>step %{{x}}<br>median %{{y:.4g}}<br>"
                    "quartiles [%{customdata[0]:.4g}, %{customdata[1]:.4g}]<br>finite: %{customdata[2]}<extra></extra>"
                ),
            ),
            **at,
        )
    for c in range(1, cols + 1):
        fig.update_xaxes(title_text="step", row=nrows, col=c)
    for r in range(1, nrows + 1):
        fig.update_yaxes(title_text=data.metric, row=r, col=1)
    fig.update_layout(
        title={"text": "Learning curves per arm: median, interquartile band, baseline median dashed"},
        height=max(380, 300 * nrows),
        showlegend=False,
    )
    return fig
