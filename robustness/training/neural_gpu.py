"""The Neural GPU (Kaiser & Sutskever 2015, "Neural GPUs Learn Algorithms", arXiv 1511.08228).

The model of the paper's experiment 5 (Neelakantan et al. 2015, section 4.5, Table 6).
Facts taken from the paper and from the public trainer (tensorflow/models,
``research/neural_gpu/neural_gpu.py``); the code here is our own.

Shapes (B examples, W symbols = the tape width, h the height, m the maps):
the input ``x`` is ``(B, W)`` int64 symbols; the mental image is ``(B, m, h, W)``
(``nn.Conv2d`` layout: height along dim 2, width along dim 3); the output is
``(B, W, classes)`` logits, one per tape position.

The forward pass::

    s_0 = embed(x) in row 0 of the image, zeros elsewhere
    s_t = CGRU_L(... CGRU_1(s_{t-1}))         t = 1 .. W   (the same L cells at every t)
    logits[:, k] = O s_W[:, :, 0, k]          row 0 of the final image

with ``CGRU(s) = u * s + (1 - u) * tanh(C * (r * s) + b_c)``,
``u = cutoff(U * s + b_u)``, ``r = cutoff(R * s + b_r)`` and
``cutoff(v) = clamp(1.2 sigmoid(v) - 0.1, 0, 1)``.

Every choice, with its source or our reason:

- **Steps**: as many as the tape is wide (the paper: "n" steps for an input of length n),
  so one module runs any width; the step count is a shape, a Python ``int``, and ``vmap``
  unrolls it. The test tape can be wider than the training tape.
- **Kernel** ``kernel x kernel`` with "same" padding, default 3 (the paper's 3 x 3); odd, so
  the image keeps its shape.
- **Height** default 4 (the paper's and the reference's). **Maps** default 24 (the
  reference's older default; its later one is 128, too slow for CPU restarts).
- **Layers** (CGRU cells per step) default 2 (the paper's ``l = 2``).
- **Gate biases** start at 1.0 and the candidate's at 0.0 (the reference's ``bias_start``).
  :func:`~robustness.training.models.init_module` sets every conv bias to zero under every
  init scheme, so the 1.0 is a constant added in the forward instead: the same function at
  initialization, and the restart's init scheme still draws every weight.
- **u and r** come from one convolution with ``2 m`` outputs instead of two with ``m``:
  the same function and parameter count, one kernel launch fewer.
- **Embedding**: a learned vector per non-padding symbol, written into row 0; padding and the
  other rows are zero (the reference zeroes the padding row of its embedding every step). We
  mask instead of keeping a padding row, so gradient noise on an unused row cannot leak into
  the image. We leave out the reference's 1 x 1 input convolution and its layer norm, and its
  first CGRU that merges a zero "previous step": with no decoder they are a fixed
  re-parameterization of the embedding and one more cell.
- **Output**: row 0 of the final image (the paper's ``s_fin[0, k, :]``; the reference reads
  row 1 when it runs without a decoder), through ``nn.Linear(m, classes)``.
- **No dropout, no activation noise**: a restart pack refuses random ops in the forward
  (:class:`~robustness.training.pack_models.VmapModel`), and they would draw from a stream
  the restarts share.
- **No parameter-sharing relaxation** (the paper's r = 6 parameter sets pulled together by a
  penalty whose weight grows during training): its weight is a function of the training step,
  which neither ``forward`` nor ``Task.loss`` receives, and it multiplies the parameters by 6.
  The paper reports it helps; a study of this model measures the model without it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CGRU", "NeuralGPU", "cutoff_sigmoid"]

GATE_BIAS = 1.0  # the reference's bias_start for the update and reset gates


def cutoff_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``clamp(1.2 sigmoid(x) - 0.1, 0, 1)``: a sigmoid that reaches 0 and 1 (Kaiser & Sutskever 2015)."""
    return torch.clamp(1.2 * torch.sigmoid(x) - 0.1, 0.0, 1.0)


class CGRU(nn.Module):
    """A convolutional GRU cell on a ``(B, maps, height, width)`` image; the output has the same shape."""

    def __init__(self, maps: int, kernel: int) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd to keep the image's shape, got {kernel}")
        pad = kernel // 2
        self.maps = maps
        self.gates = nn.Conv2d(maps, 2 * maps, kernel, padding=pad)  # u and r
        self.candidate = nn.Conv2d(maps, maps, kernel, padding=pad)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        u, r = cutoff_sigmoid(self.gates(s) + GATE_BIAS).split(self.maps, dim=1)
        c = torch.tanh(self.candidate(r * s))
        return u * s + (1.0 - u) * c


class NeuralGPU(nn.Module):
    """Symbols ``(B, W)`` int64 (0 = padding) -> logits ``(B, W, classes)``, after W steps of the CGRU stack.

    ``symbols`` counts the padding symbol 0; the others are 1 .. symbols - 1.
    """

    def __init__(self, *, symbols: int, classes: int, maps: int = 24, height: int = 4, layers: int = 2,
                 kernel: int = 3) -> None:
        super().__init__()
        if min(symbols - 1, classes, maps, height, layers, kernel) < 1:
            raise ValueError("symbols must be >= 2 and classes, maps, height, layers, kernel >= 1")
        self.height = height
        self.embed = nn.Embedding(symbols - 1, maps)  # symbol k >= 1 -> row k - 1; padding has no row
        self.cells = nn.ModuleList(CGRU(maps, kernel) for _ in range(layers))
        self.out = nn.Linear(maps, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        present = (x > 0).unsqueeze(-1)  # (B, W, 1)
        row = self.embed((x - 1).clamp(min=0)) * present  # (B, W, m), zero at padding
        B, W, m = row.shape
        first = row.transpose(1, 2).unsqueeze(2)  # (B, m, 1, W)
        s = torch.cat([first, first.new_zeros(B, m, self.height - 1, W)], dim=2)  # (B, m, h, W)
        for _ in range(W):  # W is a shape: vmap unrolls the loop
            for cell in self.cells:
                s = cell(s)
        return self.out(s[:, :, 0, :].transpose(1, 2))  # (B, W, classes)
