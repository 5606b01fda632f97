"""Bulk storage path vs stock Optuna, on SQLite, measured side by side in one run.

Writes N synthetic restarts (100-point learning curves) with
``RestartStore.write_outcomes`` (one transaction) and the same trials with stock
``study.add_trials``; reads per-cell success counts with ``read_table`` + NumPy
grouping and with ``study.trials_dataframe()`` + pandas grouping; then checks
that both studies read back identical through stock ``optuna.load_study``.

Targets: write >= 50x, read >= 20x faster than stock.

Both SQLite files use WAL, so the ratios measure the code paths, not journal
settings. Stock ``add_trials`` costs ~0.1 s per restart here (one ORM round trip
per curve point), so N=10k takes ~20 minutes; ``--quick`` uses N=300 (< 60 s).

Example:
    python benchmarks/bench_storage.py --quick --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna

from robustness.records import CurvePoint, RestartOutcome
from robustness.storage import RestartStore, to_frozen_trial
from robustness.storage._encode import build_distributions, trial_params

WRITE_TARGET = 50.0
READ_TARGET = 20.0
T = TypeVar("T")

# 5 x 3 x 2 x 2 = 60 cells, like a small real grid; restarts fill the rest.
AXES: dict[str, Sequence[Any]] = {
    "lr": (0.3, 0.1, 0.03, 0.01, 0.003),
    "init": ("he", "xavier", "orthogonal"),
    "schedule": ("none", "annealed"),
    "clip": (None, 1.0),
}


def synthetic_outcomes(n: int, *, points: int, seed: int = 0) -> list[RestartOutcome]:
    """``n`` restarts over the 60-cell grid, restart index outermost; ~5% diverged."""
    rng = np.random.default_rng(seed)
    cells = [
        {"lr": lr, "init": init, "schedule": sch, "clip": clip, "eta": 0.01 if sch == "annealed" else None, "gamma": 0.55 if sch == "annealed" else None}
        for lr in AXES["lr"]
        for init in AXES["init"]
        for sch in AXES["schedule"]
        for clip in AXES["clip"]
    ]
    out = []
    for i in range(n):
        restart, cell = divmod(i, len(cells))
        diverged = bool(rng.random() < 0.05)
        accuracy = math.nan if diverged else float(rng.uniform(0.5, 1.0))
        losses = np.sort(rng.uniform(0.01, 2.0, points))[::-1]
        metric = np.linspace(0.1, 1.0, points) * (0.9 if diverged else accuracy)
        if diverged:
            metric[points // 2 :] = np.nan
        out.append(
            RestartOutcome(
                params=cells[cell],
                restart=restart,
                seed=int(rng.integers(0, 2**31)),
                metrics={
                    "test_accuracy": accuracy,
                    "test_error": 1.0 - accuracy,
                    "test_loss": math.inf if diverged else float(rng.uniform(0.0, 1.0)),
                    "train_loss": float(rng.uniform(0.0, 1.0)),
                },
                primary_metric="test_accuracy",
                success=(not diverged) and accuracy >= 0.9,
                curve=tuple(CurvePoint(step=10 * (k + 1), train_loss=float(losses[k]), metric=float(metric[k])) for k in range(points)),
                diverged=diverged,
                diverged_step=10 * (points // 2) if diverged else None,
                wall_time_s=float(rng.uniform(1, 10)),
                device="cpu",
            )
        )
    return out


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def counts_from_table(store: RestartStore, study: int) -> dict[tuple[Any, ...], tuple[int, int]]:
    """Per-cell (restarts, successes) via read_table and NumPy: one code per cell, then bincount."""
    table = store.read_table(study)
    names = sorted(table.params)
    cell_code = np.zeros(len(table), dtype=np.int64)
    levels = []
    for name in names:
        # Object columns mix None and floats, which np.unique cannot sort: factorize by dict.
        index: dict[Any, int] = {}
        codes = np.fromiter((index.setdefault(v, len(index)) for v in table.params[name]), dtype=np.int64, count=len(table))
        cell_code = cell_code * (len(index) + 1) + codes
        levels.append(index)
    cells, first, inverse = np.unique(cell_code, return_index=True, return_inverse=True)
    restarts = np.bincount(inverse, minlength=len(cells))
    successes = np.bincount(inverse, weights=table.success, minlength=len(cells)).astype(np.int64)
    keys = [tuple(table.params[name][row] for name in names) for row in first]
    return {key: (int(r), int(s)) for key, r, s in zip(keys, restarts, successes)}


def counts_from_dataframe(url: str, name: str) -> dict[tuple[Any, ...], tuple[int, int]]:
    """The same counts the stock way: trials_dataframe() and a pandas groupby."""
    frame = optuna.load_study(study_name=name, storage=url).trials_dataframe()
    columns = sorted(c for c in frame.columns if c.startswith("params_") and c != "params_seed")
    grouped = frame.groupby(columns, dropna=False)["user_attrs_success"].agg(["size", "sum"])
    out = {}
    for key, row in grouped.iterrows():
        out[tuple(None if isinstance(v, float) and math.isnan(v) else v for v in key)] = (int(row["size"]), int(row["sum"]))
    return out


def trial_view(trial: optuna.trial.FrozenTrial) -> str:
    """Everything stock Optuna reads back except ids and timestamps, as comparable text."""
    return json.dumps(
        {
            "number": trial.number,
            "state": trial.state.name,
            "values": trial.values,
            "params": trial.params,
            "distributions": {k: optuna.distributions.distribution_to_json(d) for k, d in trial.distributions.items()},
            "user_attrs": trial.user_attrs,
            "intermediate_values": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        },
        sort_keys=True,
    )  # NaN -> "NaN" on both sides, so NaN compares equal as text


def wal(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")


def run(n: int, points: int) -> dict[str, Any]:
    outcomes = synthetic_outcomes(n, points=points)
    # Both paths get the same distributions, so the stored trials can be identical.
    dists = build_distributions([trial_params(o) for o in outcomes], given=None, existing={})
    frozen = [to_frozen_trial(o, dists, maximize=True) for o in outcomes]
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        ours_url, stock_url = f"sqlite:///{tmp}/ours.db", f"sqlite:///{tmp}/stock.db"
        wal(Path(tmp) / "stock.db")
        with RestartStore(ours_url) as store:
            study = store.open_study("bench")
            written, write_bulk_s = timed(lambda: store.write_outcomes(study, outcomes, distributions=dists))
            assert written == n, written
            stock_study = optuna.create_study(study_name="bench", storage=stock_url, direction="maximize")
            _, write_stock_s = timed(lambda: stock_study.add_trials(frozen))

            ours_counts, read_table_s = timed(lambda: counts_from_table(store, study))
            stock_counts, read_stock_s = timed(lambda: counts_from_dataframe(stock_url, "bench"))

        ours_trials = optuna.load_study(study_name="bench", storage=ours_url).get_trials()
        stock_trials = optuna.load_study(study_name="bench", storage=stock_url).get_trials()
        identical = len(ours_trials) == len(stock_trials) == n and all(
            trial_view(a) == trial_view(b) for a, b in zip(ours_trials, stock_trials)
        )
    write_speedup, read_speedup = write_stock_s / write_bulk_s, read_stock_s / read_table_s
    return {
        "n_restarts": n,
        "curve_points": points,
        "write_bulk_s": round(write_bulk_s, 4),
        "write_stock_s": round(write_stock_s, 3),
        "write_speedup": round(write_speedup, 1),
        "read_table_s": round(read_table_s, 4),
        "read_stock_s": round(read_stock_s, 3),
        "read_speedup": round(read_speedup, 1),
        "identical_via_load_study": identical,
        "counts_equal": ours_counts == stock_counts,
        "targets": {"write": WRITE_TARGET, "read": READ_TARGET},
        "pass": identical and ours_counts == stock_counts and write_speedup >= WRITE_TARGET and read_speedup >= READ_TARGET,
        "optuna": optuna.__version__,
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("Example:")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N=300: the same ratios in under a minute")
    parser.add_argument("--n", type=int, default=None, help="restarts to write (default 10000, quick 300)")
    parser.add_argument("--points", type=int, default=100, help="learning-curve points per restart")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n = args.n or (300 if args.quick else 10_000)
    result = run(n, args.points)
    print(f"restarts: {n} x {args.points}-point curves, SQLite {result['sqlite']}, optuna {result['optuna']}")
    print(f"{'':24}{'bulk/table':>12}{'stock':>12}{'speedup':>10}{'target':>8}")
    print(f"{'write':24}{result['write_bulk_s']:>11.3f}s{result['write_stock_s']:>11.2f}s{result['write_speedup']:>9.1f}x{WRITE_TARGET:>7.0f}x")
    print(f"{'read per-cell successes':24}{result['read_table_s']:>11.3f}s{result['read_stock_s']:>11.2f}s{result['read_speedup']:>9.1f}x{READ_TARGET:>7.0f}x")
    print(f"identical through optuna.load_study: {result['identical_via_load_study']}; counts equal: {result['counts_equal']}")
    if args.json:
        print(json.dumps(result))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
