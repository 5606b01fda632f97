"""Per-cell success rates and noise-vs-baseline comparisons on small, hand-checkable tables."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import robustness.stats as rs
from robustness.criterion import Criterion
from robustness.records import RestartOutcome
from robustness.stats import cell_stats, compare_arms
from robustness.table import RestartTable

BASE = {"lr": 0.1, "clip": 10.0, "init": "zero"}
NONE = {"schedule": "none", "eta": None, "gamma": None}
ANNEALED = {"schedule": "annealed", "eta": 0.3, "gamma": 0.55}


def arm(
    params: dict, errors: Sequence[float], *, diverged: Sequence[int] = (), threshold: float = 0.01
) -> list[RestartOutcome]:
    """One cell's restarts: restart r has seed 100 + r; ``diverged`` lists restart indices."""
    return [
        RestartOutcome(
            params=params,
            restart=r,
            seed=100 + r,
            metrics={"test_error": e, "test_accuracy": 1 - e},
            primary_metric="test_error",
            success=bool(e < threshold and r not in diverged),
            diverged=r in diverged,
        )
        for r, e in enumerate(errors)
    ]


def table(*arms: list[RestartOutcome]) -> RestartTable:
    return RestartTable.from_outcomes([o for a in arms for o in a])


def outcomes_from_pairs(noise: Sequence[bool], base: Sequence[bool], group: dict = BASE) -> list[RestartOutcome]:
    def err(ok: bool) -> float:
        return 0.001 if ok else 0.5

    return arm(group | ANNEALED, [err(x) for x in noise]) + arm(group | NONE, [err(x) for x in base])


# --- cells --------------------------------------------------------------------


def test_cell_counts_rates_and_wilson_interval() -> None:
    t = table(arm(BASE | NONE, [0.001] * 3 + [0.5] * 7), arm(BASE | ANNEALED, [0.001] * 10))
    cells = {c.params["schedule"]: c for c in cell_stats(t)}
    none, annealed = cells["none"], cells["annealed"]
    assert (none.n, none.successes, none.rate) == (10, 3, 0.3)
    low, high = rs.binomial_interval(3, 10)
    assert (none.ci_low, none.ci_high) == (float(low), float(high))
    assert (annealed.successes, annealed.ci_high) == (10, 1.0)
    assert dict(none.params) == BASE | NONE and none.method == "wilson"


def test_diverged_restarts_are_failures_even_if_stored_as_successes() -> None:
    outcomes = arm(BASE | NONE, [0.001, 0.001, 0.001], diverged=[1])
    # A faulty writer stored success=True for the diverged restart: it must still fail.
    outcomes[1] = RestartOutcome(**{**outcomes[1].__dict__, "success": True})
    (cell,) = cell_stats(table(outcomes))
    assert (cell.n, cell.successes, cell.diverged) == (3, 2, 1)


def test_all_diverged_cell_has_zero_successes() -> None:
    t = table(arm(BASE | NONE, [math.nan] * 4, diverged=[0, 1, 2, 3]))
    (cell,) = cell_stats(t, criterion=Criterion("test_error", "<", 0.5))
    assert (cell.n, cell.successes, cell.diverged, cell.rate, cell.ci_low) == (4, 0, 4, 0.0, 0.0)


def test_single_restart_cell() -> None:
    (cell,) = cell_stats(table(arm(BASE | NONE, [0.001])), method="clopper-pearson")
    assert (cell.n, cell.successes, cell.ci_high) == (1, 1, 1.0)
    assert cell.ci_low == pytest.approx(0.025)  # Clopper-Pearson 1 of 1: (alpha/2)^(1/n)


def test_empty_table_gives_no_cells_and_no_comparisons() -> None:
    t = table()
    assert cell_stats(t) == []
    result = compare_arms(t)
    assert len(result) == 0 and result.unmatched == ()
    assert rs.success_counts(t, [Criterion("test_error", "<", 0.01)]) == []
    assert rs.success_within(t, [1, 5]) == [] and rs.ecdf(t) == []


