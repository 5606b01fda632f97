"""Models that evaluate R restarts at once from a flat parameter matrix.

A pack's parameters live in one tensor ``theta`` of shape ``(R, P)``: row
``r`` is restart ``r``'s parameters laid out as in ``ParamLayout``. That makes
clipping, noise and the optimizer one operation each over the whole pack. The
models take the named views of ``theta`` (``ParamLayout.views``), each ``(R,
*shape)``; the gradient of ``sum_r loss_r`` w.r.t. a view is exactly each
restart's own gradient, row by row.

Two implementations share one interface, ``forward(params, x) -> logits``:

- :class:`StackedMLP`: the paper's MLP hand-vectorized with batched matmuls.
- :class:`VmapModel`: any ``nn.Module`` through ``torch.func.functional_call``
  and ``vmap``; slower, but needs nothing from the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import nn
from torch.func import functional_call, vmap

from robustness.training.models import ParamLayout

__all__ = ["PackModel", "StackedMLP", "VmapModel"]


class PackModel(Protocol):
    layout: ParamLayout

    def forward(self, state: Mapping[str, torch.Tensor], x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        """``state`` name -> (R, *shape), parameters and buffers; ``x`` (R, B, *input) per-restart
        batches, or with ``shared`` (N, *input) shared by every restart (evaluation).

        Returns outputs of shape (R, B, *output) or (R, N, *output).
        """
        ...

    def train(self, mode: bool) -> None:
        """Training or evaluation behaviour (dropout, normalization statistics)."""
        ...


class StackedMLP:
    """A stack of ``nn.Linear`` + ReLU layers (as built by ``make_mlp``), batched over restarts."""

    def __init__(self, module: nn.Sequential) -> None:
        self.layout = ParamLayout.of(module)
        linears = [m for m in module if isinstance(m, nn.Linear)]
        others = [m for m in module if not isinstance(m, (nn.Linear, nn.ReLU))]
        if others or len(linears) * 2 - 1 != len(module):
            raise TypeError("StackedMLP expects Linear, ReLU, Linear, ..., Linear (use VmapModel otherwise)")
        # names come in (weight, bias) pairs, in layer order
        self._pairs = [(self.layout.names[2 * i], self.layout.names[2 * i + 1]) for i in range(len(linears))]

    def train(self, mode: bool) -> None:
        pass  # Linear and ReLU behave the same in both modes

    def forward(self, params: Mapping[str, torch.Tensor], x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        views = params
        h = x
        last = len(self._pairs) - 1
        for i, (wname, bname) in enumerate(self._pairs):
            w, b = views[wname], views[bname]  # (R, out, in), (R, out)
            if shared and h.dim() == 2:
                # Shared inputs (evaluation): broadcast one (N, d) batch to every restart.
                h = torch.matmul(h, w.transpose(1, 2)) + b.unsqueeze(1)
            else:
                h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < last:
                h = torch.relu(h)
        return h


class VmapModel:
    """Any ``nn.Module`` whose forward ``torch.func`` can vectorize, over restarts with ``vmap``.

    Each restart brings its own parameters and buffers (``functional_call``), so
    normalization statistics stay per restart. Random ops in the forward (dropout)
    are refused by ``vmap``: their draws would come from one global stream, so a
    restart's result would depend on its pack. Such models use their own loop.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.layout = ParamLayout.of(module)

    def train(self, mode: bool) -> None:
        self.module.train(mode)

    def _single(self, state: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, state, (xb,))

    def forward(self, state: Mapping[str, torch.Tensor], x: torch.Tensor, *, shared: bool = False) -> torch.Tensor:
        return vmap(self._single, in_dims=(0, None if shared else 0))(dict(state), x)
