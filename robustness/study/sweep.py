"""The sweep runner: a search space's restart packs as Ray Tune trials, outcomes into storage.

The only module that imports Ray. One restart's path through it::

    SearchSpace.restart_specs()  -> plan_sweep() drops keys already stored, sizes packs
    RestartStore.claim_restarts  -> a round's restarts leased to this driver, cut into packs
    Tune trial (a Ray worker)    -> PackTrainer trains the pack, checkpoints through Tune,
                                    reports the pack's RestartOutcomes once, at the end
    _StoreCallback (the driver)  -> RestartStore.write_outcomes(): one transaction a pack

Workers never open the database. A pack that fails is retried by Tune from its
last checkpoint (``FailureConfig(max_failures=...)``); if it had already
reported, the store skips the keys it has, so every restart is recorded once.
Stopping the driver (Ctrl-C, a kill) loses at most the packs in flight: every
finished pack is committed, and rerunning the command trains only what is missing.
Ctrl-C is a request the driver honours between Tune's steps and before it claims
more restarts (``_StopRequest``); a second Ctrl-C raises KeyboardInterrupt at once.

Several drivers may run the same study at once (people on a shared cluster, a
retry script): each claims a round of restarts at a time through leases in the
database, so they split the work instead of each training all of it. A driver
renews its leases while it trains; one that dies stops renewing, and after
``lease_ttl_s`` the others (or a rerun) take its restarts over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import pickle
import re
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from robustness.criterion import Criterion
from robustness.errors import RobustnessError
from robustness.records import RestartOutcome
from robustness.storage import (
    Heartbeat,
    ProgressWriter,
    RestartStore,
    StorageError,
    new_holder,
    package_versions,
    restart_key,
)
from robustness.study.check import check_trainable
from robustness.study.plan import (
    MIN_CPU_PACK,
    SweepPlan,
    cut_packs,
    last_level_cache_bytes,
    plan_sweep,
    study_attrs,
    training_setup,
)
from robustness.study.search_space import SearchSpace
from robustness.training.loop import train_with_loop, uses_own_loop
from robustness.training.pack import PackTrainer, TrainConfig
from robustness.training.spec import RestartSpec
from robustness.training.tasks import Task

__all__ = ["SweepError", "SweepResult", "run_sweep"]

_OUTCOMES = "outcomes_pickle"  # result key carrying a finished pack's records to the driver
_INTERIM = "interim"  # result key: interim_summary() of the pack's latest evaluation
# Interim progress reports: the first evaluation of a pack, then at most one a second.
# Tune hands each result to the driver before the pack trains on, so more would
# slow packs down and flood the driver for a view a person reads every few seconds.
INTERIM_EVERY_S = 1.0
# How long a driver's claim on its restarts outlives its last heartbeat. A killed
# driver's restarts wait this long for another driver; a live one renews every third
# of it, so only a driver stalled for 40 s (or cut off from the database) loses them.
LEASE_TTL_S = 60.0
# A round (one tuner.fit) starts its trials' worker processes afresh: Python, torch, Tune and
# the data set, 5-7 s on 2 cores. So rounds grow: the first claims one pack per slot (early
# results, fair shares between drivers), each next one twice as many, up to this many.
MAX_PACKS_PER_SLOT = 16


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
    packs: int  # packs this driver trained or started (failed and interrupted ones included)
    failed_packs: int
    elapsed_s: float
    interrupted: bool = False
    by_others: int = 0  # restarts other drivers of the study recorded while this one ran

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every pack trial needs; shipped once through the object store (tune.with_parameters)."""

    task: Task
    config: TrainConfig
    criterion: Criterion
    packs: tuple[tuple[RestartSpec, ...], ...]  # this round's packs
    first: int  # the number of the round's first pack (trial config "pack" counts from it)
    device: str
    threads: int
    checkpoint_every_s: float


