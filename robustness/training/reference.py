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

from robustness.criterion import Criterion
from robustness.noise import GradientNoise
from robustness.records import CurvePoint, RestartOutcome
from robustness.training.config import TrainConfig
from robustness.training.data import Dataset
from robustness.training.models import init_module
from robustness.training.pack import BatchOrder, SampledOrder
from robustness.training.spec import RestartSpec, derived_seeds
from robustness.training.tasks import SampledData, Task, TaskData, as_task_data

__all__ = ["evaluate_module", "make_optimizer", "train_single"]


def make_optimizer(module: torch.nn.Module, spec: RestartSpec, config: TrainConfig, *, seed: int) -> GradientNoise:
    """The stock ``torch.optim`` optimizer ``config`` names, wrapped in :class:`GradientNoise`."""
    params, wd = module.parameters(), config.weight_decay
    if config.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=spec.lr, momentum=config.momentum,
                                                     nesterov=config.nesterov, weight_decay=wd)
    else:
        cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        opt = cls(params, lr=spec.lr, betas=config.betas, eps=config.eps, weight_decay=wd)
    return GradientNoise(opt, spec.schedule, clip_norm=spec.clip_norm, seed=seed)


@torch.no_grad()
def evaluate_module(task: Task, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Every metric of ``task`` for one model on ``(x, y)``: the mean over examples."""
    was_training = module.training
    module.eval()
    try:
        return {name: v.double().mean().item() for name, v in task.metrics(module(x), y).items()}
    finally:
        module.train(was_training)


def train_single(
    task: Task,
    spec: RestartSpec,
    config: TrainConfig,
    *,
    criterion: Criterion,
    device: str | torch.device = "cpu",
    data: Dataset | TaskData | None = None,
) -> RestartOutcome:
    """Train one restart; same seeds, data order, noise and evaluations as in a pack."""
    device = torch.device(device)
    data = as_task_data(data if data is not None else task.load_data())
    init_seed, data_seed, noise_seed = derived_seeds(spec.seed)
    module = init_module(task.build_module(data), spec.init, torch.Generator().manual_seed(init_seed)).to(device)
    data = data.to(device)
    test_x, test_y = data.test_x, data.test_y
    opt = make_optimizer(module, spec, config, seed=noise_seed)
    # The pack's schedule through a stock scheduler: update t runs at lr * f(t).
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: config.lr_schedule.factor(t, config.steps))
    sampled = isinstance(data, SampledData)
    order = SampledOrder(data_seed) if sampled else BatchOrder(data_seed, data.n_train, config.batch_size)

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if sampled:
            x, y = data.sample(order.generator, config.batch_size)
            return x.to(device), y.to(device)
        idx = order.indices(step).to(device)
        return data.train_x[idx], data.train_y[idx]

    start = time.perf_counter()
    curve: list[CurvePoint] = []
    loss_sum, loss_n, diverged_step, train_loss = 0.0, 0, None, float("nan")
    for step in range(config.steps):
        if diverged_step is None:
            x, y = batch(step)
            loss = task.loss(module(x), y).mean()
            opt.zero_grad()
            loss.backward()
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()]))
            if not (math.isfinite(loss.item()) and math.isfinite(norm.item())):
                diverged_step = step  # frozen from here on, like a restart in a pack
            else:
                opt.step()
                scheduler.step()  # only after an update: a frozen restart's lr no longer matters
                loss_sum += loss.item()
                loss_n += 1
        else:
            batch(step)  # keep the data stream aligned with a pack's
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            metric = evaluate_module(task, module, test_x, test_y)[task.primary_metric]
            train_loss = loss_sum / loss_n if loss_n else float("nan")  # NaN: no update in the interval
            curve.append(CurvePoint(step + 1, train_loss, metric))
            loss_sum, loss_n = 0.0, 0
    metrics = {**evaluate_module(task, module, test_x, test_y), "train_loss": train_loss}
    outcome = RestartOutcome(
        params=spec.params, restart=spec.restart, seed=spec.seed, metrics=metrics,
        primary_metric=task.primary_metric, success=False, curve=tuple(curve),
        diverged=diverged_step is not None, diverged_step=diverged_step,
        wall_time_s=time.perf_counter() - start, device=str(device),
    )
    return dataclasses.replace(outcome, success=criterion.judge(outcome))
