"""GradientNoise and attach_gradient_noise: the variance, the order (clip, then
noise), that it reaches the update, determinism and resume, and that both fit
torch's own machinery (LR schedulers, checkpoints). Each test would fail for one
of the public implementation mistakes listed in shared/paper-notes.md."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import torch
from scipy import stats

from robustness.noise import (
    SCHEDULES,
    AnnealedNoise,
    ConstantNoise,
    GradientNoise,
    GradientNoiseHook,
    NoiseSchedule,
    NoNoise,
    attach_gradient_noise,
    make_schedule,
    register_schedule,
)

N = 200_000  # elements per draw: sample variance has relative s.d. sqrt(2/N) = 0.3%


def _zero_grad_step(p: torch.Tensor, opt: GradientNoise) -> torch.Tensor:
    """One SGD(lr=1) step on a zero gradient: the update is exactly minus the noise."""
    before = p.detach().clone()
    p.grad = torch.zeros_like(p)
    opt.step()
    return before - p.detach()


def test_annealed_variance_formula() -> None:
    s = AnnealedNoise(eta=0.3, gamma=0.55)
    for t in (0, 1, 9, 99):
        assert s.variance(t) == 0.3 / (1 + t) ** 0.55
    assert s.std(3) == math.sqrt(0.3 / 4**0.55)
    assert ConstantNoise(eta=0.01).variance(1000) == 0.01
    assert NoNoise().variance(0) == 0.0


@pytest.mark.parametrize("eta,gamma", [(0.3, 0.55), (1.0, 0.55), (0.01, 0.0)])
def test_noise_has_the_scheduled_variance_at_each_step(eta: float, gamma: float) -> None:
    p = torch.zeros(N, requires_grad=True)
    opt = GradientNoise(torch.optim.SGD([p], lr=1.0), AnnealedNoise(eta=eta, gamma=gamma), seed=0)
    for t in range(12):
        noise = _zero_grad_step(p, opt).double()
        expected = eta / (1 + t) ** gamma
        # (N-1) s^2 / sigma^2 ~ chi2(N-1): a two-sided 99.9% acceptance region, not a fudge factor.
        lo, hi = stats.chi2.ppf([0.0005, 0.9995], N - 1) / (N - 1) * expected
        assert lo < noise.var().item() < hi, (t, noise.var().item(), expected)
        assert abs(noise.mean().item()) < 5 * math.sqrt(expected / N)
    assert opt.t == 12


def test_eta_is_a_variance_not_a_standard_deviation() -> None:
    p = torch.zeros(N, requires_grad=True)
    opt = GradientNoise(torch.optim.SGD([p], lr=1.0), ConstantNoise(eta=0.09), seed=1)
    noise = _zero_grad_step(p, opt)
    # variance 0.09 -> s.d. 0.3 (treating eta as the s.d. would give 0.09)
    assert noise.std().item() == pytest.approx(0.3, rel=0.01)


def test_noise_reaches_the_optimizer_update_exactly() -> None:
    seed, eta = 5, 0.3
    p = torch.zeros(1000, requires_grad=True)
    q = torch.zeros(7, 3, requires_grad=True)
    opt = GradientNoise(torch.optim.SGD([p, q], lr=0.5), AnnealedNoise(eta=eta), seed=seed)
    g_p, g_q = torch.randn(1000), torch.randn(7, 3)
    p.grad, q.grad = g_p.clone(), g_q.clone()
    opt.step()
    z = torch.randn(1021, generator=torch.Generator().manual_seed(seed)) * math.sqrt(eta)
    torch.testing.assert_close(p.detach(), -0.5 * (g_p + z[:1000]), rtol=0, atol=1e-6)
    torch.testing.assert_close(q.detach(), -0.5 * (g_q + z[1000:].view(7, 3)), rtol=0, atol=1e-6)


def test_no_noise_leaves_the_update_plain() -> None:
    p = torch.zeros(100, requires_grad=True)
    opt = GradientNoise(torch.optim.SGD([p], lr=1.0), NoNoise(), seed=0)
    state = opt.generator.get_state()
    assert torch.equal(_zero_grad_step(p, opt), torch.zeros(100))
    assert torch.equal(opt.generator.get_state(), state)  # no draws for the baseline


def test_clipping_happens_before_noise() -> None:
    n, eta, clip = 50_000, 1.0, 1.0
    p = torch.zeros(n, requires_grad=True)
    opt = GradientNoise(torch.optim.SGD([p], lr=1.0), ConstantNoise(eta=eta), clip_norm=clip, seed=2)
    p.grad = torch.full((n,), 1000.0)
    opt.step()
    update = -p.detach()
    clipped = torch.full((n,), clip / math.sqrt(n))
    noise = update - clipped
    # Noise after clipping keeps its full variance; clipped after, the whole update would have norm <= 1.
    assert noise.var().item() == pytest.approx(eta, rel=0.03)
    assert update.norm().item() > 100 * clip
    assert noise.mean().item() == pytest.approx(0.0, abs=0.03)


def test_clipping_matches_torch_clip_grad_norm() -> None:
    torch.manual_seed(0)
    a, b = torch.zeros(30, requires_grad=True), torch.zeros(4, 5, requires_grad=True)
    ga, gb = torch.randn(30) * 10, torch.randn(4, 5) * 10
    a.grad, b.grad = ga.clone(), gb.clone()
    GradientNoise(torch.optim.SGD([a, b], lr=1.0), NoNoise(), clip_norm=2.0).step()
    a2, b2 = torch.zeros(30, requires_grad=True), torch.zeros(4, 5, requires_grad=True)
    a2.grad, b2.grad = ga.clone(), gb.clone()
    torch.nn.utils.clip_grad_norm_([a2, b2], 2.0)
    torch.testing.assert_close(a.detach(), -a2.grad)
    torch.testing.assert_close(b.detach(), -b2.grad)
    assert torch.cat([a.detach(), b.detach().flatten()]).norm().item() == pytest.approx(2.0, rel=1e-5)


def _train(seed: int, steps: int, *, state: dict | None = None, start: int = 0):
    torch.manual_seed(123)  # the same model init and data for every call
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    opt = GradientNoise(torch.optim.Adam(model.parameters(), lr=1e-2), AnnealedNoise(eta=0.1), clip_norm=1.0, seed=seed)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
    for _ in range(start, steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model, opt


def test_same_seed_same_result_and_global_rng_untouched() -> None:
    m1, _ = _train(seed=7, steps=20)
    torch.manual_seed(0)
    rng = torch.random.get_rng_state()
    m2, _ = _train(seed=7, steps=20)
    m3, _ = _train(seed=8, steps=20)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, c) for a, c in zip(m1.parameters(), m3.parameters()))
    torch.manual_seed(0)
    p = torch.zeros(10, requires_grad=True)
    _zero_grad_step(p, GradientNoise(torch.optim.SGD([p], lr=1.0), ConstantNoise(eta=1.0), seed=3))
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_resume_from_state_dict_is_bit_identical() -> None:
    full, _ = _train(seed=11, steps=30)
    half, opt = _train(seed=11, steps=15)
    state = {"model": {k: v.clone() for k, v in half.state_dict().items()}, "opt": opt.state_dict()}
    assert state["opt"]["t"] == 15
    resumed, opt2 = _train(seed=999, steps=30, state=state, start=15)  # seed is overridden by the state
    assert opt2.t == 30
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_pass_through_and_validation() -> None:
    p = torch.zeros(3, requires_grad=True)
    inner = torch.optim.SGD([p], lr=0.1)
    opt = GradientNoise(inner, NoNoise())
    assert opt.param_groups is inner.param_groups
    p.grad = torch.ones(3)
    opt.zero_grad()
    assert p.grad is None
    with pytest.raises(ValueError, match="clip_norm"):
        GradientNoise(inner, NoNoise(), clip_norm=0.0)
    with pytest.raises(ValueError, match="variance"):
        AnnealedNoise(eta=0.0)
    with pytest.raises(ValueError, match="gamma"):
        AnnealedNoise(eta=1.0, gamma=-0.1)


def test_registry_names_and_user_schedules() -> None:
    assert {"none", "constant", "annealed"} <= set(SCHEDULES)
    assert make_schedule("annealed", eta=0.3) == AnnealedNoise(eta=0.3, gamma=0.55)
    with pytest.raises(ValueError, match="unknown noise schedule"):
        make_schedule("nope")

    import dataclasses

    @register_schedule("test_step_decay")
    @dataclasses.dataclass(frozen=True)
    class StepDecay(NoiseSchedule):
        eta: float
        every: int

        def variance(self, t: int) -> float:
            return self.eta / 2 ** (t // self.every)

    try:
        s = make_schedule("test_step_decay", eta=1.0, every=10)
        assert s.variance(25) == 0.25
        assert s.params() == {"schedule": "test_step_decay", "eta": 1.0, "every": 10}
    finally:
        SCHEDULES.pop("test_step_decay")


def test_resuming_with_another_schedule_is_refused() -> None:
    _, opt = _train(seed=1, steps=3)
    p = torch.zeros(3, requires_grad=True)
    other = GradientNoise(torch.optim.Adam([p]), ConstantNoise(eta=0.1), clip_norm=1.0, seed=1)
    with pytest.raises(ValueError, match="noise schedule"):
        other.load_state_dict(opt.state_dict())


# -- attach_gradient_noise: the same noise as a step pre-hook on the user's own optimizer --


def _model_and_data() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(123)  # the same model init and data for every call
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    return model, torch.randn(64, 8), torch.randn(64, 1)


def _make_inner(kind: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    if kind == "sgd_momentum":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return torch.optim.Adam(model.parameters(), lr=1e-2)


def _fit(model, x, y, opt, steps: int) -> None:
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("kind", ["sgd_momentum", "adam"])
def test_hook_and_wrapper_are_bit_identical(kind: str) -> None:
    schedule = AnnealedNoise(eta=0.1)
    m1, x, y = _model_and_data()
    wrapped = GradientNoise(_make_inner(kind, m1), schedule, clip_norm=0.05, seed=3)  # 0.05: every step clips
    _fit(m1, x, y, wrapped, steps=8)
    m2, x, y = _model_and_data()
    inner = _make_inner(kind, m2)
    hook = attach_gradient_noise(inner, schedule, clip_norm=0.05, seed=3)
    _fit(m2, x, y, inner, steps=8)
    assert hook.t == wrapped.t == 8
    assert torch.equal(hook.generator.get_state(), wrapped.generator.get_state())
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def _clipped_noisy_updates(mode: str, make_sched, schedule: NoiseSchedule, steps: int = 4):
    """SGD on a constant gradient of norm 10*sqrt(n), clip 1: per step (lr, update, inner lr)."""
    n, seed = 500, 4
    p = torch.zeros(n, requires_grad=True)
    inner = torch.optim.SGD([p], lr=1.0)
    if mode == "hook":
        opt = inner
        attach_gradient_noise(inner, schedule, clip_norm=1.0, seed=seed)
    else:
        opt = GradientNoise(inner, schedule, clip_norm=1.0, seed=seed)
    sched = make_sched(opt)
    out = []
    for _ in range(steps):
        lr = inner.param_groups[0]["lr"]
        assert opt.param_groups[0]["lr"] == lr  # one set of groups, not a copy
        before = p.detach().clone()
        p.grad = torch.full((n,), 10.0)
        opt.step()
        sched.step()
        out.append((lr, before - p.detach(), sched.get_last_lr()[0]))
    return out


_SCHEDULERS = {
    "step": (lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1), lambda k: 0.1 ** (k // 2)),
    "cosine": (
        lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / 4))),
        lambda k: 0.5 * (1 + math.cos(math.pi * k / 4)),
    ),
}


@pytest.mark.parametrize("mode", ["hook", "wrapper"])
@pytest.mark.parametrize("name", sorted(_SCHEDULERS))
def test_lr_schedulers_drive_the_lr_and_noise_follows_clipping(mode: str, name: str) -> None:
    make_sched, lr_at = _SCHEDULERS[name]
    eta, gamma, n = 0.5, 0.55, 500
    noisy = _clipped_noisy_updates(mode, make_sched, AnnealedNoise(eta=eta, gamma=gamma))
    plain = _clipped_noisy_updates(mode, make_sched, NoNoise())
    gen = torch.Generator().manual_seed(4)
    z = [torch.randn(n, generator=gen) for _ in noisy]  # one flat draw per update, in order
    clipped = torch.full((n,), 10.0) * (1.0 / (10.0 * math.sqrt(n) + 1e-6))  # torch's clip_grad_norm_ factor
    for t, ((lr, update, last_lr), (_, plain_update, _)) in enumerate(zip(noisy, plain)):
        assert lr == pytest.approx(lr_at(t)) and last_lr == pytest.approx(lr_at(t + 1))
        # By hand: clip first, then noise of variance eta / (1 + t)^gamma, then SGD with the scheduled lr.
        expected = lr * (clipped + math.sqrt(eta / (1 + t) ** gamma) * z[t])
        torch.testing.assert_close(update, expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(plain_update, lr * clipped, rtol=1e-5, atol=1e-7)
        assert (update - plain_update).abs().max().item() > 0.1 * lr  # the noise really moved the parameters


def test_wrapper_is_an_optimizer_sharing_the_inner_state() -> None:
    p = torch.zeros(3, requires_grad=True)
    inner = torch.optim.Adam([p], lr=0.1)
    opt = GradientNoise(inner, ConstantNoise(eta=0.1), seed=0)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is inner.param_groups and opt.state is inner.state and opt.defaults is inner.defaults
    p.grad = torch.ones(3)
    opt.step()
    inner.load_state_dict(inner.state_dict())  # rebinds the inner lists; the wrapper must follow
    assert opt.param_groups is inner.param_groups and opt.state is inner.state
    q = torch.zeros(2, requires_grad=True)
    opt.add_param_group({"params": [q], "lr": 0.5})
    assert inner.param_groups[1]["lr"] == 0.5


def test_remove_stops_the_noise() -> None:
    p = torch.zeros(100, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    hook = attach_gradient_noise(opt, ConstantNoise(eta=1.0), seed=0)
    p.grad = torch.zeros(100)
    opt.step()
    assert p.detach().abs().sum() > 0 and hook.t == 1 and hook.attached
    hook.remove()
    hook.remove()  # twice is harmless
    state = hook.generator.get_state()
    before = p.detach().clone()
    p.grad = torch.zeros(100)
    opt.step()
    assert torch.equal(p.detach(), before) and hook.t == 1 and not hook.attached
    assert torch.equal(hook.generator.get_state(), state)
    attach_gradient_noise(opt, ConstantNoise(eta=1.0), seed=0)  # detached, so attaching again is allowed


def _train_hooked(seed: int, steps: int, *, state: dict | None = None, start: int = 0):
    model, x, y = _model_and_data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    hook = attach_gradient_noise(opt, AnnealedNoise(eta=0.1), clip_norm=1.0, seed=seed)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        hook.load_state_dict(state["noise"])
    _fit(model, x, y, opt, steps - start)
    return model, opt, hook


def test_hook_resume_from_state_dict_is_bit_identical() -> None:
    full, _, _ = _train_hooked(seed=11, steps=12)
    half, opt, hook = _train_hooked(seed=11, steps=6)
    state = {"model": copy.deepcopy(half.state_dict()), "opt": copy.deepcopy(opt.state_dict()), "noise": hook.state_dict()}
    assert state["noise"]["t"] == 6
    resumed, _, hook2 = _train_hooked(seed=999, steps=12, state=state, start=6)  # the seed is overridden
    assert hook2.t == 12
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    p = torch.zeros(3, requires_grad=True)
    other = attach_gradient_noise(torch.optim.Adam([p]), ConstantNoise(eta=0.1), clip_norm=1.0)
    with pytest.raises(ValueError, match="noise schedule"):
        other.load_state_dict(state["noise"])


def test_wrapper_deepcopy_carries_the_noise_on() -> None:
    model, x, y = _model_and_data()
    opt = GradientNoise(torch.optim.SGD(model.parameters(), lr=0.1), ConstantNoise(eta=0.01), seed=2)
    _fit(model, x, y, opt, 2)
    twin_model = copy.deepcopy(model)
    twin = copy.deepcopy(opt)
    twin.optimizer.param_groups[0]["params"] = list(twin_model.parameters())
    assert twin.t == 2 and twin.noise.attached
    _fit(model, x, y, opt, 2)
    _fit(twin_model, x, y, twin, 2)
    for a, b in zip(model.parameters(), twin_model.parameters()):
        assert torch.equal(a, b)


def _zero_grad_noise(opt: torch.optim.Optimizer, p: torch.Tensor) -> torch.Tensor:
    before = p.detach().clone()
    p.grad = torch.zeros_like(p)
    opt.step()
    return before - p.detach()


def test_each_hook_has_its_own_stream() -> None:
    p, q, r = (torch.zeros(50, requires_grad=True) for _ in range(3))
    opt_p, opt_q, opt_r = (torch.optim.SGD([w], lr=1.0) for w in (p, q, r))
    attach_gradient_noise(opt_p, ConstantNoise(eta=1.0), seed=1)
    attach_gradient_noise(opt_q, ConstantNoise(eta=1.0), seed=2)
    attach_gradient_noise(opt_r, ConstantNoise(eta=1.0), seed=1)
    for _ in range(3):  # p and q interleaved, r alone: a shared stream would make r differ from p
        noise_p, noise_q = _zero_grad_noise(opt_p, p), _zero_grad_noise(opt_q, q)
        assert not torch.equal(noise_p, noise_q)
    for _ in range(3):
        _zero_grad_noise(opt_r, r)
    assert torch.equal(p, r)


def test_hook_refuses_closures_and_the_wrapper_noises_them() -> None:
    g = torch.randn(20)

    def closure() -> torch.Tensor:
        p.grad = g.clone()
        return torch.tensor(1.5)

    p = torch.zeros(20, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    hook = attach_gradient_noise(opt, ConstantNoise(eta=0.25), seed=6)
    state = hook.generator.get_state()
    for call in (lambda: opt.step(closure), lambda: opt.step(closure=closure)):
        with pytest.raises(RuntimeError, match="closure"):
            call()
    assert hook.t == 0 and torch.equal(hook.generator.get_state(), state) and torch.equal(p, torch.zeros(20))
    opt.step(None)  # no closure: fine
    assert hook.t == 1

    p = torch.zeros(20, requires_grad=True)
    wrapped = GradientNoise(torch.optim.SGD([p], lr=1.0), ConstantNoise(eta=0.25), seed=6)
    assert wrapped.step(closure).item() == 1.5
    z = torch.randn(20, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(-p.detach(), g + 0.5 * z, rtol=0, atol=1e-6)  # noise on the closure's gradient


def test_attaching_twice_is_refused() -> None:
    p = torch.zeros(3, requires_grad=True)
    inner = torch.optim.SGD([p], lr=1.0)
    wrapped = GradientNoise(inner, ConstantNoise(eta=1.0))
    with pytest.raises(ValueError, match="already attached"):
        attach_gradient_noise(inner, ConstantNoise(eta=1.0))
    with pytest.raises(ValueError, match="already attached"):
        attach_gradient_noise(wrapped, ConstantNoise(eta=1.0))
    assert isinstance(wrapped.noise, GradientNoiseHook)


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, robustness.noise; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_step_gradscaler_skips_draws_no_noise() -> None:
    p = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([p], lr=1.0)
    hook = attach_gradient_noise(opt, ConstantNoise(eta=1.0), clip_norm=1.0, seed=0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    state = hook.generator.get_state()
    for w in (float("inf"), 1.0):  # first inf gradients: the scaler skips opt.step(), so the hook never runs
        opt.zero_grad()
        scaler.scale((p * w).sum()).backward()
        scaler.step(opt)
        scaler.update()
        if hook.t == 0:
            assert torch.equal(hook.generator.get_state(), state) and torch.equal(p, torch.zeros(4))
    z = torch.randn(4, generator=torch.Generator().manual_seed(0))
    # The hook sees the unscaled gradient (ones), clips it to norm 1, then adds the noise.
    torch.testing.assert_close(-p.detach(), torch.full((4,), 0.5) + z, rtol=0, atol=1e-5)
    assert hook.t == 1
