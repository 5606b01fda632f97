"""The sweep runner on a real Ray instance and real storage (SQLite and PostgreSQL):
every restart recorded exactly once, across retried packs, interrupted drivers
and extended search spaces."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import optuna
import pytest

from robustness.storage import RestartStore, restart_key
from robustness.study.search_space import load_search_space, parse_search_space
from robustness.study.sweep import SweepError, run_sweep
from robustness.training.tasks import DeepMLPTask

TINY = """
study: {study}
task: {{name: deep_mlp, dataset: digits, depth: 3, width: 16, steps: {steps}, batch_size: 32, eval_every: 10}}
grid:
  lr: [0.05]
  clip: [10]
  init: [he{more_inits}]
  noise:
    - schedule: none
    - schedule: annealed
      eta: [0.3]
restarts: {restarts}
success: {{metric: test_accuracy, op: ">=", threshold: 0.5}}
pack_size: {pack}
"""


def space(study: str = "tiny", *, restarts: int = 4, steps: int = 30, pack: int = 4, more_inits: str = ""):
    text = TINY.format(study=study, restarts=restarts, steps=steps, pack=pack, more_inits=more_inits)
    return parse_search_space(text, source=f"{study}.yaml")


def _keys(url: str, study: str) -> list[str]:
    with RestartStore(url) as store:
        return sorted(store.done_keys(study))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'sweep.db'}"


def test_sweep_records_every_restart_once_and_stock_optuna_reads_it(ray_local, sqlite_url) -> None:
    sp = space()
    result = run_sweep(sp, storage=sqlite_url)
    assert (result.total, result.written, result.recorded, result.packs, result.failed_packs) == (8, 8, 8, 2, 0)
    study = optuna.load_study(study_name="tiny", storage=sqlite_url)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 8 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # restart k has the same seed in both arms (paired comparisons)
    seeds = {(t.params["schedule"], t.user_attrs["restart"]): t.params["seed"] for t in trials}
    assert all(seeds[("none", k)] == seeds[("annealed", k)] for k in range(4))
    for t in trials:
        assert t.value == pytest.approx(t.user_attrs["metrics.test_accuracy"])
        assert t.user_attrs["success"] == (t.value >= 0.5)
        assert sorted(t.intermediate_values) == [10, 20, 30]
    assert study.user_attrs["search_space"] == sp.text
    assert study.user_attrs["total_restarts"] == 8
    # a rerun of a finished sweep adds nothing and trains nothing
    again = run_sweep(sp, storage=sqlite_url)
    assert (again.written, again.packs, again.already_done, again.recorded) == (0, 0, 8, 8)


class _FailingModel:
    """A pack model that crashes its worker once per marker slot, mid-pack (after a checkpoint)."""

    def __init__(self, inner, fault_dir: str, slots: int) -> None:
        self.inner, self.layout, self.fault_dir, self.slots, self.calls = inner, inner.layout, fault_dir, slots, 0

    def train(self, mode):
        self.inner.train(mode)

    def forward(self, params, x, *, shared=False):
        if not shared:  # a training batch (evaluation passes inputs shared by the restarts)
            self.calls += 1
            if self.calls == 16:  # update 15: the pack has checkpointed at update 10
                for k in range(self.slots):
                    try:
                        os.close(os.open(os.path.join(self.fault_dir, f"failure-{k}"), os.O_CREAT | os.O_EXCL))
                    except FileExistsError:
                        continue
                    raise RuntimeError(f"injected failure {k}")
        return self.inner.forward(params, x, shared=shared)


@dataclasses.dataclass(frozen=True)
class _FailingTask(DeepMLPTask):
    """deep_mlp whose packs crash twice in all: fault injection through the task extension point."""

    fault_dir: str = ""

    def pack_model(self, module, *, vectorized=True):
        return _FailingModel(super().pack_model(module, vectorized=vectorized), self.fault_dir, slots=2)


def test_extending_a_finished_study_runs_only_the_new_restarts(ray_local, sqlite_url) -> None:
    run_sweep(space("grow", restarts=2), storage=sqlite_url)
    before = _keys(sqlite_url, "grow")
    more = run_sweep(space("grow", restarts=3, more_inits=", simple"), storage=sqlite_url)
    # 2 inits x 2 arms x 3 restarts = 12, of which 4 were stored
    assert (more.total, more.already_done, more.written, more.recorded) == (12, 4, 8, 12)
    after = _keys(sqlite_url, "grow")
    assert set(before) <= set(after) and len(after) == len(set(after)) == 12


def test_an_incompatible_rerun_is_refused_and_writes_nothing(ray_local, sqlite_url) -> None:
    run_sweep(space("fixed", restarts=1), storage=sqlite_url)
    changed = space("fixed", restarts=1, steps=20)  # a different training budget: not comparable
    with pytest.raises(SweepError, match="different task"):
        run_sweep(changed, storage=sqlite_url)
    assert len(_keys(sqlite_url, "fixed")) == 2
    with pytest.raises(SweepError, match="no study 'nope'"):
        run_sweep(space("nope"), storage=sqlite_url, resume=True)


def test_sweep_on_postgresql(ray_local, postgres_url) -> None:
    result = run_sweep(space("pg"), storage=postgres_url)
    assert (result.written, result.recorded) == (8, 8)
    assert len(optuna.load_study(study_name="pg", storage=postgres_url).trials) == 8
    assert run_sweep(space("pg"), storage=postgres_url).written == 0


def _cli(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "robustness", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def _sweep_stopped_midway(tmp_path: Path, study: str) -> tuple[subprocess.Popen, str, Path]:
    """A sweep of 4 packs of 2 on one CPU, running, with at least one pack stored and not all."""
    url = f"sqlite:///{tmp_path / (study + '.db')}"
    yaml = tmp_path / f"{study}.yaml"
    # Rounds of 1, 2 and 1 packs on one CPU: the driver is stopped after the first round, before the last.
    yaml.write_text(TINY.format(study=study, restarts=4, steps=400, pack=2, more_inits=""))
    # As from a terminal: a job started in the background (`&` without job control, nohup)
    # inherits an ignored SIGINT, and the sweep rightly keeps ignoring it.
    proc = _cli("sweep", str(yaml), "--storage", url, "--num-cpus", "1", "-q",
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            stored = len(_keys(url, study))
        except Exception:  # noqa: BLE001 (the study may not exist yet)
            continue
        if stored >= 2:
            break
    assert proc.poll() is None and 2 <= stored < 8, f"could not interrupt mid-sweep (stored {stored})"
    return proc, url, yaml


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _ray_session_of(driver: int) -> str:
    """The session directory of the Ray instance a driver started (its raylet names it)."""
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != driver:
                continue
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            match = re.search(r"(/tmp/ray/session_[\w.-]+)", cmd)
            if match:
                return match.group(1)
        except (OSError, ValueError, IndexError):
            continue
    raise AssertionError(f"no Ray session started by {driver}")


def test_ctrl_c_stops_the_sweep_with_whole_packs_stored(ray_local, tmp_path) -> None:
    """Ctrl-C (SIGINT to the foreground process group): exit 130, told so, no partial pack; a rerun completes."""
    proc, url, yaml = _sweep_stopped_midway(tmp_path, "ctrlc")
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "Exception ignored" not in out, out
    stored = _keys(url, "ctrlc")
    assert 2 <= len(stored) < 8 and len(stored) % 2 == 0  # packs of 2 are written whole or not at all
    # the summary counts what storage holds: this driver's restarts, in the packs it started
    summary = re.search(r"^interrupted: (\d+) restarts trained and stored by this driver, in (\d+) packs it started "
                        r"\(0 were already stored\) in [\d.]+s; study 'ctrlc' has (\d+)/8 restarts", out, re.M)
    assert summary, out
    written, packs, recorded = map(int, summary.groups())
    assert written == recorded == len(stored) and written // 2 <= packs < 4, out  # it never started the last round
    rest = run_sweep(load_search_space(yaml), storage=url)  # the rerun trains only what is missing
    assert (rest.already_done, rest.written, rest.recorded, rest.failed_packs) == (len(stored), 8 - len(stored), 8, 0)
    keys = _keys(url, "ctrlc")
    assert len(keys) == len(set(keys)) == 8
    assert len(optuna.load_study(study_name="ctrlc", storage=url).trials) == 8


class _Freed:
    """An object whose weakref callback runs when it is freed, as garbage collection runs SQLAlchemy's."""


