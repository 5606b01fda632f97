"""Init schemes: their statistics, checked against the formulas they cite."""

from __future__ import annotations

import math

import pytest
import torch

from robustness.training.models import (
    INIT_SCHEMES,
    ParamLayout,
    flatten_params,
    init_module,
    make_mlp,
    random_walk_gain,
)


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


class _Mixed(torch.nn.Module):
    """One of each layer kind a user model may hold (conv, embedding, norm, recurrent cell, attention)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(11, 8)
        self.conv = torch.nn.Conv1d(8, 6, kernel_size=3)
        self.norm = torch.nn.LayerNorm(6)
        self.cell = torch.nn.GRUCell(6, 5)
        self.attn = torch.nn.MultiheadAttention(5, num_heads=1)
        self.head = torch.nn.Linear(5, 3)
        self.bn = torch.nn.BatchNorm1d(3)


def _random_under_own_init() -> set[str]:
    """Names of the parameters that a module's own init draws at random (two global seeds differ)."""
    torch.manual_seed(1)
    a = dict(_Mixed().named_parameters())
    torch.manual_seed(2)
    b = dict(_Mixed().named_parameters())
    return {n for n in a if not torch.equal(a[n], b[n])}


@pytest.mark.parametrize("scheme", ["he", "simple", "random_walk", "zero"])
def test_every_random_parameter_is_drawn_per_restart(scheme) -> None:
    random = _random_under_own_init()
    assert {"emb.weight", "conv.weight", "cell.weight_ih", "attn.in_proj_weight", "head.weight"} <= random
    def fresh() -> _Mixed:  # the same module as built in one process: the constructor's draws are equal
        torch.manual_seed(0)
        return _Mixed()

    nets = [init_module(fresh(), scheme, torch.Generator().manual_seed(s)) for s in (5, 6)]
    again = init_module(fresh(), scheme, torch.Generator().manual_seed(5))
    for name, p in nets[0].named_parameters():
        q = dict(nets[1].named_parameters())[name]
        assert torch.equal(p, dict(again.named_parameters())[name]), name  # same seed, same values
        # the scheme sets Linear/Conv biases to zero, and weights too under "zero"
        layer = name.rsplit(".", 1)[0]
        constant = name.endswith("bias") or scheme == "zero"
        if name in random and not (layer in ("conv", "head", "attn.out_proj") and constant):
            assert not torch.equal(p, q), f"{name} is shared by two restarts with different seeds"
    # drawing from the restart's generator leaves the global RNG where the caller had it
    net = _Mixed()
    state = torch.get_rng_state()
    init_module(net, scheme, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)


def test_conv_weights_follow_the_scheme_with_their_fan_in() -> None:
    conv = torch.nn.Conv2d(16, 64, kernel_size=3)
    init_module(conv, "he", torch.Generator().manual_seed(0))
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (16 * 9)), rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0


def test_a_parameter_without_a_reset_is_refused() -> None:
    class Raw(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.randn(3))

    with pytest.raises(ValueError, match="no reset_parameters"):
        init_module(Raw(), "he", torch.Generator().manual_seed(0))
