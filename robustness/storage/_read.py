"""The read paths: a columnar table from the summary columns, and per-study counts.

None of these touches Optuna (its import alone is ~0.3 s) or builds trial objects:
``study.trials_dataframe()`` on 10k restarts with curves takes a minute, while the
one-row-per-restart summary in ``robustness_restarts`` reads in tens of milliseconds.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from robustness.criterion import OPERATORS, Criterion
from robustness.storage._schema import RESTARTS, STUDIES, STUDY_USER_ATTRS, TRIALS
from robustness.table import RestartTable

# Study attribute holding the number of restarts the search space asks for.
TOTAL_RESTARTS_ATTR = "total_restarts"


@dataclasses.dataclass(frozen=True)
class StudySummary:
    """One study's progress, for the ``status`` command.

    ``total_restarts`` is the study attribute of that name (None when not stored);
    ``last_write`` the latest completion time of its trials, UTC (None without trials).
    """

    name: str
    n_restarts: int
    n_successes: int
    n_diverged: int
    total_restarts: int | None
    last_write: datetime.datetime | None = None


def done_keys(conn: sa.Connection, study_id: int) -> set[str]:
    query = sa.select(RESTARTS.c.restart_key).where(RESTARTS.c.study_id == study_id)
    return set(conn.execute(query).scalars())


def _live(study_id: int) -> sa.ColumnElement[bool]:
    """Rows of ``study_id`` whose trial exists.

    On SQLite, stock ``optuna delete-study`` leaves a deleted study's key rows
    behind (no cascade), and a study made with stock tools may reuse its id.
    """
    trials = sa.select(TRIALS.c.trial_id).where(TRIALS.c.study_id == study_id)
    return sa.and_(RESTARTS.c.study_id == study_id, RESTARTS.c.trial_id.in_(trials))


# Bound parameters per IN (...) query: well under SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500


def ordered_trial_ids(
    conn: sa.Connection, study_id: int, *, cells: Sequence[str] | None = None, max_restart: int | None = None
) -> list[int]:
    """The study's recorded restarts in write order (trial ids grow with every insert).

    ``cells``: only restarts whose ``cell`` text is one of these (see
    :func:`robustness.storage._keys.cell_texts`); ``max_restart``: only restart
    indices below it. Both filter in SQL, with bound parameters.
    """
    where = [_live(study_id)]
    if max_restart is not None:
        where.append(RESTARTS.c.restart < max_restart)
    if cells is None:
        query = sa.select(RESTARTS.c.trial_id).where(*where).order_by(RESTARTS.c.trial_id)
        return list(conn.execute(query).scalars())
    found: set[int] = set()
    for start in range(0, len(cells), _IN_CHUNK):
        chunk = cells[start : start + _IN_CHUNK]
        found.update(conn.execute(sa.select(RESTARTS.c.trial_id).where(*where, RESTARTS.c.cell.in_(chunk))).scalars())
    return sorted(found)


def study_attrs(conn: sa.Connection, study_id: int) -> dict[str, Any]:
    """The study's user attributes, decoded as Optuna's ``get_study_user_attrs`` does."""
    a = STUDY_USER_ATTRS.c
    return {key: json.loads(text) for key, text in conn.execute(sa.select(a.key, a.value_json).where(a.study_id == study_id))}


def _param_columns(cells: Sequence[str]) -> dict[str, np.ndarray]:
    """``(N,)`` object columns from the cells' JSON texts; each distinct text is parsed once."""
    codes: dict[str, int] = {}
    index = np.fromiter((codes.setdefault(c, len(codes)) for c in cells), dtype=np.int64, count=len(cells))
    parsed = [json.loads(text) for text in codes]
    out: dict[str, np.ndarray] = {}
    for name in sorted({k for cell in parsed for k in cell}):
        values = np.empty(len(parsed), dtype=object)
        values[:] = [cell.get(name) for cell in parsed]
        out[name] = values[index]
    return out


