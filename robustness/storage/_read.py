"""The read paths: a columnar table straight from SQL, full records, and per-study counts.

None of these builds Optuna trial objects: ``study.trials_dataframe()`` on 10k
restarts with curves takes a minute, while three pivoted queries take well under
a second.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, CategoricalDistribution, json_to_distribution

from robustness.criterion import OPERATORS, Criterion
from robustness.outcome import RestartOutcome
from robustness.storage import _encode
from robustness.storage._schema import (
    INTERMEDIATE_TYPE,
    RESTARTS,
    STUDIES,
    STUDY_USER_ATTRS,
    TRIAL_INTERMEDIATE,
    TRIAL_PARAMS,
    TRIAL_USER_ATTRS,
    TRIALS,
)
from robustness.table import RestartTable

# Study attribute holding the number of restarts the search space asks for.
TOTAL_RESTARTS_ATTR = "total_restarts"
# Trials per round of queries in iter_outcomes: bounds memory (a 100-point curve
# is ~100 rows) while keeping the number of queries small.
_OUTCOME_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class StudySummary:
    """One study's progress, for the ``status`` command.

    ``total_restarts`` is the study attribute of that name (None when not stored).
    """

    name: str
    n_restarts: int
    n_successes: int
    n_diverged: int
    total_restarts: int | None


def done_keys(conn: sa.Connection, study_id: int) -> set[str]:
    query = sa.select(RESTARTS.c.restart_key).where(RESTARTS.c.study_id == study_id)
    return set(conn.execute(query).scalars())


def ordered_trial_ids(conn: sa.Connection, study_id: int) -> list[int]:
    """The study's recorded restarts in trial-number (= write) order."""
    query = (
        sa.select(RESTARTS.c.trial_id)
        .join(TRIALS, TRIALS.c.trial_id == RESTARTS.c.trial_id)
        .where(RESTARTS.c.study_id == study_id)
        .order_by(TRIALS.c.number)
    )
    return list(conn.execute(query).scalars())


class _Distributions:
    """Parse each distinct distribution JSON once (a study has a handful, rows have 10^5)."""

    def __init__(self) -> None:
        self._parsed: dict[str, BaseDistribution] = {}

    def external(self, distribution_json: str, internal: float) -> Any:
        dist = self._parsed.get(distribution_json)
        if dist is None:
            dist = self._parsed[distribution_json] = json_to_distribution(distribution_json)
        return dist.to_external_repr(internal)


def _param_rows(conn: sa.Connection, study_id: int) -> sa.Result[Any]:
    query = (
        sa.select(
            TRIAL_PARAMS.c.trial_id, TRIAL_PARAMS.c.param_name, TRIAL_PARAMS.c.param_value, TRIAL_PARAMS.c.distribution_json
        )
        .join(RESTARTS, RESTARTS.c.trial_id == TRIAL_PARAMS.c.trial_id)
        .where(RESTARTS.c.study_id == study_id)
    )
    return conn.execute(query)


def _summary_attr_rows(conn: sa.Connection, study_id: int) -> sa.Result[Any]:
    # Everything but the curve: the table needs no curves, and they are most of the bytes.
    # (A plain != is cheaper than IN + LIKE 'metrics.%'; the few other keys are skipped in Python.)
    query = (
        sa.select(TRIAL_USER_ATTRS.c.trial_id, TRIAL_USER_ATTRS.c.key, TRIAL_USER_ATTRS.c.value_json)
        .join(RESTARTS, RESTARTS.c.trial_id == TRIAL_USER_ATTRS.c.trial_id)
        .where(RESTARTS.c.study_id == study_id, TRIAL_USER_ATTRS.c.key != _encode.ATTR_TRAIN_LOSS)
    )
    return conn.execute(query)


def _rows_of(trial_ids: np.ndarray, fetched: Sequence[int]) -> np.ndarray:
    """Row index of each fetched trial id in ``trial_ids`` (``(N,)``), or -1 if absent."""
    order = np.argsort(trial_ids, kind="stable")
    ids = trial_ids[order]
    fetched_ids = np.asarray(fetched, dtype=np.int64)
    if len(ids) == 0:
        return np.full(len(fetched_ids), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(ids, fetched_ids), len(ids) - 1)
    return np.where(ids[at] == fetched_ids, order[at], -1)


def _grouped(rows: Sequence[Any]) -> dict[Any, tuple[list[int], list[Any]]]:
    """``(trial_id, group, value)`` rows -> group -> (trial ids, values): one cheap pass."""
    groups: dict[Any, tuple[list[int], list[Any]]] = {}
    for trial_id, group, value in rows:
        bucket = groups.get(group)
        if bucket is None:
            bucket = groups[group] = ([], [])
        bucket[0].append(trial_id)
        bucket[1].append(value)
    return groups


