"""The one record type for a restart's outcome, from trainer to dashboard.

A restart is one training run of one grid cell with one seed. The trainer
returns a :class:`RestartOutcome`, storage writes and reads it back, and the
statistics consume it. It is immutable (like Optuna's ``FrozenTrial``) and
picklable, so Ray can ship it from a worker to the driver.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["CurvePoint", "FrozenMap", "RestartOutcome"]


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable, picklable mapping (sorted by key for stable output)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        merged = dict(items or {}, **kwargs)
        object.__setattr__(self, "_items", dict(sorted(merged.items())))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMap is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._items,))

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


@dataclasses.dataclass(frozen=True)
class CurvePoint:
    """One periodic evaluation of one restart.

    ``train_loss`` is the mean training loss over the steps since the previous
    point; ``metric`` is the task's primary metric on the evaluation set.
    """

    step: int
    train_loss: float
    metric: float


@dataclasses.dataclass(frozen=True)
class RestartOutcome:
    """What one restart produced.

    Attributes:
        params: the grid coordinates of the restart's cell (learning rate,
            clip, init, schedule, eta, gamma, ...). Together with ``restart``
            they identify the restart; ``seed`` is derived from ``restart``.
        restart: the restart's index within its cell (0..N-1). Restart k of
            every cell shares its seed, so arms can be compared paired.
        seed: the seed for initialization, data order and the noise stream.
        metrics: final metrics, e.g. ``test_accuracy``, ``test_error``,
            ``test_loss``, ``train_loss``. Non-finite for diverged restarts
            where the model produced no finite value.
        primary_metric: the name of the task's primary metric in ``metrics``.
        success: whether the restart passed the success criterion in force
            when it was trained; ``Criterion.judge`` re-judges at another threshold.
        curve: the learning curve, one point per evaluation.
        diverged: the loss or a gradient became NaN/inf; the restart was frozen.
        diverged_step: the update at which that was detected, else ``None``.
        wall_time_s: this restart's share of its pack's wall time (pack time / pack size).
        device: where it was trained, e.g. ``cpu`` or ``cuda:0``.
    """

    params: FrozenMap
    restart: int
    seed: int
    metrics: FrozenMap
    primary_metric: str
    success: bool
    curve: tuple[CurvePoint, ...] = ()
    diverged: bool = False
    diverged_step: int | None = None
    wall_time_s: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        # Accept plain dicts and lists from callers but keep the record immutable.
        if not isinstance(self.params, FrozenMap):
            object.__setattr__(self, "params", FrozenMap(self.params))
        if not isinstance(self.metrics, FrozenMap):
            object.__setattr__(self, "metrics", FrozenMap(self.metrics))
        if not isinstance(self.curve, tuple):
            object.__setattr__(self, "curve", tuple(self.curve))

    @property
    def value(self) -> float:
        """The primary metric's final value."""
        return float(self.metrics[self.primary_metric])
