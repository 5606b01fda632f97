"""Exact tests and multiplicity adjustment against hand calculations and scipy/statsmodels."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from robustness.stats import adjust_pvalues, mcnemar_exact, unpaired_exact


def test_mcnemar_by_hand() -> None:
    # b = 8, c = 2: two-sided exact p = 2 * P(Binomial(10, 1/2) <= 2) = 2 * (1 + 10 + 45) / 1024.
    assert float(mcnemar_exact(8, 2)) == pytest.approx(2 * (comb(10, 0) + comb(10, 1) + comb(10, 2)) / 2**10)
    assert float(mcnemar_exact(2, 8)) == pytest.approx(0.109375)


def test_mcnemar_published_example() -> None:
    # Cavo et al. 2012: discordant 6 and 16, exact conditional p = 0.052479 (Fagerland et al.).
    assert float(mcnemar_exact(6, 16)) == pytest.approx(0.052479, abs=5e-7)


def test_mcnemar_without_discordant_pairs_is_one() -> None:
    assert mcnemar_exact([0, 0], [0, 0]).tolist() == [1.0, 1.0]
    assert float(mcnemar_exact(3, 3)) == 1.0


def test_mcnemar_matches_statsmodels_and_scipy_on_random_tables() -> None:
    rng = np.random.default_rng(3)
    b, c = rng.integers(0, 40, size=(2, 50))
    ours = mcnemar_exact(b, c)
    for i in range(len(b)):
        sm = mcnemar([[10, b[i]], [c[i], 10]], exact=True).pvalue
        assert ours[i] == pytest.approx(sm, abs=1e-12)
        if b[i] + c[i]:
            assert ours[i] == pytest.approx(stats.binomtest(int(b[i]), int(b[i] + c[i])).pvalue, abs=1e-12)


def test_fisher_and_boschloo_match_scipy() -> None:
    rng = np.random.default_rng(4)
    n1, n2 = rng.integers(1, 40, size=(2, 30))
    k1, k2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
    ours = unpaired_exact(k1, n1, k2, n2)
    for i in range(len(n1)):
        want = stats.fisher_exact([[k1[i], n1[i] - k1[i]], [k2[i], n2[i] - k2[i]]]).pvalue
        assert ours[i] == pytest.approx(min(want, 1.0), abs=1e-12)
    ours = unpaired_exact(k1[:3], n1[:3], k2[:3], n2[:3], test="boschloo")
    for i in range(3):
        want = stats.boschloo_exact([[k1[i], n1[i] - k1[i]], [k2[i], n2[i] - k2[i]]]).pvalue
        assert ours[i] == pytest.approx(want, abs=1e-12)


def test_fisher_by_hand() -> None:
    # 3/3 vs 0/3: one-sided hypergeometric tail 1/C(6,3) = 1/20, doubled for two sides.
    assert float(unpaired_exact(3, 3, 0, 3)) == pytest.approx(0.1)


def test_unpaired_degenerate_tables_give_one() -> None:
    # Nobody succeeded, everybody succeeded, or an arm is empty: no evidence either way.
    for test in ("fisher", "boschloo"):
        assert unpaired_exact([0, 5, 3], [5, 5, 4], [0, 7, 0], [7, 7, 0], test=test).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="unpaired_test"):
        unpaired_exact(1, 2, 1, 2, test="chi2")


def test_holm_by_hand() -> None:
    # Sorted 0.01, 0.03, 0.04 -> 3*0.01, 2*0.03, max(1*0.04, 0.06) in the original order.
    np.testing.assert_allclose(adjust_pvalues([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_benjamini_hochberg_by_hand() -> None:
    # 0.01*3/1, then min(0.03*3/2, 0.04*3/3) for the two larger ones.
    np.testing.assert_allclose(adjust_pvalues([0.01, 0.04, 0.03], method="fdr_bh"), [0.03, 0.04, 0.04])
    np.testing.assert_allclose(adjust_pvalues([0.01, 0.04, 0.03], method="bh"), [0.03, 0.04, 0.04])


def test_adjustment_edge_cases() -> None:
    assert adjust_pvalues([]).tolist() == []
    assert adjust_pvalues([0.2]).tolist() == [0.2]
    assert adjust_pvalues([0.01, 0.5], method="none").tolist() == [0.01, 0.5]
    out = adjust_pvalues([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="adjust"):
        adjust_pvalues([0.1], method="bonferonni")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30), st.sampled_from(["holm", "fdr_bh"]))
def test_adjusted_pvalues_agree_with_statsmodels_and_stay_in_range(p: list[float], method: str) -> None:
    out = adjust_pvalues(p, method=method)
    np.testing.assert_allclose(out, multipletests(p, method=method)[1])
    assert np.all((out >= np.asarray(p) - 1e-15) & (out <= 1.0))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.integers(1, 30), st.integers(1, 30))
def test_pvalues_are_probabilities(b: int, c: int, n1: int, n2: int) -> None:
    assert 0.0 <= float(mcnemar_exact(b, c)) <= 1.0
    k1, k2 = min(b, n1), min(c, n2)
    assert 0.0 <= float(unpaired_exact(k1, n1, k2, n2)) <= 1.0


# --- the scipy.special / NumPy kernels against scipy.stats / statsmodels ----------
#
# mcnemar_exact evaluates the binomial CDF as betainc(n - k, k + 1, 1/2) and the
# adjustments are written in NumPy, to keep `import robustness.stats` off scipy.stats
# and statsmodels. Agreement below is to 1e-12 relative (seen: a few ulp for McNemar,
# bit-for-bit for the adjustments).

RTOL = 1e-12


def discordant_counts(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(b, c)`` from tiny to 10^6, near-balanced large ones, and zeros."""
    rng = np.random.default_rng(seed)
    b = np.concatenate([rng.integers(0, hi, 60) for hi in (4, 40, 2000, 10**6)])
    c = np.concatenate([rng.integers(0, hi, 60) for hi in (4, 40, 2000, 10**6)])
    near = rng.integers(10**4, 10**6, 40)
    b = np.concatenate([b, near, [0, 0, 5, 0, 1, 10**6, 10**6]])
    c = np.concatenate([c, np.abs(near + rng.integers(-2000, 2000, 40)), [0, 5, 0, 1, 0, 10**6, 10**6 - 3000]])
    return b, c


