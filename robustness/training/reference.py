"""One restart, trained the plain way: an ``nn.Module``, a ``torch.optim`` optimizer
wrapped in :class:`~robustness.noise.GradientNoise`, and a Python loop.

This is the definition a restart pack must reproduce (the equivalence tests
train restart ``r`` both ways) and the baseline the pack benchmarks beat.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
import torch.nn.functional as F

from robustness.criterion import Criterion
from robustness.noise import GradientNoise
from robustness.records import CurvePoint, RestartOutcome
from robustness.training.data import Dataset
from robustness.training.models import init_module
from robustness.training.pack import BatchOrder, TrainConfig
from robustness.training.spec import RestartSpec, derived_seeds
from robustness.training.tasks import Task

__all__ = ["make_optimizer", "train_single"]


def make_optimizer(module: torch.nn.Module, spec: RestartSpec, config: TrainConfig, *, seed: int) -> GradientNoise:
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(module.parameters(), lr=spec.lr, momentum=config.momentum)
    else:
        opt = torch.optim.Adam(module.parameters(), lr=spec.lr, betas=config.betas, eps=config.eps)
    return GradientNoise(opt, spec.schedule, clip_norm=spec.clip_norm, seed=seed)


@torch.no_grad()
def _evaluate(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = module(x)
    return (logits.argmax(-1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def train_single(
    task: Task,
    spec: RestartSpec,
    config: TrainConfig,
    *,
    criterion: Criterion,
    device: str | torch.device = "cpu",
    data: Dataset | None = None,
) -> RestartOutcome:
    """Train one restart; same seeds, data order, noise and evaluations as in a pack."""
    device = torch.device(device)
    data = data if data is not None else task.load_data()
    train_x, train_y = torch.tensor(data.train_x, device=device), torch.tensor(data.train_y, device=device)
    test_x, test_y = torch.tensor(data.test_x, device=device), torch.tensor(data.test_y, device=device)
    init_seed, data_seed, noise_seed = derived_seeds(spec.seed)
    module = init_module(task.build_module(data), spec.init, torch.Generator().manual_seed(init_seed)).to(device)
    opt = make_optimizer(module, spec, config, seed=noise_seed)
    order = BatchOrder(data_seed, train_x.shape[0], config.batch_size)

    start = time.perf_counter()
    curve: list[CurvePoint] = []
    loss_sum, loss_n, diverged_step, train_loss = 0.0, 0, None, float("nan")
    for step in range(config.steps):
        if diverged_step is None:
            idx = order.indices(step).to(device)
            loss = F.cross_entropy(module(train_x[idx]), train_y[idx])
            opt.zero_grad()
            loss.backward()
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()]))
            if not (math.isfinite(loss.item()) and math.isfinite(norm.item())):
                diverged_step = step  # frozen from here on, like a restart in a pack
            else:
                opt.step()
                loss_sum += loss.item()
                loss_n += 1
        else:
            order.indices(step)  # keep the data stream aligned with a pack's
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            acc, _ = _evaluate(module, test_x, test_y)
            train_loss = loss_sum / loss_n if loss_n else float("nan")  # NaN: no update in the interval
            curve.append(CurvePoint(step + 1, train_loss, acc))
            loss_sum, loss_n = 0.0, 0
    acc, test_loss = _evaluate(module, test_x, test_y)
    metrics = {"test_accuracy": acc, "test_error": 1.0 - acc, "test_loss": test_loss, "train_loss": train_loss}
    outcome = RestartOutcome(
        params=spec.params, restart=spec.restart, seed=spec.seed, metrics=metrics,
        primary_metric=task.primary_metric, success=False, curve=tuple(curve),
        diverged=diverged_step is not None, diverged_step=diverged_step,
        wall_time_s=time.perf_counter() - start, device=str(device),
    )
    return dataclasses.replace(outcome, success=criterion.judge(outcome))
