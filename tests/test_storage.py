"""Storage against real databases: one suite, run on SQLite and on a real PostgreSQL server.

The records are small enough to check by hand: 2 learning rates x 2 inits x 3
restarts, with restart 2 of every lr=0.1 cell diverged.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import math
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from robustness.criterion import Criterion
from robustness.records import CurvePoint, RestartOutcome
from robustness.storage import (
    DEFAULT_STORAGE,
    STORAGE_FORMAT,
    RestartStore,
    StorageError,
    StudySummary,
    _write,
    resolve_storage_url,
    restart_key,
    to_frozen_trial,
)
from robustness.table import RestartTable

optuna.logging.set_verbosity(optuna.logging.WARNING)

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/robustness.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(storage_url: str) -> Any:
    with RestartStore(storage_url) as opened:
        yield opened


def outcome(
    *,
    lr: float = 0.1,
    init: str = "he",
    restart: int = 0,
    accuracy: float = 0.95,
    diverged: bool = False,
    success: bool | None = None,
    clip: float | None = None,
    points: int = 3,
    **extra_params: Any,
) -> RestartOutcome:
    """One hand-checkable restart; success means accuracy >= 0.9 unless given."""
    if diverged:
        accuracy = math.nan
    curve = tuple(
        CurvePoint(step=10 * (k + 1), train_loss=1.0 / (k + 1), metric=math.nan if diverged and k == points - 1 else accuracy * (k + 1) / points)
        for k in range(points)
    )
    return RestartOutcome(
        params={"lr": lr, "clip": clip, "init": init, "schedule": "none", "eta": None, "gamma": None, **extra_params},
        restart=restart,
        seed=1000 + restart,
        metrics={"test_accuracy": accuracy, "test_loss": math.inf if diverged else 1.0 - accuracy},
        primary_metric="test_accuracy",
        success=(accuracy >= 0.9) if success is None else success,
        curve=curve,
        diverged=diverged,
        diverged_step=25 if diverged else None,
        wall_time_s=1.5 + restart,
        device="cpu",
    )


def grid(*, lrs: Sequence[float] = (0.1, 0.01), inits: Sequence[str] = ("he", "xavier"), restarts: range = range(3)) -> list[RestartOutcome]:
    return [
        outcome(lr=lr, init=init, restart=r, accuracy=0.8 + 0.05 * r, diverged=(lr == 0.1 and r == 2))
        for lr in lrs
        for init in inits
        for r in restarts
    ]


def normalized(value: Any) -> Any:
    """``value`` with NaN replaced by a marker, so records with NaN compare with ==."""
    if isinstance(value, float) and math.isnan(value):
        return "<nan>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: normalized(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalized(v) for v in value]
    return value


def trial_view(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """What stock Optuna reads back, minus ids and timestamps."""
    return normalized(
        {
            "number": trial.number,
            "state": trial.state.name,
            "values": trial.values,
            "params": trial.params,
            "distributions": {k: optuna.distributions.distribution_to_json(d) for k, d in trial.distributions.items()},
            "user_attrs": trial.user_attrs,
            "intermediate_values": trial.intermediate_values,
        }
    )


def count_rows(url: str, table: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


# -- keys and URLs (no database) ---------------------------------------------------------


def test_restart_key_is_canonical() -> None:
    key = restart_key({"lr": 0.1, "init": "he", "clip": None}, 3)
    assert key == '{"params":{"clip":null,"init":"he","lr":0.1},"restart":3}'
    assert restart_key({"init": "he", "clip": None, "lr": 0.1}, 3) == key
    assert restart_key({"lr": 1, "init": "he"}, 0) == restart_key({"lr": 1.0, "init": "he"}, 0)
    assert restart_key({"lr": 0.1, "init": "he", "clip": None}, 4) != key
    assert restart_key({"lr": 0.1, "init": "he", "clip": 1.0}, 3) != key
    with pytest.raises(ValueError):
        restart_key({"lr": 0.1}, -1)


def test_store_opens_the_url_from_the_environment(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("ROBUSTNESS_STORAGE", url)
    with RestartStore() as store:
        assert store.url == url
        store.open_study("s")
    assert (tmp_path / "env.db").exists()


def test_resolve_storage_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBUSTNESS_STORAGE", raising=False)
    assert resolve_storage_url(None) == DEFAULT_STORAGE == "sqlite:///robustness.db"
    monkeypatch.setenv("ROBUSTNESS_STORAGE", "sqlite:///from-env.db")
    assert resolve_storage_url(None) == "sqlite:///from-env.db"
    assert resolve_storage_url("sqlite:///given.db") == "sqlite:///given.db"
    assert resolve_storage_url("postgresql://u@h:5432/d") == "postgresql+psycopg://u@h:5432/d"
    with pytest.raises(StorageError):
        resolve_storage_url("not a url")


# -- round trip ---------------------------------------------------------------------------


def test_round_trip_through_stock_optuna(store: RestartStore) -> None:
    records = grid()
    study = store.open_study("rt")
    assert store.write_outcomes(study, records) == 12

    loaded = optuna.load_study(study_name="rt", storage=store.url)
    trials = loaded.get_trials()
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for trial, record in zip(trials, records):
        assert trial.params == {**record.params, "seed": record.seed}
        assert normalized(trial.intermediate_values) == normalized({p.step: p.metric for p in record.curve})
        attrs = trial.user_attrs
        assert attrs["restart"] == record.restart
        assert attrs["success"] is record.success
        assert attrs["diverged"] is record.diverged
        assert attrs["diverged_step"] == record.diverged_step
        assert attrs["wall_time_s"] == record.wall_time_s
        assert attrs["device"] == "cpu"
        assert attrs["primary_metric"] == "test_accuracy"
        assert normalized(attrs["curve_train_loss"]) == [p.train_loss for p in record.curve]
        assert normalized({k: attrs[f"metrics.{k}"] for k in record.metrics}) == normalized(dict(record.metrics))
        assert trial.value == (-math.inf if record.diverged else record.value)


def test_bulk_write_equals_stock_add_trials(store: RestartStore) -> None:
    records = grid()
    bulk = store.open_study("bulk")
    store.write_outcomes(bulk, records)
    dists = optuna.load_study(study_name="bulk", storage=store.url).get_trials()[0].distributions

    stock = optuna.create_study(study_name="stock", storage=store.url, direction="maximize")
    stock.add_trials([to_frozen_trial(r, dists, maximize=True) for r in records])

    ours = [trial_view(t) for t in optuna.load_study(study_name="bulk", storage=store.url).get_trials()]
    theirs = [trial_view(t) for t in optuna.load_study(study_name="stock", storage=store.url).get_trials()]
    assert ours == theirs


def test_iter_outcomes_gives_back_the_records(store: RestartStore) -> None:
    records = grid()
    study = store.open_study("it")
    store.write_outcomes(study, records)
    assert [normalized(o) for o in store.iter_outcomes(study)] == [normalized(r) for r in records]


def test_iter_outcomes_reads_in_chunks(store: RestartStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustness.storage import _records

    monkeypatch.setattr(_records, "OUTCOME_CHUNK", 5)
    records = grid()
    study = store.open_study("chunks")
    store.write_outcomes(study, records)
    assert [normalized(o) for o in store.iter_outcomes(study)] == [normalized(r) for r in records]


def test_stock_trials_continue_the_numbering(store: RestartStore) -> None:
    study = store.open_study("num")
    store.write_outcomes(study, grid())
    loaded = optuna.load_study(study_name="num", storage=store.url)
    loaded.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    store.write_outcomes(study, grid(restarts=range(3, 4)))
    assert [t.number for t in loaded.get_trials()] == list(range(18))


# -- exactly once -------------------------------------------------------------------------


def test_writing_the_same_batch_twice_adds_nothing(store: RestartStore) -> None:
    records = grid()
    study = store.open_study("twice")
    assert store.write_outcomes(study, records) == 12
    assert store.write_outcomes(study, records) == 0
    assert store.done_keys(study) == {restart_key(r.params, r.restart) for r in records}
    assert len(optuna.load_study(study_name="twice", storage=store.url).trials) == 12


def test_overlapping_batch_writes_only_the_new_restarts(store: RestartStore) -> None:
    study = store.open_study("overlap")
    assert store.write_outcomes(study, grid(restarts=range(0, 2))) == 8
    # More restarts per cell and a new cell: only those 4 + 3 are new.
    more = grid(restarts=range(0, 3)) + grid(lrs=(0.001,), inits=("he",), restarts=range(3))
    assert store.write_outcomes(study, more) == 7
    trials = optuna.load_study(study_name="overlap", storage=store.url).get_trials()
    assert [t.number for t in trials] == list(range(15))
    assert len({(json.dumps(t.params, sort_keys=True)) for t in trials}) == 15
    # The new lr value extends the categorical instead of replacing it.
    assert trials[-1].distributions["lr"] == CategoricalDistribution([0.01, 0.1, 0.001])


def test_duplicates_within_one_batch_are_recorded_once(store: RestartStore) -> None:
    study = store.open_study("dup")
    record = outcome()
    assert store.write_outcomes(study, [record, record, outcome(restart=1)]) == 2


def test_a_study_deleted_with_stock_tools_starts_afresh(store: RestartStore) -> None:
    records = grid()
    store.write_outcomes(store.open_study("gone"), records)
    optuna.delete_study(study_name="gone", storage=store.url)
    study = store.open_study("gone")
    assert store.done_keys(study) == set()
    assert store.write_outcomes(study, records) == 12


def _write_from(url: str, name: str, records: list[RestartOutcome], start: threading.Barrier | None) -> int:
    with RestartStore(url) as store:
        study = store.open_study(name)
        if start is not None:
            start.wait()
        return store.write_outcomes(study, records)


def test_concurrent_threads_record_each_restart_once(storage_url: str) -> None:
    first, second = grid(restarts=range(0, 6)), grid(restarts=range(3, 9))
    start = threading.Barrier(2, timeout=60)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(_write_from, storage_url, "race", rs, start) for rs in (first, second)]
        written = [f.result(timeout=120) for f in futures]
    assert sum(written) == 36
    trials = optuna.load_study(study_name="race", storage=storage_url).get_trials()
    assert sorted(t.number for t in trials) == list(range(36))
    assert len({restart_key({k: v for k, v in t.params.items() if k != "seed"}, t.user_attrs["restart"]) for t in trials}) == 36


def _write_in_process(url: str, restarts: tuple[int, int]) -> int:
    return _write_from(url, "procs", grid(restarts=range(*restarts)), None)


def test_concurrent_processes_record_each_restart_once(storage_url: str) -> None:
    with RestartStore(storage_url) as store:
        store.open_study("procs")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        written = pool.starmap(_write_in_process, [(storage_url, (0, 6)), (storage_url, (3, 9))])
    assert sum(written) == 36
    with RestartStore(storage_url) as store:
        assert len(store.done_keys("procs")) == 36
    assert count_rows(storage_url, "trials") == 36


# -- leases: drivers sharing a study -------------------------------------------------------


def _keys_of(records: Sequence[RestartOutcome]) -> list[str]:
    return [restart_key(r.params, r.restart) for r in records]


def test_claims_skip_recorded_and_leased_restarts(store: RestartStore) -> None:
    study = store.open_study("claims")
    store.write_outcomes(study, grid(restarts=range(1)))  # 4 of the 12 recorded
    keys = _keys_of(grid())
    first = store.claim_restarts(study, keys, holder="a", n=5, ttl_s=60)
    # the first 5 unrecorded keys, in the order given
    assert first == [k for k in keys if k not in store.done_keys(study)][:5]
    second = store.claim_restarts(study, keys, holder="b", n=100, ttl_s=60)
    assert len(second) == 3 and not set(first) & set(second)
    assert store.claim_restarts(study, keys, holder="c", n=100, ttl_s=60) == []
    assert store.leases(study) == {**dict.fromkeys(first, "a"), **dict.fromkeys(second, "b")}
    # released leases are free at once; another holder's leases are untouched
    assert store.release_leases(study, "a", first[:2]) == 2
    assert store.claim_restarts(study, keys, holder="c", n=100, ttl_s=60) == first[:2]
    assert store.release_leases(study, "b") == 3
    assert set(store.leases(study).values()) == {"a", "c"}


def test_an_expired_lease_is_taken_over_and_a_renewed_one_is_not(store: RestartStore) -> None:
    study = store.open_study("expiry")
    keys = _keys_of(grid(restarts=range(1)))
    assert store.claim_restarts(study, keys[:2], holder="dead", n=2, ttl_s=0.5) == keys[:2]
    assert store.claim_restarts(study, keys[2:], holder="live", n=2, ttl_s=1.0) == keys[2:]
    for _ in range(3):  # the live holder's heartbeat outlasts its ttl; the dead one has none
        time.sleep(0.4)
        assert store.renew_leases("live", ttl_s=1.0) == 2
    assert store.claim_restarts(study, keys, holder="heir", n=10, ttl_s=60) == keys[:2]
    # the dead holder, back from a long stall, cannot renew what it lost
    assert store.renew_leases("dead", ttl_s=60) == 0
    assert store.leases(study) == {**dict.fromkeys(keys[:2], "heir"), **dict.fromkeys(keys[2:], "live")}


def test_recording_a_leased_restart_ends_its_claim(store: RestartStore) -> None:
    study = store.open_study("recorded")
    records = grid(restarts=range(1))
    keys = _keys_of(records)
    assert store.claim_restarts(study, keys, holder="a", n=4, ttl_s=0.3) == keys
    store.write_outcomes(study, records[:2])
    time.sleep(0.5)  # expired, never released (the holder died after writing)
    assert store.claim_restarts(study, keys, holder="b", n=4, ttl_s=60) == keys[2:]


def test_a_database_laid_out_before_leases_gets_the_table_on_claim(storage_url: str) -> None:
    import sqlalchemy as sa

    with RestartStore(storage_url) as store:
        study = store.open_study("old")
    engine = sa.create_engine(storage_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE robustness_leases")
    engine.dispose()
    with RestartStore(storage_url) as store:
        assert store.leases(study) == {}  # reading does not create it
        keys = _keys_of(grid(restarts=range(1)))
        assert store.claim_restarts(study, keys, holder="a", n=10, ttl_s=60) == keys


def _claim_until_none_left(url: str, holder: str) -> list[str]:
    """A driver's loop without the training: claim two at a time until every key is taken."""
    keys = _keys_of(grid(restarts=range(10)))
    got: list[str] = []
    with RestartStore(url) as store:
        while claimed := store.claim_restarts("leased", keys, holder=holder, n=2, ttl_s=60):
            got += claimed
    return got


