"""RestartStore: the one object the sweep runner and the CLI talk to."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
import sqlalchemy.exc

from robustness.criterion import Criterion
from robustness.records import RestartOutcome
from robustness.storage import _progress, _read
from robustness.storage._config import (
    StorageError,
    database_errors,
    enable_wal,
    engine_kwargs,
    one_line,
    resolve_storage_url,
    safe_url,
)
from robustness.storage._connect import disconnected, is_storage_failure, open_rdb, unreachable
from robustness.storage._keys import cell_texts
from robustness.storage._progress import PackProgress, SweepProgress
from robustness.storage._readonly import read_only_engine
from robustness.storage._schema import LEASES, RESTARTS, STUDIES, TRIALS, create_tables
from robustness.table import RestartTable

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

# Study attribute recording how trials are laid out, so a later layout can tell this one apart.
FORMAT_ATTR = "storage_format"
# 2: robustness_restarts carries each restart's summary (see _keys.summary).
STORAGE_FORMAT = 2
# A writer that loses a race for a restart key rolls back and tries again with the
# winner's keys filtered out; more than a few rounds means something else is wrong.
_WRITE_ATTEMPTS = 5
_T = TypeVar("_T")
# How long a pack's write waits out a database that went away (a restart, a failover).
RECONNECT_S = 120.0
_RECONNECT_PAUSE_S = 1.0


StudyRef = int | str


def _drop_orphan_keys(conn: sa.Connection, study_id: int) -> None:
    """Forget key rows whose trial is gone.

    SQLite does not enforce the cascade, so after stock ``optuna.delete_study`` the
    deleted study's key rows stay behind, and SQLite may hand its id to the next
    new study, which would then look partly done.
    """
    live = sa.select(TRIALS.c.trial_id).where(TRIALS.c.study_id == study_id)
    conn.execute(sa.delete(RESTARTS).where(RESTARTS.c.study_id == study_id, RESTARTS.c.trial_id.not_in(live)))


class RestartStore:
    """Restart outcomes in an Optuna RDB storage (SQLite file or PostgreSQL server).

    ``RestartStore(None)`` opens ``$ROBUSTNESS_STORAGE`` or ``sqlite:///robustness.db``.
    Methods taking ``study`` accept the id :meth:`open_study` returned or the name.

    ``read_only=True`` (a dashboard, a report): every write method raises
    :class:`StorageError` before touching the database, and the database refuses
    writes too (SQLite opened with ``mode=ro``, PostgreSQL sessions with
    ``default_transaction_read_only``). It never creates a schema or a database
    file: a missing SQLite file or an in-memory URL is a ``StorageError``, and a
    database without our tables (new, or written only by stock Optuna) reads as
    having no studies.

    Example::

        with RestartStore("sqlite:///robustness.db") as store:
            study = store.open_study("mnist-grid", attrs={"total_restarts": 640})
            todo = [s for s in specs if restart_key(s.params, s.restart) not in store.done_keys(study)]
            store.write_outcomes(study, outcomes)   # one transaction, exactly once
            table = store.read_table(study)
    """

    def __init__(self, url: str | None = None, *, reconnect_s: float = RECONNECT_S, read_only: bool = False) -> None:
        self.url = resolve_storage_url(url)
        self.read_only = read_only
        # A pack's write waits this long for a database that went away before giving up.
        self.reconnect_s = reconnect_s
        # Reading needs only SQLAlchemy; Optuna's RDBStorage (which creates and
        # version-checks the schema) opens on the first write, or here when the
        # database is not yet laid out for reading (new, or made by stock Optuna).
        self._rdb_storage: optuna.storages.RDBStorage | None = None
        self._opening = threading.Lock()
        with self._storage_failures():
            if read_only:
                self._engine: sa.Engine = read_only_engine(self.url)
            else:
                self._engine = sa.create_engine(self.url, **engine_kwargs(self.url))
            # Whether our tables are there to read; a read-only store looks again until they are.
            self._laid_out = self._readable()
        if not self._laid_out and not read_only:
            self._open_for_writing()

    @contextlib.contextmanager
    def _storage_failures(self) -> Iterator[None]:
        """Opening failures (driver, schema, Optuna's version check) as one-line StorageErrors."""
        try:
            yield
        except StorageError:
            raise
        except Exception as e:
            if not is_storage_failure(e):
                raise
            raise StorageError(f"cannot open storage {safe_url(self.url)}: {one_line(e)}") from e

    def _readable(self) -> bool:
        """Whether our table and Optuna's studies table are there to read from."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.select(RESTARTS).limit(0))
                conn.execute(sa.select(STUDIES.c.study_id).limit(0))
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError) as e:
            if unreachable(e):
                raise
            return False  # no such table
        return True

    def _refuse_if_read_only(self, doing: str) -> None:
        if self.read_only:
            raise StorageError(f"cannot {doing}: {safe_url(self.url)} was opened read-only")

    def _tables_ready(self) -> bool:
        """Whether our tables exist (a read-only store on a new database checks again each time)."""
        if not self._laid_out:
            with self._storage_failures():
                self._laid_out = self._readable()
        return self._laid_out

    def _open_for_writing(self) -> optuna.storages.RDBStorage:
        """Optuna's storage; creates the schema, or checks Optuna's version of it."""
        self._refuse_if_read_only("write")
        with self._opening:
            if self._rdb_storage is None:
                with self._storage_failures():
                    rdb = open_rdb(self.url)
                    try:
                        create_tables(rdb.engine)
                        enable_wal(rdb.engine)
                    except BaseException:
                        rdb.remove_session()
                        rdb.engine.dispose()
                        raise
                self._engine.dispose()
                # One engine from here on (an in-memory SQLite database lives in one engine).
                self._engine = rdb.engine
                self._rdb_storage = rdb
                self._laid_out = True
            return self._rdb_storage

    @property
    def _rdb(self) -> optuna.storages.RDBStorage:
        return self._open_for_writing()

    def close(self) -> None:
        if self._rdb_storage is not None:
            self._rdb_storage.remove_session()
        self._engine.dispose()

    def __enter__(self) -> RestartStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RestartStore({safe_url(self.url)!r}{', read_only=True' if self.read_only else ''})"

    def open_study(
        self, name: str, *, direction: str = "maximize", attrs: Mapping[str, Any] | None = None
    ) -> int:
        """Create or load the Optuna study ``name``; set its user attrs; return its id.

        ``attrs`` values must be JSON-able; they overwrite attrs of the same key (the
        latest code revision and versions win on ``--resume``).
        """
        self._refuse_if_read_only(f"open study {name!r}")
        import optuna
        from optuna.study import StudyDirection

        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
        wanted = StudyDirection[direction.upper()]
        attrs = {FORMAT_ATTR: STORAGE_FORMAT, **(attrs or {})}
        for key, value in attrs.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"study attr {key!r} is not JSON-able: {e}") from e
        with database_errors(self.url, f"opening study {name!r}"):
            try:
                study_id = self._rdb.create_new_study([wanted], name)
                with self._engine.begin() as conn:
                    _drop_orphan_keys(conn, study_id)
                    _progress.forget(conn, study_id)
            except optuna.exceptions.DuplicatedStudyError:
                study_id = self._rdb.get_study_id_from_name(name)
                have = self._rdb.get_study_directions(study_id)
                if have != [wanted]:
                    shown = ", ".join(d.name.lower() for d in have)
                    raise StorageError(f"study {name!r} exists with direction {shown}, not {direction}") from None
            for key, value in attrs.items():
                self._rdb.set_study_user_attr(study_id, key, value)
        return study_id

    def study_attrs(self, study: StudyRef) -> dict[str, Any]:
        """The study's user attributes (search-space text, versions, revision, ...)."""
        study_id = self._study_id(study)
        with database_errors(self.url, "reading study attrs"), self._engine.connect() as conn:
            return _read.study_attrs(conn, study_id)

    def set_study_attrs(self, study: StudyRef, attrs: Mapping[str, Any]) -> None:
        """Set (overwrite) user attributes of an existing study; values must be JSON-able."""
        self._refuse_if_read_only("write study attrs")
        study_id = self._study_id(study)
        for key, value in attrs.items():
            json.dumps(value)  # a TypeError here, before anything is written
        with database_errors(self.url, "writing study attrs"):
            for key, value in attrs.items():
                self._rdb.set_study_user_attr(study_id, key, value)

    def done_keys(self, study: StudyRef) -> set[str]:
        """Restart keys already recorded in ``study`` (see :func:`restart_key`)."""
        study_id = self._study_id(study)
        with database_errors(self.url, "reading recorded restarts"), self._engine.connect() as conn:
            return _read.done_keys(conn, study_id)

    def declare_axes(self, study: StudyRef, axes: Mapping[str, Sequence[Any]]) -> dict[str, BaseDistribution]:
        """Fix one distribution per grid axis for the whole study; pass it to :meth:`write_outcomes`.

        ``axes`` maps each axis to every value the search space declares (as
        ``SearchSpace.axes()`` gives). Trials already stored, from an earlier and
        smaller grid, get the same distribution, so Optuna sees one static search
        space (its importance evaluators and optuna-dashboard depend on that).
        """
        from robustness.storage import _write

        self._refuse_if_read_only("declare the study's axes")
        self._open_for_writing()
        study_id = self._study_id(study)
        try:
            with database_errors(self.url, "declaring the study's axes"), self._engine.begin() as conn:
                return _write.declare_axes(conn, study_id, axes)
        except LookupError:
            raise StorageError(f"study {study!r} was deleted from {safe_url(self.url)}") from None

    def write_outcomes(
        self,
        study: StudyRef,
        outcomes: Sequence[RestartOutcome],
        *,
        distributions: Mapping[str, BaseDistribution] | None = None,
    ) -> int:
        """Record a finished pack in one transaction; returns how many restarts were new.

        Restarts whose key is already recorded are skipped, so retrying a pack or
        rerunning a sweep adds nothing. Records are validated first (``ValueError``:
        unstorable param values, ``seed`` used as an axis, curve steps not
        increasing, a value outside ``distributions``); nothing is written then.
        Without ``distributions`` each axis gets a categorical over the values seen
        (extending the study's existing one) and ``seed`` an ``IntDistribution(0, 2**31-1)``.
        """
        self._refuse_if_read_only("write restarts")
        from robustness.storage import _write  # Optuna's tables and distributions

        batch = _write.prepare(outcomes)
        if not batch:
            return 0
        study_id = self._until_reconnected(lambda: self._study_for_writing(study))
        conflicts, deadline = 0, time.monotonic() + self.reconnect_s
        while conflicts < _WRITE_ATTEMPTS:
            try:
                with database_errors(self.url, "writing restarts"), self._engine.begin() as conn:
                    return _write.write_batch(conn, study_id, batch, distributions)
            except StorageError as e:
                if isinstance(e.__cause__, sqlalchemy.exc.IntegrityError):
                    # Another writer recorded one of our keys between our check and our
                    # insert (possible only for writers that skip the study lock). The
                    # transaction rolled back; the next round filters those keys out.
                    conflicts += 1
                    continue
                if disconnected(e.__cause__) and time.monotonic() < deadline:
                    # The server restarted or the network blinked: the transaction rolled
                    # back whole, so writing the same batch again is safe. A finished pack
                    # is worth waiting for rather than training again.
                    time.sleep(_RECONNECT_PAUSE_S)
                    continue
                raise
            except LookupError:
                raise StorageError(f"study {study!r} was deleted from {safe_url(self.url)}") from None
        raise StorageError(f"writing restarts to {safe_url(self.url)} kept conflicting with another writer")

    def claim_restarts(self, study: StudyRef, keys: Sequence[str], *, holder: str, n: int, ttl_s: float) -> list[str]:
        """Lease to ``holder`` up to ``n`` of ``keys`` (in their order) that nobody recorded or holds.

        Atomic across processes and machines: two drivers claiming at once never
        get the same key. A lease whose holder stopped renewing it for ``ttl_s``
        seconds (by the database's clock) is free to take over. Returns the keys
        leased, ``[]`` when every key is recorded or leased by a live holder.
        Renew with :meth:`renew_leases` and drop with :meth:`release_leases`.
        """
        self._refuse_if_read_only("claim restarts")
        return self._until_reconnected(lambda: self._claim(study, keys, holder=holder, n=n, ttl_s=ttl_s))

    def _claim(self, study: StudyRef, keys: Sequence[str], *, holder: str, n: int, ttl_s: float) -> list[str]:
        from robustness.storage import _leases

        study_id = self._study_for_writing(study)  # also adds the lease table to a database laid out before it
        for _ in range(_WRITE_ATTEMPTS):
            try:
                with database_errors(self.url, "claiming restarts"), self._engine.begin() as conn:
                    return _leases.claim(conn, study_id, keys, holder=holder, n=n, ttl_s=ttl_s)
            except StorageError as e:
                # A holder renewed a lease we saw expired (PostgreSQL; renewals take no
                # study lock); the insert collided and rolled back. Look again.
                if not isinstance(e.__cause__, sqlalchemy.exc.IntegrityError):
                    raise
            except LookupError:
                raise StorageError(f"study {study!r} was deleted from {safe_url(self.url)}") from None
        raise StorageError(f"claiming restarts in {safe_url(self.url)} kept conflicting with another driver")

    def renew_leases(self, holder: str, *, ttl_s: float) -> int:
        """Extend every lease ``holder`` still has to ``ttl_s`` seconds from now; returns how many."""
        from robustness.storage import _leases

        self._refuse_if_read_only("renew leases")
        with database_errors(self.url, "renewing leases"), self._engine.begin() as conn:
            return _leases.renew(conn, holder=holder, ttl_s=ttl_s)

    def release_leases(self, study: StudyRef, holder: str, keys: Sequence[str] | None = None) -> int:
        """Drop ``holder``'s leases in ``study`` (only on ``keys`` if given); returns how many."""
        from robustness.storage import _leases

        self._refuse_if_read_only("release leases")

        def release() -> int:
            study_id = self._study_id(study)
            with database_errors(self.url, "releasing leases"), self._engine.begin() as conn:
                return _leases.release(conn, study_id, holder=holder, keys=keys)

        return self._until_reconnected(release)

    def leases(self, study: StudyRef) -> dict[str, str]:
        """Restart key -> holder for every unexpired lease in ``study`` (restarts being trained now)."""
        from robustness.storage import _leases

        study_id = self._study_id(study)
        if not self._has_lease_table():
            return {}
        with database_errors(self.url, "reading leases"), self._engine.connect() as conn:
            return _leases.live(conn, study_id)

    def _has_lease_table(self) -> bool:
        # A database laid out before leases has none until its first write; reading must not create it.
        with database_errors(self.url, "reading leases"), self._engine.connect() as conn:
            return sa.inspect(conn).has_table(LEASES.name)

    def read_table(self, study: StudyRef, *, criterion: Criterion | None = None) -> RestartTable:
        """The study's restarts as columns, straight from SQL (no Optuna trial objects).

        ``criterion`` re-judges ``success`` from the stored final metrics.
        """
        study_id = self._study_id(study)
        try:
            with database_errors(self.url, "reading restarts"), self._engine.connect() as conn:
                return _read.read_table(conn, study_id, criterion=criterion)
        except KeyError as e:
            raise StorageError(f"study {study!r}: {e.args[0]}") from None

    def iter_outcomes(
        self, study: StudyRef, *, cells: Iterable[Mapping[str, Any]] | None = None, max_restart: int | None = None
    ) -> Iterator[RestartOutcome]:
        """Recorded restarts as full :class:`RestartOutcome` records, curves included, in write order.

        ``cells``: only the restarts of these cells, each a mapping of every grid
        axis to its value (no ``seed``), as :meth:`read_table`'s params give them;
        numbers compare by value (``lr`` 1 and 1.0 are one cell). They are matched
        in SQL on the stored ``cell`` column, so one cell of a large study costs
        that cell's rows. ``max_restart``: only restart indices below it (the
        first ``max_restart`` restarts of each cell). ``ValueError`` for a cell
        value no grid can hold (a list, NaN).
        """
        # Optuna is imported only here: params come back through its distributions.
        from robustness.storage import _records

        texts = None if cells is None else list(dict.fromkeys(t for cell in cells for t in cell_texts(cell)))
        study_id = self._study_id(study)
        if texts == []:
            return
        with database_errors(self.url, "reading restarts"):
            yield from _records.iter_outcomes(self._engine, study_id, cells=texts, max_restart=max_restart)

    def write_progress(self, study: StudyRef, packs: Sequence[PackProgress]) -> None:
        """Insert or update the progress rows of ``packs`` (one transaction); see :class:`ProgressWriter`.

        Their times are on this machine's clock (``time.time()``) and are stored on
        the database's, so readers elsewhere compare them with theirs. Waits at most
        a few seconds for another writer's lock, then fails (``StorageError``).
        """
        self._refuse_if_read_only("write sweep progress")
        self._open_for_writing()  # also adds the progress table to a database laid out before it
        study_id = self._study_id(study)
        with database_errors(self.url, "writing sweep progress"), self._engine.begin() as conn:
            _progress.upsert(conn, study_id, packs)

    def prune_progress(self, study: StudyRef, *, keep_holder: str) -> int:
        """Delete the progress rows of drivers that are gone (none of their running packs is
        fresh); ``keep_holder``'s stay. A new driver calls it as it starts. Returns how many."""
        self._refuse_if_read_only("prune sweep progress")
        self._open_for_writing()
        study_id = self._study_id(study)
        with database_errors(self.url, "pruning sweep progress"), self._engine.begin() as conn:
            return _progress.prune(conn, study_id, keep_holder=keep_holder)

    def read_progress(self, study: StudyRef) -> SweepProgress:
        """The study's live progress: restarts recorded, restart-steps trained, rate, ETA, packs in flight.

        Packs come from the rows sweep drivers write (:class:`ProgressWriter`); a
        running pack whose driver has not vouched for it for
        ``STALE_AFTER_S`` (60 s) is counted lost, not in flight (a killed
        driver's rows stay ``running`` until the next run prunes them). A
        database laid out before progress existed reads as having no packs.
        See :class:`SweepProgress` for how rate and ETA are computed.
        """
        study_id = self._study_id(study)
        with database_errors(self.url, "reading sweep progress"), self._engine.connect() as conn:
            return _progress.read(conn, study_id)

    def studies(self) -> list[_read.StudySummary]:
        """Every study in the storage with its restart, success and divergence counts."""
        if not self._tables_ready():
            return []
        with database_errors(self.url, "listing studies"), self._engine.connect() as conn:
            return _read.studies(conn)

    def _study_for_writing(self, study: StudyRef) -> int:
        self._open_for_writing()
        return self._study_id(study)

    def _until_reconnected(self, attempt: Callable[[], _T]) -> _T:
        """``attempt()``, tried again while the database is unreachable, for at most ``reconnect_s``.

        For the driver's own statements between packs (finding the study, claiming,
        releasing): a server restart or a network blink must not end a sweep whose
        packs would wait for it. Each attempt is whole transactions, so repeating it is safe.
        """
        deadline = time.monotonic() + self.reconnect_s
        while True:
            try:
                return attempt()
            except StorageError as e:
                cause = e.__cause__
                lost = disconnected(cause) or disconnected(getattr(cause, "__cause__", None))
                if not lost or time.monotonic() >= deadline:
                    raise
            time.sleep(_RECONNECT_PAUSE_S)

    def _study_id(self, study: StudyRef) -> int:
        if not self._tables_ready():
            raise StorageError(f"no study {study!r} in {safe_url(self.url)} (it has no studies)")
        column = STUDIES.c.study_id if isinstance(study, int) else STUDIES.c.study_name
        with database_errors(self.url, "finding the study"), self._engine.connect() as conn:
            found = conn.execute(sa.select(STUDIES.c.study_id).where(column == study)).scalar_one_or_none()
            if found is not None:
                return int(found)
            names = list(conn.execute(sa.select(STUDIES.c.study_name).order_by(STUDIES.c.study_id).limit(6)).scalars())
        have = f"it has {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}" if names else "it has no studies"
        raise StorageError(f"no study {study!r} in {safe_url(self.url)} ({have})")

