"""Exact tests of noise against baseline, and multiplicity adjustment.

Vectorized: the exact McNemar test for restarts paired on their seed,
Fisher's or Boschloo's exact test for independent arms, and Holm or
Benjamini-Hochberg adjustment across all the comparisons of a study.

McNemar and the adjustments, on the default path of ``robustness stats``, are
written on ``scipy.special`` and NumPy: importing ``scipy.stats`` and
``statsmodels`` (which pulls in pandas) costs about 1.5 s, more than the
command's 1 s budget. The binomial CDF is the regularized incomplete beta
function, ``P(X <= k) = I_{1-p}(n - k, k + 1)`` (``betainc``, which agrees
with ``scipy.stats.binom.cdf`` to about 1e-14 relative; ``bdtr``, cephes'
binomial CDF, is off by up to 3e-6 relative at n ~ 10^6), and Holm and
Benjamini-Hochberg repeat ``statsmodels.stats.multitest.multipletests``
operation for operation. tests/test_stats_pvalues.py checks both against
scipy.stats and statsmodels. Only the unpaired tests (Fisher, Boschloo)
import ``scipy.stats``, when they test a table.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betainc

__all__ = ["ADJUSTMENTS", "UNPAIRED_TESTS", "adjust_pvalues", "mcnemar_exact", "unpaired_exact"]

UNPAIRED_TESTS = ("fisher", "boschloo")


def mcnemar_exact(noise_only: ArrayLike, baseline_only: ArrayLike) -> np.ndarray:
    """Two-sided exact McNemar test (McNemar 1947) on discordant pairs, elementwise.

    Under the null each discordant pair is equally likely to favour either
    arm, so ``b ~ Binomial(b + c, 1/2)``; the p-value is
    ``min(1, 2 * P(X <= min(b, c)))`` (the same as
    ``statsmodels.stats.contingency_tables.mcnemar(exact=True)`` and
    ``scipy.stats.binomtest(b, b + c)``), with the binomial CDF evaluated as
    ``betainc(n - k, k + 1, 1/2)``. No discordant pairs: p = 1.

    Args:
        noise_only: ``b``, pairs where only the noise restart succeeded, shape ``S``.
        baseline_only: ``c``, pairs where only the baseline restart succeeded, shape ``S``.

    Returns:
        float64 p-values, shape ``S``.
    """
    b, c = (np.asarray(x, dtype=np.int64) for x in np.broadcast_arrays(noise_only, baseline_only))
    k, n = np.minimum(b, c), b + c
    # P(Binomial(n, 1/2) <= k) = I_{1/2}(n - k, k + 1); both shapes are > 0 whenever n > 0.
    p = np.minimum(1.0, 2.0 * betainc(n - k, k + 1, 0.5))
    return np.where(n == 0, 1.0, p)


def unpaired_exact(
    k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, *, test: str = "fisher"
) -> np.ndarray:
    """Two-sided exact test of equal success rates in two independent samples.

    ``"fisher"``: Fisher's exact test (Fisher 1935), conditional on both
    margins, via ``scipy.stats.fisher_exact``. ``"boschloo"``: Boschloo's
    exact unconditional test (Boschloo 1970), uniformly more powerful than
    Fisher's, via ``scipy.stats.boschloo_exact`` (about 25 ms per table).

    Args:
        k1, n1, k2, n2: integer arrays of one shape ``S``.

    Returns:
        float64 p-values, shape ``S``; 1 where either sample is empty.
    """
    if test not in UNPAIRED_TESTS:
        raise ValueError(f"unpaired_test must be one of {UNPAIRED_TESTS}, got {test!r}")
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=np.int64) for x in (k1, n1, k2, n2)))
    out = np.ones(arrays[0].shape, dtype=np.float64)
    for i, (a, n, b, m) in zip(np.ndindex(out.shape), zip(*(x.ravel().tolist() for x in arrays))):
        if n == 0 or m == 0 or (a + b) in (0, n + m):
            continue  # no information, or a margin with no variation: p = 1 under either test
        out[i] = _exact_pvalue([[a, n - a], [b, m - b]], test)
    return np.clip(out, 0.0, 1.0)


def _exact_pvalue(table: list[list[int]], test: str) -> float:
    # Imported here, not at the top: scipy.stats costs ~1 s of import, paid only
    # when an unpaired table with information is actually tested.
    from scipy import stats

    if test == "fisher":
        return float(stats.fisher_exact(table).pvalue)
    return float(stats.boschloo_exact(table, alternative="two-sided").pvalue)


def adjust_pvalues(p_values: ArrayLike, *, method: str = "holm") -> np.ndarray:
    """Adjust p-values for multiple comparisons.

    ``"holm"``: Holm (1979) step-down, controls the family-wise error rate.
    ``"fdr_bh"`` (alias ``"bh"``): Benjamini & Hochberg (1995), controls the
    false discovery rate. ``"none"``: unchanged. The same values as
    ``statsmodels.stats.multitest.multipletests(p, method=...)[1]``, ties
    included; NaNs are left out of the family and stay NaN.

    Args:
        p_values: shape ``(M,)``.

    Returns:
        float64 adjusted p-values, shape ``(M,)``.
    """
    if method not in ADJUSTMENTS:
        raise ValueError(f"adjust must be one of {sorted(ADJUSTMENTS)}, got {method!r}")
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    out = p.copy()
    ok = ~np.isnan(p)
    adjust = ADJUSTMENTS[method]
    if adjust is not None and ok.any():
        order = np.argsort(p[ok])
        adjusted = np.empty(order.size)
        adjusted[order] = np.minimum(adjust(p[ok][order]), 1.0)
        out[ok] = adjusted
    return out


def _holm(p_sorted: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down: running maximum of ``(m - i) * p_(i)``, i = 0..m-1, on ascending p."""
    return np.maximum.accumulate(p_sorted * np.arange(p_sorted.size, 0, -1))


def _benjamini_hochberg(p_sorted: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg (1995) step-up: running minimum, from the top, of ``p_(i) / (i/m)``, i = 1..m."""
    m = p_sorted.size
    raw = p_sorted / (np.arange(1, m + 1) / float(m))
    return np.minimum.accumulate(raw[::-1])[::-1]


# Method name (statsmodels' multipletests names, plus the alias "bh") -> the
# adjustment of ascending p-values; "none" leaves p-values as they are.
ADJUSTMENTS = {"holm": _holm, "fdr_bh": _benjamini_hochberg, "bh": _benjamini_hochberg, "none": None}