def test_concurrent_processes_claim_each_restart_once(storage_url: str) -> None:
    with RestartStore(storage_url) as store:
        store.open_study("leased")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        claims = pool.starmap(_claim_until_none_left, [(storage_url, f"p{i}") for i in range(3)])
    every = [k for c in claims for k in c]
    assert sorted(every) == sorted(_keys_of(grid(restarts=range(10)))) and len(every) == 40


def test_a_writer_that_loses_a_race_rolls_back_and_retries(store: RestartStore, monkeypatch: pytest.MonkeyPatch) -> None:
    study = store.open_study("lost")
    store.write_outcomes(study, grid(restarts=range(0, 2)))
    # Simulate a writer that checked the keys before another committed: the first
    # check sees nothing, so its key insert collides and the whole transaction goes.
    real = _write.claimed_keys
    calls = []

    def stale_once(conn: Any, study_id: int, keys: Sequence[str]) -> set[str]:
        calls.append(len(keys))
        return set() if len(calls) == 1 else real(conn, study_id, keys)

    monkeypatch.setattr(_write, "claimed_keys", stale_once)
    assert store.write_outcomes(study, grid(restarts=range(0, 3))) == 4
    assert len(calls) == 2
    trials = optuna.load_study(study_name="lost", storage=store.url).get_trials()
    assert [t.number for t in trials] == list(range(12))


