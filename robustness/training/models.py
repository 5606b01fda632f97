"""The paper's deep fully connected network, its initialization schemes, and
the flat parameter layout that restart packs train.

Neelakantan et al. (2015), section 4.1, train a 20-hidden-layer, 50-unit ReLU
network on MNIST with three kinds of initialization. The schemes here:

- ``simple``: weights ~ N(0, 0.1^2), zero biases (the paper's "simple init").
- ``zero``: all weights and biases zero (the paper's deliberately bad init; the
  network can only leave it through gradient noise or the output bias).
- ``he``: weights ~ N(0, 2 / fan_in), zero biases (He et al. 2015, "Delving
  deep into rectifiers").
- ``random_walk``: weights ~ N(0, g^2 / fan_in) with the ReLU gain
  ``g = sqrt(2) * exp(1.2 / (max(fan_in, 6) - 2.4))`` (Sussillo & Abbott 2014,
  "Random walk initialization for training very deep feedforward networks",
  their eq. for ReLU networks), zero biases. With He, the paper's "good init".

Every scheme draws from an explicit ``torch.Generator`` in module order, so the
same seed gives the same network in a pack and in a plain ``nn.Module``. The
schemes set Linear and Conv weights; every other parameter of any module is
drawn by that module's own ``reset_parameters`` from the same generator
(:func:`init_module`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "INIT_SCHEMES", "SCHEME_LAYERS", "ParamLayout", "flatten_params", "init_module", "make_mlp", "register_init",
]

# fn(weight, fan_in, generator): fill a Linear or Conv weight in place.
InitFn = Callable[[torch.Tensor, int, torch.Generator], None]
INIT_SCHEMES: dict[str, InitFn] = {}
# Layers whose weight an init scheme sets (bias: zero). Every other module with
# parameters of its own gets its own reset_parameters(), driven by the restart's generator.
SCHEME_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def register_init(name: str) -> Callable[[InitFn], InitFn]:
    """Register ``fn(weight, fan_in, generator)`` as an init scheme usable from YAML."""

    def decorate(fn: InitFn) -> InitFn:
        INIT_SCHEMES[name] = fn
        return fn

    return decorate


def _normal_(w: torch.Tensor, std: float, generator: torch.Generator) -> None:
    # Draw on the generator's device, then copy: keeps CPU and CUDA seeds meaning the same.
    w.copy_(torch.randn(w.shape, generator=generator, device=generator.device) * std)


@register_init("simple")
def _simple(weight: torch.Tensor, fan_in: int, generator: torch.Generator) -> None:
    _normal_(weight, 0.1, generator)


@register_init("zero")
def _zero(weight: torch.Tensor, fan_in: int, generator: torch.Generator) -> None:
    nn.init.zeros_(weight)


@register_init("he")
def _he(weight: torch.Tensor, fan_in: int, generator: torch.Generator) -> None:
    _normal_(weight, math.sqrt(2.0 / fan_in), generator)


def random_walk_gain(fan_in: int) -> float:
    """Sussillo & Abbott (2014) gain for ReLU layers of width ``fan_in``."""
    return math.sqrt(2.0) * math.exp(1.2 / (max(fan_in, 6) - 2.4))


@register_init("random_walk")
def _random_walk(weight: torch.Tensor, fan_in: int, generator: torch.Generator) -> None:
    _normal_(weight, random_walk_gain(fan_in) / math.sqrt(fan_in), generator)


def _reset_from(layer: nn.Module, generator: torch.Generator) -> None:
    """``layer``'s own reset, drawing from a seed taken from ``generator`` (the global RNG is restored)."""
    reset = getattr(layer, "reset_parameters", None) or getattr(layer, "_reset_parameters", None)
    if reset is None:
        raise ValueError(
            f"{type(layer).__name__} has parameters of its own but no reset_parameters(); add one, so that "
            "each restart can draw its own initial values")
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reset()


@torch.no_grad()
def init_module(module: nn.Module, scheme: str, generator: torch.Generator) -> nn.Module:
    """Initialize every parameter of ``module`` from ``generator``, in module order.

    Linear and Conv weights get ``scheme`` (fan-in = inputs per output unit) and
    zero biases. Any other module with parameters of its own (embeddings,
    normalization, recurrent cells, attention) runs its own ``reset_parameters``
    with the global RNG seeded from ``generator``, so two restarts never share a
    random parameter and the same seed always gives the same network.
    """
    try:
        fn = INIT_SCHEMES[scheme]
    except KeyError:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {sorted(INIT_SCHEMES)}") from None
    for layer in module.modules():
        if isinstance(layer, SCHEME_LAYERS):
            fn(layer.weight, layer.weight[0].numel(), generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif any(True for _ in layer.parameters(recurse=False)):
            _reset_from(layer, generator)
    return module


def make_mlp(input_dim: int, num_classes: int, *, depth: int = 20, width: int = 50) -> nn.Sequential:
    """``depth`` hidden ReLU layers of ``width`` units and a linear output layer (logits)."""
    if depth < 1 or width < 1:
        raise ValueError(f"depth and width must be >= 1, got depth={depth}, width={width}")
    layers: list[nn.Module] = []
    fan_in = input_dim
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


@dataclasses.dataclass(frozen=True)
class ParamLayout:
    """Where each named parameter lives in a flat vector of ``numel`` floats.

    The order is ``module.named_parameters()`` order, which is also the order
    in which ``GradientNoise`` draws its flat noise vector.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    numel: int

    @classmethod
    def of(cls, module: nn.Module) -> ParamLayout:
        names, shapes, offsets, total = [], [], [], 0
        for name, p in module.named_parameters():
            names.append(name)
            shapes.append(tuple(p.shape))
            offsets.append(total)
            total += p.numel()
        return cls(tuple(names), tuple(shapes), tuple(offsets), total)

    def views(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views into ``theta`` of shape ``(*batch, numel)``; no copies."""
        batch = theta.shape[:-1]
        out = {}
        for name, shape, off in zip(self.names, self.shapes, self.offsets):
            n = math.prod(shape)
            out[name] = theta[..., off : off + n].view(*batch, *shape)
        return out


def flatten_params(module: nn.Module) -> torch.Tensor:
    """All parameters of ``module`` as one flat vector, shape ``(numel,)``."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])
