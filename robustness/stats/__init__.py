"""Statistics of a restart study, on NumPy, scipy and statsmodels.

The unit of analysis is the restart. Every function takes a
:class:`~robustness.table.RestartTable` (``N`` restarts, columnar) or plain
NumPy arrays, and never touches storage. Results are frozen dataclasses with a
``to_dict()`` for JSON, so the CLI and the report are thin layers:

- per cell: :func:`cell_stats` (successes out of n, Wilson or Clopper-Pearson);
- noise against baseline: :func:`compare_arms` (McNemar on seed-paired
  restarts, else Fisher or Boschloo; risk difference and ratio with
  intervals; Holm or Benjamini-Hochberg across the study);
- paper-style tables: :func:`arm_summary`, :func:`success_counts`;
- budgets: :func:`success_within`, :func:`expected_best`, :func:`ecdf`;
- power: :func:`restarts_needed`, :func:`detectable_difference`;
- which axes matter: :func:`success_importance` (fANOVA main effects of the
  per-cell success rate, Hutter et al. 2014) and :func:`marginal_success`
  (per value of each axis, pooled over the others, with intervals).

Success can be re-judged at query time with a
:class:`~robustness.criterion.Criterion`; diverged restarts always fail.

Importing this package, and the default paths of :func:`cell_stats` and
:func:`compare_arms`, load neither ``scipy.stats`` nor ``statsmodels`` (nor
pandas), about 1.5 s of import against the 1 s budget of ``robustness stats``:
their kernels are on ``scipy.special`` and NumPy, and the other functions
import those libraries when called.
"""

from __future__ import annotations

from robustness.stats._budget import (
    BudgetCurve,
    Ecdf,
    ExpectedBest,
    ecdf,
    expected_best,
    expected_max,
    p_at_least_one,
    success_within,
)
from robustness.stats._cells import CellStats, cell_stats
from robustness.stats._compare import Comparison, Comparisons, compare_arms
from robustness.stats._data import judge, metric_values
from robustness.stats._importance import (
    NOISE_AXIS,
    AxisImportance,
    MarginalSuccess,
    SuccessImportance,
    importance_axes,
    marginal_success,
    success_importance,
)
from robustness.stats._intervals import (
    INTERVAL_METHODS,
    binomial_interval,
    newcombe_interval,
    newcombe_paired_interval,
    ratio_interval,
    ratio_paired_interval,
)
from robustness.stats._power import detectable_difference, restarts_needed
from robustness.stats._pvalues import (
    ADJUSTMENTS,
    UNPAIRED_TESTS,
    adjust_pvalues,
    mcnemar_exact,
    unpaired_exact,
)
from robustness.stats._tables import (
    ArmSummary,
    SuccessCounts,
    arm_summary,
    bootstrap_mean_interval,
    success_counts,
)

__all__ = [
    "ADJUSTMENTS",
    "INTERVAL_METHODS",
    "NOISE_AXIS",
    "UNPAIRED_TESTS",
    "ArmSummary",
    "AxisImportance",
    "BudgetCurve",
    "CellStats",
    "Comparison",
    "Comparisons",
    "Ecdf",
    "ExpectedBest",
    "MarginalSuccess",
    "SuccessCounts",
    "SuccessImportance",
    "adjust_pvalues",
    "arm_summary",
    "binomial_interval",
    "bootstrap_mean_interval",
    "cell_stats",
    "compare_arms",
    "detectable_difference",
    "ecdf",
    "expected_best",
    "expected_max",
    "importance_axes",
    "judge",
    "marginal_success",
    "mcnemar_exact",
    "metric_values",
    "newcombe_interval",
    "newcombe_paired_interval",
    "p_at_least_one",
    "ratio_interval",
    "ratio_paired_interval",
    "restarts_needed",
    "success_counts",
    "success_importance",
    "success_within",
    "unpaired_exact",
]