def test_a_failing_transaction_leaves_nothing_half_written(store: RestartStore, monkeypatch: pytest.MonkeyPatch) -> None:
    study = store.open_study("atomic")
    store.write_outcomes(study, grid(restarts=range(1)))
    before = {t: count_rows(store.url, t) for t in ("trials", "trial_params", "trial_values", "trial_user_attributes", "trial_intermediate_values", "robustness_restarts")}

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("driver killed mid-batch")

    # The curves go in last, after the trials, params, values and attrs.
    monkeypatch.setattr(_write, "insert_curves", boom)
    with pytest.raises(RuntimeError, match="mid-batch"):
        store.write_outcomes(study, grid(restarts=range(1, 3)))
    after = {t: count_rows(store.url, t) for t in before}
    assert after == before
    monkeypatch.undo()
    assert store.write_outcomes(study, grid(restarts=range(1, 3))) == 8


# -- diverged restarts and the table ---------------------------------------------------------


def test_diverged_restarts_are_kept_as_failures(store: RestartStore) -> None:
    diverged = outcome(restart=0, diverged=True, success=True)  # a trainer bug must not count as success
    fine = outcome(restart=1, accuracy=0.95)
    study = store.open_study("div")
    store.write_outcomes(study, [diverged, fine])

    table = store.read_table(study)
    assert table.diverged.tolist() == [True, False]
    assert table.success.tolist() == [False, True]
    assert math.isnan(table.metrics["test_accuracy"][0]) and table.metrics["test_loss"][0] == math.inf

    loaded = optuna.load_study(study_name="div", storage=store.url)
    first = loaded.trials[0]
    assert first.state == TrialState.COMPLETE and first.value == -math.inf
    assert first.user_attrs["success"] is False and first.user_attrs["diverged_step"] == 25
    assert math.isnan(first.intermediate_values[30])
    assert loaded.best_trial.number == 1
    back = list(store.iter_outcomes(study))[0]
    assert back.diverged and not back.success and math.isnan(back.value)


