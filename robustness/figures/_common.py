"""Labels, arm order and colours shared by every figure, so one arm looks the same everywhere."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from robustness.criterion import Criterion
from robustness.noise import noise_axes
from robustness.table import RestartTable

__all__ = [
    "BASELINE_COLOUR",
    "arm_axes",
    "arm_colours",
    "arm_label",
    "arm_sort_key",
    "fmt",
    "is_baseline",
    "metric_direction",
    "setting_axes",
    "setting_label",
    "value_sort_key",
]

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
