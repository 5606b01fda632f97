"""Opening a storage through Optuna, and telling a lost connection from a bad statement."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import sqlalchemy.exc

from robustness.storage._config import engine_kwargs, optuna_storage_error

if TYPE_CHECKING:
    import optuna

# Drivers started together on a fresh database race to lay it out; a few rounds settle it.
_OPEN_ATTEMPTS = 3


def open_rdb(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage, which creates (or checks) its schema exactly as stock tools expect.

    Optuna is imported here, not at the top: reading never needs it, and it costs ~0.3 s.

    Drivers started together on a fresh database race to create that schema (and to
    stamp its alembic version); the loser fails on a constraint and, once the winner
    is done, finds everything in place.
    """
    import optuna

    for attempt in range(_OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
        except sqlalchemy.exc.DBAPIError as e:
            lost_race = isinstance(e, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError)) or (
                "already exists" in str(e.orig)
            )
            if not lost_race or attempt == _OPEN_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def disconnected(error: BaseException | None) -> bool:
    """Whether ``error`` is the database connection going away (not a bad statement)."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)) and not isinstance(
        error, sqlalchemy.exc.IntegrityError) and any(
        text in str(error).lower() for text in ("connection", "server closed", "terminating", "shutting down",
                                                "could not connect", "connection refused"))


def unreachable(error: sqlalchemy.exc.DBAPIError) -> bool:
    """A failure to connect at all (as opposed to a missing table or column)."""
    return bool(getattr(error, "connection_invalidated", False)) or "connect" in str(error.orig).lower()


def is_storage_failure(error: BaseException) -> bool:
    """Errors of opening a storage that deserve one line: database, driver, Optuna's checks."""
    return isinstance(error, (sqlalchemy.exc.SQLAlchemyError, ImportError, RuntimeError)) or optuna_storage_error(error)
