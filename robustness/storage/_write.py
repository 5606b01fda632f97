"""The bulk path: a whole batch of outcomes in one transaction, straight into Optuna's tables.

Stock ``study.add_trials`` spends ~100 ms per restart with a 100-point curve (one
ORM round trip per intermediate value). Here each table gets one executemany for
the whole batch, so the cost is a few microseconds per row.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.study import StudyDirection
from optuna.trial import TrialState

from robustness.records import RestartOutcome
from robustness.storage import _encode
from robustness.storage._keys import (
    ATTR_TRAIN_LOSS,
    SEED_PARAM,
    SUMMARY_COLUMNS,
    restart_key,
    summary,
)
from robustness.storage._optuna_tables import (
    INTERMEDIATE_TYPE,
    STUDIES,
    STUDY_DIRECTIONS,
    TRIAL_INTERMEDIATE,
    TRIAL_PARAMS,
    TRIAL_USER_ATTRS,
    TRIAL_VALUES,
    TRIALS,
    VALUE_TYPE,
)
from robustness.storage._schema import RESTARTS

# Bound parameters per IN (...) query: well under SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One validated outcome, with its restart key and trial params."""

    key: str
    params: dict[str, Any]
    outcome: RestartOutcome


def prepare(outcomes: Iterable[RestartOutcome]) -> list[Prepared]:
    """Validate every record before touching the database; keep the first of in-batch duplicates."""
    seen: set[str] = set()
    batch = []
    for outcome in outcomes:
        params = _encode.trial_params(outcome)
        key = restart_key(outcome.params, outcome.restart)
        if key not in seen:
            seen.add(key)
            batch.append(Prepared(key=key, params=params, outcome=outcome))
    return batch


def lock_study(conn: sa.Connection, study_id: int) -> bool:
    """Serialize writers of one study until commit; False if the study is gone.

    A no-op UPDATE takes the study row's write lock on PostgreSQL (it conflicts
    with the SELECT ... FOR UPDATE that stock Optuna takes to number a new trial)
    and SQLite's database write lock, waiting out the busy timeout, before this
    transaction reads anything, so the key check and the numbering below cannot
    interleave with another writer.
    """
    result = conn.execute(
        sa.update(STUDIES).where(STUDIES.c.study_id == study_id).values(study_name=STUDIES.c.study_name)
    )
    return result.rowcount == 1


