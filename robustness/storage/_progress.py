"""Sweep progress: how far each pack a driver started has got, for a live view of a sweep.

Workers never open the database: a pack reports its step and a small summary of
its evaluation metric through Tune, and the driver upserts one row per pack into
``robustness_progress`` (see :class:`robustness.storage.ProgressWriter`). A
reader (the dashboard) combines those rows with the restarts already recorded
into one :class:`SweepProgress`, without importing Optuna.

Every time here is seconds since the epoch by the database's clock, so a driver
and a dashboard on machines whose clocks disagree still agree on what is stale.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from robustness.storage._clock import db_now
from robustness.storage._config import SQLITE_BUSY_TIMEOUT_S
from robustness.storage._read import TOTAL_RESTARTS_ATTR, study_attrs
from robustness.storage._schema import PROGRESS, RESTARTS

RUNNING, DONE, FAILED = "running", "done", "failed"
STATES = (RUNNING, DONE, FAILED)
# A driver re-stamps its running packs this often even when no report came: a pack
# between two evaluations far apart is still alive.
ALIVE_EVERY_S = 10.0
# A running pack its driver has not vouched for this long is counted lost (the driver
# was killed, or cut off from the database). Six missed stamps and never under a
# minute, so a driver busy writing a big pack is not taken for dead.
STALE_AFTER_S = max(60.0, 6 * ALIVE_EVERY_S)
# How long a progress write waits for another writer's lock before it is skipped:
# progress is redrawn a second later, and the driver must get back to its packs.
WRITE_WAIT_S = 5.0


@dataclasses.dataclass(frozen=True)
class PackProgress:
    """One pack as its driver last reported it.

    ``step`` is the number of updates each of the pack's ``restarts`` has done, of
    ``steps``. ``metrics`` is the interim summary of the evaluation metric across
    the pack's restarts (``median_<metric>``, ``best_<metric>``, ``finite``,
    ``diverged``, ``median_train_loss``; NaN where no restart has a finite
    value). ``started_at``: when the pack started; ``updated_at``: when ``step``
    was reported; ``alive_at``: when the driver last vouched for the row.
    ``state`` is ``running``, ``done`` (recorded) or ``failed`` (failed after
    its retries, or dropped by Ctrl-C). ``stale``: running, but its driver has
    not vouched for it for :data:`STALE_AFTER_S` seconds; it died.
    """

    pack: str
    holder: str
    restarts: int
    step: int
    steps: int
    metrics: Mapping[str, float]
    started_at: float
    updated_at: float
    alive_at: float
    state: str = RUNNING
    stale: bool = False

    @property
    def restart_steps(self) -> int:
        """Restart-steps this pack has trained: ``restarts * step`` (``restarts * steps`` once done)."""
        if self.state == DONE:
            return self.restarts * self.steps
        return self.restarts * max(0, min(self.step, self.steps))

    @property
    def in_flight(self) -> bool:
        """Training now: running and not stale."""
        return self.state == RUNNING and not self.stale


@dataclasses.dataclass(frozen=True)
class SweepProgress:
    """A study's progress: restarts recorded, restart-steps trained, rate and ETA, packs.

    ``total_restarts`` is the study attr of that name and ``steps_per_restart``
    the search space's ``task.steps`` (else the packs' ``steps``); either is
    None when unknown, and so are the totals built from them.
    ``restart_steps_done`` = ``recorded * steps_per_restart`` + the
    restart-steps of the packs in flight (capped at the total; a pack being
    written may be counted twice for a moment). ``rate`` is restart-steps per
    second over the current run: what the packs in the table trained (stale ones
    left out: their work is lost) over the time from the first pack's start to
    the last report; None until a pack has reported. ``eta_s`` is the time left
    at that rate: 0.0 once every restart is recorded, None when the rate is
    unknown or no driver wrote progress in the last :data:`STALE_AFTER_S`
    seconds (no sweep is running). ``updated_at`` is the last progress write
    (None if none), ``read_at`` the database's clock when this was read; both in
    seconds since the epoch. ``packs`` holds the study's pack rows, oldest first:
    the current run's, and a dead driver's (``stale``) until the next run
    prunes them; :attr:`in_flight` those training now.
    """

    total_restarts: int | None
    recorded: int
    steps_per_restart: int | None
    restart_steps_done: int
    restart_steps_total: int | None
    rate: float | None
    eta_s: float | None
    updated_at: float | None
    read_at: float
    packs: tuple[PackProgress, ...] = ()

    @property
    def in_flight(self) -> tuple[PackProgress, ...]:
        """The packs training now (running, and their driver alive)."""
        return tuple(p for p in self.packs if p.in_flight)


# -- writing (inside the caller's transaction) ------------------------------------------------


def _insert(conn: sa.Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"progress rows need an upsert; {conn.dialect.name} is not supported")
    return insert(PROGRESS)


def _short_lock_wait(conn: sa.Connection) -> None:
    """Wait at most WRITE_WAIT_S for a lock in this transaction (undone by :func:`_usual_lock_wait`)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(WRITE_WAIT_S * 1000)}")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(WRITE_WAIT_S * 1000)}ms'")


