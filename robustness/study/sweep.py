"""The sweep runner: a search space's restart packs as Ray Tune trials, outcomes into storage.

The only module that imports Ray. One restart's path through it::

    SearchSpace.restart_specs()  -> plan_sweep() drops keys already stored, cuts packs
    Tune trial (a Ray worker)    -> PackTrainer trains the pack, checkpoints through Tune,
                                    reports the pack's RestartOutcomes once, at the end
    _StoreCallback (the driver)  -> RestartStore.write_outcomes(): one transaction a pack

Workers never open the database. A pack that fails is retried by Tune from its
last checkpoint (``FailureConfig(max_failures=...)``); if it had already
reported, the store skips the keys it has, so every restart is recorded once.
Stopping the driver (Ctrl-C, a kill) loses at most the packs in flight: every
finished pack is committed, and rerunning the command trains only what is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from robustness.criterion import Criterion
from robustness.errors import RobustnessError
from robustness.storage import RestartStore, StorageError, package_versions, restart_key
from robustness.study.check import check_trainable
from robustness.study.plan import SweepPlan, plan_sweep, study_attrs, training_setup
from robustness.study.search_space import SearchSpace
from robustness.training.loop import train_with_loop, uses_own_loop
from robustness.training.pack import PackTrainer, TrainConfig
from robustness.training.spec import RestartSpec
from robustness.training.tasks import Task

__all__ = ["SweepError", "SweepResult", "run_sweep"]

_OUTCOMES = "outcomes_pickle"  # result key carrying a finished pack's records to the driver


class SweepError(RobustnessError, RuntimeError):
    """A sweep could not run (cluster unreachable, incompatible study, failed packs)."""


@dataclasses.dataclass(frozen=True)
class SweepResult:
    study: str
    storage: str
    total: int  # restarts the file declares
    already_done: int  # restarts found in storage before this run
    written: int  # restarts this run recorded
    successes: int  # successes among all recorded restarts of the study
    recorded: int  # all recorded restarts of the study
    packs: int
    failed_packs: int
    elapsed_s: float
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every pack trial needs; shipped once through the object store (tune.with_parameters)."""

    task: Task
    config: TrainConfig
    criterion: Criterion
    packs: tuple[tuple[RestartSpec, ...], ...]
    device: str
    threads: int
    checkpoint_every_s: float


def _pack_trial(trial_config: dict[str, Any], job: _Job) -> None:
    """A Tune function trainable: train one pack, checkpoint it, report its outcomes once.

    A task with its own ``train(ctx)`` loop trains the pack's restarts one after another instead.
    """
    from ray import tune

    index = trial_config["pack"]
    torch.set_num_threads(job.threads)
    if uses_own_loop(job.task):
        # The task's own loop, one restart after another: nothing to checkpoint mid-way,
        # a retried trial trains its few restarts again from their seeds.
        data = job.task.load_data()
        outcomes = [train_with_loop(job.task, spec, job.config, criterion=job.criterion, device=job.device, data=data)
                    for spec in job.packs[index]]
        tune.report({"step": job.config.steps, "restarts": len(outcomes), _OUTCOMES: pickle.dumps(outcomes)})
        return
    trainer = PackTrainer(job.task, job.packs[index], job.config, criterion=job.criterion, device=job.device)
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            trainer.load_state_dict(torch.load(Path(d) / "pack.pt", weights_only=False))
    last = time.monotonic()

    def on_eval(tr: PackTrainer) -> None:
        nonlocal last
        if tr.done or time.monotonic() - last < job.checkpoint_every_s:
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(tr.state_dict(), Path(d) / "pack.pt")
            tune.report({"step": tr.step, "restarts": 0}, checkpoint=tune.Checkpoint.from_directory(d))
        last = time.monotonic()

    try:
        trainer.run(callback=on_eval)
        outcomes = trainer.outcomes()
    finally:
        trainer.close()
    tune.report({"step": trainer.step, "restarts": len(outcomes), _OUTCOMES: pickle.dumps(outcomes)})


def _store_callback_class() -> type:
    from ray import tune

    class StoreCallback(tune.Callback):
        """Runs in the driver: writes each finished pack, then drops the records from Tune's state."""

        def __init__(self, write: Callable[[list[Any]], int], on_written: Callable[[list[Any], int], None],
                     say: Callable[[str], None], log_path: Path) -> None:
            self.write, self.on_written, self.say, self.log_path = write, on_written, say, log_path
            self.errors: list[BaseException] = []

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its callbacks into the experiment state; the store
            # connection must not go there (and never needs to: resuming goes
            # through storage, not through Tune's state).
            return {"write": None, "on_written": None, "say": None, "log_path": self.log_path, "errors": []}

        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            step = (trial.last_result or {}).get("step", 0)
            start = f"from update {step}" if step else "from the start"
            self.say(f"pack {trial.config.get('pack')}: {_trial_error(trial)}; retrying {start} "
                     f"(details in {self.log_path})")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.say(f"pack {trial.config.get('pack')}: {_trial_error(trial)}; no retries left "
                     f"(details in {self.log_path})")

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
            blob = result.pop(_OUTCOMES, None)  # Tune allows callbacks to edit results in place
            if blob is None:
                return
            try:
                outcomes = pickle.loads(blob)
                new = self.write(outcomes)
            except Exception as e:  # noqa: BLE001 (keep Tune running; reported after fit())
                self.errors.append(e)
                return
            self.on_written(outcomes, new)

    return StoreCallback