def _param_columns(conn: sa.Connection, study_id: int, trial_ids: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    n = len(trial_ids)
    params: dict[str, np.ndarray] = {}
    seed = np.zeros(n, dtype=np.int64)
    rows = [(t, (name, dj), value) for t, name, value, dj in _param_rows(conn, study_id).all()]
    for (name, distribution_json), (ids, internal) in _grouped(rows).items():
        dist = json_to_distribution(distribution_json)
        if isinstance(dist, CategoricalDistribution):
            choices = np.empty(len(dist.choices), dtype=object)
            choices[:] = list(dist.choices)
            values = choices[np.asarray(internal, dtype=np.int64)]
        else:
            values = np.array([dist.to_external_repr(v) for v in internal], dtype=object)
        at = _rows_of(trial_ids, ids)
        keep = at >= 0  # rows of trials committed after the first query are skipped
        if name == _encode.SEED_PARAM:
            seed[at[keep]] = values[keep].astype(np.int64)
            continue
        if name not in params:
            params[name] = np.full(n, None, dtype=object)
        params[name][at[keep]] = values[keep]
    return params, seed


def read_table(conn: sa.Connection, study_id: int, *, criterion: Criterion | None) -> RestartTable:
    """The study as a :class:`RestartTable`; every array has shape ``(num_restarts,)``.

    Rows are in write order. With ``criterion``, ``success`` is re-judged from the
    stored final metrics (diverged or non-finite is a failure); a criterion on a
    metric the study lacks raises ``KeyError``. Three queries; the pivot is grouped
    by key and vectorized, so 10k restarts take a fraction of a second.
    """
    trial_ids = np.asarray(ordered_trial_ids(conn, study_id), dtype=np.int64)
    n = len(trial_ids)
    params, seed = _param_columns(conn, study_id, trial_ids)
    restart = np.zeros(n, dtype=np.int64)
    success = np.zeros(n, dtype=bool)
    diverged = np.zeros(n, dtype=bool)
    metrics: dict[str, np.ndarray] = {}
    primary = ""
    for key, (ids, texts) in _grouped(_summary_attr_rows(conn, study_id).all()).items():
        at = _rows_of(trial_ids, ids)
        keep = at >= 0
        at = at[keep]
        # The values are JSON scalars, which NumPy parses directly (NaN, Infinity included).
        values = np.asarray(texts, dtype=str)[keep]
        if key == _encode.ATTR_SUCCESS:
            success[at] = values == "true"
        elif key == _encode.ATTR_DIVERGED:
            diverged[at] = values == "true"
        elif key == _encode.ATTR_RESTART:
            restart[at] = values.astype(np.int64)
        elif key == _encode.ATTR_PRIMARY:
            first = np.flatnonzero(at == 0)
            primary = json.loads(values[first[0]]) if len(first) else primary
        elif key.startswith(_encode.METRIC_PREFIX):
            column = metrics[key[len(_encode.METRIC_PREFIX) :]] = np.full(n, np.nan, dtype=np.float64)
            column[at] = values.astype(np.float64)
    if criterion is not None:
        success = _judge(criterion, metrics, diverged)
    return RestartTable(
        params=dict(sorted(params.items())),
        restart=restart,
        seed=seed,
        metrics=dict(sorted(metrics.items())),
        diverged=diverged,
        success=success,
        primary_metric=primary,
    )


def _judge(criterion: Criterion, metrics: dict[str, np.ndarray], diverged: np.ndarray) -> np.ndarray:
    """:meth:`Criterion.passes` over whole columns: ``(N,)`` bool."""
    values = metrics.get(criterion.metric)
    if values is None:
        raise KeyError(f"no metric {criterion.metric!r}; the study has {sorted(metrics)}")
    compare: Callable[[Any, Any], Any] = OPERATORS[criterion.op]
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & ~diverged & compare(values, criterion.threshold)


def _intermediate(value: float | None, kind: Any) -> float:
    if kind == INTERMEDIATE_TYPE.FINITE:
        return float(value)  # type: ignore[arg-type]
    if kind == INTERMEDIATE_TYPE.NAN:
        return math.nan
    return math.inf if kind == INTERMEDIATE_TYPE.INF_POS else -math.inf


def _outcome_chunk(conn: sa.Connection, trial_ids: Sequence[int]) -> list[RestartOutcome]:
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


def iter_outcomes(engine: sa.Engine, study_id: int) -> Iterator[RestartOutcome]:
    """Every recorded restart as a full record (curves included), in write order."""
    with engine.connect() as conn:
        trial_ids = ordered_trial_ids(conn, study_id)
    for start in range(0, len(trial_ids), _OUTCOME_CHUNK):
        # A connection per chunk: a slow consumer does not pin one for the whole report.
        with engine.connect() as conn:
            chunk = _outcome_chunk(conn, trial_ids[start : start + _OUTCOME_CHUNK])
        yield from chunk


def _count_by_study(conn: sa.Connection, attr_key: str | None = None) -> dict[int, int]:
    query = sa.select(RESTARTS.c.study_id, sa.func.count()).group_by(RESTARTS.c.study_id)
    if attr_key is not None:
        query = query.join(TRIAL_USER_ATTRS, TRIAL_USER_ATTRS.c.trial_id == RESTARTS.c.trial_id).where(
            TRIAL_USER_ATTRS.c.key == attr_key, TRIAL_USER_ATTRS.c.value_json == "true"
        )
    return {int(k): int(v) for k, v in conn.execute(query)}


def studies(conn: sa.Connection) -> list[StudySummary]:
    """Every study in the storage, oldest first, with restart and success counts."""
    restarts = _count_by_study(conn)
    successes = _count_by_study(conn, _encode.ATTR_SUCCESS)
    diverged = _count_by_study(conn, _encode.ATTR_DIVERGED)
    totals = dict(
        conn.execute(
            sa.select(STUDY_USER_ATTRS.c.study_id, STUDY_USER_ATTRS.c.value_json).where(
                STUDY_USER_ATTRS.c.key == TOTAL_RESTARTS_ATTR
            )
        ).all()
    )
    out = []
    for study_id, name in conn.execute(sa.select(STUDIES.c.study_id, STUDIES.c.study_name).order_by(STUDIES.c.study_id)):
        total = json.loads(totals[study_id]) if study_id in totals else None
        out.append(
            StudySummary(
                name=name,
                n_restarts=restarts.get(study_id, 0),
                n_successes=successes.get(study_id, 0),
                n_diverged=diverged.get(study_id, 0),
                total_restarts=None if total is None else int(total),
            )
        )
    return out
