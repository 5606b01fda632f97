"""Labels, arm order and colours shared by every figure, so one arm looks the same everywhere."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from robustness.criterion import Criterion
from robustness.errors import RobustnessError
from robustness.noise import noise_axes
from robustness.records import FrozenMap
from robustness.table import RestartTable

__all__ = [
    "BASELINE_COLOUR",
    "FigureError",
    "arm_axes",
    "arm_colour_map",
    "arm_colours",
    "arm_of",
    "arm_label",
    "arm_sort_key",
    "fmt",
    "is_baseline",
    "label_panels",
    "check_split",
    "metric_direction",
    "rgba",
    "setting_axes",
    "setting_label",
    "subplot_grid",
    "value_sort_key",
]


class FigureError(RobustnessError, ValueError):
    """A figure cannot be computed from these inputs (e.g. an unknown axis to split by). The message is one line."""


# Plotly's default qualitative palette minus its first colour, which goes to the baseline
# in grey so that "no noise" reads as the reference in every figure.
_PALETTE = ("#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52")
BASELINE_COLOUR = "#636E72"
_SYMBOLS = {"eta": "η", "gamma": "γ"}  # the paper's names; a user schedule's parameters keep theirs


def fmt(value: Any) -> str:
    """A grid value as short text: ``None`` as ``"none"``, numbers with ``%g``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return str(value)


def arm_axes(table: RestartTable) -> tuple[str, ...]:
    """The noise axes present in ``table`` (schedule and its parameters): they define an arm."""
    return noise_axes(table.params, schedules=_schedules(table))


def _schedules(table: RestartTable) -> set[Any]:
    values = table.params.get("schedule")
    return set() if values is None else {v for v in list(values) if isinstance(v, str)}


def setting_axes(table: RestartTable, *, exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """Every grid axis that is not a noise axis (nor in ``exclude``), sorted."""
    skip = set(noise_axes(table.params, schedules=_schedules(table))) | set(exclude)
    return tuple(sorted(a for a in table.params if a not in skip))


def is_baseline(arm: Mapping[str, Any]) -> bool:
    return arm.get("schedule") in (None, "none")


def arm_label(arm: Mapping[str, Any]) -> str:
    """``"none"`` for the baseline, else e.g. ``"annealed η=0.3 γ=0.55"`` or ``"linear_decay η=0.3 steps=500"``."""
    if is_baseline(arm):
        return "none"
    parts = [fmt(arm.get("schedule"))]
    for axis in noise_axes(arm, schedules=[arm.get("schedule")]):
        if axis != "schedule" and arm.get(axis) is not None and fmt(arm[axis]) != "none":
            parts.append(f"{_SYMBOLS.get(axis, axis)}={fmt(arm[axis])}")
    return " ".join(parts)


def setting_label(setting: Mapping[str, Any], axes: Sequence[str] | None = None) -> str:
    """e.g. ``"init=zero, clip=10"``; ``"all"`` when there are no axes."""
    axes = tuple(setting) if axes is None else axes
    return ", ".join(f"{a}={fmt(setting[a])}" for a in axes) or "all"


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else -math.inf


def value_sort_key(value: Any) -> tuple[Any, ...]:
    """None first, then numbers ascending, then text: an order for mixed-type grid values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (0,)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value))
    return (2, str(value))


def arm_sort_key(arm: Mapping[str, Any]) -> tuple[Any, ...]:
    """Baseline first, then by eta, schedule name, gamma and any other schedule parameter: the heatmap's x order."""
    rest = tuple(value_sort_key(arm.get(a)) for a in noise_axes(arm, schedules=[arm.get("schedule")])
                 if a not in ("schedule", "eta", "gamma"))
    return (not is_baseline(arm), _num(arm.get("eta")), fmt(arm.get("schedule")), _num(arm.get("gamma")), *rest)


def arm_colours(arms: Sequence[Mapping[str, Any]]) -> list[str]:
    """One colour per arm: grey for the baseline, the palette in order for the others.

    Every figure lists a study's arms in :func:`arm_sort_key` order, so an arm
    gets the same colour in each of them.
    """
    out, noisy = [], 0
    for arm in arms:
        if is_baseline(arm):
            out.append(BASELINE_COLOUR)
        else:
            out.append(_PALETTE[noisy % len(_PALETTE)])
            noisy += 1
    return out


def metric_direction(metric: str, criterion: Criterion | None = None) -> str:
    """``"minimize"``/``"maximize"``: from the criterion's comparison when it judges ``metric``.

    Otherwise by name: errors and losses are minimized, anything else (accuracy)
    maximized.
    """
    if criterion is not None and criterion.metric == metric:
        return "minimize" if criterion.op in ("<", "<=") else "maximize"
    lowered = metric.lower()
    return "minimize" if ("loss" in lowered or "error" in lowered) else "maximize"


def arm_of(params: Mapping[str, Any]) -> FrozenMap:
    """The noise coordinates of a cell (its schedule and the schedule's parameters): its arm."""
    return FrozenMap({a: params[a] for a in noise_axes(params, schedules=[params.get("schedule")])})


def arm_colour_map(arms: Iterable[Mapping[str, Any]]) -> dict[FrozenMap, str]:
    """arm -> colour over the distinct ``arms`` in :func:`arm_sort_key` order, so every panel of a split agrees."""
    ordered = sorted({FrozenMap(a) for a in arms}, key=arm_sort_key)
    return dict(zip(ordered, arm_colours(ordered)))


def check_split(split: str | None, axes: Iterable[str]) -> str | None:
    """``split`` if it is one of ``axes``; else a one-line :class:`FigureError` naming the axes there are."""
    axes = sorted(set(axes))
    if split is not None and split not in axes:
        raise FigureError(f"no axis {split!r} to split by; the axes are {', '.join(axes) or 'none'}")
    return split


def subplot_grid(count: int, per_row: int = 3) -> tuple[int, int]:
    """``(rows, cols)`` for ``count`` panels, at most ``per_row`` to a row."""
    cols = min(per_row, max(count, 1))
    return math.ceil(max(count, 1) / cols), cols


def rgba(hex_colour: str, alpha: float) -> str:
    """``"#EF553B"`` -> ``"rgba(239,85,59,alpha)"``: a band's fill in its arm's colour."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def label_panels(fig: Any, nrows: int, cols: int, *, x: str, y: str) -> None:
    """One x and one y scale for every panel of ``fig`` (``matches``), tick labels on each, titles on the outer ones."""
    fig.update_xaxes(matches="x", showticklabels=True)
    fig.update_yaxes(matches="y", showticklabels=True)
    for c in range(1, cols + 1):
        fig.update_xaxes(title_text=x, row=nrows, col=c)
    for r in range(1, nrows + 1):
        fig.update_yaxes(title_text=y, row=r, col=1)
