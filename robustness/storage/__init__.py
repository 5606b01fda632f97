"""Storage: restart outcomes in an Optuna RDB storage, SQLite by default, PostgreSQL on clusters.

One Optuna study per search-space study and **one Optuna trial per restart**, so
stock ``optuna.load_study(...)`` and optuna-dashboard read everything back. The
sweep runner writes whole packs through :meth:`RestartStore.write_outcomes` (one
transaction, straight into Optuna's tables) and the statistics read
:meth:`RestartStore.read_table` (one query over per-restart summary rows; reading
imports neither Optuna nor its trial objects).

URLs: ``sqlite:///path.db`` (default ``sqlite:///robustness.db``, or
``$ROBUSTNESS_STORAGE``) and ``postgresql+psycopg://user@host:port/db``; both go
through the same code. SQLite files are switched to WAL and writers wait up to
60 s for the write lock.

Exactly once
    A restart is identified by :func:`restart_key` (sorted-key JSON of its cell
    and index). The table ``robustness_restarts(study_id, restart_key, trial_id)``
    has ``(study_id, restart_key)`` as primary key, so a key is recorded at most
    once, ever. A batch write locks the study row, skips keys already there and
    inserts the rest in the same transaction; should a key still collide, the
    transaction rolls back whole and is retried without it. Retried packs, reruns
    after a killed driver and ``--resume`` therefore add only new restarts.

Leases
    Drivers sharing a study split its work through ``robustness_leases(study_id,
    restart_key, holder, expires_at)``: :meth:`RestartStore.claim_restarts`
    atomically leases restarts nobody recorded or holds, a :class:`Heartbeat`
    renews them (:meth:`RestartStore.renew_leases`) while they train, and
    :meth:`RestartStore.release_leases` drops them once written. A dead driver's
    leases expire ``ttl_s`` after its last heartbeat (by the database's clock)
    and may then be taken over. Leases only save work; exactly once is the
    primary key's job.

Progress
    ``robustness_progress(study_id, pack, holder, restarts, step, steps,
    metrics, started_at, updated_at, alive_at, state)``, primary key
    ``(study_id, pack)``: one row per pack a sweep driver started, upserted by
    the driver (:class:`ProgressWriter`) from the reports Tune brings it, at
    most about once a second plus each pack's start and end. Workers still
    never open the database. :meth:`RestartStore.read_progress` turns the rows
    and the recorded count into a :class:`SweepProgress` (restart-steps done of
    the total, rate, ETA, packs in flight). A running row its driver has not
    vouched for in 60 s is counted lost; a new driver deletes the rows of
    drivers that are gone as it starts, so rate and ETA cover the current run.

Read-only
    ``RestartStore(url, read_only=True)`` refuses every write with
    :class:`StorageError` before touching the database, and opens the database
    so that it refuses writes too; it never creates a schema or a file.

Summary rows
    The same ``robustness_restarts`` row also holds the restart's summary, written
    in the same transaction as its trial: ``cell`` (JSON of the grid
    coordinates), ``seed``, ``restart``, ``success``, ``diverged``, ``metrics``
    (JSON of the final metrics, NaN kept) and ``primary_metric``. The statistics
    read only these (one row per restart instead of a pivot over Optuna's
    ~130 param and attribute rows per restart).

Each trial holds
    params
        every grid coordinate plus ``seed``. Without explicit ``distributions`` an
        axis gets a ``CategoricalDistribution`` over the values seen (``None`` is a
        valid choice; new values are appended to the study's existing choices) and
        ``seed`` an ``IntDistribution(0, 2**31 - 1)``. Optuna stores only None,
        bool, int, float and str: other values (lists, dicts, NaN) are rejected
        with ``ValueError`` before anything is written. A grid axis may not be
        called ``seed``.
    value
        the primary metric. Optuna cannot store NaN as a COMPLETE trial's value, so
        a NaN becomes the worst value: -inf when maximizing, +inf when minimizing;
        ±inf are stored as is. The trial stays COMPLETE (it is a finished restart,
        and ``best_trial`` never picks it); the true NaN is in the user attrs.
    intermediate values
        the learning curve, step -> eval metric (NaN allowed), so Optuna's
        intermediate-value plots show it. Steps must be strictly increasing.
    user attrs
        ``restart`` (int), ``success`` (bool; always false for a diverged
        restart, which counts as a failure and is never dropped), ``diverged``
        (bool), ``diverged_step`` (int or null), ``wall_time_s`` (float),
        ``device`` (str), ``primary_metric`` (str), ``metrics.<name>`` (float, one
        per final metric, NaN/±inf kept) and ``curve_train_loss`` (list of
        floats, one per curve point, in step order). Values are JSON as Optuna's
        ``set_user_attr`` writes it (NaN as ``NaN``).
    state and times
        COMPLETE; ``datetime_complete`` is the write time and ``datetime_start``
        that minus ``wall_time_s``. Trial numbers run 0..n-1 per study like
        stock Optuna's.

Study user attrs
    ``storage_format`` (int, set here: the layout above, currently 2) plus what
    the caller passes to :meth:`RestartStore.open_study`; by convention
    ``search_space`` (the search-space file's text), ``versions`` (package name
    -> version, see :func:`package_versions`), ``code_revision`` (str),
    ``total_restarts`` (int; shown by :meth:`RestartStore.studies`) and
    ``criterion`` (str, e.g. ``"test_accuracy >= 0.9"``).
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

from robustness.storage._config import (
    DEFAULT_STORAGE,
    ENV_VAR,
    StorageError,
    resolve_storage_url,
)
from robustness.storage._heartbeat import Heartbeat, new_holder
from robustness.storage._keys import restart_key
from robustness.storage._progress import PackProgress, SweepProgress, steps_per_restart
from robustness.storage._progress_writer import ProgressWriter
from robustness.storage._read import TOTAL_RESTARTS_ATTR, StudySummary
from robustness.storage._store import FORMAT_ATTR, STORAGE_FORMAT, RestartStore

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from robustness.records import RestartOutcome

__all__ = [
    "DEFAULT_STORAGE",
    "ENV_VAR",
    "FORMAT_ATTR",
    "Heartbeat",
    "PackProgress",
    "ProgressWriter",
    "STORAGE_FORMAT",
    "TOTAL_RESTARTS_ATTR",
    "RestartStore",
    "StorageError",
    "StudySummary",
    "SweepProgress",
    "new_holder",
    "package_versions",
    "resolve_storage_url",
    "restart_key",
    "steps_per_restart",
    "to_frozen_trial",
]


def to_frozen_trial(outcome: RestartOutcome, distributions: Any, *, maximize: bool) -> FrozenTrial:
    """The stock-Optuna trial equivalent to what :meth:`RestartStore.write_outcomes` stores.

    See :func:`robustness.storage._encode.to_frozen_trial`; imported on call because
    it needs Optuna, which reading a study does not.
    """
    from robustness.storage import _encode

    return _encode.to_frozen_trial(outcome, distributions, maximize=maximize)


_VERSIONED = ("restart-robustness", "torch", "numpy", "optuna", "sqlalchemy", "ray", "psycopg")


def package_versions(names: tuple[str, ...] = _VERSIONED) -> dict[str, str]:
    """Installed versions of ``names`` (missing ones left out), for the ``versions`` study attr.

    Reads package metadata only, so nothing heavy (torch, ray) is imported.
    """
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
