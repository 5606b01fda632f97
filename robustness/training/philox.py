"""Counter-based random streams for restart packs: every restart's draws in one batched call.

A pack trained with ``rng: philox`` draws its noise and its data order from
Philox-4x32-10 (Salmon et al. 2011), keyed by each restart's own seeds and
indexed by (element, step). A draw is then a pure function of (restart seed,
step, element): it does not depend on which pack the restart landed in, on its
row, or on how many restarts share the pack, and every restart's draws for one
update come from one call whatever R is. That is what lets a GPU pack of
thousands of restarts run without per-restart launches.

The functions here are the streams themselves, in plain torch ops on int64
tensors, so they run on any device and define what the fused Triton kernel
(:mod:`robustness.training.triton_noise`) must reproduce. They follow Triton's
``tl.randint4x`` and ``tl.randn`` exactly: the same constants, the same word
layout (offset's low and high 32 bits in counter words 0 and 1) and the same
Box-Muller transform, so both paths draw the same numbers up to float rounding
in log and cos.

Cost: about 300 integer passes per draw on CPU, far slower than
``torch.randn``; the CPU default stays the per-restart ``torch.Generator``
streams (``rng: generator``).
"""

from __future__ import annotations

import torch

__all__ = ["NOISE_DOMAIN", "ORDER_DOMAIN", "keyed_permutations", "noise_offsets", "philox_randn", "philox_uint32"]

_M32 = 0xFFFFFFFF
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85  # Triton's (and Random123's) Weyl key increments
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57  # Philox-4x32 round multipliers
_ROUNDS = 10
# Counter word 2 separates the streams a restart draws from one seed: noise is
# Triton's ``tl.randn`` (word 2 = 0), the data order uses word 2 = 1.
NOISE_DOMAIN, ORDER_DOMAIN = 0, 1


def _mul_hi_lo(const: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of ``const * x`` for a 32-bit constant and 32-bit values in int64.

    The full product needs 64 unsigned bits, more than int64 holds, so it is
    built from 16-bit halves of the constant.
    """
    c_hi, c_lo = const >> 16, const & 0xFFFF
    lo_part = x * c_lo  # < 2^48
    hi_part = x * c_hi  # < 2^48
    # const * x = hi_part * 2^16 + lo_part
    low = (lo_part + ((hi_part & 0xFFFF) << 16)) & _M32
    high = (hi_part + (lo_part >> 16)) >> 16
    return high & _M32, low


def philox_uint32(seeds: torch.Tensor, c0: torch.Tensor, c1: torch.Tensor | int = 0, c2: torch.Tensor | int = 0,
                  c3: torch.Tensor | int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox-4x32-10 of counter (c0, c1, c2, c3) under the 64-bit key ``seeds`` (low word first).

    ``seeds`` (R, 1) int64 broadcasts against the counters (R, n) or (n,).
    Returns four int64 tensors of 32-bit words, as Triton's ``randint4x``.
    """
    k0, k1 = seeds & _M32, (seeds >> 32) & _M32
    c0 = c0 & _M32
    shape = torch.broadcast_shapes(seeds.shape, c0.shape)
    c0 = c0.expand(shape)
    c1 = (torch.as_tensor(c1, device=c0.device, dtype=torch.int64) & _M32).expand(shape)
    c2 = (torch.as_tensor(c2, device=c0.device, dtype=torch.int64) & _M32).expand(shape)
    c3 = (torch.as_tensor(c3, device=c0.device, dtype=torch.int64) & _M32).expand(shape)
    for _ in range(_ROUNDS):
        hi_b, lo_b = _mul_hi_lo(_ROUND_B, c2)
        hi_a, lo_a = _mul_hi_lo(_ROUND_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + _KEY_A) & _M32, (k1 + _KEY_B) & _M32
    return c0, c1, c2, c3


def _uniform(x: torch.Tensor) -> torch.Tensor:
    """Triton's ``uint_to_uniform_float`` for 32-bit words: a float32 in [0, 1)."""
    # Read as int32, negatives folded by bitwise not: 31 uniform bits.
    folded = torch.where(x >= 2**31, _M32 - x, x)
    return folded.to(torch.float32) * 4.6566127342e-10


def philox_randn(seeds: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Standard normals ``z[r, i]`` = Triton's ``tl.randn(seeds[r], offsets[i])``, float32.

    ``seeds`` (R,) int64 (63-bit seeds are fine), ``offsets`` (n,) or (R, n) int64.
    """
    seeds = seeds.to(torch.int64).view(-1, 1)
    offsets = offsets.to(device=seeds.device, dtype=torch.int64)
    w0, w1, _, _ = philox_uint32(seeds, offsets & _M32, offsets >> 32, NOISE_DOMAIN)
    u1 = _uniform(w0).clamp_(min=1.0e-7)
    theta = _uniform(w1) * 6.283185307179586
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(theta)


def noise_offsets(step: int, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The counters of update ``step``'s noise for ``n`` parameters: ``step << 32 | element``."""
    return torch.arange(n, device=device, dtype=torch.int64) + (int(step) << 32)


def keyed_permutations(seeds: torch.Tensor, n: int, epoch: int) -> torch.Tensor:
    """One permutation of ``range(n)`` per seed for ``epoch``: (R, n) int64, in one batched call.

    Each row sorts n Philox words drawn at counters (i, epoch, ORDER_DOMAIN), so
    row r depends only on ``seeds[r]`` and ``epoch``. The sort is stable, which
    makes the rare tie between two words deterministic.
    """
    seeds = seeds.to(torch.int64).view(-1, 1)
    idx = torch.arange(n, device=seeds.device, dtype=torch.int64)
    words, _, _, _ = philox_uint32(seeds, idx, epoch, ORDER_DOMAIN)
    return torch.argsort(words, dim=1, stable=True)
