"""Leases: which driver is training which restart, so concurrent drivers split a study.

A lease is a row of ``robustness_leases``: (study, restart key, holder, expiry).
A driver claims restarts before training them, renews its leases while it trains
(a heartbeat) and releases them once the pack is written. A driver that dies stops
renewing; its leases expire and any other driver may take them over, as Optuna's
heartbeat fails a stale trial. Leases only avoid wasted work: a restart recorded
twice is impossible anyway (``robustness_restarts``' primary key), so a lease that
expires while its holder still trains costs a second training, never a second record.

Expiry is judged by the database's clock, so drivers on machines whose clocks
disagree still agree on it. Every function runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from robustness.storage._clock import db_now
from robustness.storage._schema import LEASES, RESTARTS
from robustness.storage._write import lock_study

# Bound parameters per IN (...) query: well under SQLite's and PostgreSQL's limits.
_IN_CHUNK = 500


def claim(conn: sa.Connection, study_id: int, keys: Sequence[str], *, holder: str, n: int, ttl_s: float) -> list[str]:
    """Lease to ``holder`` the first ``n`` of ``keys`` that are neither recorded nor leased; return them.

    Keys leased by a holder whose lease has expired count as free (their holder
    is presumed dead). The study lock that pack writers take makes the check and
    the insert atomic against other claimers and writers; a concurrent renewal
    (which takes no study lock) can still make the insert collide on PostgreSQL,
    and then the caller retries the transaction.
    """
    if n <= 0 or not keys:
        return []
    if not lock_study(conn, study_id):
        raise LookupError(study_id)
    now = db_now(conn)
    stored = set(conn.execute(sa.select(RESTARTS.c.restart_key).where(RESTARTS.c.study_id == study_id)).scalars())
    live = set(conn.execute(
        sa.select(LEASES.c.restart_key).where(LEASES.c.study_id == study_id, LEASES.c.expires_at > now)
    ).scalars())
    taken = [k for k in dict.fromkeys(keys) if k not in stored and k not in live][:n]
    if not taken:
        return []
    # Expired leases (of dead holders, or of recorded restarts nobody released) make room.
    conn.execute(sa.delete(LEASES).where(LEASES.c.study_id == study_id, LEASES.c.expires_at <= now))
    conn.execute(
        sa.insert(LEASES),
        [{"study_id": study_id, "restart_key": k, "holder": holder, "expires_at": now + ttl_s} for k in taken],
    )
    return taken


def renew(conn: sa.Connection, *, holder: str, ttl_s: float) -> int:
    """Push every lease ``holder`` still has to ``ttl_s`` from now; returns how many.

    A lease taken over by another driver after it expired is no longer this
    holder's row, so it is left alone.
    """
    now = db_now(conn)
    result = conn.execute(sa.update(LEASES).where(LEASES.c.holder == holder).values(expires_at=now + ttl_s))
    return int(result.rowcount)


def release(conn: sa.Connection, study_id: int, *, holder: str, keys: Iterable[str] | None = None) -> int:
    """Drop ``holder``'s leases in the study (only those of ``keys`` if given); returns how many."""
    mine = (LEASES.c.study_id == study_id, LEASES.c.holder == holder)
    if keys is None:
        return int(conn.execute(sa.delete(LEASES).where(*mine)).rowcount)
    keys, dropped = list(keys), 0
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        dropped += int(conn.execute(sa.delete(LEASES).where(*mine, LEASES.c.restart_key.in_(chunk))).rowcount)
    return dropped


def live(conn: sa.Connection, study_id: int) -> dict[str, str]:
    """Restart key -> holder, for every lease in the study that has not expired."""
    now = db_now(conn)
    query = sa.select(LEASES.c.restart_key, LEASES.c.holder).where(
        LEASES.c.study_id == study_id, LEASES.c.expires_at > now
    )
    return {key: holder for key, holder in conn.execute(query)}
