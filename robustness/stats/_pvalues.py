"""Exact tests of noise against baseline, and multiplicity adjustment.

Thin, vectorized wrappers over scipy and statsmodels: the exact McNemar test
for restarts paired on their seed, Fisher's or Boschloo's exact test for
independent arms, and Holm or Benjamini-Hochberg adjustment across all the
comparisons of a study.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from statsmodels.stats.multitest import multipletests

__all__ = ["ADJUSTMENTS", "UNPAIRED_TESTS", "adjust_pvalues", "mcnemar_exact", "unpaired_exact"]

# Our names -> statsmodels' multipletests names; "none" leaves p-values as they are.
ADJUSTMENTS = {"holm": "holm", "fdr_bh": "fdr_bh", "bh": "fdr_bh", "none": None}
UNPAIRED_TESTS = ("fisher", "boschloo")


def mcnemar_exact(noise_only: ArrayLike, baseline_only: ArrayLike) -> np.ndarray:
    """Two-sided exact McNemar test (McNemar 1947) on discordant pairs, elementwise.

    Under the null each discordant pair is equally likely to favour either
    arm, so ``b ~ Binomial(b + c, 1/2)``; the p-value is
    ``min(1, 2 * P(X <= min(b, c)))`` (the same as
    ``statsmodels.stats.contingency_tables.mcnemar(exact=True)`` and
    ``scipy.stats.binomtest(b, b + c)``). No discordant pairs: p = 1.

    Args:
        noise_only: ``b``, pairs where only the noise restart succeeded, shape ``S``.
        baseline_only: ``c``, pairs where only the baseline restart succeeded, shape ``S``.

    Returns:
        float64 p-values, shape ``S``.
    """
    b, c = (np.asarray(x, dtype=np.int64) for x in np.broadcast_arrays(noise_only, baseline_only))
    p = np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(b, c), b + c, 0.5))
    return np.where(b + c == 0, 1.0, p)


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
        table = [[a, n - a], [b, m - b]]
        if test == "fisher":
            out[i] = stats.fisher_exact(table).pvalue
        else:
            out[i] = stats.boschloo_exact(table, alternative="two-sided").pvalue
    return np.clip(out, 0.0, 1.0)


def adjust_pvalues(p_values: ArrayLike, *, method: str = "holm") -> np.ndarray:
    """Adjust p-values for multiple comparisons.

    ``"holm"``: Holm (1979) step-down, controls the family-wise error rate.
    ``"fdr_bh"`` (alias ``"bh"``): Benjamini & Hochberg (1995), controls the
    false discovery rate. ``"none"``: unchanged. Via
    ``statsmodels.stats.multitest.multipletests``; NaNs are left out of the
    family and stay NaN.

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
    if ADJUSTMENTS[method] is not None and ok.any():
        out[ok] = multipletests(p[ok], method=ADJUSTMENTS[method])[1]
    return out
