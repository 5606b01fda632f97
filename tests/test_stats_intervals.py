"""Binomial and two-sample intervals: hand-computed cases, published values, scipy/statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from robustness.stats import (
    binomial_interval,
    newcombe_interval,
    newcombe_paired_interval,
    ratio_interval,
    ratio_paired_interval,
)

Z95 = 1.959963984540054


def wilson_by_formula(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# --- single rates -----------------------------------------------------------------


@pytest.mark.parametrize("k,n", [(0, 10), (5, 10), (10, 10), (1, 1), (0, 1), (3, 40)])
def test_wilson_matches_the_formula(k: int, n: int) -> None:
    low, high = binomial_interval(k, n)
    want = wilson_by_formula(k, n)
    assert float(low) == pytest.approx(want[0], abs=1e-12)
    assert float(high) == pytest.approx(want[1], abs=1e-12)


def test_wilson_zero_of_ten_by_hand() -> None:
    # k = 0: centre = half = (z^2/2n) / (1 + z^2/n), so the interval is [0, z^2 / (n + z^2)].
    low, high = binomial_interval(0, 10)
    assert float(low) == 0.0
    assert float(high) == pytest.approx(Z95**2 / (10 + Z95**2), abs=1e-12)


def test_wilson_five_of_ten_is_symmetric_about_one_half() -> None:
    low, high = binomial_interval(5, 10)
    assert float(low) + float(high) == pytest.approx(1.0, abs=1e-12)
    assert float(high) == pytest.approx(0.5 + Z95 / (1 + Z95**2 / 10) * math.sqrt(0.025 + Z95**2 / 400))


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_clopper_pearson_zero_and_all_successes(n: int) -> None:
    low, high = binomial_interval(0, n, method="clopper-pearson")
    assert float(low) == 0.0
    assert float(high) == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-10)
    low, high = binomial_interval(n, n, method="clopper-pearson")
    assert float(high) == 1.0
    assert float(low) == pytest.approx(0.025 ** (1 / n), rel=1e-10)


def test_empty_cell_gets_the_whole_unit_interval() -> None:
    for method in ("wilson", "clopper-pearson"):
        low, high = binomial_interval([0, 0], [0, 0], method=method)
        assert low.tolist() == [0.0, 0.0] and high.tolist() == [1.0, 1.0]


def test_confidence_level_is_configurable() -> None:
    low90, high90 = binomial_interval(3, 20, confidence=0.90)
    low99, high99 = binomial_interval(3, 20, confidence=0.99)
    assert low99 < low90 < 0.15 < high90 < high99
    assert float(high90) == pytest.approx(wilson_by_formula(3, 20, stats.norm.isf(0.05))[1])


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="method"):
        binomial_interval(1, 2, method="wald")
    with pytest.raises(ValueError, match="confidence"):
        binomial_interval(1, 2, confidence=1.5)
    with pytest.raises(ValueError, match="successes"):
        binomial_interval(3, 2)


def test_agrees_with_scipy_and_statsmodels_on_random_counts() -> None:
    rng = np.random.default_rng(1)
    n = rng.integers(1, 200, size=50)
    k = rng.integers(0, n + 1)
    for ours, theirs in (("wilson", "wilson"), ("clopper-pearson", "exact")):
        low, high = binomial_interval(k, n, method=ours, confidence=0.9)
        for i in range(len(n)):
            ci = stats.binomtest(int(k[i]), int(n[i])).proportion_ci(confidence_level=0.9, method=theirs)
            assert low[i] == pytest.approx(ci.low, abs=1e-9)
            assert high[i] == pytest.approx(ci.high, abs=1e-9)
    sm_low, sm_high = proportion_confint(k, n, alpha=0.1, method="wilson")
    low, high = binomial_interval(k, n, confidence=0.9)
    np.testing.assert_allclose(low, np.clip(sm_low, 0, 1), atol=1e-12)
    np.testing.assert_allclose(high, np.clip(sm_high, 0, 1), atol=1e-12)


counts = st.integers(1, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))
methods = st.sampled_from(["wilson", "clopper-pearson"])


@settings(max_examples=60, deadline=None)
@given(counts, methods, st.floats(0.5, 0.999))
def test_interval_contains_the_estimate(kn: tuple[int, int], method: str, confidence: float) -> None:
    k, n = kn
    low, high = binomial_interval(k, n, method=method, confidence=confidence)
    assert 0.0 <= low <= k / n <= high <= 1.0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10), st.integers(1, 10), st.integers(2, 20), methods)
def test_interval_narrows_as_restarts_grow_at_a_fixed_rate(num: int, den: int, scale: int, method: str) -> None:
    k, n = min(num, den), den
    small = binomial_interval(k, n, method=method)
    large = binomial_interval(k * scale, n * scale, method=method)
    assert float(large[1] - large[0]) < float(small[1] - small[0])


# --- two rates --------------------------------------------------------------------


def test_newcombe_independent_published_example() -> None:
    # Perondi et al. 2004 as tabulated by Fagerland, Lydersen & Laake: 7/34 vs 1/34 -> (0.0189, 0.3404).
    low, high = newcombe_interval(7, 34, 1, 34)
    assert float(low) == pytest.approx(0.0189, abs=5e-5)
    assert float(high) == pytest.approx(0.3404, abs=5e-5)


def test_newcombe_independent_matches_statsmodels_on_random_counts() -> None:
    rng = np.random.default_rng(2)
    n1, n2 = rng.integers(1, 100, size=(2, 40))
    k1, k2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
    low, high = newcombe_interval(k1, n1, k2, n2, confidence=0.9)
    sm_low, sm_high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", alpha=0.1)
    np.testing.assert_allclose(low, sm_low, atol=1e-12)
    np.testing.assert_allclose(high, sm_high, atol=1e-12)


def test_newcombe_paired_published_example() -> None:
    # Cavo et al. 2012 (Fagerland, Lydersen & Laake 2014, paired 2x2): [[59, 6], [16, 80]].
    low, high = newcombe_paired_interval(59, 6, 16, 80)
    assert float(low) == pytest.approx(-0.1186, abs=5e-5)
    assert float(high) == pytest.approx(-0.0046, abs=5e-5)


def test_newcombe_paired_without_correlation_is_the_independent_interval() -> None:
    # AD - BC = 5*5 - 5*5 = 0, so phi = 0 and the square-and-add is Newcombe's independent one.
    paired = newcombe_paired_interval(5, 5, 5, 5)
    independent = newcombe_interval(10, 20, 10, 20)
    np.testing.assert_allclose(paired, independent, atol=1e-12)


def test_ratio_published_examples() -> None:
    # MOVER-R Wilson, Perondi: 7/34 vs 1/34 -> 7.0 (1.1537, 41.9763).
    low, high = ratio_interval(7, 34, 1, 34)
    assert (float(low), float(high)) == pytest.approx((1.1537, 41.9763), abs=5e-5)
    # Bonett-Price hybrid Wilson score, Cavo: 65/75 = 0.8667 (0.7579, 0.9910).
    low, high = ratio_paired_interval(59, 6, 16, 80)
    assert (float(low), float(high)) == pytest.approx((0.7579, 0.9910), abs=5e-5)


def test_ratio_zero_counts() -> None:
    assert tuple(map(float, ratio_interval(0, 10, 0, 10))) == (0.0, math.inf)
    low, high = ratio_interval(5, 10, 0, 10)
    assert 1.0 < low and high == math.inf
    low, high = ratio_interval(0, 10, 5, 10)
    assert low == 0.0 and 0.0 < high < 1.0
    assert tuple(map(float, ratio_paired_interval(0, 0, 0, 7))) == (0.0, math.inf)
    low, high = ratio_paired_interval(0, 3, 0, 4)
    assert low > 0.0 and high == math.inf


def test_empty_two_sample_inputs() -> None:
    assert tuple(map(float, newcombe_interval(0, 0, 3, 5))) == (-1.0, 1.0)
    assert tuple(map(float, newcombe_paired_interval(0, 0, 0, 0))) == (-1.0, 1.0)
    assert tuple(map(float, ratio_interval(2, 5, 0, 0))) == (0.0, math.inf)


tables = st.tuples(*[st.integers(0, 30)] * 4).filter(lambda t: sum(t) > 0)


@settings(max_examples=60, deadline=None)
@given(tables)
def test_paired_intervals_contain_their_estimates(t: tuple[int, int, int, int]) -> None:
    a, b, c, d = t
    n = a + b + c + d
    low, high = newcombe_paired_interval(a, b, c, d)
    assert -1.0 <= low <= (b - c) / n <= high <= 1.0
    low, high = ratio_paired_interval(a, b, c, d)
    if a + c > 0:
        assert low <= (a + b) / (a + c) <= high


@settings(max_examples=60, deadline=None)
@given(tables)
def test_independent_intervals_contain_their_estimates(t: tuple[int, int, int, int]) -> None:
    k1, f1, k2, f2 = t
    n1, n2 = k1 + f1, k2 + f2
    if n1 == 0 or n2 == 0:
        return
    low, high = newcombe_interval(k1, n1, k2, n2)
    assert -1.0 <= low <= k1 / n1 - k2 / n2 <= high <= 1.0
    low, high = ratio_interval(k1, n1, k2, n2)
    if k2 > 0:
        assert low <= (k1 / n1) / (k2 / n2) * (1 + 1e-12) and (k1 / n1) / (k2 / n2) <= high * (1 + 1e-12)


# --- the scipy.special kernels against scipy.stats / statsmodels -------------------
#
# binomial_interval and newcombe_interval compute on scipy.special (ndtri, betaincinv,
# betainccinv) so that `import robustness.stats` stays off scipy.stats and statsmodels.
# They repeat statsmodels' arithmetic operation for operation, so the agreement is
# bit-for-bit on the SciPy this was written on; 1e-12 relative leaves room for other
# SciPy builds of the same special functions.

LEVELS = (0.5, 0.9, 0.95, 0.99)
RTOL = 1e-12


def many_counts(seed: int, size: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(k, n)`` at small, medium and large n (to 10^6), plus 0 of n, n of n, n = 1 and n = 0."""
    rng = np.random.default_rng(seed)
    n = np.concatenate([rng.integers(1, 30, size), rng.integers(30, 5000, size), rng.integers(5000, 10**6 + 1, size)])
    k = rng.integers(0, n + 1)
    some = n[::20]
    edge_n = np.array([0, 1, 1, 2, 2, 7, 40, 10**6, 10**6, 10**6, 10**6, 10**6])
    edge_k = np.array([0, 0, 1, 0, 1, 7, 20, 0, 1, 500_000, 10**6 - 1, 10**6])
    return np.concatenate([k, np.zeros_like(some), some, edge_k]), np.concatenate([n, some, some, edge_n])


