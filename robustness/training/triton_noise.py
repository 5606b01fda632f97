"""The fused noise kernel of a GPU pack: ``g[r] += sigma[r] * z_r`` for every restart in one launch.

Program (r, b) loads restart r's noise seed and sigma and draws block b of its
noise with Triton's ``tl.randn(seed_r, step << 32 | element)``, the stream
:func:`robustness.training.philox.philox_randn` defines. One launch per update
whatever R is, no (R, P) noise tensor in memory, and restart r's draws depend
only on its own seed, never on its row. A row whose sigma is 0 (a baseline
restart, or a schedule that has decayed to nothing) draws nothing.

Triton is optional: it comes with CUDA builds of torch. Without it, or on CPU,
the pack uses ``philox_randn`` in torch ops. The tests run this kernel on CPU
through Triton's interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU builds of torch come without Triton
    triton = None

__all__ = ["add_noise_", "available"]

BLOCK = 1024  # elements per program: a multiple of the warp size, small enough to keep many programs per SM


def available(device: torch.device) -> bool:
    """Whether :func:`add_noise_` can run on ``device``: a CUDA device, or the interpreter on CPU."""
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:

    @triton.jit
    def _add_noise_kernel(g_ptr, seed_ptr, std_ptr, n_cols, row_stride, step_hi, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        std = tl.load(std_ptr + row)
        if std != 0.0:
            seed = tl.load(seed_ptr + row)
            cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
            mask = cols < n_cols
            z = tl.randn(seed, cols.to(tl.int64) + step_hi)
            ptrs = g_ptr + row.to(tl.int64) * row_stride + cols
            g = tl.load(ptrs, mask=mask)
            tl.store(ptrs, g + std * z, mask=mask)


def add_noise_(g: torch.Tensor, seeds: torch.Tensor, std: torch.Tensor, step: int) -> torch.Tensor:
    """In place: ``g[r, i] += std[r] * philox_randn(seeds, noise_offsets(step, P))[r, i]``.

    ``g`` (R, P) float32 with unit column stride, ``seeds`` (R,) int64 and ``std`` (R,) float32,
    all on one device.
    """
    if triton is None:
        raise RuntimeError("the fused noise kernel needs Triton (it ships with CUDA builds of torch)")
    R, P = g.shape
    if g.stride(1) != 1 or seeds.shape != (R,) or std.shape != (R,):
        raise ValueError(f"expected g (R, P) with unit column stride and (R,) seeds and std; "
                         f"got {tuple(g.shape)} stride {g.stride()}, {tuple(seeds.shape)}, {tuple(std.shape)}")
    if R and P:
        grid = (R, triton.cdiv(P, BLOCK))
        _add_noise_kernel[grid](g, seeds.to(torch.int64), std.to(g.dtype), P, g.stride(0), int(step) << 32,
                                BLOCK=BLOCK)
    return g
