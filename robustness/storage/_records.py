"""Full records back from Optuna's tables: every param, attribute and curve point.

The report's curves need this; the statistics do not (they read the summary
columns, see :mod:`robustness.storage._read`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from optuna.distributions import BaseDistribution, json_to_distribution

from robustness.records import RestartOutcome
from robustness.storage import _encode
from robustness.storage._optuna_tables import (
    INTERMEDIATE_TYPE,
    TRIAL_INTERMEDIATE,
    TRIAL_PARAMS,
    TRIAL_USER_ATTRS,
)
from robustness.storage._read import ordered_trial_ids

# Trials per round of queries: bounds memory (a 100-point curve is ~100 rows)
# while keeping the number of queries small.
OUTCOME_CHUNK = 500


class _Distributions:
    """Parse each distinct distribution JSON once (a study has a handful, rows have 10^5)."""

    def __init__(self) -> None:
        self._parsed: dict[str, BaseDistribution] = {}

    def external(self, distribution_json: str, internal: float) -> Any:
        dist = self._parsed.get(distribution_json)
        if dist is None:
            dist = self._parsed[distribution_json] = json_to_distribution(distribution_json)
        return dist.to_external_repr(internal)


def _intermediate(value: float | None, kind: Any) -> float:
    if kind == INTERMEDIATE_TYPE.FINITE:
        return float(value)  # type: ignore[arg-type]
    if kind == INTERMEDIATE_TYPE.NAN:
        return math.nan
    return math.inf if kind == INTERMEDIATE_TYPE.INF_POS else -math.inf


def outcome_chunk(conn: sa.Connection, trial_ids: Sequence[int]) -> list[RestartOutcome]:
    """The records of ``trial_ids``, in that order (three queries)."""
    params: dict[int, dict[str, Any]] = {t: {} for t in trial_ids}
    attrs: dict[int, dict[str, Any]] = {t: {} for t in trial_ids}
    curves: dict[int, dict[int, float]] = {t: {} for t in trial_ids}
    dists = _Distributions()
    p = TRIAL_PARAMS.c
    for trial_id, name, internal, dj in conn.execute(
        sa.select(p.trial_id, p.param_name, p.param_value, p.distribution_json).where(p.trial_id.in_(trial_ids))
    ):
        params[trial_id][name] = dists.external(dj, internal)
    a = TRIAL_USER_ATTRS.c
    for trial_id, key, value_json in conn.execute(sa.select(a.trial_id, a.key, a.value_json).where(a.trial_id.in_(trial_ids))):
        attrs[trial_id][key] = json.loads(value_json)
    v = TRIAL_INTERMEDIATE.c
    query = sa.select(v.trial_id, v.step, v.intermediate_value, v.intermediate_value_type).where(v.trial_id.in_(trial_ids))
    for trial_id, step, value, kind in conn.execute(query):
        curves[trial_id][step] = _intermediate(value, kind)
    return [_encode.decode_outcome(params[t], attrs[t], curves[t]) for t in trial_ids]


def iter_outcomes(
    engine: sa.Engine, study_id: int, *, cells: Sequence[str] | None = None, max_restart: int | None = None
) -> Iterator[RestartOutcome]:
    """Recorded restarts as full records (curves included), in write order; filters as in ``ordered_trial_ids``."""
    with engine.connect() as conn:
        trial_ids = ordered_trial_ids(conn, study_id, cells=cells, max_restart=max_restart)
    for start in range(0, len(trial_ids), OUTCOME_CHUNK):
        # A connection per chunk: a slow consumer does not pin one for the whole report.
        with engine.connect() as conn:
            chunk = outcome_chunk(conn, trial_ids[start : start + OUTCOME_CHUNK])
        yield from chunk