def _metric_columns(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """``(N,)`` float64 columns from the per-restart metrics JSON (NaN where absent)."""
    # One parse of one JSON array: half the time of a json.loads call per restart at 100k rows.
    rows = json.loads("[" + ",".join(texts) + "]") if texts else []
    out: dict[str, np.ndarray] = {}
    for name in sorted({k for row in rows for k in row}):
        out[name] = np.fromiter((row.get(name, np.nan) for row in rows), dtype=np.float64, count=len(rows))
    return out


def read_table(conn: sa.Connection, study_id: int, *, criterion: Criterion | None) -> RestartTable:
    """The study as a :class:`RestartTable`; every array has shape ``(num_restarts,)``.

    Rows are in write order. With ``criterion``, ``success`` is re-judged from the
    stored final metrics (diverged or non-finite is a failure); a criterion on a
    metric the study lacks raises ``KeyError``. One query over the summary columns.
    """
    r = RESTARTS.c
    query = (
        sa.select(r.cell, r.seed, r.restart, r.success, r.diverged, r.metrics, r.primary_metric)
        .where(_live(study_id))
        .order_by(r.trial_id)
    )
    rows = conn.execute(query).all()
    cell, seed, restart, success, diverged, metric_texts, primary = zip(*rows) if rows else ([],) * 7
    n = len(rows)
    metrics = _metric_columns(metric_texts)
    table_diverged = np.fromiter(diverged, dtype=bool, count=n)
    table_success = np.fromiter(success, dtype=bool, count=n)
    if criterion is not None:
        table_success = _judge(criterion, metrics, table_diverged)
    return RestartTable(
        params=_param_columns(cell),
        restart=np.fromiter(restart, dtype=np.int64, count=n),
        seed=np.fromiter(seed, dtype=np.int64, count=n),
        metrics=metrics,
        diverged=table_diverged,
        success=table_success,
        primary_metric=primary[0] if n else "",
    )


def _judge(criterion: Criterion, metrics: dict[str, np.ndarray], diverged: np.ndarray) -> np.ndarray:
    """:meth:`Criterion.passes` over whole columns: ``(N,)`` bool."""
    values = metrics.get(criterion.metric)
    if values is None:
        raise KeyError(f"no metric {criterion.metric!r}; the study has {sorted(metrics)}")
    compare: Callable[[Any, Any], Any] = OPERATORS[criterion.op]
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & ~diverged & compare(values, criterion.threshold)


def _as_int(flag: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    # SUM over a boolean is not portable (PostgreSQL refuses it); count the trues.
    return sa.func.coalesce(sa.func.sum(sa.case((flag, 1), else_=0)), 0)


def studies(conn: sa.Connection) -> list[StudySummary]:
    """Every study in the storage, oldest first, with restart and success counts."""
    r = RESTARTS.c
    counts = {
        int(study_id): (int(n), int(ok), int(bad))
        for study_id, n, ok, bad in conn.execute(
            sa.select(r.study_id, sa.func.count(), _as_int(r.success), _as_int(r.diverged)).group_by(r.study_id)
        )
    }
    t = TRIALS.c
    last = dict(conn.execute(sa.select(t.study_id, sa.func.max(t.datetime_complete)).group_by(t.study_id)).all())
    a = STUDY_USER_ATTRS.c
    totals = dict(conn.execute(sa.select(a.study_id, a.value_json).where(a.key == TOTAL_RESTARTS_ATTR)).all())
    out = []
    for study_id, name in conn.execute(sa.select(STUDIES.c.study_id, STUDIES.c.study_name).order_by(STUDIES.c.study_id)):
        n, ok, bad = counts.get(study_id, (0, 0, 0))
        total = json.loads(totals[study_id]) if study_id in totals else None
        out.append(
            StudySummary(
                name=name,
                n_restarts=n,
                n_successes=ok,
                n_diverged=bad,
                total_restarts=None if total is None else int(total),
                last_write=_utc(last.get(study_id)),
            )
        )
    return out


def _utc(value: Any) -> datetime.datetime | None:
    """Optuna's naive UTC datetime as an aware one (SQLite may hand back text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    return value.replace(tzinfo=datetime.timezone.utc) if value.tzinfo is None else value