def interim_summary(metric: str, values: Sequence[float], *, diverged: int, maximize: bool,
                    train_loss: Sequence[float] = ()) -> dict[str, float]:
    """A pack's evaluation metric in a few numbers, for the live progress view.

    ``values``: the metric of each restart evaluated so far, shape ``(R,)``;
    ``diverged``: how many restarts diverged. Gives ``median_<metric>`` and
    ``best_<metric>`` (max when ``maximize``, else min) over the finite values,
    ``finite`` (their count), ``diverged`` and ``median_train_loss``; a median
    or best of no finite value is NaN.
    """
    finite = [float(v) for v in values if math.isfinite(v)]
    losses = [float(v) for v in train_loss if math.isfinite(v)]
    pick = max if maximize else min
    return {
        f"median_{metric}": statistics.median(finite) if finite else math.nan,
        f"best_{metric}": pick(finite) if finite else math.nan,
        "finite": len(finite),
        "diverged": int(diverged),
        "median_train_loss": statistics.median(losses) if losses else math.nan,
    }


def _maximizes(criterion: Criterion) -> bool:
    return criterion.op in (">", ">=")


def _pack_summary(tr: PackTrainer, maximize: bool) -> dict[str, float]:
    """:func:`interim_summary` of the pack's latest evaluation (what PackTrainer holds then)."""
    _, train_loss, metric = tr.curve[-1]
    return interim_summary(tr.task.primary_metric, metric.tolist(), diverged=int((~tr.active).sum()),
                           maximize=maximize, train_loss=train_loss.tolist())


def _own_loop_pack(job: _Job, index: int, tune: Any) -> None:
    """A task with its own ``train(ctx)`` loop: the pack's restarts one after another.

    Nothing to checkpoint mid-way: a retried trial trains its few restarts again from
    their seeds. Progress is reported after each restart (throttled), with ``step``
    the pack's average: restarts done x steps / restarts.
    """
    data = job.task.load_data()
    pack, steps, maximize = job.packs[index], job.config.steps, _maximizes(job.criterion)
    outcomes: list[RestartOutcome] = []
    reported = -math.inf

    def summary() -> dict[str, float]:
        return interim_summary(job.task.primary_metric, [o.value for o in outcomes], maximize=maximize,
                               diverged=sum(o.diverged for o in outcomes),
                               train_loss=[o.metrics.get("train_loss", math.nan) for o in outcomes])

    for spec in pack:
        outcomes.append(train_with_loop(job.task, spec, job.config, criterion=job.criterion, device=job.device,
                                        data=data))
        if len(outcomes) < len(pack) and time.monotonic() - reported >= INTERIM_EVERY_S:
            tune.report({"step": len(outcomes) * steps // len(pack), "restarts": 0, "checkpoint_step": 0,
                         _INTERIM: summary()})
            reported = time.monotonic()
    tune.report({"step": steps, "restarts": len(outcomes), "checkpoint_step": 0, _INTERIM: summary(),
                 _OUTCOMES: pickle.dumps(outcomes)})