def test_a_minimizing_study_stores_nan_as_plus_inf(store: RestartStore) -> None:
    record = dataclasses.replace(outcome(diverged=True), primary_metric="test_loss", metrics={"test_loss": math.nan})
    study = store.open_study("min", direction="minimize")
    store.write_outcomes(study, [record, dataclasses.replace(record, restart=1, metrics={"test_loss": -math.inf})])
    values = [t.value for t in optuna.load_study(study_name="min", storage=store.url).trials]
    assert values == [math.inf, -math.inf]


def _typed(values: np.ndarray) -> list[tuple[type, Any]]:
    # 1 == 1.0 == True in Python; a table must give back the same types too.
    return [(type(v), v) for v in values.tolist()]


def _assert_tables_equal(got: RestartTable, want: RestartTable) -> None:
    assert list(got.params) == list(want.params)
    for name in want.params:
        assert _typed(got.params[name]) == _typed(want.params[name]), name
    assert list(got.metrics) == list(want.metrics)
    for name in want.metrics:
        np.testing.assert_array_equal(got.metrics[name], want.metrics[name])
    for column in ("restart", "seed", "diverged", "success"):
        np.testing.assert_array_equal(getattr(got, column), getattr(want, column))
        assert getattr(got, column).dtype == getattr(want, column).dtype
    assert got.primary_metric == want.primary_metric


