"""Your own training loop: a task's train(ctx) through the sweep, recorded like a pack's restarts."""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pytest
import ray.cloudpickle
import torch
from scipy import stats

from robustness.criterion import Criterion
from robustness.noise import AnnealedNoise, NoNoise
from robustness.storage import RestartStore
from robustness.study.search_space import parse_search_space
from robustness.study.sweep import run_sweep
from robustness.training.config import TrainConfig
from robustness.training.loop import LoopContext, train_with_loop, uses_own_loop
from robustness.training.pack import BatchOrder, train_pack
from robustness.training.spec import RestartSpec
from robustness.training.tasks import DeepMLPTask


@dataclasses.dataclass(frozen=True)
class LoopMLP(DeepMLPTask):
    """deep_mlp trained by a plain loop of the user's: torch.optim.SGD, an LR scheduler, the noise hook."""

    decay: float = 1.0  # StepLR's gamma: the user's own scheduler, which a pack does not need to know

    def train(self, ctx: LoopContext) -> dict[str, float]:
        data = ctx.data
        module = ctx.init(self.build_module(data))
        opt = torch.optim.SGD(module.parameters(), lr=ctx.spec.lr)
        ctx.attach_noise(opt)  # clip, then annealed noise, before every opt.step()
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=self.decay)
        order = BatchOrder(ctx.seeds[1], data.n_train, ctx.config.batch_size)  # the pack's data order
        losses = []
        for step in range(ctx.config.steps):
            idx = order.indices(step)
            loss = self.loss(module(data.train_x[idx]), data.train_y[idx]).mean()
            if not math.isfinite(loss.item()):
                ctx.diverged(step)
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if (step + 1) % ctx.config.eval_every == 0:
                with torch.no_grad():
                    acc = self.metrics(module(data.test_x), data.test_y)["test_accuracy"].mean().item()
                ctx.report(step + 1, train_loss=float(np.mean(losses)), test_accuracy=acc)
                losses = []
        with torch.no_grad():
            return {k: v.mean().item() for k, v in self.metrics(module(data.test_x), data.test_y).items()}


CRIT = Criterion("test_accuracy", ">=", 0.5)


def _specs(n: int) -> list[RestartSpec]:
    return [RestartSpec.make(restart=k, lr=0.1, schedule=s, clip_norm=5.0, init="he")
            for s in (NoNoise(), AnnealedNoise(eta=0.01)) for k in range(n)]


def test_the_loop_and_the_pack_give_indistinguishable_success_rates() -> None:
    """The same restarts through both routes. Test: exact McNemar on the paired outcomes
    (restart k by both routes), which must not reject equality at 5%; and with the same
    seeds, data order and noise, the two routes in fact agree restart by restart here."""
    task = LoopMLP(depth=3, width=16)
    config = TrainConfig(steps=60, batch_size=32, eval_every=20)
    specs = _specs(12)
    packed = train_pack(task, specs, config, criterion=CRIT)
    looped = [train_with_loop(task, s, config, criterion=CRIT) for s in specs]
    a = np.array([o.success for o in packed])
    b = np.array([o.success for o in looped])
    discordant = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = stats.binomtest(discordant[0], sum(discordant), 0.5).pvalue if sum(discordant) else 1.0
    assert p > 0.05
    assert 0 < a.sum() < len(a)  # the criterion separates the restarts: the test is not vacuous
    for x, y in zip(packed, looped):
        assert x.metrics["test_accuracy"] == pytest.approx(y.metrics["test_accuracy"], abs=3 / 450)
        assert [p.step for p in x.curve] == [p.step for p in y.curve]


def test_loop_outcomes_are_the_same_record_as_a_packs() -> None:
    task = LoopMLP(depth=2, width=8)
    outcome = train_with_loop(task, _specs(1)[1], TrainConfig(steps=20, batch_size=32, eval_every=10), criterion=CRIT)
    assert uses_own_loop(task) and not uses_own_loop(DeepMLPTask())
    assert set(outcome.metrics) == {"test_accuracy", "test_error", "test_loss", "train_loss"}
    assert [p.step for p in outcome.curve] == [10, 20] and outcome.primary_metric == "test_accuracy"
    assert outcome.params["schedule"] == "annealed" and outcome.success == (outcome.metrics["test_accuracy"] >= 0.5)


def test_a_loop_task_runs_through_the_sweep_one_restart_per_trial(ray_local, tmp_path) -> None:
    text = f"""
study: loop
task: {{name: '{__name__}:LoopMLP', depth: 2, width: 8, decay: 0.5, steps: 20, batch_size: 32, eval_every: 10}}
grid: {{lr: [0.1], clip: [5], init: [he], noise: [{{schedule: none}}, {{schedule: annealed, eta: [0.01]}}]}}
restarts: 2
success: {{metric: test_accuracy, op: '>=', threshold: 0.5}}
resources: {{cpu: 1, gpu: 0}}
"""
    space = parse_search_space(text, source="loop.yaml")
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    try:
        result = run_sweep(space, storage=url)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (result.written, result.packs, result.failed_packs) == (4, 4, 0)  # one restart per trial
    with RestartStore(url) as store:
        stored = sorted(store.iter_outcomes("loop"), key=lambda o: (o.params["schedule"], o.restart))
    assert [(o.params["schedule"], o.restart) for o in stored] == [("annealed", 0), ("annealed", 1), ("none", 0), ("none", 1)]
    assert all([p.step for p in o.curve] == [10, 20] for o in stored)
