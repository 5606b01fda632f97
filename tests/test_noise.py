"""GradientNoise: the variance, the order (clip, then noise), that it reaches the
update, determinism and resume. Each test would fail for one of the public
implementation mistakes listed in shared/paper-notes.md."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from robustness.noise import (
    SCHEDULES,
    AnnealedNoise,
    ConstantNoise,
    GradientNoise,
    NoiseSchedule,
    NoNoise,
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