def _usual_lock_wait(conn: sa.Connection) -> None:
    # The busy timeout belongs to the pooled connection, which pack writes reuse.
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")


def upsert(conn: sa.Connection, study_id: int, packs: Sequence[PackProgress]) -> None:
    """Insert or update the rows of ``packs``, whose times are on this machine's clock (``time.time()``).

    The times are moved onto the database's clock (by the two clocks' offset,
    measured here). A pack's ``started_at`` is kept from its first write.
    """
    if not packs:
        return
    offset = db_now(conn) - time.time()
    rows = [
        {"study_id": study_id, "pack": p.pack, "holder": p.holder, "restarts": int(p.restarts), "step": int(p.step),
         "steps": int(p.steps), "metrics": json.dumps({str(k): float(v) for k, v in p.metrics.items()}, sort_keys=True),
         "started_at": p.started_at + offset, "updated_at": p.updated_at + offset, "alive_at": p.alive_at + offset,
         "state": p.state}
        for p in packs
    ]
    statement = _insert(conn)
    kept = {"study_id", "pack", "started_at"}
    statement = statement.on_conflict_do_update(
        index_elements=[PROGRESS.c.study_id, PROGRESS.c.pack],
        set_={c.name: statement.excluded[c.name] for c in PROGRESS.columns if c.name not in kept},
    )
    _short_lock_wait(conn)
    try:
        conn.execute(statement, rows)
    finally:
        _usual_lock_wait(conn)


def prune(conn: sa.Connection, study_id: int, *, keep_holder: str) -> int:
    """Delete the rows of drivers that are gone; returns how many.

    A driver is gone when none of its running packs was vouched for in the last
    :data:`STALE_AFTER_S` seconds: it finished, stopped or died. A new run starts
    from the rows of the drivers still training (so its rate covers every live
    driver) and its own (``keep_holder``).
    """
    now = db_now(conn)
    live = sa.select(PROGRESS.c.holder).where(
        PROGRESS.c.study_id == study_id, PROGRESS.c.state == RUNNING, PROGRESS.c.alive_at > now - STALE_AFTER_S
    )
    gone = sa.delete(PROGRESS).where(
        PROGRESS.c.study_id == study_id, PROGRESS.c.holder != keep_holder, PROGRESS.c.holder.not_in(live)
    )
    return int(conn.execute(gone).rowcount)


def forget(conn: sa.Connection, study_id: int) -> None:
    """Drop every row of ``study_id`` (a new study reusing the id of a deleted one, on SQLite)."""
    if sa.inspect(conn).has_table(PROGRESS.name):
        conn.execute(sa.delete(PROGRESS).where(PROGRESS.c.study_id == study_id))


