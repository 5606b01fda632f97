"""Power: how many restarts per arm a study needs, and what its restarts can detect.

Normal approximation on Cohen's effect size for proportions,
``h = 2 asin(sqrt(p2)) - 2 asin(sqrt(p1))`` (Cohen 1988, ch. 6), through
``statsmodels.stats.power.NormalIndPower``. It treats the arms as independent,
so for restarts paired on their seed (analysed with McNemar's test) it is
conservative whenever the pairs are positively correlated.

statsmodels is imported inside the functions: it pulls in pandas and
scipy.stats, about 1.5 s of import that ``robustness stats`` must not pay
when it asks no power question.
"""

from __future__ import annotations

import math

__all__ = ["detectable_difference", "restarts_needed"]


def restarts_needed(
    p1: float, p2: float, *, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> int:
    """Restarts per arm to detect success rates ``p1`` vs ``p2`` (Cohen 1988).

    Args:
        p1, p2: the two arms' success rates, in [0, 1] and different.
        alpha: the test's level (before any multiplicity adjustment: divide it
            by the number of comparisons for a Bonferroni/Holm-safe plan).
        power: the probability of rejecting when the rates are ``p1``, ``p2``.
        two_sided: a two-sided test (default) or one-sided in the direction
            of ``p2 - p1``.

    Returns:
        The smallest integer number of restarts in each arm.

    Example: ``restarts_needed(0.013, 0.113)`` (the NRAM success rates
    without and with noise) is 76 per arm.
    """
    _check(p1=p1, p2=p2, alpha=alpha, power=power)
    if p1 == p2:
        raise ValueError("p1 and p2 are equal: no number of restarts tells them apart")
    # Imported here, not at the top: see the module docstring.
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    h = abs(float(proportion_effectsize(p2, p1)))
    n = NormalIndPower().solve_power(
        effect_size=h, alpha=alpha, power=power, ratio=1.0, alternative="two-sided" if two_sided else "larger"
    )
    return math.ceil(float(n) - 1e-9)  # the tolerance keeps an exact integer from rounding up


def detectable_difference(
    n: int, p1: float, *, alpha: float = 0.05, power: float = 0.8, two_sided: bool = True
) -> float:
    """The smallest ``p2 > p1`` that ``n`` restarts per arm detect (Cohen 1988).

    Solves for Cohen's h at the given ``n``, ``alpha`` and ``power``, then
    inverts ``h`` at ``p1``: ``p2 = sin(asin(sqrt(p1)) + h/2)**2``.

    Args:
        n: restarts in each arm, >= 1.
        p1: the baseline success rate.

    Returns:
        ``p2`` in ``(p1, 1]``, or NaN when even ``p2 = 1`` is not detectable.
    """
    _check(p1=p1, alpha=alpha, power=power)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    # Imported here, not at the top: see the module docstring.
    from statsmodels.stats.power import NormalIndPower

    h = NormalIndPower().solve_power(
        nobs1=n, alpha=alpha, power=power, ratio=1.0, alternative="two-sided" if two_sided else "larger"
    )
    angle = math.asin(math.sqrt(p1)) + float(h) / 2
    return math.sin(angle) ** 2 if angle <= math.pi / 2 else float("nan")


def _check(**values: float) -> None:
    for name, v in values.items():
        lo_open = name in ("alpha", "power")
        if not (0.0 < v < 1.0 if lo_open else 0.0 <= v <= 1.0):
            raise ValueError(f"{name} must be in {'(0, 1)' if lo_open else '[0, 1]'}, got {v!r}")
