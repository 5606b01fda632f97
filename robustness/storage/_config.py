"""Which database to use, how to connect to it, and how its errors read."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy.engine import make_url

from robustness.errors import RobustnessError

__all__ = ["DEFAULT_STORAGE", "ENV_VAR", "StorageError", "resolve_storage_url"]

# A file next to where the sweep is launched: no server to set up for a laptop run.
DEFAULT_STORAGE = "sqlite:///robustness.db"
ENV_VAR = "ROBUSTNESS_STORAGE"

# How long a SQLite writer waits for another process's write lock. A pack write of
# 10k restarts takes seconds; a minute leaves room for several queued packs.
SQLITE_BUSY_TIMEOUT_S = 60.0
# Fail fast when a PostgreSQL host is unreachable instead of hanging the driver.
POSTGRES_CONNECT_TIMEOUT_S = 10


class StorageError(RobustnessError):
    """A storage problem worth one line to the user (unreachable server, unknown study, ...)."""


def resolve_storage_url(url: str | None) -> str:
    """The storage URL to use: ``url``, else ``$ROBUSTNESS_STORAGE``, else :data:`DEFAULT_STORAGE`.

    ``postgresql://`` and ``postgres://`` select the psycopg 3 driver (the one the
    ``postgres`` extra installs), so they behave like ``postgresql+psycopg://``.
    """
    chosen = (url or os.environ.get(ENV_VAR) or DEFAULT_STORAGE).strip()
    for bare in ("postgresql://", "postgres://"):
        if chosen.startswith(bare):
            chosen = "postgresql+psycopg://" + chosen[len(bare) :]
    try:
        make_url(chosen).port  # parses the port too: a malformed one raises ValueError
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        # The value may hold a password typed in the wrong place: never echo it back.
        raise StorageError(f"not a database URL: {_redacted(chosen)} (expected e.g. {DEFAULT_STORAGE} or "
                           "postgresql+psycopg://user@host:5432/db)") from e
    return chosen


def _redacted(text: str) -> str:
    """The scheme of a malformed URL, and nothing after it that could be a secret."""
    scheme, sep, _ = text.partition("://")
    if sep and scheme.replace("+", "").replace("-", "").isalnum():
        return f"'{scheme}://...'"
    return "the value given (not shown: it may hold a password)"


def safe_url(url: str) -> str:
    """``url`` with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def engine_kwargs(url: str) -> dict[str, Any]:
    """``create_engine`` options for ``url``'s backend."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if backend == "postgresql":
        # pool_pre_ping: a sweep's driver idles for hours between packs, and servers
        # or proxies drop idle connections in the meantime.
        return {"connect_args": {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def enable_wal(engine: sqlalchemy.engine.Engine) -> None:
    """Switch a SQLite file to write-ahead logging, so readers never block the writer.

    The mode is stored in the file, so this runs once per file; it is best effort
    because another process holding the file open may refuse the switch.
    """
    if engine.dialect.name != "sqlite" or make_url(str(engine.url)).database in (None, "", ":memory:"):
        return
    with contextlib.suppress(sqlalchemy.exc.OperationalError), engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        if str(mode).lower() != "wal":
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")


def one_line(error: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's wrapping."""
    inner = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    return lines[0] if lines else type(inner).__name__


def optuna_storage_error(error: BaseException) -> bool:
    """Whether ``error`` is Optuna's wrapper of a database failure.

    Looked up in ``sys.modules`` rather than imported: Optuna costs ~0.3 s to
    import, and if it was never imported it cannot have raised.
    """
    exceptions = sys.modules.get("optuna.exceptions")
    return exceptions is not None and isinstance(error, exceptions.StorageInternalError)


@contextlib.contextmanager
def database_errors(url: str, doing: str) -> Iterator[None]:
    """Turn driver and SQLAlchemy failures into a one-line :class:`StorageError`."""
    try:
        yield
    except Exception as e:
        if not isinstance(e, sqlalchemy.exc.SQLAlchemyError) and not optuna_storage_error(e):
            raise
        # Optuna wraps the SQLAlchemy error it caught; report that one.
        cause = e.__cause__ if optuna_storage_error(e) and e.__cause__ else e
        raise StorageError(f"{doing} failed on {safe_url(url)}: {one_line(cause)}") from e
