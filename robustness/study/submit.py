"""Cluster submission: the sweep's driver as a Ray Job, so the sweep outlives the laptop.

``robustness sweep --address`` runs the driver where it is typed; closing the laptop
ends it. :func:`submit_sweep` hands the driver to the cluster's job server (Ray Jobs,
served by the head's dashboard, port 8265 by default), which runs on the head::

    python -m robustness sweep <file> --address auto --json      # ROBUSTNESS_STORAGE=<url>

so ``python`` on the head must have this package installed (the ``cluster`` extra).

What travels with the job, as its Ray ``working_dir`` (uploaded through the head;
refused here above :data:`MAX_SHIPPED_BYTES`, Ray's own cap is 500 MiB): the
search-space file, and the top-level module or package of every plugin the file
names by import path (``my_tasks:SmallCNN``) that is not installed in site-packages.
The job runs in that directory, so the sweep imports those plugins as it would in
the user's directory. Plugins named by entry point must be installed on the cluster.

The storage URL must be reachable from the head and from here: PostgreSQL in
practice. SQLite works only when the head sees the same file (a head on this
machine); its path is made absolute here, and an in-memory database is refused.

Job records live in the storage, as the study attribute ``submitted_jobs`` (job id,
job-server address, submit time), so ``robustness status`` on any machine that
reads the storage lists them. The job server is asked for their states on demand.

Besides the sweep runner, the only module that imports Ray (its job SDK, on call).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.util
import os
import shlex
import shutil
import socket
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from robustness.errors import RobustnessError
from robustness.plugins import is_import_path
from robustness.storage import RestartStore, StorageError, package_versions, resolve_storage_url

if TYPE_CHECKING:
    from robustness.study.search_space import SearchSpace

__all__ = [
    "JOBS_ATTR",
    "MAX_SHIPPED_BYTES",
    "JobRecord",
    "SubmitError",
    "job_server_url",
    "job_states",
    "stop_job",
    "submit_sweep",
    "submitted_jobs",
]

JOBS_ATTR = "submitted_jobs"  # study attr: a list of JobRecord dicts, oldest first
# The file and the plugin code are meant to be small; a data set or a virtualenv next
# to the YAML would otherwise go to the head with every submission.
MAX_SHIPPED_BYTES = 50 * 1024**2
_CONNECT_TIMEOUT_S = 5.0  # the job SDK itself never times out on an unroutable host
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


class SubmitError(RobustnessError, RuntimeError):
    """A job could not be submitted, found or stopped (job server unreachable, unknown job id, ...)."""


@dataclasses.dataclass(frozen=True)
class JobRecord:
    """One submitted sweep, as stored with its study."""

    job_id: str
    address: str  # the job server, http://HEAD:8265
    study: str
    submitted_at: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- addresses and clients ---------------------------------------------------------------
def job_server_url(address: str) -> str:
    """``HEAD:8265`` or ``http://HEAD:8265`` -> ``http://HEAD:8265`` (the dashboard's job server)."""
    text = address.strip().rstrip("/")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise SubmitError(f"--address: expected the Ray job server as http://HOST:PORT (the dashboard, "
                          f"default port 8265), got {address!r}")
    return text



def _client(url: str) -> Any:
    """A connected ``JobSubmissionClient`` for ``url``, or a one-line :class:`SubmitError`."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise SubmitError(f"cannot reach the Ray job server at {url}: {e.strerror or e}") from None
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(url)
    except Exception as e:  # noqa: BLE001 (the SDK raises plain RuntimeError/ConnectionError)
        raise SubmitError(f"cannot use the Ray job server at {url} (the dashboard's port, default 8265; "
                          f"needs the cluster extra, ray[default]): {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:200] + "...") if len(text) > 200 else (text or type(e).__name__)


# -- what travels with the job --------------------------------------------------------------
def _storage_for_cluster(storage: str | None) -> str:
    """The storage URL as the head's driver must see it: no in-memory SQLite, no relative paths."""
    import sqlalchemy

    url = resolve_storage_url(storage)
    parsed = sqlalchemy.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return url
    if not parsed.database or parsed.database == ":memory:" or parsed.query.get("mode") == "memory":
        raise SubmitError("--storage: an in-memory SQLite database lives in one process, and the job's driver "
                          "runs on the cluster; use PostgreSQL (or a SQLite file the head node can see)")
    # The job runs in its own working_dir: a relative path would land there, and vanish with it.
    return parsed.set(database=str(Path(parsed.database).expanduser().resolve())).render_as_string(hide_password=False)