def _trial_error(trial: Any) -> str:
    """The last line of a failed trial's error (e.g. ``RuntimeError: ...``, ``ActorDiedError``), short."""
    try:
        lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
        text = lines[-1].strip() if lines else ""
    except (OSError, TypeError):
        text = ""
    if "ActorDied" in text or "WorkerCrashed" in text or "NodeDied" in text:
        return "worker lost"
    text = text.split(": ", 1)[-1] if text.startswith("ray.exceptions") else text
    return (text[:117] + "...") if len(text) > 120 else (text or "failed")


@contextlib.contextmanager
def _ray_log_to(path: Path) -> Iterator[None]:
    """Ray's and Tune's own logging (tracebacks of failed trials) into ``path``, not the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ray_logger = logging.getLogger("ray")
    saved = ray_logger.handlers[:], ray_logger.propagate
    ray_logger.handlers, ray_logger.propagate = [handler], False
    try:
        yield
    finally:
        ray_logger.handlers, ray_logger.propagate = saved
        handler.close()


def _check_reachable(address: str, *, timeout: float = 10.0) -> None:
    """Fail fast on a dead HOST:PORT: ray.init would retry for minutes before giving up."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray:// client addresses: let Ray resolve them
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise SweepError(f"cannot connect to the Ray cluster at {address}: {e.strerror or e}") from None


def _connect_ray(address: str | None, *, num_cpus: int | None) -> bool:
    """Start (or join) Ray; True if this call started it and must shut it down."""
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # results carry blobs; no CSV/JSON logs
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune's own SIGINT handler makes fit() return normally on Ctrl-C, which would look
    # like a finished sweep; let KeyboardInterrupt reach run_sweep instead.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                              "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise SweepError(f"cannot connect to {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    return True


def _check_compatible(store: RestartStore, space: SearchSpace, attrs: dict[str, Any], *, resume: bool) -> None:
    names = {s.name for s in store.studies()}
    if space.study not in names:
        if resume:
            raise SweepError(f"--resume: no study {space.study!r} in this storage to resume (run without --resume to start it)")
        return
    old = store.study_attrs(space.study).get("fingerprint")
    if old is not None and old != attrs["fingerprint"]:
        raise SweepError(
            f"study {space.study!r} was run with a different task, optimizer, success criterion or base_seed; "
            "only grid axes and restarts may change between runs — give the study a new name"
        )


