"""Init schemes: their statistics, checked against the formulas they cite."""

from __future__ import annotations

import math

import pytest
import torch

from robustness.models import INIT_SCHEMES, ParamLayout, flatten_params, init_module, make_mlp, random_walk_gain


def _init(scheme: str, seed: int = 0) -> torch.nn.Sequential:
    return init_module(make_mlp(784, 10, depth=3, width=200), scheme, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "scheme,std_of",
    [
        ("simple", lambda fan_in: 0.1),
        ("he", lambda fan_in: math.sqrt(2 / fan_in)),
        ("random_walk", lambda fan_in: random_walk_gain(fan_in) / math.sqrt(fan_in)),
    ],
)
def test_gaussian_schemes_have_the_documented_std(scheme, std_of) -> None:
    net = _init(scheme)
    for layer in (m for m in net if isinstance(m, torch.nn.Linear)):
        w = layer.weight.detach().double()
        n = w.numel()
        # sample s.d. has relative s.e. ~ 1/sqrt(2n); allow 5 s.e.
        assert w.std().item() == pytest.approx(std_of(layer.in_features), rel=5 / math.sqrt(2 * n))
        assert abs(w.mean().item()) < 5 * std_of(layer.in_features) / math.sqrt(n)
        assert torch.count_nonzero(layer.bias) == 0


def test_random_walk_gain_values() -> None:
    # Sussillo & Abbott (2014): g = sqrt(2) exp(1.2 / (max(N, 6) - 2.4)) for ReLU
    assert random_walk_gain(50) == pytest.approx(math.sqrt(2) * math.exp(1.2 / 47.6))
    assert random_walk_gain(3) == pytest.approx(math.sqrt(2) * math.exp(1.2 / 3.6))
    assert random_walk_gain(50) == pytest.approx(1.450319, abs=1e-6)


def test_zero_init_is_all_zero() -> None:
    assert torch.count_nonzero(flatten_params(_init("zero"))) == 0


def test_same_seed_same_weights_and_unknown_scheme() -> None:
    assert torch.equal(flatten_params(_init("he", 3)), flatten_params(_init("he", 3)))
    assert not torch.equal(flatten_params(_init("he", 3)), flatten_params(_init("he", 4)))
    assert set(INIT_SCHEMES) >= {"simple", "zero", "he", "random_walk"}
    with pytest.raises(ValueError, match="unknown init scheme"):
        _init("bogus")


def test_paper_architecture_and_layout() -> None:
    net = make_mlp(784, 10, depth=20, width=50)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 21 and sum(isinstance(m, torch.nn.ReLU) for m in net) == 20
    layout = ParamLayout.of(net)
    assert layout.numel == 784 * 50 + 50 + 19 * (50 * 50 + 50) + 50 * 10 + 10 == 88_210
    theta = flatten_params(net).unsqueeze(0)
    views = layout.views(theta)
    assert torch.equal(views["0.weight"][0], net[0].weight.detach())
    assert torch.equal(views["40.bias"][0], net[40].bias.detach())