def _sigint_inside_a_weakref_callback() -> None:
    freed = _Freed()
    ref = weakref.ref(freed, lambda _: os.kill(os.getpid(), signal.SIGINT))  # noqa: F841 (kept until freed dies)
    del freed


def test_a_sweep_started_with_sigint_ignored_keeps_ignoring_it(ray_local, sqlite_url) -> None:
    """nohup and `&` without job control ignore SIGINT for the job: the sweep must not take it back."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        seen = []

        def progress(done: int, total: int, successes: int) -> None:
            seen.append(signal.getsignal(signal.SIGINT))
            if done >= 2 and len(seen) == 2:
                os.kill(os.getpid(), signal.SIGINT)

        result = run_sweep(space("ignored", restarts=4, pack=2), storage=sqlite_url, progress=progress)
        assert set(seen) == {signal.SIG_IGN} and (result.interrupted, result.recorded) == (False, 8)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_that_lands_in_a_weakref_callback_still_stops_the_sweep(ray_local, sqlite_url) -> None:
    """Python drops a KeyboardInterrupt raised in a weakref callback; the sweep's SIGINT handler raises none."""
    sent = []

    def progress(done: int, total: int, successes: int) -> None:
        if done >= 2 and not sent:  # the first pack is stored
            sent.append(done)
            _sigint_inside_a_weakref_callback()

    # Python's own handler, as in a foreground process (pytest run in the background inherits SIG_IGN)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run_sweep(space("gc", restarts=4, pack=2), storage=sqlite_url, progress=progress)
        assert sent and signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the sweep's own is gone again
    finally:
        signal.signal(signal.SIGINT, previous)
    # 2 CPUs: a round is 2 packs of 2, of 4; the driver stops after the first round, with whole packs only
    assert (result.interrupted, result.packs, result.failed_packs) == (True, 2, 0)
    assert result.written in (2, 4) and len(_keys(sqlite_url, "gc")) == result.recorded == result.written
    rest = run_sweep(space("gc", restarts=4, pack=2), storage=sqlite_url)
    assert (rest.interrupted, rest.written, rest.recorded) == (False, 8 - result.written, 8)