def test_read_table_equals_the_table_built_in_memory(store: RestartStore) -> None:
    records = grid() + [outcome(lr=0.5, init="he", restart=0, clip=1.0, width=64)]
    study = store.open_study("table")
    store.write_outcomes(study, records)
    got, want = store.read_table(study), RestartTable.from_outcomes(records)
    assert len(got) == 13
    assert list(got.params) == ["clip", "eta", "gamma", "init", "lr", "schedule", "width"]
    assert got.params["width"].tolist() == [None] * 12 + [64]
    assert got.primary_metric == "test_accuracy"
    _assert_tables_equal(got, want)


def test_awkward_strings_survive_the_bulk_path(store: RestartStore) -> None:
    """Tabs, newlines, backslashes and quotes: COPY's text format on PostgreSQL must escape them."""
    awkward = 'tab\there, new\nline, back\\slash, "quote", \\N, ünïcode'
    records = [outcome(init=awkward, restart=r) for r in range(2)]
    study = store.open_study("awkward")
    store.write_outcomes(study, records)
    assert store.read_table(study).params["init"].tolist() == [awkward, awkward]
    assert [o.params["init"] for o in store.iter_outcomes(study)] == [awkward, awkward]
    assert optuna.load_study(study_name="awkward", storage=store.url).trials[0].params["init"] == awkward


def test_read_table_of_an_empty_study(store: RestartStore) -> None:
    table = store.read_table(store.open_study("empty"))
    assert len(table) == 0 and table.primary_metric == ""


def test_criterion_overrides_the_stored_success(store: RestartStore) -> None:
    records = grid()
    study = store.open_study("crit")
    store.write_outcomes(study, records)
    # Stored: accuracy >= 0.9 (restart 2 only, and not where diverged). Stricter and looser:
    for criterion in (Criterion("test_accuracy", ">=", 0.85), Criterion("test_loss", "<", 0.18)):
        table = store.read_table(study, criterion=criterion)
        assert table.success.tolist() == [criterion.judge(r) for r in records]
    assert store.read_table(study, criterion=Criterion("test_accuracy", ">=", 0.85)).success.sum() == 6
    with pytest.raises(StorageError, match="no metric 'f1'"):
        store.read_table(study, criterion=Criterion("f1", ">", 0.5))


def test_cells_read_back_as_stock_optuna_reads_the_params(store: RestartStore) -> None:
    """With a float distribution given, lr=1 is stored as 1.0, and read back as 1.0 like Optuna does."""
    records = [outcome(lr=1, restart=r) for r in range(2)]
    dists = {
        "lr": FloatDistribution(0.0, 2.0),
        "init": CategoricalDistribution(["he"]),
        "clip": CategoricalDistribution([None]),
        "schedule": CategoricalDistribution(["none"]),
        "eta": CategoricalDistribution([None]),
        "gamma": CategoricalDistribution([None]),
        "seed": IntDistribution(0, 2**31 - 1),
    }
    study = store.open_study("typed")
    store.write_outcomes(study, records, distributions=dists)
    stock = optuna.load_study(study_name="typed", storage=store.url).trials[0].params["lr"]
    got = store.read_table(study).params["lr"].tolist()
    assert (type(stock), stock) == (float, 1.0)
    assert [(type(v), v) for v in got] == [(float, 1.0), (float, 1.0)]


