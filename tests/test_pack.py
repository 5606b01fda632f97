"""Restart packs: a restart's outcome does not depend on its pack (bit for bit), each
update matches the plain loop, diverged restarts are isolated, and a pack resumes
bit-identically."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from robustness.criterion import Criterion
from robustness.noise import AnnealedNoise, ConstantNoise, NoNoise
from robustness.training.config import LRSchedule, TrainConfig
from robustness.training.data import load_dataset
from robustness.training.pack import PackTrainer, train_pack
from robustness.training.reference import train_single
from robustness.training.spec import RestartSpec, restart_seed
from robustness.training.tasks import DeepMLPTask

TASK = DeepMLPTask(dataset="digits", depth=6, width=32)
CRIT = Criterion("test_accuracy", ">=", 0.5)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


def _specs(lr: float, R: int = 8, clips: list[float | None] | None = None) -> list[RestartSpec]:
    schedules = [NoNoise(), AnnealedNoise(eta=0.3), ConstantNoise(eta=0.01), AnnealedNoise(eta=1.0, gamma=0.3)]
    inits = ["he", "simple", "random_walk", "zero"]
    # tight clip thresholds so clipping is active on most steps (unclipped, noisy, high-lr
    # restarts are chaotic: float rounding differences grow past any tolerance)
    clips = clips or [0.5, 1.0, 2.0, 0.2]
    return [
        RestartSpec.make(restart=k, lr=lr * (1 + 0.5 * (k % 3)), schedule=schedules[k % 4], clip_norm=clips[(k // 2) % 4], init=inits[(k + 1) % 4])
        for k in range(R)
    ]


def _assert_close(a, b, *, rtol: float = 1e-5) -> None:
    """Equal up to float summation order: only for runs too short to amplify it (see below)."""
    assert a.params == b.params and a.seed == b.seed and a.diverged == b.diverged
    for name in ("test_loss", "train_loss"):
        assert a.metrics[name] == pytest.approx(b.metrics[name], rel=rtol, abs=1e-7), name
    # accuracy is a step function of the logits: a rounding difference may flip one of the 450 test examples
    assert a.metrics["test_accuracy"] == pytest.approx(b.metrics["test_accuracy"], abs=1.5 / 450)
    assert [p.step for p in a.curve] == [p.step for p in b.curve]
    for p, q in zip(a.curve, b.curve):
        assert p.train_loss == pytest.approx(q.train_loss, rel=rtol, abs=1e-7)
        assert p.metric == pytest.approx(q.metric, abs=1.5 / 450)


def _bits(o) -> tuple:
    """Everything a restart's outcome says, NaN-safe, for exact comparison (wall time aside)."""
    def as_bits(x: float) -> int:
        return torch.tensor(float(x), dtype=torch.float64).view(torch.int64).item()

    metrics = tuple((k, as_bits(v)) for k, v in sorted(o.metrics.items()))
    curve = tuple((p.step, as_bits(p.train_loss), as_bits(p.metric)) for p in o.curve)
    return o.params, o.seed, o.diverged, o.diverged_step, metrics, curve


