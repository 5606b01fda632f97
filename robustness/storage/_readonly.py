"""Read-only connections: a dashboard's store must not be able to change what it shows.

Refusing writes in :class:`RestartStore` is the first guard; the database is the
second, so that a bug (or a stock tool handed our engine) cannot write either:
SQLite files are opened with ``mode=ro`` and PostgreSQL sessions run with
``default_transaction_read_only = on``.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from robustness.storage._config import SQLITE_BUSY_TIMEOUT_S, StorageError, engine_kwargs, safe_url


def read_only_engine(url: str) -> sa.Engine:
    """An engine on ``url`` that cannot write, and never creates a database (SQLite: ``StorageError``)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite(url, parsed.database)
    engine = sa.create_engine(url, **engine_kwargs(url))
    if backend == "postgresql":
        sa.event.listen(engine, "connect", _read_only_session)
    return engine


def _sqlite(url: str, database: str | None) -> sa.Engine:
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise StorageError(f"cannot open storage {safe_url(url)} read-only: an in-memory database would be empty")
    path = Path(database)
    if not path.is_file():
        raise StorageError(f"cannot open storage {safe_url(url)}: no database file at {path} "
                           "(opened read-only, which never creates one)")
    # A URI filename, so that SQLite itself refuses writes (mode=ro) and never creates the file.
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"

    def connect() -> sqlite3.Connection:
        # check_same_thread off: the pool hands connections to whichever thread asks (a dashboard serves
        # requests from several); each is used by one thread at a time.
        return sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)

    # The file URL still picks SQLAlchemy's dialect and its pool for files; creator opens the connections.
    return sa.create_engine(url, creator=connect)


def _read_only_session(dbapi_connection: Any, record: Any) -> None:
    """Make every transaction of a new PostgreSQL connection read-only (the server refuses writes)."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True  # a plain SET outside any transaction, so it lasts the session
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SET SESSION default_transaction_read_only = on")
        finally:
            cursor.close()
    finally:
        dbapi_connection.autocommit = autocommit