def _pack_trial(trial_config: dict[str, Any], job: _Job) -> None:
    """A Tune function trainable: train one pack, checkpoint it, report its outcomes once.

    Every result carries ``step`` (updates each restart has done), ``checkpoint_step``
    (the step the latest checkpoint holds, where a retry resumes) and ``interim``
    (:func:`interim_summary`). Besides checkpoints, the pack reports at its first
    evaluation and then at most every INTERIM_EVERY_S, for the live progress.
    A task with its own ``train(ctx)`` loop trains the pack's restarts one after another instead.
    """
    from ray import tune

    index = trial_config["pack"] - job.first
    torch.set_num_threads(job.threads)
    if uses_own_loop(job.task):
        _own_loop_pack(job, index, tune)
        return
    trainer = PackTrainer(job.task, job.packs[index], job.config, criterion=job.criterion, device=job.device)
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as d:
            trainer.load_state_dict(torch.load(Path(d) / "pack.pt", weights_only=False))
    maximize = _maximizes(job.criterion)
    checkpointed, checkpoint_step, reported = time.monotonic(), trainer.step, -math.inf

    def on_eval(tr: PackTrainer) -> None:
        nonlocal checkpointed, checkpoint_step, reported
        now = time.monotonic()
        due = now - checkpointed >= job.checkpoint_every_s
        if tr.done or (not due and now - reported < INTERIM_EVERY_S):
            return  # the final report carries the last evaluation
        result = {"step": tr.step, "restarts": 0, _INTERIM: _pack_summary(tr, maximize)}
        if due:
            with tempfile.TemporaryDirectory() as d:
                torch.save(tr.state_dict(), Path(d) / "pack.pt")
                tune.report({**result, "checkpoint_step": tr.step}, checkpoint=tune.Checkpoint.from_directory(d))
            checkpointed, checkpoint_step = time.monotonic(), tr.step
        else:
            # Tune hands results over synchronously (the pack waits for the driver to take
            # each one), hence the throttle.
            tune.report({**result, "checkpoint_step": checkpoint_step})
        reported = time.monotonic()

    try:
        trainer.run(callback=on_eval)
        outcomes = trainer.outcomes()
    finally:
        trainer.close()
    tune.report({"step": trainer.step, "restarts": len(outcomes), "checkpoint_step": checkpoint_step,
                 _INTERIM: _pack_summary(trainer, maximize) if trainer.curve else {},
                 _OUTCOMES: pickle.dumps(outcomes)})


def _store_callback_class() -> type:
    from ray import tune

    class StoreCallback(tune.Callback):
        """Runs in the driver: writes each finished pack, then drops the records from Tune's state.

        It also keeps the packs' progress (:class:`ProgressWriter`): started, their
        interim reports, ended; ``moved()`` is called after each such change.
        """

        def __init__(self, write: Callable[[list[Any]], int], on_written: Callable[[list[Any], int], None],
                     say: Callable[[str], None], log_path: Path, *, progress: ProgressWriter,
                     sizes: dict[int, int], moved: Callable[[], None]) -> None:
            self.write, self.on_written, self.say, self.log_path = write, on_written, say, log_path
            self.progress, self.sizes, self.moved = progress, sizes, moved  # sizes: pack -> its restarts
            self.errors: list[BaseException] = []
            self.failed: list[int] = []  # packs (their trial config's "pack") that failed after retries
            self.told: dict[str, int] = {}  # trial id -> failures already reported in one line

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles its callbacks into the experiment state; the store
            # connection must not go there (and never needs to: resuming goes
            # through storage, not through Tune's state).
            return {"write": None, "on_written": None, "say": None, "log_path": self.log_path, "errors": [],
                    "failed": [], "told": {}, "progress": None, "sizes": {}, "moved": None}

        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._tell_retry(trial)

        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            # Some failures (a lost node's actor) are retried without on_trial_recover: a trial
            # that starts with more failures than were told is a retry all the same.
            self._tell_retry(trial)
            number = trial.config.get("pack")
            self.progress.start(number, restarts=self.sizes.get(number, 0))  # a retry keeps its row
            self.moved()

        def _tell_retry(self, trial: Any) -> None:
            failures = int(getattr(trial, "num_failures", 0) or 0)
            if failures <= self.told.get(trial.trial_id, 0):
                return
            self.told[trial.trial_id] = failures
            last = trial.last_result or {}
            step = last.get("checkpoint_step", last.get("step", 0))  # where the retry resumes
            start = f"from update {step}" if step else "from the start"
            self.say(f"pack {trial.config.get('pack')}: {_trial_error(trial)}; retrying {start} "
                     f"(details in {self.log_path})")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self.failed.append(trial.config.get("pack"))
            self.say(f"pack {trial.config.get('pack')}: {_trial_error(trial)}; no retries left "
                     f"(details in {self.log_path})")
            self.progress.finish(trial.config.get("pack"), ok=False)
            self.moved()

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            # Recorded packs ended in on_trial_result; one that completes unrecorded was stopped (Ctrl-C).
            self.progress.finish(trial.config.get("pack"), ok=False)

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any) -> None:
            number = trial.config.get("pack")
            blob = result.pop(_OUTCOMES, None)  # Tune allows callbacks to edit results in place
            if "step" in result:
                self.progress.report(number, step=int(result["step"]), metrics=result.get(_INTERIM))
            if blob is None:
                self.moved()
                return
            try:
                outcomes = pickle.loads(blob)
                new = self.write(outcomes)
            except Exception as e:  # noqa: BLE001 (keep Tune running; reported after fit())
                self.errors.append(e)
                self.progress.finish(number, ok=False)
                return
            self.on_written(outcomes, new)
            self.progress.finish(number, ok=True)
            self.moved()

        def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
            # Every turn of Tune's loop (about ten a second): throttled writes, alive stamps.
            self.progress.tick()

    return StoreCallback