# --- a restart's outcome does not depend on its pack (bit for bit) ----------------------------------
# Retries, resumes and extended studies put a restart into another pack than the
# one it would have had: another size, other neighbours, another position. Every
# restart-wise kernel of the pack (bmm, row norms, per-row noise) computes row r
# from row r alone, so its result must be identical, not merely close. This holds
# on any CPU; it is the exact form of "a restart in a pack equals it alone".
PLACEMENT_CONFIGS = [
    # a regime where momentum, noise and large steps make the run chaotic: any
    # difference at all would be amplified past every tolerance within 60 updates
    (TrainConfig(steps=60, batch_size=32, eval_every=20, optimizer="sgd", momentum=0.9), 0.05),
    (TrainConfig(steps=60, batch_size=32, eval_every=20, optimizer="adam"), 0.01),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("config,lr", PLACEMENT_CONFIGS, ids=["sgd-momentum", "adam"])
def test_a_restarts_outcome_does_not_depend_on_its_pack(data, config, lr, threads) -> None:
    specs = _specs(lr, clips=[0.5, None, 2.0, 10.0])
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        full = [_bits(o) for o in train_pack(TASK, specs, config, criterion=CRIT, data=data)]
        for chosen in ([5], [2], [7, 1, 5], list(range(8))[::-1]):
            pack = train_pack(TASK, [specs[i] for i in chosen], config, criterion=CRIT, data=data)
            for i, o in zip(chosen, pack):
                assert _bits(o) == full[i], f"restart {i} changed when packed with {chosen}"
    finally:
        torch.set_num_threads(before)
    # the runs really differ from one another, and some really clip (the check is not vacuous)
    assert len({b[4] for b in full}) == 8


# --- against the plain loop: per update, in a regime too short to amplify rounding -------------------
# The pack and the plain nn.Module + torch.optim + GradientNoise loop run different
# kernels (one fused clip norm vs. per-parameter norms, bmm vs. mm), whose float
# sums are ordered differently on different CPUs. Over long noisy runs with momentum,
# those last-bit differences grow chaotically (3% after 40 updates was seen on an
# AMD CPU), so the two are compared update by update over the first 5 updates with
# a small learning rate, where a difference of one rounding step stays one.
@pytest.mark.parametrize(
    "config,lr",
    [
        (TrainConfig(steps=5, batch_size=32, eval_every=1, optimizer="sgd", momentum=0.9), 0.005),
        (TrainConfig(steps=5, batch_size=32, eval_every=1, optimizer="sgd"), 0.05),
        (TrainConfig(steps=5, batch_size=32, eval_every=1, optimizer="adam"), 0.003),
    ],
    ids=["sgd-momentum", "sgd", "adam"],
)
def test_each_update_matches_the_plain_loop(data, config, lr) -> None:
    specs = _specs(lr)
    pack = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    for spec, outcome in zip(specs, pack):
        _assert_close(outcome, train_single(TASK, spec, config, criterion=CRIT, data=data))
    # the runs really differ from one another (the comparison is not vacuous)
    assert len({round(o.metrics["test_loss"], 5) for o in pack}) == 8


# --- the optimizer knobs and the pack's LR schedule, against the plain loop (torch.optim + LambdaLR) -----
# Each knob is strong enough to matter within 5 updates (checked: the pack without it
# differs), so a term applied at the wrong place (e.g. weight decay before clipping) or an
# off-by-one in the schedule would not pass. Every step: one update, one curve point.
_FIVE = {"steps": 5, "batch_size": 32, "eval_every": 1}
KNOBS = {
    "sgd-nesterov": (TrainConfig(**_FIVE, optimizer="sgd", momentum=0.9, nesterov=True), 0.005),
    "sgd-weight-decay": (TrainConfig(**_FIVE, optimizer="sgd", weight_decay=0.3), 0.05),
    "sgd-nesterov-weight-decay": (TrainConfig(**_FIVE, optimizer="sgd", momentum=0.9, nesterov=True,
                                              weight_decay=0.5), 0.005),
    "adam-weight-decay": (TrainConfig(**_FIVE, optimizer="adam", weight_decay=1.0), 0.003),
    "adamw": (TrainConfig(**_FIVE, optimizer="adamw", weight_decay=5.0), 0.003),
    "step": (TrainConfig(**_FIVE, optimizer="sgd", lr_schedule=LRSchedule("step", step_size=2, gamma=0.2)), 0.05),
    "cosine": (TrainConfig(**_FIVE, optimizer="adam", lr_schedule=LRSchedule("cosine", final_factor=0.1)), 0.003),
    "warmup": (TrainConfig(**_FIVE, optimizer="sgd", momentum=0.9, lr_schedule=LRSchedule(warmup=3)), 0.005),
    "warmup-step": (TrainConfig(**_FIVE, optimizer="sgd", lr_schedule=LRSchedule("step", warmup=2, step_size=1,
                                                                                gamma=0.5)), 0.05),
    "warmup-cosine-adamw": (TrainConfig(**_FIVE, optimizer="adamw",
                                        lr_schedule=LRSchedule("cosine", warmup=2, final_factor=0.0)), 0.003),
}
# What each knob is, switched off.
_PLAIN = {"nesterov": False, "weight_decay": 0.0, "lr_schedule": LRSchedule()}


@pytest.mark.parametrize("config,lr", list(KNOBS.values()), ids=list(KNOBS))
def test_each_knob_matches_the_plain_loop_update_by_update(data, config, lr) -> None:
    specs = _specs(lr)
    pack = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    for spec, outcome in zip(specs, pack):
        _assert_close(outcome, train_single(TASK, spec, config, criterion=CRIT, data=data))
    assert len({round(o.metrics["test_loss"], 5) for o in pack}) == 8
    # the knob matters here: without it, the pack trains to other numbers
    without = train_pack(TASK, specs, dataclasses.replace(config, **_PLAIN), criterion=CRIT, data=data)
    assert max(abs(a.metrics["test_loss"] - b.metrics["test_loss"]) for a, b in zip(pack, without)) > 1e-4


@pytest.mark.parametrize("config,lr", [KNOBS["sgd-nesterov-weight-decay"], KNOBS["warmup-cosine-adamw"]],
                         ids=["sgd-nesterov-weight-decay", "warmup-cosine-adamw"])
def test_knobs_keep_a_restarts_outcome_independent_of_its_pack(data, config, lr) -> None:
    config = dataclasses.replace(config, steps=30, eval_every=10)
    specs = _specs(lr, clips=[0.5, None, 2.0, 10.0])
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the threaded noise path is covered above; this is about the knobs
    try:
        full = [_bits(o) for o in train_pack(TASK, specs, config, criterion=CRIT, data=data)]
        for chosen in ([5], [7, 1, 5]):
            pack = train_pack(TASK, [specs[i] for i in chosen], config, criterion=CRIT, data=data)
            for i, o in zip(chosen, pack):
                assert _bits(o) == full[i], f"restart {i} changed when packed with {chosen}"
    finally:
        torch.set_num_threads(before)


def test_lr_schedule_factors_by_hand_and_as_torch_schedulers() -> None:
    step = LRSchedule("step", step_size=2, gamma=0.5)
    assert [step.factor(t, 6) for t in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    cosine = LRSchedule("cosine", final_factor=0.2)
    assert [cosine.factor(t, 4) for t in (0, 2, 4)] == pytest.approx([1.0, 0.6, 0.2])
    warm = LRSchedule("cosine", warmup=3, final_factor=0.0)  # (t + 1) / 4, then cosine over 10 - 3 updates
    assert [warm.factor(t, 10) for t in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert warm.factor(10, 10) == pytest.approx(0.0, abs=1e-12)
    assert LRSchedule(warmup=1).factor(0, 5) == 0.5 and LRSchedule().factor(7, 5) == 1.0
    # without warmup, the same learning rates as torch's own StepLR and CosineAnnealingLR
    for schedule, make in [
        (step, lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)),
        (cosine, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12, eta_min=0.2 * 0.1)),
    ]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        sched = make(opt)
        for t in range(12):
            assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * schedule.factor(t, 12), rel=1e-12), t
            opt.step()
            sched.step()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"optimizer": "sgd", "nesterov": True}, "nesterov needs optimizer sgd with momentum > 0"),
        ({"optimizer": "adam", "weight_decay": -1.0}, "weight_decay must be >= 0"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
    ],
)
def test_train_config_refuses_what_torch_refuses(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
    with pytest.raises(ValueError, match="step_size >= 1"):
        LRSchedule("step")
    assert TrainConfig(optimizer="adamw").weight_decay == 0.01  # PyTorch's AdamW default
    assert TrainConfig(optimizer="adam").weight_decay == 0.0


def test_vmap_path_matches_the_hand_vectorized_path(data) -> None:
    config = TrainConfig(steps=5, batch_size=16, eval_every=1, optimizer="adam")
    specs = _specs(0.003)
    fast = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    generic = train_pack(TASK, specs, config, criterion=CRIT, data=data, vectorized=False)
    for a, b in zip(fast, generic):
        _assert_close(a, b)


def test_divergence_is_isolated(data) -> None:
    config = TrainConfig(steps=30, batch_size=32, eval_every=10, optimizer="sgd")
    specs = _specs(0.05)
    # restart 3 gets an absurd learning rate and no clipping: it must blow up
    specs[3] = RestartSpec.make(restart=3, lr=1e12, schedule=NoNoise(), clip_norm=None, init="he")
    outcomes = train_pack(TASK, specs, config, criterion=CRIT, data=data)
    bad = outcomes[3]
    assert bad.diverged and bad.diverged_step is not None and 0 < bad.diverged_step < 30
    assert bad.success is False and not CRIT.judge(bad)
    # the others are exactly what they are without it
    healthy = [0, 1, 2, 4, 5, 6, 7]
    alone = train_pack(TASK, [specs[k] for k in healthy], config, criterion=CRIT, data=data)
    for k, o in zip(healthy, alone):
        assert not outcomes[k].diverged and _bits(outcomes[k]) == _bits(o)
    single = train_single(TASK, specs[3], config, criterion=CRIT, data=data)
    assert single.diverged and single.diverged_step == bad.diverged_step
    # train loss averages only the updates taken before divergence, then is NaN (not 0)
    got = [p.train_loss for p in bad.curve]
    want = [p.train_loss for p in single.curve]
    assert [math.isnan(x) for x in got] == [math.isnan(x) for x in want] and math.isnan(got[-1])
    assert math.isnan(bad.metrics["train_loss"])


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(steps=40, batch_size=32, eval_every=10, optimizer="adam"),
        # resumed at update 17 of 20: past the warmup, inside the cosine; AdamW's decay acts on theta
        TrainConfig(steps=20, batch_size=32, eval_every=10, optimizer="adamw", weight_decay=0.5,
                    lr_schedule=LRSchedule("cosine", warmup=5, final_factor=0.1)),
    ],
    ids=["adam", "adamw-warmup-cosine"],
)
def test_resume_from_state_dict_is_bit_identical(data, config) -> None:
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
    assert Criterion("test_accuracy", ">=", 0.0).judge(o) is True
    assert math.isfinite(o.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only: no GPU on this machine")
def test_pack_on_cuda_equals_restart_alone_on_cuda(data) -> None:
    config = TrainConfig(steps=5, batch_size=32, eval_every=1, optimizer="adam")
    specs = _specs(0.003)
    pack = train_pack(TASK, specs, config, criterion=CRIT, data=data, device="cuda")
    for spec, outcome in zip(specs, pack):
        _assert_close(outcome, train_single(TASK, spec, config, criterion=CRIT, data=data, device="cuda"), rtol=1e-4)