def _import_paths(node: Any) -> Iterator[str]:
    """Every ``package.module:Name`` string in a parsed YAML document."""
    if isinstance(node, str):
        if is_import_path(node):
            yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _import_paths(value)
    elif isinstance(node, list):
        for value in node:
            yield from _import_paths(value)


def _installed(path: Path) -> bool:
    """Site-packages or the standard library: present on the cluster's Python, not ours to ship."""
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return True
    stdlib = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib")}
    return any(path.resolve().is_relative_to(root) for root in stdlib)


def plugin_sources(space: SearchSpace) -> list[Path]:
    """The top-level module file or package folder of each plugin ``space`` names by import path
    and that is not installed (a user's ``my_tasks.py`` next to the YAML, say)."""
    import yaml

    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)  # as robustness.plugins resolves import paths
    found: dict[str, Path] = {}
    for name in _import_paths(yaml.safe_load(space.text)):
        top = name.partition(":")[0].split(".")[0]
        if top == "robustness" or top in found:
            continue
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue  # not importable here either: the sweep reports it on the cluster
        if spec is None:
            continue
        if spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations)))
        elif spec.has_location and spec.origin:
            path = Path(spec.origin)
        else:
            continue  # a built-in module
        if not _installed(path):
            found[top] = path
    return sorted(found.values())


