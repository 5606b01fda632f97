"""`robustness stats` on a 10k-restart study: does it answer within 1 s?

Writes a synthetic study (a 3 x 2 x 3 x 4 grid = 72 cells, 138 restarts each,
seed-paired, 10% diverged) to SQLite through the storage fast path, then times,
side by side in one run:

- the library call: ``read_table`` + ``cell_stats`` + ``compare_arms`` in this process;
- the command a user types: ``robustness stats STUDY --format json`` (a fresh
  process, imports included), and a bare ``python -c 'import robustness.cli'`` start
  for reference.

Target (issue 4): the command answers in <= 1 s for 10k restarts.

    python benchmarks/bench_stats.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def synthetic(n_restarts: int, seed: int = 0) -> list:
    from robustness.records import CurvePoint, RestartOutcome

    rng = np.random.default_rng(seed)
    cells = [
        {"lr": lr, "clip": clip, "init": init, "schedule": s, "eta": eta, "gamma": None if eta is None else 0.55}
        for lr in (0.01, 0.03, 0.1) for clip in (10.0, 100.0) for init in ("simple", "zero", "random_walk")
        for s, eta in (("none", None), ("annealed", 0.01), ("annealed", 0.3), ("annealed", 1.0))
    ]
    per_cell = max(1, n_restarts // len(cells))
    out = []
    for c in cells:
        p = rng.uniform(0.05, 0.6)
        for k in range(per_cell):
            diverged = bool(rng.random() < 0.1)
            acc = float("nan") if diverged else float(np.clip(rng.normal(0.9 if rng.random() < p else 0.2, 0.05), 0, 1))
            out.append(RestartOutcome(params=c, restart=k, seed=k, metrics={"test_accuracy": acc, "test_error": 1 - acc},
                                      primary_metric="test_accuracy", success=bool(acc >= 0.9) and not diverged,
                                      curve=tuple(CurvePoint(s, 1.0, acc) for s in (100, 200)), diverged=diverged,
                                      diverged_step=50 if diverged else None))
    return out


def _time_cmd(argv: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from robustness.stats import cell_stats, compare_arms
    from robustness.storage import RestartStore

    reps = 3 if args.quick else 7
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{Path(d) / 'stats.db'}"
        records = synthetic(10_000)
        with RestartStore(url) as store:
            sid = store.open_study("bench", attrs={"total_restarts": len(records)})
            store.write_outcomes(sid, records)
            lib = []
            for _ in range(reps):
                start = time.perf_counter()
                table = store.read_table(sid)
                cells = cell_stats(table)
                comps = compare_arms(table)
                lib.append(time.perf_counter() - start)
        exe = [sys.executable, "-m", "robustness"]
        cli = _time_cmd([*exe, "stats", "bench", "--storage", url, "--format", "json"], reps)
        bare = _time_cmd([sys.executable, "-c", "import robustness.cli"], reps)
    library = statistics.median(lib)
    print(f"{len(records)} restarts, {len(cells)} cells, {len(comps)} comparisons (medians of {reps})")
    print(f"  library (read_table + cell_stats + compare_arms): {library:.3f} s")
    print(f"  robustness stats --format json (fresh process):  {cli:.3f} s")
    print(f"  python -c 'import robustness.cli' (start-up only): {bare:.3f} s")
    print(f"  command / target 1 s: {cli:.2f}  [{'PASS' if cli <= 1.0 else 'MISS'}]; library / command: {library / cli:.2f}")
    if args.json:
        print(json.dumps({"benchmark": "stats", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                      "python": sys.version.split()[0]},
                          "restarts": len(records), "cells": len(cells), "comparisons": len(comps),
                          "library_s": library, "command_s": cli, "startup_s": bare, "target_s": 1.0,
                          "pass": cli <= 1.0}))


if __name__ == "__main__":
    main()
