"""A columnar view of many restarts: what the statistics consume.

Reading 10k restarts through Optuna's trial objects is slow, so storage's fast
path returns this table directly from SQL, and :func:`RestartTable.from_outcomes`
builds the same table from in-memory :class:`~robustness.records.RestartOutcome`
records. Every array has shape ``(num_restarts,)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np

from robustness.records import RestartOutcome

__all__ = ["RestartTable"]


@dataclasses.dataclass(frozen=True)
class RestartTable:
    """One row per restart.

    Attributes:
        params: grid coordinate name -> ``(N,)`` object array of values.
        restart: ``(N,)`` int64 restart index within its cell.
        seed: ``(N,)`` int64 restart seed (equal across cells for equal ``restart``).
        metrics: final metric name -> ``(N,)`` float64 (NaN where absent).
        diverged: ``(N,)`` bool.
        success: ``(N,)`` bool under the criterion stored at training time.
        primary_metric: name of the primary metric.
    """

    params: Mapping[str, np.ndarray]
    restart: np.ndarray
    seed: np.ndarray
    metrics: Mapping[str, np.ndarray]
    diverged: np.ndarray
    success: np.ndarray
    primary_metric: str

    def __len__(self) -> int:
        return int(self.restart.shape[0])

    @classmethod
    def from_outcomes(cls, outcomes: Iterable[RestartOutcome]) -> RestartTable:
        rows = list(outcomes)
        param_names = sorted({k for o in rows for k in o.params})
        metric_names = sorted({k for o in rows for k in o.metrics})
        params = {k: np.array([o.params.get(k) for o in rows], dtype=object) for k in param_names}
        metrics = {
            k: np.array([float(o.metrics.get(k, np.nan)) for o in rows], dtype=np.float64) for k in metric_names
        }
        primary = rows[0].primary_metric if rows else ""
        return cls(
            params=params,
            restart=np.array([o.restart for o in rows], dtype=np.int64),
            seed=np.array([o.seed for o in rows], dtype=np.int64),
            metrics=metrics,
            diverged=np.array([o.diverged for o in rows], dtype=bool),
            success=np.array([o.success for o in rows], dtype=bool),
            primary_metric=primary,
        )
