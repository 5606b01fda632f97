"""Noise schedules: sigma_t^2 for update t, and the registry a search space names them from.

Torch-free, so that statistics and figures (which only need a schedule's
parameters and its variance curve) import without torch.

Every schedule is a frozen dataclass; its fields are the grid coordinates that
describe it (``eta``, ``gamma`` for the paper's schedule, anything for a user's).
:func:`noise_axes` derives the noise axes of a study from those fields, so a
registered schedule with other parameters is compared against its baseline
exactly like the paper's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

__all__ = [
    "AnnealedNoise",
    "ConstantNoise",
    "NoNoise",
    "NoiseSchedule",
    "SCHEDULES",
    "SCHEDULE_GROUP",
    "make_schedule",
    "noise_axes",
    "register_schedule",
    "schedule_class",
    "schedule_fields",
    "schedule_from_cell",
]


class NoiseSchedule:
    """Base class: ``variance(t)`` gives sigma_t^2 for update ``t`` (t = 0, 1, ...).

    Subclasses are frozen dataclasses (hashable, picklable) registered under a
    name with :func:`register_schedule`, so that a YAML file can name them.
    """

    name: ClassVar[str] = ""

    def variance(self, t: int) -> float:
        raise NotImplementedError

    def std(self, t: int) -> float:
        return math.sqrt(self.variance(t))

    def params(self) -> dict[str, Any]:
        """Grid coordinates describing this schedule (``schedule`` plus its fields)."""
        return {"schedule": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]

    @property
    def is_noisy(self) -> bool:
        return True


SCHEDULES: dict[str, type[NoiseSchedule]] = {}


def register_schedule(name: str) -> Callable[[type[NoiseSchedule]], type[NoiseSchedule]]:
    """Class decorator: make a schedule available by ``name`` in search spaces.

    Example::

        @register_schedule("linear_decay")
        @dataclasses.dataclass(frozen=True)
        class LinearDecay(NoiseSchedule):
            eta: float
            steps: int
            def variance(self, t): return self.eta * max(0.0, 1 - t / self.steps)
    """

    def decorate(cls: type[NoiseSchedule]) -> type[NoiseSchedule]:
        if name in SCHEDULES and SCHEDULES[name] is not cls:
            raise ValueError(f"a noise schedule named {name!r} is already registered")
        cls.name = name
        SCHEDULES[name] = cls
        return cls

    return decorate


def make_schedule(name: str, **params: Any) -> NoiseSchedule:
    """Build a registered schedule by name, e.g. ``make_schedule("annealed", eta=0.3)``."""
    return schedule_class(name)(**params)


@register_schedule("none")
@dataclasses.dataclass(frozen=True)
class NoNoise(NoiseSchedule):
    """The baseline: no noise, and no draws from the generator."""

    def variance(self, t: int) -> float:
        return 0.0

    @property
    def is_noisy(self) -> bool:
        return False


@register_schedule("constant")
@dataclasses.dataclass(frozen=True)
class ConstantNoise(NoiseSchedule):
    """Fixed variance ``eta`` at every update."""

    eta: float

    def __post_init__(self) -> None:
        if not self.eta > 0:
            raise ValueError(f"eta must be > 0 (it is a variance), got {self.eta}")

    def variance(self, t: int) -> float:
        return float(self.eta)


@register_schedule("annealed")
@dataclasses.dataclass(frozen=True)
class AnnealedNoise(NoiseSchedule):
    """The paper's schedule: ``eta / (1 + t) ** gamma``; the paper used gamma = 0.55."""

    eta: float
    gamma: float = 0.55

    def __post_init__(self) -> None:
        if not self.eta > 0:
            raise ValueError(f"eta must be > 0 (it is a variance), got {self.eta}")
        if not self.gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")

    def variance(self, t: int) -> float:
        return self.eta / (1 + t) ** self.gamma


SCHEDULE_GROUP = "robustness.schedules"


def schedule_class(name: str) -> type[NoiseSchedule]:
    """The schedule called ``name``: registered, an installed plugin's entry point, or ``package.module:Class``.

    A plugin's class is registered under ``name`` on first use (unless it registered
    itself), so its cells carry that name and statistics can find it again.
    """
    if name in SCHEDULES:
        return SCHEDULES[name]
    from robustness.plugins import load_entry_point, load_import_path

    cls = load_entry_point(SCHEDULE_GROUP, name, what="noise schedule", check=_wrong_schedule)
    if cls is None:
        if ":" not in name:
            raise ValueError(f"unknown noise schedule {name!r}; known: {sorted(SCHEDULES)} "
                             "(or an import path 'package.module:Class')")
        cls = load_import_path(name, what="noise schedule", check=_wrong_schedule)
    if not cls.name:
        register_schedule(name)(cls)
    return cls


def _wrong_schedule(obj: Any) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, NoiseSchedule)):
        return f"expected a subclass of robustness.noise.NoiseSchedule, got {getattr(obj, '__name__', obj)!r}"
    if not dataclasses.is_dataclass(obj):
        return f"expected a frozen dataclass (decorate {obj.__name__} with @dataclasses.dataclass(frozen=True))"
    return None


def schedule_fields(cls: type[NoiseSchedule]) -> tuple[str, ...]:
    """The constructor fields of a schedule class: its grid coordinates besides ``schedule``."""
    if not dataclasses.is_dataclass(cls):
        return ()
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def noise_axes(axes: Iterable[str] | None = None, *, schedules: Iterable[Any] = ()) -> tuple[str, ...]:
    """The axes that describe the noise: ``schedule`` and every schedule's fields.

    The schedules are the registered ones plus those named in ``schedules`` (a
    study's ``schedule`` values: a plugin is found by entry point or import path).
    With ``axes`` (a study's grid axes), only those present, in that order.
    Everything else (learning rate, clip, init, a user's own knobs) is a setting
    on which noise and baseline arms are matched.
    """
    classes = list(SCHEDULES.values())
    for name in schedules:
        if isinstance(name, str) and name not in SCHEDULES:
            try:
                classes.append(schedule_class(name))
            except ValueError:
                pass  # a plugin not installed here: its fields cannot be known
    names = ["schedule"]
    for cls in classes:
        names += [f for f in schedule_fields(cls) if f not in names]
    if axes is None:
        return tuple(names)
    present = set(axes)
    return tuple(n for n in names if n in present)


def schedule_from_cell(cell: Mapping[str, Any]) -> NoiseSchedule:
    """Rebuild the schedule a grid cell (or a stored restart's params) ran with.

    Coordinates that are ``None`` or NaN (the cell does not use them) fall back
    to the field's default.
    """
    name = cell.get("schedule") or "none"
    cls = schedule_class(name)
    kwargs = {}
    for field in schedule_fields(cls):
        value = cell.get(field)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            kwargs[field] = value
    return cls(**kwargs)
