"""Power: restarts needed and detectable differences (Cohen's h, normal approximation)."""

from __future__ import annotations

import math

import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from robustness.stats import detectable_difference, restarts_needed


def test_restarts_needed_by_hand() -> None:
    # h = 2 asin(sqrt .5) - 2 asin(sqrt .3) = 0.4115; the difference of two arcsine-transformed
    # rates has variance 2/n, so n ~ 2 ((z_.975 + z_.8) / h)^2 = 92.7 -> 93 per arm.
    h = 2 * math.asin(math.sqrt(0.5)) - 2 * math.asin(math.sqrt(0.3))
    approx = 2 * ((stats.norm.isf(0.025) + stats.norm.isf(0.2)) / h) ** 2
    assert restarts_needed(0.3, 0.5) == math.ceil(approx) == 93
    assert restarts_needed(0.5, 0.3) == 93  # symmetric in the two arms


def test_cohen_table_value() -> None:
    # Cohen (1988), Table 6.4.1: h = 0.2 at alpha = .05 two-sided and power .80 needs 392 (+1 by ceiling).
    p2 = math.sin(math.asin(math.sqrt(0.5)) + 0.1) ** 2
    assert restarts_needed(0.5, p2) in (392, 393)


def test_restarts_needed_matches_statsmodels() -> None:
    # The NRAM success rates from the paper: 1.3% without noise, 11.3% with.
    h = proportion_effectsize(0.113, 0.013)
    want = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8)
    assert restarts_needed(0.013, 0.113) == math.ceil(want) == 76
    want = NormalIndPower().solve_power(effect_size=h, alpha=0.01, power=0.9, alternative="larger")
    assert restarts_needed(0.013, 0.113, alpha=0.01, power=0.9, two_sided=False) == math.ceil(want)


def test_detectable_difference_inverts_restarts_needed() -> None:
    for p1, p2 in ((0.013, 0.113), (0.3, 0.5), (0.0, 0.2)):
        n = restarts_needed(p1, p2)
        assert p1 < detectable_difference(n, p1) <= p2 + 1e-9
        assert detectable_difference(n - 1, p1) > p2


def test_detectable_difference_by_hand() -> None:
    # With h solved at n = 40, p2 = sin(asin(sqrt p1) + h/2)^2.
    h = NormalIndPower().solve_power(nobs1=40, alpha=0.05, power=0.8)
    assert detectable_difference(40, 0.1) == pytest.approx(math.sin(math.asin(math.sqrt(0.1)) + h / 2) ** 2)


def test_power_edge_cases() -> None:
    assert math.isnan(detectable_difference(2, 0.5))  # two restarts cannot show any rise from 50%
    assert detectable_difference(1000, 1.0) != detectable_difference(1000, 1.0)  # NaN: nothing above 1
    with pytest.raises(ValueError, match="equal"):
        restarts_needed(0.2, 0.2)
    with pytest.raises(ValueError, match="p2"):
        restarts_needed(0.2, 1.2)
    with pytest.raises(ValueError, match="alpha"):
        restarts_needed(0.2, 0.3, alpha=0.0)
    with pytest.raises(ValueError, match="n must"):
        detectable_difference(0, 0.2)
