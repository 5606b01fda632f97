"""The database's clock, which every driver and reader of one storage agrees on."""

from __future__ import annotations

import time

import sqlalchemy as sa


def db_now(conn: sa.Connection) -> float:
    """The database's clock, in seconds since the epoch.

    Lease expiry and sweep progress are stamped with it, so drivers and
    dashboards on machines whose clocks disagree still agree on what is stale.
    """
    if conn.dialect.name == "sqlite":
        # julianday counts days from noon, 4714 BC; 2440587.5 is the Unix epoch (ms resolution).
        return float(conn.exec_driver_sql("SELECT (julianday('now') - 2440587.5) * 86400.0").scalar_one())
    if conn.dialect.name == "postgresql":
        # clock_timestamp, not now(): now() is frozen at the start of the transaction.
        return float(conn.exec_driver_sql("SELECT extract(epoch FROM clock_timestamp())").scalar_one())
    return time.time()