def _stage(space: SearchSpace, file: Path, dest: Path) -> None:
    """Copy the search-space file and the plugins it needs into ``dest`` (the job's working_dir)."""
    shutil.copyfile(file, dest / file.name)
    for src in plugin_sources(space):
        if src.is_dir():
            shutil.copytree(src, dest / src.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        else:
            shutil.copyfile(src, dest / src.name)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    if size > MAX_SHIPPED_BYTES:
        raise SubmitError(f"{space.source}: the file and its plugin code come to {size / 1024**2:.0f} MiB, more than "
                          f"the {MAX_SHIPPED_BYTES // 1024**2} MiB a job carries; install the plugin on the cluster "
                          "and name it by entry point instead")


# -- submit, record, follow, stop -------------------------------------------------------------
def _new_job_id(study: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in study)[:40]
    return f"robustness-{safe}-{uuid.uuid4().hex[:8]}"


def submit_sweep(file: str | Path, *, address: str, storage: str | None = None, schema_only: bool = False,
                 job_id: str | None = None) -> JobRecord:
    """Validate ``file`` here, then run its sweep on the cluster as a Ray Job; returns the job's record.

    Nothing is submitted unless the file parses, its dry run passes (skipped with
    ``schema_only``, e.g. when the data lives only on the cluster), the job server
    answers and the study in ``storage`` is compatible. The job id is recorded with
    the study (:data:`JOBS_ATTR`); the call returns once the job server has the job.
    """
    # Imported on call: `robustness status` reads job records without torch or the schema.
    from robustness.study.plan import study_attrs
    from robustness.study.search_space import load_search_space
    from robustness.study.sweep import _check_compatible

    url = job_server_url(address)
    storage_url = _storage_for_cluster(storage)
    space = load_search_space(file)
    if not schema_only:
        from robustness.study.check import check_trainable

        check_trainable(space)
    client = _client(url)
    attrs = study_attrs(space, package_versions())
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = JobRecord(job_id=job_id or _new_job_id(space.study), address=url, study=space.study, submitted_at=now)
    with RestartStore(storage_url) as store:
        _check_compatible(store, space, attrs, resume=False)
        with tempfile.TemporaryDirectory(prefix="robustness-job-") as workdir:
            _stage(space, Path(file), Path(workdir))
            entrypoint = f"python -m robustness sweep {shlex.quote(Path(file).name)} --address auto --json"
            # The URL goes in the environment, not the entrypoint, which `ray job list` and status print.
            runtime_env = {"working_dir": workdir, "env_vars": {"ROBUSTNESS_STORAGE": storage_url}}
            try:
                client.submit_job(entrypoint=entrypoint, submission_id=record.job_id, runtime_env=runtime_env,
                                  metadata={"robustness_study": space.study})
            except Exception as e:  # noqa: BLE001 (the SDK's RuntimeError carries the server's reason)
                raise SubmitError(f"the Ray job server at {url} refused the job: {_one_line(e)}") from None
        try:
            _record(store, space, attrs, record)
        except BaseException:
            # A job nobody can find is worse than none: take it back.
            with contextlib.suppress(Exception):
                client.stop_job(record.job_id)
            raise
    return record


def _record(store: RestartStore, space: SearchSpace, attrs: dict[str, Any], record: JobRecord) -> None:
    """Append ``record`` to the study's jobs; a new study gets the attrs a sweep would give it."""
    if space.study in {s.name for s in store.studies()}:
        jobs, extra = [r.to_dict() for r in submitted_jobs(store, space.study)], {}
    else:
        jobs, extra = [], attrs  # so `status` shows its declared total before the job starts
    store.open_study(space.study, direction=attrs["direction"], attrs={**extra, JOBS_ATTR: [*jobs, record.to_dict()]})


def submitted_jobs(store: RestartStore, study: str) -> list[JobRecord]:
    """The jobs submitted for ``study``, oldest first (empty for a study only swept locally)."""
    records = store.study_attrs(study).get(JOBS_ATTR) or []
    return [JobRecord(job_id=str(r["job_id"]), address=str(r.get("address", "")), study=str(r.get("study", study)),
                      submitted_at=str(r.get("submitted_at", ""))) for r in records if isinstance(r, dict) and "job_id" in r]


def job_states(records: Iterable[JobRecord]) -> dict[str, str]:
    """Each job's state from its job server: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED;
    ``unreachable`` when the server does not answer, ``unknown`` when it has no such job."""
    clients: dict[str, Any] = {}
    states: dict[str, str] = {}
    for r in records:
        if r.address not in clients:
            try:
                clients[r.address] = _client(job_server_url(r.address))
            except SubmitError:
                clients[r.address] = None
        client = clients[r.address]
        if client is None:
            states[r.job_id] = "unreachable"
            continue
        try:
            states[r.job_id] = str(client.get_job_status(r.job_id).value)
        except Exception as e:  # noqa: BLE001 (a status display never fails on one job)
            states[r.job_id] = "unknown" if "404" in str(e) or "does not exist" in str(e) else "unreachable"
    return states


def stop_job(job_id: str, *, address: str | None = None, storage: str | None = None, wait: float = 30.0) -> str:
    """Ask the job server to stop ``job_id``; returns its state after up to ``wait`` seconds.

    Without ``address`` the job's record in ``storage`` says where it runs. Stopping
    ends the driver: packs already stored stay, packs in flight are lost, and
    submitting the same file again trains only what is missing.
    """
    if address is None:
        address = _recorded_address(job_id, storage)
    url = job_server_url(address)
    client = _client(url)
    try:
        client.stop_job(job_id)
    except Exception as e:  # noqa: BLE001
        if "404" in str(e) or "does not exist" in str(e):
            raise SubmitError(f"no job {job_id!r} on the Ray job server at {url}") from None
        raise SubmitError(f"could not stop job {job_id!r} at {url}: {_one_line(e)}") from None
    deadline = time.monotonic() + wait
    while True:
        try:
            state = str(client.get_job_status(job_id).value)
        except Exception as e:  # noqa: BLE001
            raise SubmitError(f"asked {url} to stop job {job_id!r}, but cannot read its state: {_one_line(e)}") from None
        if state in TERMINAL_STATES or time.monotonic() >= deadline:
            return state
        time.sleep(0.5)


def _recorded_address(job_id: str, storage: str | None) -> str:
    with RestartStore(storage) as store:
        for study in store.studies():
            for r in submitted_jobs(store, study.name):
                if r.job_id == job_id:
                    return r.address
    raise StorageError(f"job {job_id!r} is not recorded in this storage; give its job server with "
                       "--address http://HEAD:8265")
