"""Sweep progress: the driver's throttled writes, the stored rows read back on SQLite and
PostgreSQL, the staleness rule, and restart-steps moving while a real sweep trains."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from robustness.records import CurvePoint, RestartOutcome
from robustness.storage import PackProgress, ProgressWriter, RestartStore, StorageError, SweepProgress
from robustness.storage._progress import STALE_AFTER_S, summarize
from robustness.storage._progress_writer import RETRY_AFTER_S

SPACE = "study: p\ntask: {name: deep_mlp, steps: 30, eval_every: 10}\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/progress.db"
    return str(request.getfixturevalue("postgres_url"))


def restart(k: int) -> RestartOutcome:
    return RestartOutcome(params={"lr": 0.1}, restart=k, seed=k, metrics={"test_accuracy": 0.9},
                          primary_metric="test_accuracy", success=True, curve=(CurvePoint(30, 0.1, 0.9),))


def pack(name: str, *, step: int, started: float, updated: float, alive: float | None = None, state: str = "running",
         restarts: int = 4, holder: str = "h1", **metrics: float) -> PackProgress:
    return PackProgress(pack=name, holder=holder, restarts=restarts, step=step, steps=30, metrics=metrics,
                        started_at=started, updated_at=updated, alive_at=updated if alive is None else alive,
                        state=state)


# -- the numbers, by hand (no database) -------------------------------------------------------


def test_totals_rate_and_eta_by_hand() -> None:
    attrs = {"total_restarts": 16, "search_space": SPACE}
    packs = [pack("h1/0", step=30, started=100.0, updated=110.0, state="done"),  # 4 x 30 = 120
             pack("h1/1", step=15, started=102.0, updated=108.0)]                 # 4 x 15 = 60 in flight
    got = summarize(attrs, recorded=4, packs=packs, now=112.0)
    assert (got.total_restarts, got.steps_per_restart, got.restart_steps_total) == (16, 30, 480)
    assert got.restart_steps_done == 4 * 30 + 60
    assert got.rate == pytest.approx((120 + 60) / (110.0 - 100.0))
    assert got.eta_s == pytest.approx((480 - 180) / 18.0)
    assert [p.pack for p in got.in_flight] == ["h1/1"] and got.updated_at == 110.0 and got.read_at == 112.0


def test_a_dead_drivers_packs_are_stale_and_count_for_nothing() -> None:
    attrs = {"total_restarts": 16, "search_space": SPACE}
    now = 1000.0
    dead = pack("dead/0", step=20, started=now - 300, updated=now - STALE_AFTER_S - 1, holder="dead")
    live = pack("live/0", step=10, started=now - 20, updated=now - 10, holder="live")
    got = summarize(attrs, recorded=0, packs=[dead, live], now=now)
    assert [p.stale for p in got.packs] == [True, False]
    assert got.in_flight == (got.packs[1],)
    assert got.restart_steps_done == 40  # the dead pack's 80 restart-steps never reached storage
    assert got.rate == pytest.approx(40 / 10)  # and its time does not count either
    # only dead rows: no sweep is running, so no ETA; the rate of what was trained stays unknown
    alone = summarize(attrs, recorded=0, packs=[dead], now=now)
    assert (alone.in_flight, alone.rate, alone.eta_s, alone.restart_steps_done) == ((), None, None, 0)


def test_nothing_known_yet() -> None:
    got = summarize({}, recorded=0, packs=[], now=5.0)
    assert got == SweepProgress(total_restarts=None, recorded=0, steps_per_restart=None, restart_steps_done=0,
                                restart_steps_total=None, rate=None, eta_s=None, updated_at=None, read_at=5.0)
    # the packs' steps stand in for a search space that does not say; a complete study has ETA 0
    done = summarize({"total_restarts": 4}, recorded=4, packs=[pack("a/0", step=30, started=0, updated=3,
                                                                    state="done")], now=4.0)
    assert (done.steps_per_restart, done.restart_steps_done, done.restart_steps_total, done.eta_s) == (30, 120, 120, 0.0)


# -- the driver's writer (a fake store, a fake clock) -----------------------------------------


class FakeStore:
    def __init__(self) -> None:
        self.writes: list[list[PackProgress]] = []
        self.pruned: list[str] = []
        self.fail = False

    def write_progress(self, study: Any, packs: list[PackProgress]) -> None:
        if self.fail:
            raise StorageError("writing sweep progress failed on sqlite:///x.db: database is locked")
        self.writes.append(list(packs))

    def prune_progress(self, study: Any, *, keep_holder: str) -> int:
        self.pruned.append(keep_holder)
        return 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_writer_throttles_reports_but_writes_starts_and_ends_at_once() -> None:
    store, clock, said = FakeStore(), Clock(), []
    writer = ProgressWriter(store, 1, holder="me", steps=30, say=said.append, clock=clock)  # type: ignore[arg-type]
    assert store.pruned == ["me"]
    writer.start(0, restarts=4)
    assert [[(p.pack, p.step, p.state) for p in w] for w in store.writes] == [[("me/0", 0, "running")]]
    clock.now += 0.3
    writer.report(0, step=10, metrics={"median_test_accuracy": 0.5})
    writer.report(0, step=20, metrics={"median_test_accuracy": 0.6})
    assert len(store.writes) == 1  # under a second since the last write
    assert writer.restart_steps == 80  # the driver's own count moves at once
    clock.now += 0.8
    writer.tick()
    assert [(p.step, dict(p.metrics)) for p in store.writes[-1]] == [(20, {"median_test_accuracy": 0.6})]
    writer.tick()
    assert len(store.writes) == 2  # nothing changed
    writer.finish(0, ok=True)
    assert [(p.step, p.state) for p in store.writes[-1]] == [(30, "done")] and writer.restart_steps == 120
    writer.finish(0, ok=False)  # an ended pack stays as it ended
    writer.report(0, step=5)
    assert len(store.writes) == 3 and said == []


def test_the_writer_stamps_running_packs_alive_without_reports() -> None:
    store, clock = FakeStore(), Clock()
    writer = ProgressWriter(store, 1, holder="me", steps=30, say=print, clock=clock)  # type: ignore[arg-type]
    writer.start(0, restarts=2)
    writer.tick()
    started = store.writes[-1][0]
    clock.now += 11.0
    writer.tick()
    stamped = store.writes[-1][0]
    assert stamped.alive_at == started.alive_at + 11.0 and stamped.updated_at == started.updated_at


def test_a_failing_progress_write_is_said_once_and_never_raised() -> None:
    store, clock, said = FakeStore(), Clock(), []
    writer = ProgressWriter(store, 1, holder="me", steps=30, say=said.append, clock=clock)  # type: ignore[arg-type]
    store.fail = True
    writer.start(0, restarts=4)
    clock.now += 2
    writer.report(0, step=10)
    writer.finish(0, ok=True)
    assert len(said) == 1 and "could not record sweep progress" in said[0] and "training goes on" in said[0]
    store.fail = False
    writer.flush()
    assert store.writes == []  # leaves the database alone for a while
    clock.now += RETRY_AFTER_S
    writer.flush()
    assert [(p.step, p.state) for p in store.writes[-1]] == [(30, "done")]


# -- stored and read back (SQLite and PostgreSQL) --------------------------------------------


def test_progress_round_trip(storage_url: str) -> None:
    now = time.time()
    with RestartStore(storage_url) as store:
        study = store.open_study("p", attrs={"total_restarts": 16, "search_space": SPACE})
        store.write_outcomes(study, [restart(k) for k in range(4)])
        store.write_progress(study, [
            pack("h1/0", step=30, started=now - 10, updated=now, state="done", median_test_accuracy=0.75,
                 finite=4.0, diverged=0.0),
            pack("h1/1", step=15, started=now - 8, updated=now - 2),
        ])
        store.write_progress(study, [pack("h1/1", step=20, started=now - 5, updated=now - 1, best_test_accuracy=math.nan)])
        got = store.read_progress("p")
    assert (got.total_restarts, got.recorded, got.steps_per_restart, got.restart_steps_total) == (16, 4, 30, 480)
    assert got.restart_steps_done == 4 * 30 + 4 * 20
    first, second = got.packs
    assert (first.pack, first.holder, first.restarts, first.step, first.steps, first.state) == ("h1/0", "h1", 4, 30, 30,
                                                                                                 "done")
    assert dict(first.metrics) == {"median_test_accuracy": 0.75, "finite": 4.0, "diverged": 0.0}
    assert list(second.metrics) == ["best_test_accuracy"] and math.isnan(second.metrics["best_test_accuracy"])
    assert second.step == 20 and second.started_at - first.started_at == pytest.approx(2.0, abs=0.05)  # kept
    assert got.in_flight == (second,)
    # times are on the database's clock, which is this machine's here
    assert abs(got.read_at - time.time()) < 5 and got.updated_at == pytest.approx(first.alive_at)
    assert got.rate == pytest.approx((120 + 80) / 10, rel=0.05)
    assert got.eta_s == pytest.approx((480 - 200) / got.rate)


def test_stale_rows_and_pruning_on_a_real_database(storage_url: str) -> None:
    now = time.time()
    old = now - STALE_AFTER_S - 30
    with RestartStore(storage_url) as store:
        study = store.open_study("p", attrs={"total_restarts": 16, "search_space": SPACE})
        store.write_progress(study, [
            pack("dead/0", step=10, started=old - 10, updated=old, holder="dead"),           # killed driver
            pack("ended/0", step=30, started=old - 10, updated=old, state="done", holder="ended"),
            pack("live/0", step=30, started=now - 30, updated=now - 20, state="done", holder="live"),
            pack("live/1", step=10, started=now - 20, updated=now - 1, holder="live"),
        ])
        got = store.read_progress(study)
        assert {p.pack: p.stale for p in got.packs} == {"dead/0": True, "ended/0": False, "live/0": False,
                                                         "live/1": False}
        assert [p.pack for p in got.in_flight] == ["live/1"]
        # a new driver starts: the gone drivers' rows go, the live one's (done packs too) and its own stay
        store.write_progress(study, [pack("new/0", step=0, started=now, updated=now, holder="new")])
        assert store.prune_progress(study, keep_holder="new") == 2
        assert sorted(p.pack for p in store.read_progress(study).packs) == ["live/0", "live/1", "new/0"]


def test_a_database_laid_out_before_progress_reads_no_packs(storage_url: str) -> None:
    with RestartStore(storage_url) as store:
        study = store.open_study("p", attrs={"total_restarts": 4})
        store.write_outcomes(study, [restart(0)])
    engine = sa.create_engine(storage_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE robustness_progress")
    engine.dispose()
    with RestartStore(storage_url, read_only=True) as reader:
        got = reader.read_progress("p")
    assert (got.packs, got.recorded, got.steps_per_restart, got.rate) == ((), 1, None, None)
    with RestartStore(storage_url) as store:  # the first progress write lays the table out again
        store.write_progress("p", [pack("a/0", step=3, started=time.time(), updated=time.time())])
        assert [p.step for p in store.read_progress("p").packs] == [3]


# -- a real sweep ---------------------------------------------------------------------------


def test_a_sweep_reports_restart_steps_as_packs_train_and_leaves_their_rows(ray_local, tmp_path: Path) -> None:
    from robustness.study.sweep import run_sweep
    from tests.test_sweep import space

    url = f"sqlite:///{tmp_path / 'steps.db'}"
    seen: list[tuple[Any, ...]] = []
    result = run_sweep(space("steps", restarts=4, steps=30, pack=4), storage=url,
                       progress=lambda done, total, ok: seen.append(("restarts", done, total)),
                       step_progress=lambda done, total: seen.append(("steps", done, total)))
    assert (result.written, result.packs) == (8, 2)
    steps = [(done, total) for kind, done, total in seen if kind == "steps"]
    assert {total for _, total in steps} == {8 * 30} and steps[0] == (0, 240) and steps[-1] == (240, 240)
    assert all(a <= b for (a, _), (b, _) in zip(steps, steps[1:])), steps  # no pack was retried
    # the first evaluation (update 10 of 30) is reported before any pack is stored
    first_stored = next(i for i, e in enumerate(seen) if e[0] == "restarts" and e[1] > 0)
    assert any(kind == "steps" and 0 < done < 240 for kind, done, _ in seen[:first_stored]), seen
    with RestartStore(url, read_only=True) as store:
        got = store.read_progress("steps")
    assert [(p.restarts, p.step, p.steps, p.state) for p in got.packs] == [(4, 30, 30, "done")] * 2
    assert all({"median_test_accuracy", "best_test_accuracy", "finite", "diverged"} <= set(p.metrics)
               for p in got.packs)
    assert (got.recorded, got.restart_steps_done, got.restart_steps_total, got.eta_s) == (8, 240, 240, 0.0)
    assert got.rate is not None and got.rate > 0 and got.in_flight == ()