def test_mcnemar_kernel_matches_statsmodels_and_binomtest() -> None:
    b, c = discordant_counts(seed=5)
    ours = mcnemar_exact(b, c)
    for i in range(b.size):
        sm = mcnemar([[0, b[i]], [c[i], 0]], exact=True).pvalue
        assert ours[i] == pytest.approx(sm, rel=RTOL, abs=0)
        if b[i] + c[i]:
            bt = stats.binomtest(int(b[i]), int(b[i] + c[i])).pvalue
            assert ours[i] == pytest.approx(bt, rel=RTOL, abs=0)
    assert np.any((ours > 0) & (ours < 1e-6)) and np.any((ours > 0.01) & (ours < 1))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_mcnemar_kernel_matches_scipy_binom_cdf(b: int, c: int) -> None:
    want = 1.0 if b + c == 0 else min(1.0, 2.0 * stats.binom.cdf(min(b, c), b + c, 0.5))
    assert float(mcnemar_exact(b, c)) == pytest.approx(want, rel=RTOL, abs=0)


def reference_adjust(p: np.ndarray, method: str) -> np.ndarray:
    out = p.copy()
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method=method)[1]
    return out


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_adjustment_kernels_match_multipletests_with_ties_and_nans(method: str) -> None:
    rng = np.random.default_rng(6 if method == "holm" else 7)
    for trial in range(60):  # multipletests(method="holm") runs gc.collect() on every call: keep this short
        p = rng.random(int(rng.integers(0, 200)))
        if trial % 2:
            p = np.round(p, int(rng.integers(1, 3)))  # ties, many of them
        if trial % 3 == 0 and p.size:
            p[rng.integers(0, p.size, 3)] = np.nan
        if trial % 5 == 0 and p.size:
            p[rng.integers(0, p.size, 2)] = rng.choice([0.0, 1.0, 1e-300])
        np.testing.assert_array_equal(adjust_pvalues(p, method=method), reference_adjust(p, method))


p_lists = st.lists(st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.01, 0.05, 0.5, 1.0, np.nan])), max_size=40)


@settings(max_examples=60, deadline=None)
@given(p_lists, st.sampled_from(["holm", "fdr_bh"]))
def test_adjustment_kernels_match_multipletests_exactly(p: list[float], method: str) -> None:
    arr = np.asarray(p, dtype=np.float64)
    np.testing.assert_array_equal(adjust_pvalues(arr, method=method), reference_adjust(arr, method))