def test_an_optuna_schema_too_old_to_write_is_a_one_line_error(tmp_path: Any) -> None:
    """Reading needs no Optuna schema check; writing does, and reports it in one line."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/old-optuna.db"
    with RestartStore(url) as store:
        store.write_outcomes(store.open_study("s"), grid())
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'v0.9.0.a'"))
    engine.dispose()
    with RestartStore(url) as store:
        assert len(store.read_table("s")) == 12
        with pytest.raises(StorageError) as info:
            store.open_study("s")
    assert "\n" not in str(info.value) and "cannot open storage" in str(info.value)


def test_reading_a_study_does_not_import_optuna(storage_url: str) -> None:
    """The read path (stats, status) stays off Optuna's ~0.3 s import, and reads the same table."""
    records = grid()
    with RestartStore(storage_url) as store:
        store.write_outcomes(store.open_study("light", attrs={"total_restarts": 12}), records)
        want = store.read_table("light")
    script = (
        "import sys, json\n"
        "from robustness.storage import RestartStore\n"
        f"with RestartStore({storage_url!r}) as s:\n"
        "    t = s.read_table('light'); n = s.studies()[0].n_successes; a = s.study_attrs('light')\n"
        "print(json.dumps({'optuna': 'optuna' in sys.modules, 'success': t.success.tolist(),"
        " 'lr': t.params['lr'].tolist(), 'n': n, 'total': a['total_restarts']}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    got = json.loads(done.stdout)
    assert got == {"optuna": False, "success": want.success.tolist(), "lr": want.params["lr"].tolist(), "n": 2, "total": 12}


def test_read_path_tables_match_optunas_models() -> None:
    """The stand-in table definitions the read path uses name real columns of Optuna's schema."""
    from robustness.storage import _optuna_tables, _schema

    for ours, theirs in (
        (_schema.STUDIES, _optuna_tables.STUDIES),
        (_schema.TRIALS, _optuna_tables.TRIALS),
        (_schema.STUDY_USER_ATTRS, optuna.storages._rdb.models.StudyUserAttributeModel.__table__),
    ):
        assert ours.name == theirs.name
        for column in ours.columns:
            assert column.name in theirs.c, (ours.name, column.name)
            assert type(column.type) is type(theirs.c[column.name].type), (ours.name, column.name)
            assert column.primary_key == theirs.c[column.name].primary_key


# -- study attrs, summaries, errors ---------------------------------------------------------


def test_study_attrs_round_trip(store: RestartStore) -> None:
    attrs = {
        "search_space": "lr: [0.1, 0.01]\ninit: [he, xavier]\n",
        "versions": {"optuna": optuna.__version__, "numpy": np.__version__},
        "code_revision": "abc1234",
        "total_restarts": 12,
    }
    study = store.open_study("attrs", attrs=attrs)
    loaded = optuna.load_study(study_name="attrs", storage=store.url)
    assert loaded.user_attrs == {**attrs, "storage_format": STORAGE_FORMAT}
    assert loaded.direction == optuna.study.StudyDirection.MAXIMIZE
    # Reopening (--resume) keeps the study and updates the attrs.
    assert store.open_study("attrs", attrs={"code_revision": "def5678"}) == study
    assert store.study_attrs("attrs")["code_revision"] == "def5678"
    with pytest.raises(StorageError, match="direction maximize, not minimize"):
        store.open_study("attrs", direction="minimize")
    with pytest.raises(ValueError, match="JSON"):
        store.open_study("attrs", attrs={"bad": object()})


def test_studies_summarizes_progress(store: RestartStore) -> None:
    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    store.write_outcomes(store.open_study("a", attrs={"total_restarts": 20}), grid())
    store.open_study("b")
    a, b = store.studies()
    after = datetime.datetime.now(datetime.timezone.utc)
    assert a.last_write is not None and before <= a.last_write <= after  # when the pack was written, in UTC
    assert [a, b] == [
        StudySummary(name="a", n_restarts=12, n_successes=2, n_diverged=2, total_restarts=20, last_write=a.last_write),
        StudySummary(name="b", n_restarts=0, n_successes=0, n_diverged=0, total_restarts=None),
    ]


def test_unknown_study_is_a_one_line_error(store: RestartStore) -> None:
    store.open_study("known")
    for call in (store.done_keys, store.read_table, lambda s: list(store.iter_outcomes(s))):
        with pytest.raises(StorageError) as info:
            call("nope")
        assert "\n" not in str(info.value)
        assert "no study 'nope'" in str(info.value) and "known" in str(info.value)
    with pytest.raises(StorageError):
        store.write_outcomes("nope", grid())


def test_invalid_records_are_rejected_before_writing(store: RestartStore) -> None:
    study = store.open_study("invalid")
    bad = [
        dataclasses.replace(outcome(), params={"seed": 1}),
        dataclasses.replace(outcome(), params={"lr": [0.1, 0.2]}),
        dataclasses.replace(outcome(), params={"lr": math.nan}),
        dataclasses.replace(outcome(), curve=(CurvePoint(10, 1.0, 0.5), CurvePoint(10, 0.9, 0.6))),
        dataclasses.replace(outcome(), seed=2**31),
        dataclasses.replace(outcome(), primary_metric="f1"),
    ]
    for record in bad:
        with pytest.raises(ValueError):
            store.write_outcomes(study, [outcome(restart=5), record])
    assert store.done_keys(study) == set()


def test_given_distributions_are_stored(store: RestartStore) -> None:
    study = store.open_study("dists")
    dists = {"lr": FloatDistribution(1e-4, 1.0, log=True), "seed": IntDistribution(0, 10_000)}
    store.write_outcomes(study, [outcome(lr=0.1)], distributions=dists)
    trial = optuna.load_study(study_name="dists", storage=store.url).trials[0]
    assert trial.distributions["lr"] == dists["lr"] and trial.params["lr"] == 0.1
    assert trial.distributions["seed"] == dists["seed"]
    assert trial.distributions["init"] == CategoricalDistribution(["he"])
    with pytest.raises(ValueError, match="outside"):
        store.write_outcomes(study, [outcome(lr=2.0, restart=1)], distributions=dists)


def test_unreachable_postgres_is_a_one_line_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    with pytest.raises(StorageError) as info:
        RestartStore(f"postgresql+psycopg://postgres:secret@127.0.0.1:{port}/nowhere")
    message = str(info.value)
    assert "\n" not in message and "cannot open storage" in message
    assert "secret" not in message


def test_unwritable_sqlite_path_is_a_one_line_error(tmp_path: Any) -> None:
    with pytest.raises(StorageError) as info:
        RestartStore(f"sqlite:///{tmp_path}/missing/dir/r.db")
    assert "\n" not in str(info.value)


def _decisive_init_pack(init: str, restarts: range) -> list[RestartOutcome]:
    """Restarts whose accuracy is decided by init alone (lr and eta are noise)."""
    rng = np.random.default_rng(len(init))
    return [
        outcome(lr=lr, init=init, restart=k, accuracy=(0.9 if init == "he" else 0.2) + 0.01 * rng.standard_normal(),
                eta=eta)
        for lr in (0.1, 0.01) for eta in (0.01, 0.3) for k in restarts
    ]


def _ranked_importances(url: str, name: str) -> list[str]:
    study = optuna.load_study(study_name=name, storage=url)
    return list(optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)))


