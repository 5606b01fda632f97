"""Confidence intervals for success rates and for differences and ratios of rates.

All functions are vectorized: counts are arrays of one shape (or scalars), and
the limits come back in that shape. Single-rate intervals are Wilson's score
interval and the Clopper-Pearson interval; the two-rate intervals are hybrid
("square-and-add" / MOVER) intervals built from the Wilson limits.

Why the kernels are written on ``scipy.special``: importing ``scipy.stats``
and ``statsmodels`` (which pulls in pandas) costs about 1.5 s, more than the
1 s that ``robustness stats`` may take on a whole study. The two primitives
they need are cheap special functions: the normal quantile ``ndtri`` (what
``scipy.stats.norm.ppf``/``isf`` evaluate) and the inverse regularized
incomplete beta ``betaincinv``/``betainccinv`` (what ``scipy.stats.beta.ppf``/
``isf`` evaluate, as ``proportion_confint(method="beta")`` uses them). The
formulas repeat ``statsmodels.stats.proportion.proportion_confint`` and
``confint_proportions_2indep(method="newcomb")`` operation for operation, and
tests/test_stats_intervals.py checks them against those references on many
random and edge-case counts.

Zero counts are handled explicitly, and every rule is stated per function:
with restarts, 0 of n and n of n are the common case, not the corner case.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import betainccinv, betaincinv, ndtri

from robustness.stats._data import check_confidence

__all__ = [
    "INTERVAL_METHODS",
    "binomial_interval",
    "newcombe_interval",
    "newcombe_paired_interval",
    "ratio_interval",
    "ratio_paired_interval",
]

def binomial_interval(
    successes: ArrayLike, n: ArrayLike, *, method: str = "wilson", confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Interval for a success rate ``successes / n``, elementwise.

    Methods: ``"wilson"`` (Wilson 1927, score interval; the default because it
    keeps close to nominal coverage at the small n of a grid cell) and
    ``"clopper-pearson"`` (Clopper & Pearson 1934, exact, conservative).

    Args:
        successes, n: integer arrays of one shape ``S`` (or scalars).

    Returns:
        ``(low, high)``, float64 arrays of shape ``S``. Zero counts: 0 of n has
        lower limit exactly 0 and n of n upper limit exactly 1 (Clopper-Pearson
        0 of n: upper ``1 - (alpha/2)**(1/n)``). An empty cell (n = 0) gets
        ``[0, 1]``: nothing is known (it is also the Wilson limit as n -> 0).
    """
    if method not in INTERVAL_METHODS:
        raise ValueError(f"method must be one of {sorted(INTERVAL_METHODS)}, got {method!r}")
    alpha = 1.0 - check_confidence(confidence)
    k, n = _counts(successes, n)
    empty = n == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = INTERVAL_METHODS[method](k, np.where(empty, 1.0, n), alpha)
    low = np.where(k == 0, 0.0, np.clip(low, 0.0, 1.0))
    high = np.where(k == n, 1.0, np.clip(high, 0.0, 1.0))
    return np.where(empty, 0.0, low), np.where(empty, 1.0, high)