def reference_binomial(k: np.ndarray, n: np.ndarray, method: str, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """statsmodels' proportion_confint under binomial_interval's documented rules."""
    sm_method = {"wilson": "wilson", "clopper-pearson": "beta"}[method]
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = proportion_confint(k, np.where(n == 0, 1, n), alpha=1 - confidence, method=sm_method)
    low = np.where(k == 0, 0.0, np.clip(low, 0.0, 1.0))
    high = np.where(k == n, 1.0, np.clip(high, 0.0, 1.0))
    return np.where(n == 0, 0.0, low), np.where(n == 0, 1.0, high)


@pytest.mark.parametrize("confidence", LEVELS)
@pytest.mark.parametrize("method", ["wilson", "clopper-pearson"])
def test_binomial_kernels_match_statsmodels(method: str, confidence: float) -> None:
    k, n = many_counts(seed=int(confidence * 100) + (method == "wilson"))
    low, high = binomial_interval(k, n, method=method, confidence=confidence)
    want_low, want_high = reference_binomial(k, n, method, confidence)
    np.testing.assert_allclose(low, want_low, rtol=RTOL, atol=0)
    np.testing.assert_allclose(high, want_high, rtol=RTOL, atol=0)


large_counts = st.integers(1, 10**6).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@settings(max_examples=100, deadline=None)
@given(large_counts, methods, st.floats(0.5, 0.999))
def test_binomial_kernels_match_statsmodels_at_any_level(kn: tuple[int, int], method: str, confidence: float) -> None:
    k, n = np.array([kn[0]]), np.array([kn[1]])
    got = binomial_interval(k, n, method=method, confidence=confidence)
    np.testing.assert_allclose(got, reference_binomial(k, n, method, confidence), rtol=RTOL, atol=0)


def test_normal_quantile_matches_scipy_stats() -> None:
    # Bonett-Price (ratio_paired_interval) scales this critical value; it must be norm.isf(alpha / 2).
    from robustness.stats._intervals import _z

    for alpha in (*(1 - c for c in LEVELS), 1e-12, 1e-6, 0.001, 0.3, 0.999):
        assert float(_z(alpha)) == pytest.approx(stats.norm.isf(alpha / 2), rel=RTOL, abs=0)


@pytest.mark.parametrize("confidence", LEVELS)
def test_newcombe_independent_kernel_matches_statsmodels(confidence: float) -> None:
    k1, n1 = many_counts(seed=10 + int(confidence * 100))
    rng = np.random.default_rng(int(confidence * 1000))
    order = rng.permutation(k1.size)
    k2, n2 = k1[order], n1[order]
    low, high = newcombe_interval(k1, n1, k2, n2, confidence=confidence)
    empty = (n1 == 0) | (n2 == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sm_low, sm_high = confint_proportions_2indep(
            k1, np.where(empty, 1, n1), k2, np.where(empty, 1, n2), method="newcomb", alpha=1 - confidence
        )
    want_low = np.where(empty, -1.0, np.clip(sm_low, -1.0, 1.0))
    want_high = np.where(empty, 1.0, np.clip(sm_high, -1.0, 1.0))
    assert empty.any() and np.any((k1 == 0) & (k2 == n2) & ~empty)
    np.testing.assert_allclose(low, want_low, rtol=RTOL, atol=0)
    np.testing.assert_allclose(high, want_high, rtol=RTOL, atol=0)