class _StopRequest:
    """Ctrl-C during a sweep, recorded by a SIGINT handler and acted on at the driver's safe points.

    A KeyboardInterrupt lands on whatever bytecode runs when SIGINT arrives; in a
    weakref callback or a ``__del__`` (SQLAlchemy's, during garbage collection)
    Python prints it and drops it, and the sweep would go on. So the first Ctrl-C
    only sets a flag: Tune's round ends through :func:`_stopper_class`, and the
    driver raises KeyboardInterrupt itself (:meth:`check`) before it claims
    more restarts. A second Ctrl-C raises KeyboardInterrupt at once.
    """

    def __init__(self) -> None:
        # A plain attribute, not a threading.Event: setting an Event takes a lock that
        # the interrupted main thread may be holding (inside Event.wait).
        self.requested = False

    @contextlib.contextmanager
    def on_sigint(self) -> Iterator[None]:
        """This object as the SIGINT handler inside the block (main thread only; an ignored SIGINT stays so)."""
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
            yield
            return
        signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed."""
        if self.requested:
            raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less if Ctrl-C is pressed meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))  # a handled signal does not cut a sleep short (PEP 475)


def _stopper_class() -> type:
    from ray import tune

    class StopOnRequest(tune.Stopper):
        """Ends a round's trials once Ctrl-C was pressed; their packs, unreported, are dropped whole."""

        def __init__(self, stop: _StopRequest) -> None:
            self.stop = stop

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.stop.requested

    return StopOnRequest


def _trial_error(trial: Any) -> str:
    """What ended a failed trial, in a few words: ``worker lost``, or the error's last line, short."""
    try:
        text = Path(trial.error_file).read_text()
    except (OSError, TypeError):
        text = ""
    lost = ("ActorDiedError", "WorkerCrashedError", "NodeDiedError", "actor is dead", "worker process has died",
            "node has died", "ActorUnavailableError", "actor is temporarily unavailable")
    if any(marker in text for marker in lost):
        return "worker lost"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    last = last.split(": ", 1)[-1] if last.startswith("ray.exceptions") else last
    return (last[:117] + "...") if len(last) > 120 else (last or "failed")


class _RayLinesTo:
    """A text stream that sends Ray's own lines (``(raylet) ...``, ``(pid=...) ...``) to a log file.

    Ray's driver prints the raylet's error messages (a dead worker, a lost node)
    straight to ``sys.stderr``; during a sweep they belong in the log the
    one-line summaries name, not between the progress bar and the table.
    """

    _RAY = re.compile(r"^(\x1b\[[0-9;]*m)?\((raylet|pid=|\w+ pid=)")

    def __init__(self, stream: Any, log: Any) -> None:
        self._stream, self._log = stream, log

    def write(self, text: str) -> int:
        target = self._log if self._RAY.match(text.lstrip()) else self._stream
        return target.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _ray_log_to(path: Path) -> Iterator[None]:
    """Ray's and Tune's own logging and printed lines (tracebacks, dead workers) into ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ray_logger = logging.getLogger("ray")
    saved = ray_logger.handlers[:], ray_logger.propagate
    ray_logger.handlers, ray_logger.propagate = [handler], False
    stderr, stdout = sys.stderr, sys.stdout
    with open(path, "a", encoding="utf-8") as log:
        sys.stderr, sys.stdout = _RayLinesTo(stderr, log), _RayLinesTo(stdout, log)
        try:
            yield
        finally:
            sys.stderr, sys.stdout = stderr, stdout
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
    # Tune's own SIGINT handler would replace the driver's (_StopRequest) during fit() and
    # make fit() return as if the round had finished.
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
            _reap_when_gone(os.getpid())
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise SweepError(f"cannot connect to {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    return True


_REAPER = """
import os, signal, sys, time
driver, session = int(sys.argv[1]), sys.argv[2]
while True:
    try:
        os.kill(driver, 0)
    except ProcessLookupError:
        break
    time.sleep(1.0)