def test_rounds_grow_so_that_many_packs_need_few_tune_runs(ray_local, tmp_path) -> None:
    """Each round starts Tune's workers afresh; 8 packs on 2 CPUs take rounds of 2, 4 and 2 packs, not 4 of 2."""
    result = run_sweep(space("rounds", restarts=4, steps=10, pack=1), storage=f"sqlite:///{tmp_path / 'r.db'}",
                       experiment_dir=str(tmp_path / "ray"))
    rounds = sorted(int(p.name.rsplit("-round", 1)[1]) for p in (tmp_path / "ray").iterdir() if "-round" in p.name)
    assert (result.packs, result.written, result.failed_packs) == (8, 8, 0) and rounds == [1, 2, 3]
    trials = [len([t for t in (tmp_path / "ray").glob(f"*-round{r}/*") if t.is_dir()]) for r in rounds]
    assert trials == [2, 4, 2]


def test_sweep_on_a_two_node_cluster_with_postgresql(ray_cluster, postgres_url, tmp_path) -> None:
    """The docker-compose topology without Docker: Ray head + worker node, PostgreSQL, a driver process."""
    yaml = tmp_path / "cluster.yaml"
    # 2 packs of 2: one round, a pack on each node's one CPU
    yaml.write_text(TINY.format(study="cluster", restarts=2, steps=30, pack=2, more_inits=""))
    proc = _cli("sweep", str(yaml), "--storage", postgres_url, "--address", ray_cluster.address, "--json",
                env=ray_cluster.env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert '"written": 4' in out and '"packs": 2' in out
    assert len(optuna.load_study(study_name="cluster", storage=postgres_url).trials) == 4


def test_unreachable_cluster_is_a_one_line_error(tmp_path) -> None:
    yaml = tmp_path / "x.yaml"
    yaml.write_text(TINY.format(study="x", restarts=1, steps=10, pack=2, more_inits=""))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    proc = _cli("sweep", str(yaml), "--storage", url, "--address", "127.0.0.1:1")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, out
    assert out.strip().splitlines()[-1].startswith("Error: cannot connect to the Ray cluster at 127.0.0.1:1")
    assert list(tmp_path.iterdir()) == [yaml]  # a failed start leaves nothing behind, not even the SQLite file


def test_a_pack_larger_than_the_cluster_is_refused_before_the_study_exists(ray_local, tmp_path) -> None:
    text = TINY.format(study="greedy", restarts=1, steps=10, pack=2, more_inits="") + "resources: {cpu: 64, gpu: 0}\n"
    url = f"sqlite:///{tmp_path / 'greedy.db'}"
    with pytest.raises(SweepError, match=r"greedy.yaml: resources.cpu: each pack asks for 64 CPUs but the Ray cluster has"):
        run_sweep(parse_search_space(text, source="greedy.yaml"), storage=url)
    assert not (tmp_path / "greedy.db").exists()


def test_a_retried_pack_is_one_line_and_rays_tracebacks_go_to_a_log(ray_local, tmp_path) -> None:
    """Packs that crash mid-pack are retried from their checkpoint: one line each on the terminal,
    every restart recorded exactly once, and the numbers of an undisturbed run, bit for bit."""
    faults = tmp_path / "faults"
    faults.mkdir()
    yaml = tmp_path / "noisy.yaml"
    # A plugin by import path from the working directory: the sweep ships its code to the workers.
    yaml.write_text(space("noisy", restarts=3, steps=40).text.replace(
        "name: deep_mlp,", f"name: 'tests.test_sweep:_FailingTask', fault_dir: '{faults}',"))
    url = f"sqlite:///{tmp_path / 'noisy.db'}"
    proc = _cli("sweep", str(yaml), "--storage", url, "--checkpoint-every", "0", "--max-failures", "2",
                "--experiment-dir", str(tmp_path / "ray"), cwd=str(Path(__file__).resolve().parents[1]))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out  # 0: no pack failed for good
    assert sorted(p.name for p in faults.iterdir()) == ["failure-0", "failure-1"]  # packs really crashed twice
    assert "Traceback" not in out and "ERROR" not in out, out
    retried = sorted(re.findall(r"pack \d+: [^\r\n]*", out))
    assert len(retried) == 2, out
    for line in retried:
        assert re.fullmatch(r"pack [01]: RuntimeError: injected failure [01]; retrying from update 10 "
                            r"\(details in .*/sweep\.log\)", line), line
    log = Path(re.search(r"details in (.*sweep\.log)", retried[0]).group(1))
    assert log.is_file() and "Traceback" in log.read_text()  # Ray's detail is kept, out of the way
    assert "done: 6 restarts trained in 2 packs (0 were already stored)" in out, out
    keys = _keys(url, "noisy")
    assert len(keys) == len(set(keys)) == 6  # the retried packs' restarts, each exactly once
    # resuming from the checkpoint reproduces the uninterrupted run bit for bit
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    run_sweep(space("noisy", restarts=3, steps=40), storage=clean_url)
    with RestartStore(url) as a, RestartStore(clean_url) as b:
        got = {restart_key(o.params, o.restart): o.metrics for o in a.iter_outcomes("noisy")}
        want = {restart_key(o.params, o.restart): o.metrics for o in b.iter_outcomes("noisy")}
    assert got == want


# -- drivers sharing a study ------------------------------------------------------------


def _study_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path, study: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / (study + '.db')}"
    return str(request.getfixturevalue("postgres_url"))