def test_rejudging_with_a_criterion_changes_counts() -> None:
    t = table(arm(BASE | NONE, [0.005, 0.015, 0.025, math.inf, 0.001], diverged=[4]))
    thresholds = (0.01, 0.02, 0.03)
    counts = {thr: cell_stats(t, criterion=Criterion("test_error", "<", thr))[0].successes for thr in thresholds}
    assert counts == {0.01: 1, 0.02: 2, 0.03: 3}  # inf and the diverged 0.001 never pass
    assert cell_stats(t, criterion=Criterion("test_accuracy", ">=", 0.985))[0].successes == 2
    assert cell_stats(t)[0].successes == 1  # the stored criterion (< 0.01)
    with pytest.raises(KeyError, match="test_loss"):
        cell_stats(t, criterion=Criterion("test_loss", "<", 1.0))


def test_pooling_cells_by_fewer_axes() -> None:
    t = table(
        arm(BASE | NONE, [0.001, 0.5]),
        arm(BASE | {"lr": 0.01} | NONE, [0.5, 0.5, 0.001]),
        arm(BASE | ANNEALED, [0.001]),
    )
    pooled = cell_stats(t, by=("schedule",))
    assert [(dict(c.params), c.n, c.successes) for c in pooled] == [
        ({"schedule": "annealed"}, 1, 1),
        ({"schedule": "none"}, 5, 2),
    ]
    (everything,) = cell_stats(t, by=())
    assert (everything.n, everything.successes) == (6, 3)


def test_cells_are_sorted_and_mixed_type_axes_work() -> None:
    t = table(*(arm(BASE | {"clip": clip} | NONE, [0.5]) for clip in (100.0, None, 10.0)))
    assert [c.params["clip"] for c in cell_stats(t)] == [None, 10.0, 100.0]


def test_cell_to_dict_is_strict_json() -> None:
    (cell,) = cell_stats(table(arm(BASE | NONE, [0.5, 0.001])))
    d = cell.to_dict()
    assert {"params", "n", "successes", "rate", "ci_low", "ci_high"} <= d.keys()
    assert d["params"] == BASE | NONE
    json.dumps(d, allow_nan=False)


# --- comparisons ---------------------------------------------------------------


def test_paired_mcnemar_on_a_constructed_table() -> None:
    # 20 shared seeds: 5 both succeed, 8 only noise, 2 only baseline, 5 neither.
    noise = [True] * 5 + [True] * 8 + [False] * 2 + [False] * 5
    base = [True] * 5 + [False] * 8 + [True] * 2 + [False] * 5
    (c,) = compare_arms(table(outcomes_from_pairs(noise, base)))
    assert c.paired and c.test == "mcnemar-exact"
    assert (c.n_pairs, c.noise_only, c.baseline_only) == (20, 8, 2)
    assert (c.noise_successes, c.baseline_successes) == (13, 7)
    assert c.p_value == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert c.p_adjusted == pytest.approx(c.p_value)  # one comparison: nothing to adjust
    assert c.risk_difference == pytest.approx(6 / 20)
    assert (c.rd_low, c.rd_high) == tuple(map(float, rs.newcombe_paired_interval(5, 8, 2, 5)))
    assert c.risk_ratio == pytest.approx(13 / 7)
    assert (c.rr_low, c.rr_high) == tuple(map(float, rs.ratio_paired_interval(5, 8, 2, 5)))
    assert dict(c.group) == BASE and c.noise["schedule"] == "annealed" and c.baseline["schedule"] == "none"


def test_pairs_follow_seeds_not_row_order() -> None:
    noise, base = [True, False, True, False], [False, True, True, False]
    outcomes = outcomes_from_pairs(noise, base)
    (c,) = compare_arms(table(reversed(outcomes)))
    assert (c.n_pairs, c.noise_only, c.baseline_only) == (4, 1, 1)