def claimed_keys(conn: sa.Connection, study_id: int, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` are already recorded in the study."""
    found: set[str] = set()
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        query = sa.select(RESTARTS.c.restart_key).where(
            RESTARTS.c.study_id == study_id, RESTARTS.c.restart_key.in_(chunk)
        )
        found.update(conn.execute(query).scalars())
    return found


def maximizes(conn: sa.Connection, study_id: int) -> bool:
    query = sa.select(STUDY_DIRECTIONS.c.direction).where(
        STUDY_DIRECTIONS.c.study_id == study_id, STUDY_DIRECTIONS.c.objective == 0
    )
    return conn.execute(query).scalar_one() == StudyDirection.MAXIMIZE


def latest_distributions(conn: sa.Connection, study_id: int) -> dict[str, BaseDistribution]:
    """The distributions of the study's newest trial: what new trials should agree with."""
    newest = sa.select(sa.func.max(TRIALS.c.trial_id)).where(TRIALS.c.study_id == study_id).scalar_subquery()
    query = sa.select(TRIAL_PARAMS.c.param_name, TRIAL_PARAMS.c.distribution_json).where(
        TRIAL_PARAMS.c.trial_id == newest
    )
    return {name: json_to_distribution(text) for name, text in conn.execute(query)}


def declare_axes(conn: sa.Connection, study_id: int, axes: Mapping[str, Sequence[Any]]) -> dict[str, BaseDistribution]:
    """One distribution per axis for the whole study, and every stored trial brought in line with it.

    Optuna treats a study whose trials disagree on a parameter's distribution as
    a dynamic search space, and its importance evaluators then drop or bury the
    axis. So each axis gets a categorical over every value the search space
    declares (after the choices already stored, which keep their indices), and
    stored trials of an extended study get the same distribution: their stored
    index still names the same value, since old choices stay first.
    """
    if not lock_study(conn, study_id):
        raise LookupError(study_id)
    existing = latest_distributions(conn, study_id)
    dists = _encode.build_distributions(
        [{name: value} for name, values in axes.items() for value in values], given=None, existing={}
    )
    for name, dist in list(dists.items()):
        old = existing.get(name)
        if isinstance(old, CategoricalDistribution):
            dists[name] = _encode.merge_categorical(old, dist.choices)
    in_study = sa.select(TRIALS.c.trial_id).where(TRIALS.c.study_id == study_id).scalar_subquery()
    stored = conn.execute(
        sa.select(TRIAL_PARAMS.c.param_name, TRIAL_PARAMS.c.distribution_json)
        .where(TRIAL_PARAMS.c.trial_id.in_(in_study), TRIAL_PARAMS.c.param_name.in_(list(dists)))
        .distinct()
    ).all()
    for name, text in stored:
        new = distribution_to_json(dists[name])
        if text != new and _encode.extends(json_to_distribution(text), dists[name]):
            conn.execute(
                sa.update(TRIAL_PARAMS)
                .where(TRIAL_PARAMS.c.trial_id.in_(in_study), TRIAL_PARAMS.c.param_name == name,
                       TRIAL_PARAMS.c.distribution_json == text)
                .values(distribution_json=new)
            )
    return dists


def write_batch(
    conn: sa.Connection,
    study_id: int,
    batch: Sequence[Prepared],
    given: Mapping[str, BaseDistribution] | None,
) -> int:
    """Record the restarts of ``batch`` not yet in the study; returns how many.

    Runs inside the caller's transaction; the caller commits or rolls back.
    """
    if not lock_study(conn, study_id):
        raise LookupError(study_id)
    maximize = maximizes(conn, study_id)
    done = claimed_keys(conn, study_id, [p.key for p in batch])
    todo = [p for p in batch if p.key not in done]
    if not todo:
        return 0
    dists = _encode.build_distributions(
        [p.params for p in todo], given=given, existing=latest_distributions(conn, study_id)
    )
    trial_ids = insert_trials(conn, study_id, todo)
    internal, cells = encode_params(todo, dists)
    # The key rows (with the summary the read path uses) go in before the bulk of
    # the data: a conflicting writer fails early.
    bulk_insert(
        conn,
        RESTARTS,
        ("study_id", "restart_key", "trial_id", *SUMMARY_COLUMNS),
        [(study_id, p.key, t, *_summary_row(p.outcome, cell)) for t, p, cell in zip(trial_ids, todo, cells)],
    )
    insert_params(conn, trial_ids, internal, dists)
    insert_values(conn, trial_ids, todo, maximize=maximize)
    insert_user_attrs(conn, trial_ids, todo)
    insert_curves(conn, trial_ids, todo)
    return len(todo)


def _summary_row(outcome: RestartOutcome, cell: Mapping[str, Any]) -> tuple[Any, ...]:
    row = summary(outcome, cell)
    return tuple(row[name] for name in SUMMARY_COLUMNS)


def encode_params(
    todo: Sequence[Prepared], dists: Mapping[str, BaseDistribution]
) -> tuple[list[dict[str, float]], list[dict[str, Any]]]:
    """Each restart's params in Optuna's float representation, and its cell as stock
    Optuna reads it back from them (seed left out); one conversion per distinct value."""
    seen: dict[tuple[str, type, Any], tuple[float, Any]] = {}
    internal, cells = [], []
    for p in todo:
        floats, cell = {}, {}
        for name, value in p.params.items():
            cache_key = (name, type(value), value)
            if cache_key not in seen:
                as_float = _encode.internal_value(dists[name], value)
                seen[cache_key] = (as_float, dists[name].to_external_repr(as_float))
            floats[name], external = seen[cache_key]
            if name != SEED_PARAM:
                cell[name] = external
        internal.append(floats)
        cells.append(cell)
    return internal, cells


def _started(now: datetime, wall_time_s: float) -> datetime:
    # Start = completion - wall time, so the dashboard's duration is the restart's share.
    if math.isfinite(wall_time_s) and 0 <= wall_time_s < 1e9:
        return now - timedelta(seconds=wall_time_s)
    return now


def insert_trials(conn: sa.Connection, study_id: int, todo: Sequence[Prepared]) -> list[int]:
    """Insert COMPLETE trials numbered after the study's last; returns their ids in order.

    Numbers continue 0..n-1 as stock Optuna's do (number = trials before it in the
    study); the study lock makes the count and the inserts atomic.
    """
    first = conn.execute(
        sa.select(sa.func.count()).select_from(TRIALS).where(TRIALS.c.study_id == study_id)
    ).scalar_one()
    # Optuna stores naive UTC datetimes.
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = [
        {
            "number": first + i,
            "study_id": study_id,
            "state": TrialState.COMPLETE,
            "datetime_start": _started(now, p.outcome.wall_time_s),
            "datetime_complete": now,
        }
        for i, p in enumerate(todo)
    ]
    conn.execute(sa.insert(TRIALS), rows)
    query = (
        sa.select(TRIALS.c.trial_id)
        .where(TRIALS.c.study_id == study_id, TRIALS.c.number >= first)
        .order_by(TRIALS.c.number)
    )
    trial_ids = list(conn.execute(query).scalars())
    if len(trial_ids) != len(todo):
        raise RuntimeError(f"expected {len(todo)} new trials numbered from {first}, found {len(trial_ids)}")
    return trial_ids


def bulk_insert(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (driver-ready values, in ``columns`` order) into ``table`` in one command.

    SQLite: the statement goes to sqlite3's executemany as is; that is a C loop,
    and SQLAlchemy's per-row parameter processing would cost more than the insert
    (10k restarts are ~1.2M rows). PostgreSQL with psycopg: ``COPY ... FROM
    STDIN`` on the transaction's own connection (a pipelined executemany still
    costs ~20 us of client work per row; COPY streams them). Any other driver:
    SQLAlchemy's executemany. Enum columns get the member *name*, which is what
    SQLAlchemy's Enum stores.
    """
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        compiled = sa.insert(table).compile(dialect=conn.dialect, column_keys=list(columns))
        assert list(compiled.positiontup or []) == list(columns), (compiled.positiontup, columns)
        conn.exec_driver_sql(str(compiled), rows)
    elif conn.dialect.driver == "psycopg":
        _copy_rows(conn, table, columns, rows)
    else:
        conn.execute(sa.insert(table), [dict(zip(columns, row)) for row in rows])


def _copy_rows(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    # The driver connection is the one the surrounding transaction runs on, so the
    # COPY commits or rolls back with everything else in it.
    quote = conn.dialect.identifier_preparer
    statement = f"COPY {quote.format_table(table)} ({', '.join(quote.quote(c) for c in columns)}) FROM STDIN"
    driver = conn.connection.driver_connection
    dbapi = conn.dialect.loaded_dbapi
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
    except dbapi.Error as e:
        # As SQLAlchemy would have raised it (a duplicate key is an IntegrityError,
        # which the writer's retry loop looks for).
        raise sa.exc.DBAPIError.instance(statement, None, e, dbapi.Error, dialect=conn.dialect) from e


def insert_params(
    conn: sa.Connection,
    trial_ids: Sequence[int],
    internal: Sequence[Mapping[str, float]],
    dists: Mapping[str, BaseDistribution],
) -> None:
    as_json = {name: distribution_to_json(d) for name, d in dists.items()}
    rows = [
        (trial_id, name, value, as_json[name]) for trial_id, params in zip(trial_ids, internal) for name, value in params.items()
    ]
    bulk_insert(conn, TRIAL_PARAMS, ("trial_id", "param_name", "param_value", "distribution_json"), rows)


def insert_values(conn: sa.Connection, trial_ids: Sequence[int], todo: Sequence[Prepared], *, maximize: bool) -> None:
    rows = []
    for trial_id, p in zip(trial_ids, todo):
        value = _encode.trial_value(p.outcome, maximize=maximize)
        if value == math.inf:
            rows.append((trial_id, 0, None, VALUE_TYPE.INF_POS.name))
        elif value == -math.inf:
            rows.append((trial_id, 0, None, VALUE_TYPE.INF_NEG.name))
        else:
            rows.append((trial_id, 0, value, VALUE_TYPE.FINITE.name))
    bulk_insert(conn, TRIAL_VALUES, ("trial_id", "objective", "value", "value_type"), rows)


def insert_user_attrs(conn: sa.Connection, trial_ids: Sequence[int], todo: Sequence[Prepared]) -> None:
    small, curves = [], []
    for trial_id, p in zip(trial_ids, todo):
        for key, value in _encode.user_attrs(p.outcome).items():
            # json.dumps with Optuna's own (default) settings: the same text set_user_attr writes.
            (curves if key == ATTR_TRAIN_LOSS else small).append((trial_id, key, json.dumps(value)))
    # The small attrs first, the ~2 kB curve lists after: rows land in insertion order,
    # so the scalars read_table needs share a few pages instead of one page per restart.
    bulk_insert(conn, TRIAL_USER_ATTRS, ("trial_id", "key", "value_json"), small + curves)


def insert_curves(conn: sa.Connection, trial_ids: Sequence[int], todo: Sequence[Prepared]) -> None:
    """The learning curves as intermediate values (step -> metric), so stock plots show them."""
    finite = INTERMEDIATE_TYPE.FINITE.name
    rows = []
    for trial_id, p in zip(trial_ids, todo):
        for point in p.outcome.curve:
            value = float(point.metric)
            if math.isfinite(value):
                rows.append((trial_id, point.step, value, finite))
            else:
                rows.append((trial_id, point.step, None, _NON_FINITE[_non_finite_kind(value)]))
    bulk_insert(conn, TRIAL_INTERMEDIATE, ("trial_id", "step", "intermediate_value", "intermediate_value_type"), rows)


_NON_FINITE = {
    "nan": INTERMEDIATE_TYPE.NAN.name,
    "inf": INTERMEDIATE_TYPE.INF_POS.name,
    "-inf": INTERMEDIATE_TYPE.INF_NEG.name,
}


def _non_finite_kind(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
