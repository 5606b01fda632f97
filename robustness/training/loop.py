"""Your own training loop: the fallback for models a restart pack cannot vectorize.

A task that defines ``train(ctx) -> metrics`` trains each restart with its own
code: any optimizer, LR scheduler, mixed precision or model ``torch.func``
cannot batch. :class:`LoopContext` gives it what a pack would have used:

- the restart: ``ctx.spec`` (its cell ``ctx.params``, learning rate, clip, init,
  noise schedule) and three seeds (``init_seed``, ``data_seed``, ``noise_seed``)
  derived from the restart seed exactly as in a pack;
- ``ctx.init(module)``: draws every parameter from the restart's init stream;
- ``ctx.data_generator()``: a ``torch.Generator`` for the restart's data order;
- ``ctx.attach_noise(optimizer)``: the paper's clip-then-noise on any
  ``torch.optim`` optimizer (a step pre-hook; the optimizer stays the user's own);
- ``ctx.report(step, train_loss=..., **metrics)``: a learning-curve point;
- ``ctx.diverged(step)``: the run blew up and stopped (it is a failure).

The returned metrics become the same :class:`~robustness.records.RestartOutcome`
a pack produces: storage, statistics and reports cannot tell the two apart.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from robustness.criterion import Criterion
from robustness.records import CurvePoint, RestartOutcome
from robustness.training.config import TrainConfig
from robustness.training.data import Dataset
from robustness.training.models import init_module
from robustness.training.spec import RestartSpec, derived_seeds
from robustness.training.tasks import Task, TaskData, as_task_data

__all__ = ["LoopContext", "train_with_loop", "uses_own_loop"]


def uses_own_loop(task: Task) -> bool:
    """Whether ``task`` trains each restart with its own ``train(ctx)`` instead of in a pack."""
    return callable(getattr(task, "train", None))


@dataclasses.dataclass
class LoopContext:
    """What a task's ``train(ctx)`` needs to train one restart as a pack would."""

    spec: RestartSpec
    config: TrainConfig
    device: torch.device
    data: TaskData
    primary_metric: str
    curve: list[CurvePoint] = dataclasses.field(default_factory=list)
    diverged_step: int | None = None

    @property
    def params(self) -> Mapping[str, Any]:
        """The restart's cell: its grid coordinates (lr, clip, init, schedule, eta, gamma, ...)."""
        return self.spec.params

    @property
    def seeds(self) -> tuple[int, int, int]:
        """(init, data order, noise) seeds, derived from the restart seed as in a pack."""
        return derived_seeds(self.spec.seed)

    def init(self, module: nn.Module) -> nn.Module:
        """Draw every parameter of ``module`` from the restart's init stream (its ``init`` scheme)."""
        return init_module(module, self.spec.init, torch.Generator().manual_seed(self.seeds[0]))

    def data_generator(self) -> torch.Generator:
        """A CPU generator for the restart's data order (shuffling, sampling)."""
        return torch.Generator().manual_seed(self.seeds[1])

    def attach_noise(self, optimizer: torch.optim.Optimizer) -> Any:
        """Clip to the restart's ``clip`` and add its annealed noise before every ``optimizer.step()``."""
        from robustness.noise import attach_gradient_noise

        return attach_gradient_noise(optimizer, self.spec.schedule, clip_norm=self.spec.clip_norm,
                                     seed=self.seeds[2])

    def report(self, step: int, *, train_loss: float = math.nan, **metrics: float) -> None:
        """One learning-curve point at update ``step``; ``metrics`` should hold the primary metric."""
        value = metrics.get(self.primary_metric, math.nan)
        self.curve.append(CurvePoint(int(step), float(train_loss), float(value)))

    def diverged(self, step: int) -> None:
        """Mark the restart as diverged at update ``step`` (a failure, never dropped)."""
        if self.diverged_step is None:
            self.diverged_step = int(step)


def train_with_loop(
    task: Task,
    spec: RestartSpec,
    config: TrainConfig,
    *,
    criterion: Criterion,
    device: str | torch.device = "cpu",
    data: Dataset | TaskData | None = None,
) -> RestartOutcome:
    """Train one restart with ``task.train(ctx)`` and return its outcome record."""
    if not uses_own_loop(task):
        raise TypeError(f"task {type(task).__name__} has no train(ctx) method")
    device = torch.device(device)
    data = as_task_data(data if data is not None else task.load_data())
    ctx = LoopContext(spec=spec, config=config, device=device, data=data, primary_metric=task.primary_metric)
    start = time.perf_counter()
    returned = task.train(ctx)  # type: ignore[attr-defined]
    if not isinstance(returned, Mapping):
        raise TypeError(f"{type(task).__name__}.train(ctx) must return a mapping of metric names to numbers, "
                        f"got {type(returned).__name__}")
    metrics = {str(k): float(v) for k, v in returned.items()}
    metrics.setdefault("train_loss", ctx.curve[-1].train_loss if ctx.curve else math.nan)
    if task.primary_metric not in metrics:
        raise KeyError(f"{type(task).__name__}.train(ctx) returned no {task.primary_metric!r} (its primary metric); "
                       f"it returned {sorted(metrics)}")
    diverged = ctx.diverged_step is not None or not math.isfinite(metrics[task.primary_metric])
    outcome = RestartOutcome(
        params=spec.params, restart=spec.restart, seed=spec.seed, metrics=metrics,
        primary_metric=task.primary_metric, success=False, curve=tuple(ctx.curve),
        diverged=diverged, diverged_step=ctx.diverged_step,
        wall_time_s=time.perf_counter() - start, device=str(device),
    )
    return dataclasses.replace(outcome, success=criterion.judge(outcome))