def test_no_discordant_pairs_gives_p_one() -> None:
    (c,) = compare_arms(table(outcomes_from_pairs([True, False, True], [True, False, True])))
    assert (c.noise_only, c.baseline_only, c.p_value, c.risk_difference) == (0, 0, 1.0, 0.0)


def test_unpaired_uses_fisher_and_newcombe() -> None:
    noise, base = [True] * 7 + [False] * 27, [True] * 1 + [False] * 33
    (c,) = compare_arms(table(outcomes_from_pairs(noise, base)), paired=False)
    assert not c.paired and c.test == "fisher-exact" and c.n_pairs is None
    assert c.p_value == pytest.approx(stats.fisher_exact([[7, 27], [1, 33]]).pvalue)
    assert (c.rd_low, c.rd_high) == pytest.approx((0.0189, 0.3404), abs=5e-5)
    assert (c.risk_ratio, c.rr_low, c.rr_high) == pytest.approx((7.0, 1.1537, 41.9763), abs=5e-5)
    (b,) = compare_arms(table(outcomes_from_pairs(noise, base)), paired=False, unpaired_test="boschloo")
    assert b.test == "boschloo-exact"
    assert b.p_value == pytest.approx(stats.boschloo_exact([[7, 27], [1, 33]]).pvalue)


def test_without_shared_seeds_pairing_falls_back_to_fisher() -> None:
    outcomes = arm(BASE | ANNEALED, [0.001, 0.5]) + [
        RestartOutcome(**{**o.__dict__, "seed": o.seed + 50}) for o in arm(BASE | NONE, [0.5, 0.5])
    ]
    (c,) = compare_arms(table(outcomes))
    assert not c.paired and c.test == "fisher-exact"
    (r,) = compare_arms(table(outcomes), pair_by="restart")
    assert r.paired and r.n_pairs == 2


def test_partially_paired_arms_use_only_the_pairs() -> None:
    outcomes = arm(BASE | ANNEALED, [0.001, 0.001, 0.001]) + arm(BASE | NONE, [0.5, 0.5])
    (c,) = compare_arms(table(outcomes))
    assert (c.noise_n, c.baseline_n, c.n_pairs, c.noise_only) == (3, 2, 2, 2)
    assert c.risk_difference == 1.0


def test_all_diverged_baseline() -> None:
    outcomes = arm(BASE | ANNEALED, [0.001, 0.001, 0.5]) + arm(BASE | NONE, [math.nan] * 3, diverged=[0, 1, 2])
    (c,) = compare_arms(table(outcomes))
    assert (c.baseline_successes, c.noise_only, c.baseline_only) == (0, 2, 0)
    assert c.risk_ratio == math.inf and c.rr_high == math.inf and c.rr_low > 0
    d = c.to_dict()
    assert d["risk_ratio"] is None and d["rr_high"] is None
    json.dumps(d, allow_nan=False)


def test_unmatched_noise_arms_are_reported_not_tested() -> None:
    lonely = {"lr": 0.5, "clip": 10.0, "init": "zero"} | ANNEALED
    t = table(outcomes_from_pairs([True, False], [False, False]), arm(lonely, [0.001]))
    result = compare_arms(t)
    assert len(result) == 1 and [dict(u) for u in result.unmatched] == [lonely]
    assert result.to_dict()["unmatched"] == [lonely]
    # No baseline cell in the study: everything is unmatched, nothing crashes.
    only_noise = table(arm(BASE | ANNEALED, [0.001]))
    assert len(compare_arms(only_noise)) == 0 and len(compare_arms(only_noise).unmatched) == 1
    # A baseline value that no cell has is a typo: one line naming the values there are.
    with pytest.raises(ValueError, match=r"baseline schedule='constant' matches no cell; the study's schedule values: annealed, none"):
        compare_arms(t, baseline={"schedule": "constant"})