def _json_result(out: str) -> dict:
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_drivers_started_together_train_every_pack_once(backend, request, tmp_path) -> None:
    url = _study_url(backend, request, tmp_path, "shared")
    yaml = tmp_path / "shared.yaml"
    # 4 packs of 2, one slot per driver: a driver needs a round (Tune's start-up, 400 updates)
    # per pack, so neither gets through all 4 before the other claims one.
    yaml.write_text(TINY.format(study="shared", restarts=4, steps=400, pack=2, more_inits=""))
    drivers = [_cli("sweep", str(yaml), "--storage", url, "--num-cpus", "1", "--json") for _ in range(2)]
    outs = [d.communicate(timeout=600)[0] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outs
    results = [_json_result(out) for out in outs]
    assert sum(r["packs"] for r in results) == 4, results  # every pack trained once between them
    assert sum(r["written"] for r in results) == 8, results
    assert all(r["packs"] >= 1 for r in results), results  # the work was split, not done twice
    for r in results:
        # each tells its own share from the other's; both return with the study complete
        assert (r["recorded"], r["already_done"] + r["written"] + r["by_others"], r["failed_packs"]) == (8, 8, 0)
    keys = _keys(url, "shared")
    assert len(keys) == len(set(keys)) == 8
    assert len(optuna.load_study(study_name="shared", storage=url).trials) == 8
    with RestartStore(url) as store:
        assert store.leases("shared") == {}  # released as packs finish


_DRIVER = """
import sys
from robustness.study.search_space import load_search_space
from robustness.study.sweep import run_sweep
run_sweep(load_search_space(sys.argv[1]), storage=sys.argv[2], num_cpus=1, lease_ttl_s=float(sys.argv[3]))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_drivers_leases_expire_and_another_driver_finishes_exactly_once(
        ray_local, backend, request, tmp_path) -> None:
    """A driver killed outright (SIGKILL, no cleanup): the local Ray instance it started does not
    outlive it, its leases expire, and a rerun trains only what is missing, without duplicates."""
    url = _study_url(backend, request, tmp_path, "orphaned")
    yaml = tmp_path / "orphaned.yaml"
    # 3 packs of 2 on one CPU, one a round: killed while it holds the second pack's leases
    yaml.write_text(TINY.format(study="orphaned", restarts=3, steps=400, pack=2, more_inits=""))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    first = subprocess.Popen([sys.executable, "-c", _DRIVER, str(yaml), url, "5"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        held: dict[str, str] = {}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
            try:
                with RestartStore(url) as store:
                    stored, held = store.done_keys("orphaned"), store.leases("orphaned")
            except Exception:  # noqa: BLE001 (the study may not exist yet)
                continue
            if len(stored) >= 2 and set(held) - stored:
                break
        assert first.poll() is None and set(held) - stored, "could not kill the driver while it held leases"
        session = _ray_session_of(first.pid)
        os.kill(first.pid, signal.SIGKILL)  # the driver alone: its leases stay until they expire
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    with RestartStore(url) as store:
        orphaned = set(store.leases("orphaned")) - store.done_keys("orphaned")
        before = len(store.done_keys("orphaned"))
    assert orphaned and 2 <= before < 6
    # its local Ray instance is not left behind: a watchdog ends the session's processes
    deadline = time.monotonic() + 60
    while _processes_mentioning(session):
        assert time.monotonic() < deadline, f"Ray processes of {session} outlived their driver"
        time.sleep(0.5)
    result = run_sweep(space("orphaned", restarts=3, steps=400, pack=2), storage=url, lease_ttl_s=5)
    assert (result.already_done, result.written, result.by_others, result.recorded) == (before, 6 - before, 0, 6)
    keys = _keys(url, "orphaned")
    assert len(keys) == len(set(keys)) == 6 and orphaned <= set(keys)
    assert len(optuna.load_study(study_name="orphaned", storage=url).trials) == 6
    with RestartStore(url) as store:
        assert store.leases("orphaned") == {}