def run_sweep(
    space: SearchSpace,
    *,
    storage: str | None = None,
    address: str | None = None,
    resume: bool = False,
    pack_size: int | None = None,
    max_failures: int = 2,
    checkpoint_every_s: float = 60.0,
    num_cpus: int | None = None,
    experiment_dir: str | None = None,
    progress: Callable[[int, int, int], None] | None = None,
    events: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every restart of ``space`` not yet in ``storage``; returns counts for the study.

    ``progress(done, total, successes)`` is called in the driver after each pack is stored;
    ``events(line)`` gets one line per failed or retried pack (Ray's own detail goes to a
    log file the line names).
    """
    from ray import tune

    start = time.perf_counter()
    # The dry run first: a task that cannot train fails here, before Ray or a study row exists.
    check_trainable(space)
    if address:
        _check_reachable(address)  # before storage is touched: a dead address leaves nothing behind
    new_file = _new_sqlite_file(storage)
    store = RestartStore(storage)
    started = False
    try:
        attrs = study_attrs(space, package_versions())
        _check_compatible(store, space, attrs, resume=resume)
        # Ray before the study: a sweep that cannot run must not leave an empty study behind.
        owns_ray = _connect_ray(address, num_cpus=num_cpus)
        try:
            import ray

            cpus = float(space.resources.get("cpu", 1))
            gpus = float(space.resources.get("gpu", 0))
            _check_resources(ray.cluster_resources(), cpus=cpus, gpus=gpus, source=space.source)
            study_id = store.open_study(space.study, direction=attrs["direction"], attrs=attrs)
            started = True
            slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus, 1e-9)))
            plan = plan_sweep(space, done_keys=store.done_keys(study_id), key=restart_key, pack_size=pack_size,
                              slots=slots, own_loop=uses_own_loop(space.task.build()))
            return _execute(space, plan, store, study_id, tune, cpus=cpus, gpus=gpus, max_failures=max_failures,
                            checkpoint_every_s=checkpoint_every_s, experiment_dir=experiment_dir, progress=progress,
                            events=events, start=start)
        finally:
            if owns_ray:
                import ray

                ray.shutdown()
    finally:
        store.close()
        if new_file is not None and not started:
            # A failed start leaves nothing behind: not even the SQLite file opening it created.
            for path in (new_file, *(new_file.with_name(new_file.name + suffix) for suffix in ("-wal", "-shm"))):
                path.unlink(missing_ok=True)


def _ship_user_code(task: Task, packs: tuple[tuple[RestartSpec, ...], ...]) -> None:
    """Send a user's own task and schedule modules with the job, by value.

    A plugin named by import path lives in the user's directory, which Ray
    workers (on this machine or another) cannot import; installed packages
    (site-packages) are imported there by reference as usual.
    """
    import sys

    import ray.cloudpickle

    classes = {type(task), *(type(spec.schedule) for pack in packs for spec in pack)}
    for cls in classes:
        module = sys.modules.get(cls.__module__)
        path = getattr(module, "__file__", None) or ""
        if module is None or cls.__module__.split(".")[0] == "robustness" or not path:
            continue
        if "site-packages" in Path(path).parts or "dist-packages" in Path(path).parts:
            continue
        ray.cloudpickle.register_pickle_by_value(module)


def _new_sqlite_file(storage: str | None) -> Path | None:
    """The SQLite file ``storage`` names, if it does not exist yet (this sweep would create it)."""
    import sqlalchemy

    from robustness.storage import resolve_storage_url

    url = sqlalchemy.make_url(resolve_storage_url(storage))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database)
    return None if path.exists() else path


def _check_resources(cluster: dict[str, float], *, cpus: float, gpus: float, source: str) -> None:
    """A pack that asks for more than the cluster has would wait forever: refuse it before the study exists."""
    for key, want, have in (("cpu", cpus, cluster.get("CPU", 0.0)), ("gpu", gpus, cluster.get("GPU", 0.0))):
        if want > have:
            raise SweepError(f"{source}: resources.{key}: each pack asks for {want:g} {key.upper()}s but the Ray "
                             f"cluster has {have:g}; lower it or add nodes that have them")


def _execute(space: SearchSpace, plan: SweepPlan, store: RestartStore, study_id: int, tune: Any, *, cpus: float,
             gpus: float, max_failures: int, checkpoint_every_s: float, experiment_dir: str | None,
             progress: Callable[[int, int, int], None] | None, events: Callable[[str], None] | None,
             start: float) -> SweepResult:
    table = store.read_table(study_id)
    recorded, successes = len(table), int(table.success.sum())
    written = 0

    # One distribution per axis for every trial: Optuna then sees a static search space.
    distributions = store.declare_axes(study_id, space.axes())

    def write(outcomes: list[Any]) -> int:
        return store.write_outcomes(study_id, outcomes, distributions=distributions)

    def on_written(outcomes: list[Any], new: int) -> None:
        # Progress only: the final counts are read back from storage.
        nonlocal written, recorded, successes
        written += new
        recorded += new
        successes += sum(o.success for o in outcomes) if new == len(outcomes) else 0
        if progress is not None:
            progress(recorded, plan.total, successes)

    if progress is not None:
        progress(recorded, plan.total, successes)
    interrupted, failed = False, 0
    if plan.packs:
        task, config = training_setup(space)
        job = _Job(task=task, config=config, criterion=plan.criterion, packs=plan.packs,
                   device="cuda" if gpus > 0 else "cpu", threads=max(1, int(cpus)),
                   checkpoint_every_s=checkpoint_every_s)
        _ship_user_code(task, plan.packs)
        name = f"{space.study}-{int(time.time())}"
        storage_path = experiment_dir or str(Path(tempfile.gettempdir()) / "robustness-ray")
        log_path = Path(storage_path) / name / "sweep.log"
        callback = _store_callback_class()(write, on_written, events or (lambda message: None), log_path)
        trainable = tune.with_resources(tune.with_parameters(_pack_trial, job=job), {"cpu": cpus, "gpu": gpus})
        tuner = tune.Tuner(
            trainable,
            param_space={"pack": tune.grid_search(list(range(len(plan.packs))))},
            # Reusing the worker process across packs saves its start-up (Python, torch, the data set)
            # on every pack after the first.
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage_path,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[callback], verbose=0, log_to_file=False,
            ),
        )
        try:
            with _ray_log_to(log_path):
                grid = tuner.fit()
            failed = sum(1 for r in grid if r.error is not None)
        except KeyboardInterrupt:
            interrupted = True
        if callback.errors:
            e = callback.errors[0]
            raise StorageError(f"could not record a finished pack: {e}") from e
    if not interrupted:
        table = store.read_table(study_id)
        recorded, successes = len(table), int(table.success.sum())
    return SweepResult(study=space.study, storage=store.url, total=plan.total, already_done=plan.done,
                       written=written, successes=successes, recorded=recorded, packs=len(plan.packs),
                       failed_packs=failed, elapsed_s=time.perf_counter() - start, interrupted=interrupted)