for sig in (signal.SIGTERM, signal.SIGKILL):
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if session.encode() in f.read():
                        os.kill(int(entry), sig)
            except OSError:
                pass
    time.sleep(2.0)
"""


def _reap_when_gone(driver: int) -> None:
    """Stop this driver's local Ray processes if the driver dies without shutting Ray down.

    A driver killed outright (SIGKILL, an out-of-memory kill) leaves the Ray instance it
    started running for a while; a small watchdog in its own session ends every process
    of that instance's session directory once the driver is gone. Linux only (/proc).
    """
    import subprocess

    try:
        import ray

        session = ray._private.worker.global_worker.node.get_session_dir_path()  # private: no public API for it
    except Exception:  # noqa: BLE001 (no session dir to watch: nothing to reap)
        return
    if not Path("/proc").is_dir() or not session:
        return
    subprocess.Popen([sys.executable, "-c", _REAPER, str(driver), session], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
    lease_ttl_s: float = LEASE_TTL_S,
    step_progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run every restart of ``space`` not yet in ``storage``; returns counts for the study.

    Other drivers may run the same study at the same time: this one claims a round
    of restarts (as many packs as the cluster runs at once) that nobody recorded or
    leased, trains and records them, and claims again. When the only restarts left
    are leased by other drivers it waits for them, so the study is complete when
    this returns (except for packs that failed after retries): they get recorded, or
    their holder dies, its leases expire ``lease_ttl_s`` after its last heartbeat,
    and this driver trains them. The result tells this driver's share
    (``written`` restarts in ``packs`` packs) from what others recorded meanwhile
    (``by_others``).

    ``progress(done, total, successes)`` is called in the driver after each pack is stored
    (and when other drivers' packs are seen); ``events(line)`` gets one line per failed or
    retried pack, and one when the driver starts waiting for other drivers (Ray's own
    detail goes to a log file the line names).

    ``step_progress(done, total)`` counts restart-steps (one update of one restart), so it
    moves while packs train: ``total`` is the restarts this run has to train times the
    updates each trains (less the restarts other drivers record meanwhile), ``done`` what
    this driver's packs have trained so far (a stored pack in full, a pack in flight as of
    its last report, which comes at its first evaluation and then about once a second).
    It is called in the driver once at the start, at each report and when a pack starts
    or ends; ``done`` may go back when a failed pack is retried from its checkpoint.
    The same progress goes to storage for other readers (:meth:`RestartStore.read_progress`).
    """
    if not lease_ttl_s > 0:
        raise ValueError(f"lease_ttl_s must be positive, got {lease_ttl_s!r}")
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
            own_loop = uses_own_loop(space.task.build())
            gpu_memory = cpu_memory = None
            auto = not (pack_size or space.pack_size or own_loop)
            if gpus > 0:
                slots = min(slots, max(1, int(ray.cluster_resources().get("GPU", 0) // gpus)))
                gpu_memory = _gpu_memory(space, gpus) if auto else None
            elif auto and len(space.cells()) * space.restarts > MIN_CPU_PACK * slots:
                # Only when the spread could exceed the smallest pack: measuring costs one small update.
                cache = last_level_cache_bytes()
                cpu_memory = (_restart_bytes(space), cache) if cache else None
            plan = plan_sweep(space, done_keys=store.done_keys(study_id), key=restart_key, pack_size=pack_size,
                              slots=slots, own_loop=own_loop, gpu_memory=gpu_memory, cpu_memory=cpu_memory)
            return _execute(space, plan, store, study_id, tune, cpus=cpus, gpus=gpus, slots=slots,
                            lease_ttl_s=lease_ttl_s, max_failures=max_failures,
                            checkpoint_every_s=checkpoint_every_s, experiment_dir=experiment_dir, progress=progress,
                            step_progress=step_progress, say=events or (lambda line: None), start=start)
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


def _restart_bytes(space: SearchSpace) -> int:
    """The memory one restart of ``space`` takes in a pack, measured by one update on CPU."""
    from robustness.training.memory import restart_memory

    task, config = training_setup(space)
    return restart_memory(task, config).total


def _gpu_memory(space: SearchSpace, gpus: float) -> tuple[int, int]:
    """(bytes one restart takes, free bytes of one trial's GPU share), for the GPU pack size.

    The restart's bytes are measured here on CPU (one update of a one-restart
    pack); the free memory is asked of a GPU worker, since the driver may have none.
    """
    import ray

    per_restart = _restart_bytes(space)

    @ray.remote(num_gpus=gpus, num_cpus=0)
    def free_bytes() -> int:
        import torch

        return int(torch.cuda.mem_get_info()[0])

    # A fractional GPU is shared by 1 / gpus trials: each gets that share of it.
    return per_restart, int(ray.get(free_bytes.remote(), timeout=300) * min(gpus, 1.0))


def _check_resources(cluster: dict[str, float], *, cpus: float, gpus: float, source: str) -> None:
    """A pack that asks for more than the cluster has would wait forever: refuse it before the study exists."""
    for key, want, have in (("cpu", cpus, cluster.get("CPU", 0.0)), ("gpu", gpus, cluster.get("GPU", 0.0))):
        if want > have:
            raise SweepError(f"{source}: resources.{key}: each pack asks for {want:g} {key.upper()}s but the Ray "
                             f"cluster has {have:g}; lower it or add nodes that have them")


def _execute(space: SearchSpace, plan: SweepPlan, store: RestartStore, study_id: int, tune: Any, *, cpus: float,
             gpus: float, slots: int, lease_ttl_s: float, max_failures: int, checkpoint_every_s: float,
             experiment_dir: str | None, progress: Callable[[int, int, int], None] | None,
             step_progress: Callable[[int, int], None] | None, say: Callable[[str], None],
             start: float) -> SweepResult:
    """Claim restarts a round at a time, train each round's packs, until none is left unrecorded.

    The first round is as many packs as the cluster runs at once; each next one
    claims twice as many, up to MAX_PACKS_PER_SLOT per slot. Restarts leased by other
    drivers are waited for, not skipped, so the study is complete when this returns
    (barring failed packs): the driver polls until they are recorded, or until their
    holder's lease expires and it can take them over.
    """
    table = store.read_table(study_id)
    recorded_before = len(table)
    specs = {restart_key(s.params, s.restart): s for s in plan.todo}
    holder = new_holder()
    # Only a driver with something to train writes progress (and, starting, prunes gone drivers' rows).
    writer = ProgressWriter(store, study_id, holder=holder, steps=space.task.steps, say=say) if specs else None
    state = _Progress(store, study_id, plan.total, progress, recorded=recorded_before, successes=int(table.success.sum()),
                      step_progress=step_progress, todo=len(specs), steps=space.task.steps,
                      trained=(lambda: writer.restart_steps) if writer is not None else (lambda: 0))
    gave_up: set[str] = set()  # restarts of packs that failed here: this driver does not claim them again
    trained_packs, failed, interrupted, waiting = 0, 0, False, False
    stop = _StopRequest()
    per_slot = 1
    round_setup = _RoundSetup(space, plan, store, study_id, tune, cpus=cpus, gpus=gpus, max_failures=max_failures,
                              checkpoint_every_s=checkpoint_every_s, experiment_dir=experiment_dir, say=say,
                              on_written=state.written, stop=stop, progress=writer,
                              moved=state.report_steps) if writer is not None else None
    state.report()
    state.report_steps()
    # From here on Ctrl-C is only recorded; the loop and Tune act on it (see _StopRequest).
    with stop.on_sigint():
        try:
            with Heartbeat(store, holder, ttl_s=lease_ttl_s, say=say):
                while specs:
                    stop.check()
                    wanted = [k for k in specs if k not in gave_up]
                    claimed = store.claim_restarts(study_id, wanted, holder=holder,
                                                   n=plan.pack_size * slots * per_slot, ttl_s=lease_ttl_s)
                    if claimed:
                        assert round_setup is not None
                        packs = cut_packs([specs[k] for k in claimed], plan.pack_size)
                        trained_packs += len(packs)  # counted when started: an interrupted round's packs too
                        lost = round_setup.run(packs, first=trained_packs - len(packs))
                        failed += len(lost)
                        gave_up.update(restart_key(s.params, s.restart) for pack in lost for s in pack)
                        store.release_leases(study_id, holder, claimed)
                        per_slot = min(2 * per_slot, MAX_PACKS_PER_SLOT)
                        waiting = False
                        continue
                    left = [k for k in wanted if k not in store.done_keys(study_id)]
                    if not left:
                        break
                    if not waiting:  # once per wait, not once per pack the others finish
                        say(f"waiting for {len(left)} restarts that other drivers are training (a lease outlives "
                            f"its driver by at most {lease_ttl_s:g}s)")
                        waiting = True
                    state.refresh()
                    stop.sleep(_poll_interval(lease_ttl_s))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            with contextlib.suppress(StorageError):
                store.release_leases(study_id, holder)  # let other drivers (or a rerun) take them at once
            if writer is not None:
                writer.flush()
        if not interrupted:
            state.refresh(report=False)
    return SweepResult(study=space.study, storage=store.url, total=plan.total, already_done=plan.done,
                       written=state.n_written, successes=state.successes, recorded=state.recorded,
                       packs=trained_packs, failed_packs=failed, elapsed_s=time.perf_counter() - start,
                       interrupted=interrupted,
                       by_others=max(0, state.recorded - recorded_before - state.n_written))


def _poll_interval(ttl_s: float) -> float:
    # Often enough to take over an expired lease soon after it expires, rarely enough to cost nothing.
    return min(5.0, max(0.2, ttl_s / 6))


class _Progress:
    """The study's counts as the driver sees them: its own writes at once, other drivers' on refresh.

    Also the restart-steps of this run (see ``run_sweep``'s ``step_progress``): ``todo``
    restarts of ``steps`` updates each to train, ``trained()`` what this driver's packs did.
    """

    def __init__(self, store: RestartStore, study_id: int, total: int,
                 progress: Callable[[int, int, int], None] | None, *, recorded: int, successes: int,
                 step_progress: Callable[[int, int], None] | None = None, todo: int = 0, steps: int = 0,
                 trained: Callable[[], int] = lambda: 0) -> None:
        self.store, self.study_id, self.total, self.progress = store, study_id, total, progress
        self.recorded, self.successes, self.n_written = recorded, successes, 0
        self.recorded_before = recorded
        self.step_progress, self.todo, self.steps, self.trained = step_progress, todo, steps, trained

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.recorded, self.total, self.successes)

    def report_steps(self) -> None:
        if self.step_progress is None:
            return
        # Restarts other drivers record meanwhile are no longer this run's to train.
        by_others = max(0, self.recorded - self.recorded_before - self.n_written)
        total = max(0, self.todo - by_others) * self.steps
        self.step_progress(min(self.trained(), total), total)

    def written(self, outcomes: list[Any], new: int) -> None:
        self.n_written += new
        self.recorded += new
        self.successes += sum(o.success for o in outcomes) if new == len(outcomes) else 0
        self.report()

    def refresh(self, *, report: bool = True) -> None:
        """Read the counts back from storage (other drivers' packs included)."""
        table = self.store.read_table(self.study_id)
        changed = len(table) != self.recorded
        self.recorded, self.successes = len(table), int(table.success.sum())
        if report and changed:
            self.report()
            self.report_steps()


class _RoundSetup:
    """What every round shares; :meth:`run` trains one round's packs with one ``tuner.fit()``."""

    def __init__(self, space: SearchSpace, plan: SweepPlan, store: RestartStore, study_id: int, tune: Any, *,
                 cpus: float, gpus: float, max_failures: int, checkpoint_every_s: float,
                 experiment_dir: str | None, say: Callable[[str], None],
                 on_written: Callable[[list[Any], int], None], stop: _StopRequest, progress: ProgressWriter,
                 moved: Callable[[], None]) -> None:
        self.space, self.plan, self.tune, self.say, self.on_written = space, plan, tune, say, on_written
        self.stop, self.progress, self.moved = stop, progress, moved
        self.cpus, self.gpus, self.max_failures, self.checkpoint_every_s = cpus, gpus, max_failures, checkpoint_every_s
        self.task, self.config = training_setup(space)
        # One distribution per axis for every trial: Optuna then sees a static search space.
        distributions = store.declare_axes(study_id, space.axes())
        self.write = lambda outcomes: store.write_outcomes(study_id, outcomes, distributions=distributions)
        self.name = f"{space.study}-{int(time.time())}"
        self.storage_path = experiment_dir or str(Path(tempfile.gettempdir()) / "robustness-ray")
        self.log_path = Path(self.storage_path) / self.name / "sweep.log"
        self.rounds = 0

    def run(self, packs: tuple[tuple[RestartSpec, ...], ...], *, first: int) -> list[tuple[RestartSpec, ...]]:
        """Train ``packs`` (numbered from ``first`` in messages); returns the packs that failed after retries.

        Raises KeyboardInterrupt when Ctrl-C ended the round: its failures are not counted then.
        """
        tune = self.tune
        job = _Job(task=self.task, config=self.config, criterion=self.plan.criterion, packs=packs, first=first,
                   device="cuda" if self.gpus > 0 else "cpu", threads=max(1, int(self.cpus)),
                   checkpoint_every_s=self.checkpoint_every_s)
        _ship_user_code(self.task, packs)
        numbers = range(first, first + len(packs))
        callback = _store_callback_class()(self.write, self.on_written, self.say, self.log_path, progress=self.progress,
                                           sizes={n: len(p) for n, p in zip(numbers, packs)}, moved=self.moved)
        trainable = tune.with_resources(tune.with_parameters(_pack_trial, job=job), {"cpu": self.cpus, "gpu": self.gpus})
        self.rounds += 1
        tuner = tune.Tuner(
            trainable,
            param_space={"pack": tune.grid_search(list(numbers))},
            # Reusing the worker process across packs saves its start-up (Python, torch, the data set)
            # on every pack after the first.
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"{self.name}-round{self.rounds}",
                storage_path=self.storage_path,
                failure_config=tune.FailureConfig(max_failures=self.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[callback], verbose=0, log_to_file=False,
                stop=_stopper_class()(self.stop),
            ),
        )
        try:
            with _ray_log_to(self.log_path):
                tuner.fit()
        finally:
            for number in numbers:  # a pack Tune ended without its outcomes (Ctrl-C, a crash) failed
                self.progress.finish(number, ok=False)
            self.progress.flush()
        self.stop.check()
        if callback.errors:
            e = callback.errors[0]
            raise StorageError(f"could not record a finished pack: {e}") from e
        return [packs[i - first] for i in sorted(set(callback.failed))]