def test_holm_is_applied_across_all_comparisons() -> None:
    groups = [BASE | {"lr": lr} for lr in (0.1, 0.01, 0.001)]
    patterns = [
        ([True] * 9 + [False], [False] * 10),
        ([True] * 4 + [False] * 6, [False] * 10),
        ([True] * 2, [False] * 2),
    ]
    t = table(*(outcomes_from_pairs(n, b, g) for g, (n, b) in zip(groups, patterns)))
    result = compare_arms(t)
    raw = [c.p_value for c in result]
    assert [c.p_adjusted for c in result] == pytest.approx(rs.adjust_pvalues(raw).tolist())
    assert [c.p_adjusted for c in compare_arms(t, adjust="fdr_bh")] == pytest.approx(
        rs.adjust_pvalues(raw, method="fdr_bh").tolist()
    )
    assert [c.p_adjusted for c in compare_arms(t, adjust="none")] == raw
    assert [c.noise["lr"] for c in result] == [0.001, 0.01, 0.1]  # sorted by grid coordinates


def test_several_noise_arms_share_one_baseline() -> None:
    constant = {"schedule": "constant", "eta": 0.01, "gamma": None}
    t = table(outcomes_from_pairs([True, True], [False, True]), arm(BASE | constant, [0.5, 0.001]))
    result = compare_arms(t)
    assert sorted(c.noise["schedule"] for c in result) == ["annealed", "constant"]
    assert all(c.baseline["schedule"] == "none" for c in result)


def test_match_axes_are_configurable() -> None:
    # Extra axis "width": matched by default; with match=("lr", "clip", "init") it is pooled,
    # and the noise cell still pairs with the baseline of its own width.
    t = table(
        arm(BASE | {"width": 10} | NONE, [0.5]),
        arm(BASE | {"width": 20} | NONE, [0.001]),
        arm(BASE | {"width": 10} | ANNEALED, [0.001]),
    )
    (c,) = compare_arms(t)
    assert c.baseline["width"] == 10 and set(compare_arms(t).match) == {"lr", "clip", "init", "width"}
    pooled = compare_arms(t, match=("lr", "clip", "init"))
    assert pooled.pooled == ("width",) and "width" not in pooled[0].noise
    assert (pooled[0].baseline_successes, pooled[0].noise_successes, pooled[0].noise_only) == (0, 1, 1)
    (c,) = compare_arms(table(outcomes_from_pairs([True], [False])), match=("init",))
    assert dict(c.group) == {"init": "zero"}
    with pytest.raises(KeyError, match="match axis"):
        compare_arms(t, match=("momentum",))
    with pytest.raises(KeyError, match="baseline axis"):
        compare_arms(t, baseline={"optimizer": "sgd"})
    with pytest.raises(ValueError, match="also define the baseline"):
        compare_arms(t, match=("lr", "schedule"))


def test_match_pools_the_other_axes_pair_by_pair() -> None:
    # Two learning rates, 4 seed-paired restarts each. lr 0.1: noise wins 3 pairs, loses 0;
    # lr 0.01: noise wins 1, loses 1. Pooled over lr: 8 pairs, 4 noise-only, 1 baseline-only.
    lr1, lr2 = BASE, BASE | {"lr": 0.01}
    t = table(outcomes_from_pairs([True, True, True, False], [False, False, False, False], lr1),
              outcomes_from_pairs([True, False, True, False], [False, True, True, False], lr2))
    per_lr = compare_arms(t)
    assert [(c.noise_only, c.baseline_only) for c in per_lr] == [(1, 1), (3, 0)]  # sorted by lr
    (c,) = compare_arms(t, match=("init", "clip"))
    assert dict(c.group) == {"init": "zero", "clip": 10.0} and "lr" not in c.noise and "lr" not in c.baseline
    assert (c.n_pairs, c.noise_only, c.baseline_only) == (8, 4, 1)
    assert (c.noise_n, c.noise_successes, c.baseline_n, c.baseline_successes) == (8, 5, 8, 2)
    assert c.p_value == pytest.approx(0.375)  # exact McNemar, b = 4, c = 1: 2 * P(X <= 1 | n = 5) = 12 / 32
    assert c.risk_ratio == pytest.approx(5 / 2)
    assert compare_arms(t, match=("init", "clip")).to_dict()["pooled"] == ["lr"]
    # Unpaired, pooling sums the cells' counts
    (u,) = compare_arms(t, match=("init", "clip"), paired=False)
    assert (u.noise_successes, u.baseline_successes, u.n_pairs) == (5, 2, None)


