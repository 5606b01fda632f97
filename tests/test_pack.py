"""Restart packs: a restart in a pack equals the same restart trained alone,
diverged restarts are isolated, and a pack resumes bit-identically."""

from __future__ import annotations

import math

import pytest
import torch

from robustness.criterion import Criterion
from robustness.data import load_dataset
from robustness.noise import AnnealedNoise, ConstantNoise, NoNoise
from robustness.pack import PackTrainer, TrainConfig, train_pack
from robustness.reference import train_single
from robustness.spec import RestartSpec, restart_seed
from robustness.tasks import DeepMLPTask

TASK = DeepMLPTask(dataset="digits", depth=6, width=32)
CRIT = Criterion("test_accuracy", ">=", 0.5)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


def _specs(lr: float, R: int = 8) -> list[RestartSpec]:
    schedules = [NoNoise(), AnnealedNoise(eta=0.3), ConstantNoise(eta=0.01), AnnealedNoise(eta=1.0, gamma=0.3)]
    inits = ["he", "simple", "random_walk", "zero"]
    # tight clip thresholds so clipping is active on most steps (unclipped, noisy, high-lr
    # restarts are chaotic: float rounding differences grow past any tolerance)
    clips = [0.5, 1.0, 2.0, 0.2]
    return [
        RestartSpec.make(restart=k, lr=lr * (1 + 0.5 * (k % 3)), schedule=schedules[k % 4], clip_norm=clips[(k // 2) % 4], init=inits[(k + 1) % 4])
        for k in range(R)
    ]


def _assert_same(a, b, *, rtol: float = 2e-4) -> None:
    assert a.params == b.params and a.seed == b.seed and a.diverged == b.diverged
    for name in ("test_loss", "train_loss"):
        assert a.metrics[name] == pytest.approx(b.metrics[name], rel=rtol, abs=1e-6), name
    # accuracy is a step function of the logits: float noise may flip one of the 450 test examples
    assert a.metrics["test_accuracy"] == pytest.approx(b.metrics["test_accuracy"], abs=1.5 / 450)
    assert [p.step for p in a.curve] == [p.step for p in b.curve]
    for p, q in zip(a.curve, b.curve):
        assert p.train_loss == pytest.approx(q.train_loss, rel=rtol, abs=1e-6)
        assert p.metric == pytest.approx(q.metric, abs=1.5 / 450)  # at most one test example flips


@pytest.mark.parametrize(
    "config,lr",
    [
        # lr small enough that momentum + noise don't make the runs explode: an exploding run
        # amplifies float rounding (summation order) past any tolerance, and says nothing.
        (TrainConfig(steps=40, batch_size=32, eval_every=10, optimizer="sgd", momentum=0.9), 0.005),
        (TrainConfig(steps=40, batch_size=32, eval_every=10, optimizer="adam"), 0.003),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_restart_in_pack_equals_restart_alone(data, config, lr) -> None:
    specs = _specs(lr)
    pack = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    assert len(pack) == 8
    for spec, outcome in zip(specs, pack):
        alone = train_single(TASK, spec, config, criterion=CRIT, data=data)
        _assert_same(outcome, alone)
    # the runs really differ from one another (the comparison is not vacuous)
    assert len({round(o.metrics["test_loss"], 5) for o in pack}) == 8


def test_vmap_path_equals_hand_vectorized_path(data) -> None:
    config = TrainConfig(steps=20, batch_size=16, eval_every=10, optimizer="adam")
    specs = _specs(0.003)
    fast = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    generic = train_pack(TASK, specs, config, criterion=CRIT, data=data, vectorized=False)
    for a, b in zip(fast, generic):
        _assert_same(a, b, rtol=1e-4)


def test_pack_composition_does_not_change_a_restart(data) -> None:
    config = TrainConfig(steps=30, batch_size=32, eval_every=15, optimizer="sgd")
    specs = _specs(0.05)
    big = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    small = train_pack(TASK, [specs[5], specs[2]], config, criterion=CRIT, data=data)
    _assert_same(big[5], small[0], rtol=1e-5)
    _assert_same(big[2], small[1], rtol=1e-5)


def test_divergence_is_isolated(data) -> None:
    config = TrainConfig(steps=30, batch_size=32, eval_every=10, optimizer="sgd")
    specs = _specs(0.05)
    # restart 3 gets an absurd learning rate and no clipping: it must blow up
    specs[3] = RestartSpec.make(restart=3, lr=1e12, schedule=NoNoise(), clip_norm=None, init="he")
    outcomes = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    bad = outcomes[3]
    assert bad.diverged and bad.diverged_step is not None and 0 < bad.diverged_step < 30
    assert bad.success is False and not CRIT.judge(bad)
    for k in (0, 1, 2, 4, 5, 6, 7):
        assert not outcomes[k].diverged
        _assert_same(outcomes[k], train_single(TASK, specs[k], config, criterion=CRIT, data=data))
    alone = train_single(TASK, specs[3], config, criterion=CRIT, data=data)
    assert alone.diverged and alone.diverged_step == bad.diverged_step
    # train loss averages only the updates taken before divergence, then is NaN (not 0)
    got = [p.train_loss for p in bad.curve]
    want = [p.train_loss for p in alone.curve]
    assert [math.isnan(x) for x in got] == [math.isnan(x) for x in want] and math.isnan(got[-1])
    assert all(g == pytest.approx(w, rel=1e-4) for g, w in zip(got, want) if not math.isnan(w))
    assert math.isnan(bad.metrics["train_loss"])


def test_resume_from_state_dict_is_bit_identical(data) -> None:
    config = TrainConfig(steps=40, batch_size=32, eval_every=10, optimizer="adam")
    specs = _specs(0.003)
    straight = PackTrainer(TASK, specs, config, criterion=CRIT, data=data)
    straight.run()
    first = PackTrainer(TASK, specs, config, criterion=CRIT, data=data)
    first.run(until=17)
    state = first.state_dict()
    first.run()  # training on must not change the snapshot (CPU tensors alias unless copied)
    resumed = PackTrainer(TASK, specs, config, criterion=CRIT, data=data)
    resumed.load_state_dict(state)
    resumed.run()
    assert torch.equal(straight.theta, resumed.theta)
    a, b = straight.outcomes(), resumed.outcomes()
    assert [o.metrics for o in a] == [o.metrics for o in b]
    assert [o.curve for o in a] == [o.curve for o in b]


def test_shared_seeds_across_cells_and_outcome_fields(data) -> None:
    config = TrainConfig(steps=10, batch_size=32, eval_every=5)
    specs = [RestartSpec.make(restart=k, lr=0.05, schedule=s, clip_norm=10.0, init="he") for s in (NoNoise(), AnnealedNoise(eta=0.3)) for k in range(2)]
    outcomes = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    assert outcomes[0].seed == outcomes[2].seed == restart_seed(0)
    o = outcomes[3]
    assert o.params["schedule"] == "annealed" and o.params["eta"] == 0.3 and o.params["clip"] == 10.0
    assert set(o.metrics) == {"test_accuracy", "test_error", "test_loss", "train_loss"}
    assert o.metrics["test_error"] == pytest.approx(1 - o.metrics["test_accuracy"])
    assert [p.step for p in o.curve] == [5, 10]
    assert o.wall_time_s > 0 and o.device == "cpu" and o.primary_metric == "test_accuracy"
    assert o.success == (o.metrics["test_accuracy"] >= 0.5)
    assert o.judge(metric="test_accuracy", op=">=", threshold=0.0) is True
    assert math.isfinite(o.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only: no GPU on this machine")
def test_pack_on_cuda_equals_restart_alone_on_cuda(data) -> None:
    config = TrainConfig(steps=20, batch_size=32, eval_every=10, optimizer="adam")
    specs = _specs(0.003)
    pack = train_pack(TASK, specs, config, criterion=CRIT, data=data, device="cuda")
    for spec, outcome in zip(specs, pack):
        _assert_same(outcome, train_single(TASK, spec, config, criterion=CRIT, data=data, device="cuda"), rtol=1e-3)