# -- reading ------------------------------------------------------------------------------


def _decode(text: str | None) -> dict[str, float]:
    try:
        found = json.loads(text or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def read_packs(conn: sa.Connection, study_id: int) -> tuple[PackProgress, ...]:
    """The study's pack rows, oldest first; none in a database laid out before progress existed."""
    if not sa.inspect(conn).has_table(PROGRESS.name):
        return ()
    p = PROGRESS.c
    query = (
        sa.select(p.pack, p.holder, p.restarts, p.step, p.steps, p.metrics, p.started_at, p.updated_at, p.alive_at,
                  p.state)
        .where(p.study_id == study_id)
        .order_by(p.started_at, p.pack)
    )
    return tuple(
        PackProgress(pack=pack, holder=holder, restarts=int(restarts), step=int(step), steps=int(steps),
                     metrics=_decode(metrics), started_at=float(started), updated_at=float(updated),
                     alive_at=float(alive), state=state)
        for pack, holder, restarts, step, steps, metrics, started, updated, alive, state in conn.execute(query)
    )


def read(conn: sa.Connection, study_id: int) -> SweepProgress:
    """The study's :class:`SweepProgress`, read in one connection."""
    now = db_now(conn)
    attrs = study_attrs(conn, study_id)
    recorded = conn.execute(sa.select(sa.func.count()).where(RESTARTS.c.study_id == study_id)).scalar_one()
    return summarize(attrs, recorded=int(recorded), packs=read_packs(conn, study_id), now=now)


def steps_per_restart(attrs: Mapping[str, Any]) -> int | None:
    """``task.steps`` of the study's search space (the file's text, or a mapping), else None."""
    space = attrs.get("search_space")
    if isinstance(space, str):
        import yaml  # only here: reading a study's table never needs it

        try:
            space = yaml.safe_load(space)
        except yaml.YAMLError:
            return None
    task = space.get("task") if isinstance(space, Mapping) else None
    steps = task.get("steps") if isinstance(task, Mapping) else None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None


def summarize(attrs: Mapping[str, Any], *, recorded: int, packs: Sequence[PackProgress], now: float) -> SweepProgress:
    """Totals, rate and ETA from the study's attrs, its recorded count and its pack rows (see SweepProgress).

    ``now`` is the database's clock: running packs not vouched for since
    ``now - STALE_AFTER_S`` are marked stale here.
    """
    packs = [dataclasses.replace(p, stale=p.state == RUNNING and now - p.alive_at > STALE_AFTER_S) for p in packs]
    total = attrs.get(TOTAL_RESTARTS_ATTR)
    total = int(total) if isinstance(total, (int, float)) and not isinstance(total, bool) else None
    steps = steps_per_restart(attrs) or max((p.steps for p in packs), default=None)
    flying = [p for p in packs if p.in_flight]
    done = (recorded * steps if steps else 0) + sum(p.restart_steps for p in flying)
    steps_total = total * steps if total is not None and steps else None
    if steps_total is not None:
        done = min(done, steps_total)
    # The current run: every pack but the lost ones (their work never reached storage).
    run = [p for p in packs if not p.stale]
    trained = sum(p.restart_steps for p in run if p.state != FAILED)
    span = max((p.updated_at for p in run), default=0.0) - min((p.started_at for p in run), default=0.0)
    rate = trained / span if run and trained > 0 and span > 0 else None
    running = any(now - p.alive_at <= STALE_AFTER_S for p in packs)
    if steps_total is not None and done >= steps_total:
        eta: float | None = 0.0
    elif steps_total is not None and rate and running:
        eta = (steps_total - done) / rate
    else:
        eta = None
    return SweepProgress(
        total_restarts=total, recorded=recorded, steps_per_restart=steps, restart_steps_done=done,
        restart_steps_total=steps_total, rate=rate, eta_s=eta,
        updated_at=max((p.alive_at for p in packs), default=None), read_at=now, packs=tuple(packs),
    )