def test_repeated_seed_in_a_cell_is_an_error_when_pairing() -> None:
    outcomes = arm(BASE | ANNEALED, [0.001, 0.5]) + arm(BASE | NONE, [0.5])
    outcomes.append(RestartOutcome(**{**outcomes[-1].__dict__, "restart": 7}))
    with pytest.raises(ValueError, match="same seed"):
        compare_arms(table(outcomes))
    assert len(compare_arms(table(outcomes), paired=False)) == 1


def test_criterion_at_query_time_changes_the_comparison() -> None:
    noise = arm(BASE | ANNEALED, [0.005, 0.015, 0.015, 0.5])
    base = arm(BASE | NONE, [0.005, 0.005, 0.5, 0.5])
    strict = compare_arms(table(noise, base))[0]
    loose = compare_arms(table(noise, base), criterion=Criterion("test_error", "<", 0.02))[0]
    assert (strict.noise_successes, loose.noise_successes) == (1, 3)
    assert (strict.noise_only, strict.baseline_only, loose.noise_only, loose.baseline_only) == (0, 1, 1, 0)


def test_comparisons_to_dict_is_strict_json() -> None:
    result = compare_arms(table(outcomes_from_pairs([True, False], [False, False])))
    d = result.to_dict()
    (c,) = d["comparisons"]
    counts = {"noise", "baseline", "noise_n", "noise_successes", "baseline_n", "baseline_successes", "test"}
    effects = {"p_value", "p_adjusted", "risk_difference", "rd_low", "rd_high", "risk_ratio", "rr_low", "rr_high"}
    assert counts | effects <= c.keys()
    json.dumps(d, allow_nan=False)


def test_random_studies_agree_with_scipy() -> None:
    rng = np.random.default_rng(5)
    outcomes = []
    for lr in (0.1, 0.01, 0.001):
        for params, rate in ((NONE, 0.2), (ANNEALED, 0.4)):
            outcomes += arm(BASE | {"lr": lr} | params, np.where(rng.random(30) < rate, 0.001, 0.5))
    t = table(outcomes)
    for c in compare_arms(t, paired=True):
        assert c.p_value == pytest.approx(stats.binomtest(c.noise_only, c.noise_only + c.baseline_only).pvalue)
    for c in compare_arms(t, paired=False):
        table2x2 = [[c.noise_successes, 30 - c.noise_successes], [c.baseline_successes, 30 - c.baseline_successes]]
        assert c.p_value == pytest.approx(stats.fisher_exact(table2x2).pvalue)
        assert 0.0 <= c.p_value <= c.p_adjusted <= 1.0


def test_grouping_with_huge_grids_takes_the_general_path() -> None:
    # 7 axes x 600 distinct values overflow one int64 key; grouping must still be exact.
    from robustness.stats._groups import group_rows

    rng = np.random.default_rng(6)
    values = rng.permutation(600)
    params = {f"a{i}": np.array([float(v) for v in np.roll(values, i)], dtype=object) for i in range(7)}
    params["a0"][1] = params["a0"][0]  # still 600 distinct rows: a1..a6 differ
    n = 600
    t = RestartTable(
        params=params,
        restart=np.zeros(n, dtype=np.int64),
        seed=np.zeros(n, dtype=np.int64),
        metrics={},
        diverged=np.zeros(n, dtype=bool),
        success=np.zeros(n, dtype=bool),
        primary_metric="",
    )
    groups = group_rows(t)
    assert len(groups.keys) == n and groups.keys == sorted(groups.keys)
    for row in (0, 1, 599):
        assert groups.keys[groups.index[row]] == tuple(params[f"a{i}"][row] for i in range(7))
    with pytest.raises(KeyError, match="no grid axis"):
        cell_stats(t, by=("momentum",))