def newcombe_interval(
    k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Interval for the risk difference ``k1/n1 - k2/n2`` of independent samples.

    Newcombe (1998), method 10, the hybrid score interval: square-and-add of
    the two Wilson intervals, ``p1 - p2 - sqrt((p1 - l1)**2 + (u2 - p2)**2)``
    and ``p1 - p2 + sqrt((p2 - l2)**2 + (u1 - p1)**2)`` (as
    ``statsmodels.stats.proportion.confint_proportions_2indep(method="newcomb")``
    computes it). Zero counts need no special rule (the Wilson limits are
    finite). If either sample is empty the interval is ``[-1, 1]``.

    Args:
        k1, n1, k2, n2: integer arrays of one shape ``S``.

    Returns:
        ``(low, high)``, float64 arrays of shape ``S`` within ``[-1, 1]``.
    """
    alpha = 1.0 - check_confidence(confidence)
    k1, n1 = _counts(k1, n1)
    k2, n2 = _counts(k2, n2)
    empty = (n1 == 0) | (n2 == 0)
    n1, n2 = np.where(empty, 1.0, n1), np.where(empty, 1.0, n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = k1 / n1, k2 / n2
        l1, u1 = _wilson(k1, n1, alpha)
        l2, u2 = _wilson(k2, n2, alpha)
        low = p1 - p2 - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = p1 - p2 + np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    low, high = np.clip(low, -1.0, 1.0), np.clip(high, -1.0, 1.0)
    return np.where(empty, -1.0, low), np.where(empty, 1.0, high)


def newcombe_paired_interval(
    both: ArrayLike, first_only: ArrayLike, second_only: ArrayLike, neither: ArrayLike, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Interval for the risk difference ``p1 - p2`` of paired samples.

    Newcombe (1998b), "Improved confidence intervals for the difference between
    binomial proportions based on paired data", method 10: square-and-add of
    the two marginal Wilson intervals, with the correlation estimate phi
    corrected as published (``AD - BC`` shrunk by ``n/2`` when positive, and
    phi = 0 when a margin is empty). With pairs, ``p1 = (both + first_only)/n``
    and ``p2 = (both + second_only)/n``.

    Args:
        both, first_only, second_only, neither: the paired 2x2 table's cells,
            integer arrays of one shape ``S``.

    Returns:
        ``(low, high)``, float64 arrays of shape ``S`` within ``[-1, 1]``;
        ``[-1, 1]`` where there are no pairs.
    """
    a, b, c, d = (np.asarray(x, dtype=np.float64) for x in np.broadcast_arrays(both, first_only, second_only, neither))
    n = a + b + c + d
    empty = n == 0
    n_safe = np.where(empty, 1.0, n)
    p1, p2 = (a + b) / n_safe, (a + c) / n_safe
    l1, u1 = binomial_interval(a + b, n_safe, confidence=confidence)
    l2, u2 = binomial_interval(a + c, n_safe, confidence=confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    # Newcombe's correction: a positive AD - BC within n/2 of zero counts as none.
    shrunk = np.where(cross > n / 2, cross - n / 2, np.where(cross < 0, cross, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(margins > 0, shrunk / np.sqrt(margins), 0.0)
    d_low = np.sqrt(np.maximum((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    d_high = np.sqrt(np.maximum((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    low = np.clip(p1 - p2 - d_low, -1.0, 1.0)
    high = np.clip(p1 - p2 + d_high, -1.0, 1.0)
    return np.where(empty, -1.0, low), np.where(empty, 1.0, high)


def ratio_interval(
    k1: ArrayLike, n1: ArrayLike, k2: ArrayLike, n2: ArrayLike, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Interval for the risk ratio ``(k1/n1) / (k2/n2)`` of independent samples.

    MOVER-R with Wilson limits (Donner & Zou 2012, "Closed-form confidence
    intervals for functions of the normal mean and standard deviation", SMMR
    21:347; recommended for the ratio by Fagerland, Lydersen & Laake 2015).
    Chosen over the Katz log interval because it needs no 0.5 correction:

    - ``k1 = 0``: lower limit 0;
    - ``k2 = 0``: upper limit ``inf`` (the ratio is unbounded above);
    - both 0, or an empty sample: ``[0, inf]``.

    Args:
        k1, n1, k2, n2: integer arrays of one shape ``S``.

    Returns:
        ``(low, high)``, float64 arrays of shape ``S``, ``0 <= low <= high <= inf``.
    """
    k1, n1 = _counts(k1, n1)
    k2, n2 = _counts(k2, n2)
    l1, u1 = binomial_interval(k1, n1, confidence=confidence)
    l2, u2 = binomial_interval(k2, n2, confidence=confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = k1 / n1, k2 / n2
        pp = p1 * p2
        low = (pp - np.sqrt(pp**2 - l1 * u2 * (2 * p1 - l1) * (2 * p2 - u2))) / (u2 * (2 * p2 - u2))
        high = (pp + np.sqrt(pp**2 - u1 * l2 * (2 * p1 - u1) * (2 * p2 - l2))) / (l2 * (2 * p2 - l2))
    # Special cases as in Fagerland et al.: an undefined lower limit is 0, an
    # undefined or negative upper limit is unbounded.
    low = np.where(np.isnan(low) | (k1 == 0), 0.0, np.maximum(low, 0.0))
    high = np.where(np.isnan(high) | (high < 0) | (k2 == 0), np.inf, high)
    empty = (n1 == 0) | (n2 == 0)
    return np.where(empty, 0.0, low), np.where(empty, np.inf, high)


def ratio_paired_interval(
    both: ArrayLike, first_only: ArrayLike, second_only: ArrayLike, neither: ArrayLike, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Interval for the risk ratio ``p1 / p2`` of paired samples.

    Bonett & Price (2006), "Confidence intervals for a ratio of binomial
    proportions based on paired data", Stat Med 25:3039, hybrid Wilson score
    interval (recommended by Fagerland, Lydersen & Laake 2014). Pairs where
    both fail carry no information on the ratio and are not used. No success
    in the first sample gives lower limit 0, none in the second an unbounded
    upper limit, and no success at all ``[0, inf]``.

    Args:
        both, first_only, second_only, neither: the paired 2x2 table's cells,
            integer arrays of one shape ``S``.

    Returns:
        ``(low, high)``, float64 arrays of shape ``S``.
    """
    alpha = 1.0 - check_confidence(confidence)
    a, b, c, _ = (np.asarray(x, dtype=np.float64) for x in np.broadcast_arrays(both, first_only, second_only, neither))
    informative = a + b + c
    x1, x2 = a + b, a + c
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.sqrt((b + c + 2) / ((x1 + 1) * (x2 + 1)))
        s1 = np.sqrt((1 - (x1 + 1) / (informative + 2)) / (x1 + 1))
        s2 = np.sqrt((1 - (x2 + 1) / (informative + 2)) / (x2 + 1))
        z = spread / (s1 + s2) * _z(alpha)
        l1, u1 = _wilson_z(x1, informative, z)
        l2, u2 = _wilson_z(x2, informative, z)
        low, high = l1 / u2, u1 / l2
    low = np.where(x1 == 0, 0.0, low)
    high = np.where(x2 == 0, np.inf, high)
    none = informative == 0
    return np.where(none, 0.0, low), np.where(none, np.inf, high)


def _z(alpha: float) -> np.float64:
    """Two-sided normal critical value ``z_{1 - alpha/2}``: ``norm.isf(alpha/2)`` is ``-ndtri(alpha/2)``."""
    return -ndtri(alpha / 2.0)


def _wilson(k: np.ndarray, n: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson (1927) score limits, clipped to [0, 1]; needs ``n > 0``.

    The same operations in the same order as statsmodels'
    ``proportion_confint(method="wilson")``, so the same bits.
    """
    crit = _z(alpha)
    crit2 = crit**2
    q = k / n
    denom = 1 + crit2 / n
    centre = (q + crit2 / (2 * n)) / denom
    dist = crit * np.sqrt(q * (1.0 - q) / n + crit2 / (4.0 * n**2)) / denom
    return np.clip(centre - dist, 0.0, 1.0), np.clip(centre + dist, 0.0, 1.0)


def _clopper_pearson(k: np.ndarray, n: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Clopper & Pearson (1934) limits from beta quantiles; needs ``n > 0``.

    Lower ``Beta(k, n - k + 1).ppf(alpha/2)``, upper ``Beta(k + 1, n - k).isf(alpha/2)``
    (statsmodels' ``method="beta"``). They are NaN at ``k = 0`` (lower) and
    ``k = n`` (upper), where the caller puts 0 and 1.
    """
    return betaincinv(k, n - k + 1, alpha / 2.0), betainccinv(k + 1, n - k, alpha / 2.0)


# Method name -> its limits ``(k, n, alpha)`` for ``n > 0``: what ``binomial_interval`` accepts.
INTERVAL_METHODS = {"wilson": _wilson, "clopper-pearson": _clopper_pearson}


def _wilson_z(k: np.ndarray, n: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Wilson limits at an arbitrary (per-element) critical value z, which
    # Bonett-Price adjust; _wilson only takes a common alpha.
    root = z * np.sqrt(z**2 + 4 * k * (1 - k / n))
    return (2 * k + z**2 - root) / (2 * (n + z**2)), (2 * k + z**2 + root) / (2 * (n + z**2))


def _counts(successes: ArrayLike, n: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    k, n = (np.asarray(x, dtype=np.float64) for x in np.broadcast_arrays(successes, n))
    if np.any(n < 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("counts must satisfy 0 <= successes <= n")
    return k, n
