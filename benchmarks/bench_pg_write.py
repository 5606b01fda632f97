"""PostgreSQL pack writes: ``COPY`` against SQLAlchemy's pipelined executemany, side by side.

``RestartStore.write_outcomes`` on PostgreSQL (psycopg) streams each table's rows
with ``COPY ... FROM STDIN``. This script writes the same N synthetic restarts
(100-point learning curves, as in ``bench_storage.py``) into fresh studies,
alternating the COPY path with the executemany path it replaced, and prints the
medians and their ratio. Not a target of any issue; it records why COPY is there.

It needs a PostgreSQL server you can create databases on, for example:

    initdb -D /tmp/pg -A trust && pg_ctl -D /tmp/pg -o "-h 127.0.0.1 -p 55432" start
    createdb -h 127.0.0.1 -p 55432 bench
    python benchmarks/bench_pg_write.py --url postgresql+psycopg://postgres@127.0.0.1:55432/bench --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import optuna
import sqlalchemy as sa
from bench_storage import synthetic_outcomes

from robustness.storage import RestartStore, _write


def _executemany(conn: sa.Connection, table: sa.Table, columns: list[str], rows: list[tuple]) -> None:
    # The path COPY replaced: SQLAlchemy's executemany, which psycopg pipelines.
    conn.execute(sa.insert(table), [dict(zip(columns, row)) for row in rows])


def _timed_write(url: str, records: list, copy_rows: Callable) -> float:
    original = _write._copy_rows
    _write._copy_rows = copy_rows
    try:
        with RestartStore(url) as store:
            study = store.open_study(f"pgbench-{uuid.uuid4().hex[:8]}")
            start = time.perf_counter()
            written = store.write_outcomes(study, records)
            elapsed = time.perf_counter() - start
    finally:
        _write._copy_rows = original
    assert written == len(records)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="postgresql+psycopg://user@host:port/db")
    ap.add_argument("--restarts", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records = synthetic_outcomes(args.restarts, points=100)
    _timed_write(args.url, records[:50], _write._copy_rows)  # warm up: schema, connections
    copy, many = [], []
    for _ in range(args.rounds):
        copy.append(_timed_write(args.url, records, _write._copy_rows))
        many.append(_timed_write(args.url, records, _executemany))
    c, m = statistics.median(copy), statistics.median(many)
    print(f"{args.restarts} restarts x 100-point curves, PostgreSQL via psycopg (medians of {args.rounds}, alternated)")
    print(f"  COPY:        {c:.2f} s  ({1e3 * c / args.restarts:.2f} ms/restart)")
    print(f"  executemany: {m:.2f} s  ({1e3 * m / args.restarts:.2f} ms/restart)")
    print(f"  executemany / COPY: {m / c:.2f}x")
    if args.json:
        print(json.dumps({"benchmark": "pg_write", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                      "python": sys.version.split()[0]},
                          "restarts": args.restarts, "copy_s": c, "executemany_s": m, "speedup": m / c}))


if __name__ == "__main__":
    main()