# --- import budget -------------------------------------------------------------

# Run in a fresh interpreter: the default paths of `robustness stats` (Wilson cells,
# seed-paired McNemar comparisons with Newcombe / Bonett-Price intervals, Holm or BH)
# must not load scipy.stats, statsmodels or pandas, which cost ~1.5 s of import
# against the command's 1 s budget. Checks what is imported, not how long it takes.
IMPORT_BUDGET_SCRIPT = textwrap.dedent(
    """
    import sys

    import robustness.stats as rs
    from robustness.records import RestartOutcome
    from robustness.table import RestartTable

    outcomes = []
    for lr in (0.1, 0.01):
        for params, wins in (
            ({"schedule": "none", "eta": None, "gamma": None}, [1, 0, 0, 1, 0, 0, 0, 0]),
            ({"schedule": "annealed", "eta": 0.3, "gamma": 0.55}, [1, 1, 1, 0, 1, 0, 1, 1]),
        ):
            for r, ok in enumerate(wins):
                outcomes.append(RestartOutcome(
                    params={"lr": lr, "clip": 10.0} | params, restart=r, seed=100 + r,
                    metrics={"test_error": 0.001 if ok else 0.5}, primary_metric="test_error",
                    success=bool(ok), diverged=False,
                ))
    table = RestartTable.from_outcomes(outcomes)
    cells = rs.cell_stats(table) + rs.cell_stats(table, method="clopper-pearson", by=("schedule",))
    comparisons = list(rs.compare_arms(table)) + list(rs.compare_arms(table, adjust="fdr_bh"))
    assert len(cells) == 6 and len(comparisons) == 4 and all(c.paired for c in comparisons)
    rs.newcombe_interval([3, 0], [8, 0], [6, 2], [8, 5])
    rs.ratio_interval([3, 0], [8, 0], [6, 2], [8, 5])
    print([m for m in ("scipy.stats", "statsmodels", "pandas") if m in sys.modules])
    """
)


def test_default_paths_do_not_import_scipy_stats_statsmodels_or_pandas() -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_BUDGET_SCRIPT], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- noise axes come from the registered schedules ------------------------------


@pytest.fixture(scope="module")
def linear_decay() -> str:
    """A user schedule whose parameter is not eta/gamma (the LinearDecay of register_schedule's docstring)."""
    import dataclasses

    from robustness.noise import NoiseSchedule, register_schedule

    @register_schedule("test_stats_linear_decay")
    @dataclasses.dataclass(frozen=True)
    class LinearDecay(NoiseSchedule):
        eta: float
        steps: int

        def variance(self, t: int) -> float:
            return self.eta * max(0.0, 1 - t / self.steps)

    return "test_stats_linear_decay"


def test_a_schedule_with_its_own_parameter_is_compared_with_its_baseline(linear_decay) -> None:
    from robustness.noise import noise_axes

    none = {"schedule": "none", "eta": None, "gamma": None, "steps": None}
    decay = [{"schedule": linear_decay, "eta": 0.3, "gamma": None, "steps": s} for s in (100, 200)]
    t = table(arm(BASE | none, [0.5] * 8), arm(BASE | decay[0], [0.001] * 6 + [0.5] * 2),
              arm(BASE | decay[1], [0.001] * 2 + [0.5] * 6))
    assert noise_axes(t.params) == ("schedule", "eta", "gamma", "steps")
    result = compare_arms(t)
    assert result.unmatched == () and result.match == ("clip", "init", "lr")
    got = {c.noise["steps"]: (c.noise_successes, c.baseline_successes, c.noise_only) for c in result.comparisons}
    assert got == {100: (6, 0, 6), 200: (2, 0, 2)}
    # an exact McNemar test with 6 discordant pairs, all one way: p = 2 * 0.5**6
    by_steps = {c.noise["steps"]: c for c in result.comparisons}
    assert by_steps[100].p_value == pytest.approx(2 * 0.5**6)