def test_every_trial_shares_the_search_space_and_importance_finds_the_decisive_axis(storage_url: str) -> None:
    axes = {"lr": [0.1, 0.01], "init": ["simple", "he"], "eta": [0.01, 0.3], "clip": [None]}
    with RestartStore(storage_url) as store:
        store.open_study("static")
        dists = store.declare_axes("static", axes)
        # packs cut in cell order: the first holds only init=simple, the second only init=he
        for init in ("simple", "he"):
            store.write_outcomes("static", _decisive_init_pack(init, range(4)), distributions=dists)
    trials = optuna.load_study(study_name="static", storage=storage_url).get_trials(deepcopy=False)
    assert len({repr(t.distributions["init"]) for t in trials}) == 1
    assert trials[0].distributions["init"] == CategoricalDistribution(["he", "simple"])
    assert _ranked_importances(storage_url, "static")[0] == "init"


def test_an_extended_study_keeps_one_distribution_per_axis(storage_url: str) -> None:
    with RestartStore(storage_url) as store:
        store.open_study("grown")
        first = store.declare_axes("grown", {"lr": [0.1, 0.01], "init": ["simple"], "eta": [0.01, 0.3]})
        store.write_outcomes("grown", _decisive_init_pack("simple", range(4)), distributions=first)
        # the file gains an init: stored trials get the grown distribution, their values unchanged
        grown = store.declare_axes("grown", {"lr": [0.1, 0.01], "init": ["simple", "he"], "eta": [0.01, 0.3]})
        assert grown["init"] == CategoricalDistribution(["simple", "he"])  # stored choices keep their index
        store.write_outcomes("grown", _decisive_init_pack("he", range(4)), distributions=grown)
        before = {restart_key(o.params, o.restart): o.params["init"] for o in store.iter_outcomes("grown")}
    trials = optuna.load_study(study_name="grown", storage=storage_url).get_trials(deepcopy=False)
    for name in ("init", "lr", "eta"):
        assert len({repr(t.distributions[name]) for t in trials}) == 1, name
    assert sorted(t.params["init"] for t in trials) == ["he"] * 16 + ["simple"] * 16
    assert sorted(before.values()) == ["he"] * 16 + ["simple"] * 16
    assert _ranked_importances(storage_url, "grown")[0] == "init"


# -- reading one cell ---------------------------------------------------------------------------


def test_iter_outcomes_of_some_cells_reads_only_their_rows(store: RestartStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from robustness.storage import _records

    records = grid() + [outcome(lr=1, init="he", restart=r) for r in range(2)]
    study = store.open_study("cells")
    store.write_outcomes(study, records)
    asked: list[int] = []
    real = _records.outcome_chunk

    def spy(conn: Any, trial_ids: Sequence[int]) -> list[RestartOutcome]:
        asked.extend(trial_ids)
        return real(conn, trial_ids)

    monkeypatch.setattr(_records, "outcome_chunk", spy)
    cell = {"lr": 0.01, "init": "xavier", "clip": None, "schedule": "none", "eta": None, "gamma": None}
    got = list(store.iter_outcomes(study, cells=[cell]))
    assert [normalized(o) for o in got] == [normalized(r) for r in records if r.params == cell]
    assert len(asked) == 3  # the cell's rows, filtered in SQL
    # numbers compare by value, as in restart keys; max_restart keeps the first restarts of each cell
    one = {**cell, "lr": 1.0, "init": "he"}
    assert [o.restart for o in store.iter_outcomes(study, cells=[one])] == [0, 1]
    both = list(store.iter_outcomes(study, cells=[cell, {**one, "lr": 1}], max_restart=1))
    assert [(o.params["lr"], o.restart) for o in both] == [(0.01, 0), (1, 0)]
    assert list(store.iter_outcomes(study, cells=[])) == []
    assert list(store.iter_outcomes(study, cells=[{**cell, "init": "nope"}])) == []
    with pytest.raises(ValueError):
        list(store.iter_outcomes(study, cells=[{**cell, "lr": [0.1]}]))


# -- read-only stores -----------------------------------------------------------------------------


def _with_password(url: str) -> str:
    """The URL with a password (the test server trusts every login, so any password connects)."""
    return url.replace("postgres@", "postgres:hunter2@") if url.startswith("postgresql") else url


def test_a_read_only_store_reads_and_refuses_every_write(storage_url: str) -> None:
    with RestartStore(storage_url) as store:
        study = store.open_study("ro", attrs={"total_restarts": 12})
        store.write_outcomes(study, grid())
    url = _with_password(storage_url)
    with RestartStore(url, read_only=True) as reader:
        assert reader.read_only and "hunter2" not in repr(reader)
        assert [s.name for s in reader.studies()] == ["ro"]
        assert len(reader.read_table("ro")) == 12 and len(list(reader.iter_outcomes("ro"))) == 12
        assert reader.study_attrs("ro")["total_restarts"] == 12 and len(reader.done_keys("ro")) == 12
        assert reader.leases("ro") == {} and reader.read_progress("ro").recorded == 12
        writes = {
            "open_study": lambda: reader.open_study("new"),
            "set_study_attrs": lambda: reader.set_study_attrs("ro", {"x": 1}),
            "declare_axes": lambda: reader.declare_axes("ro", {"lr": [0.1]}),
            "write_outcomes": lambda: reader.write_outcomes("ro", grid(restarts=range(3, 4))),
            "claim_restarts": lambda: reader.claim_restarts("ro", ["k"], holder="h", n=1, ttl_s=60),
            "renew_leases": lambda: reader.renew_leases("h", ttl_s=60),
            "release_leases": lambda: reader.release_leases("ro", "h"),
            "write_progress": lambda: reader.write_progress("ro", []),
            "prune_progress": lambda: reader.prune_progress("ro", keep_holder="h"),
        }
        for name, write in writes.items():
            with pytest.raises(StorageError) as info:
                write()
            message = str(info.value)
            assert "opened read-only" in message and "\n" not in message and "hunter2" not in message, name
    assert count_rows(storage_url, "trials") == 12 and count_rows(storage_url, "studies") == 1


def test_the_database_itself_refuses_a_read_only_stores_writes(storage_url: str) -> None:
    import sqlalchemy as sa

    with RestartStore(storage_url) as store:
        store.open_study("ro")
    with RestartStore(storage_url, read_only=True) as reader:
        for statement in ("CREATE TABLE sneaky (a integer)", "DELETE FROM studies"):
            with pytest.raises(sa.exc.DBAPIError) as info, reader._engine.begin() as conn:
                conn.exec_driver_sql(statement)
            assert "read-only" in str(info.value) or "readonly" in str(info.value), statement
    assert count_rows(storage_url, "studies") == 1


def test_a_read_only_store_never_creates_a_database(tmp_path: Any) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StorageError, match="no database file") as info:
        RestartStore(f"sqlite:///{missing}", read_only=True)
    assert "\n" not in str(info.value) and list(tmp_path.iterdir()) == []
    for memory in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(StorageError, match="in-memory"):
            RestartStore(memory, read_only=True)


def test_a_read_only_store_reads_a_database_without_our_tables_as_having_no_studies(storage_url: str) -> None:
    optuna.create_study(study_name="stock", storage=storage_url)  # Optuna's tables only, none of ours
    with RestartStore(storage_url, read_only=True) as reader:
        assert reader.studies() == []
        with pytest.raises(StorageError, match="no study 'stock'") as info:
            reader.read_table("stock")
        assert "\n" not in str(info.value)
        # a sweep lays the database out meanwhile: the same reader sees it
        with RestartStore(storage_url) as store:
            store.write_outcomes(store.open_study("ours"), grid())
        assert [s.name for s in reader.studies()] == ["stock", "ours"]
        assert len(reader.read_table("ours")) == 12


def test_a_read_only_store_on_an_empty_sqlite_file(tmp_path: Any) -> None:
    import sqlite3

    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    with RestartStore(f"sqlite:///{path}", read_only=True) as reader:
        assert reader.studies() == []
    assert path.stat().st_size == 0  # not laid out by reading
