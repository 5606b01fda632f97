"""Ray Tune overhead per restart: the one-restart-per-trial design vs restart packs.

Runs the real sweep runner (Ray Tune trials, driver-side bulk writes into
SQLite) on a grid whose training is nearly free (a 1x8 net, 1 update), so what
is left is the cost of the machinery. The same packs are also trained in this
process without Ray to subtract the training itself. Side by side in one run:

    overhead per restart = (sweep wall time - in-process training time) / restarts

Target (issue 3): <= 5 ms per restart with packs.

    python benchmarks/bench_tune_overhead.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

SPACE = """
study: overhead-{pack}
task: {{name: deep_mlp, dataset: digits, depth: 1, width: 8, steps: 1, batch_size: 32, eval_every: 1}}
grid:
  lr: [0.01, 0.02, 0.03, 0.04]
  clip: [10]
  init: [he]
  noise:
    - schedule: none
    - schedule: annealed
      eta: [0.3]
restarts: {restarts}
success: {{metric: test_accuracy, op: ">=", threshold: 0.5}}
pack_size: {pack}
"""


def _train_in_process(space) -> float:
    from robustness.study.plan import training_setup
    from robustness.training.pack import train_pack

    task, config = training_setup(space)
    data = task.load_data()
    specs = space.restart_specs()
    size = space.pack_size
    start = time.perf_counter()
    for i in range(0, len(specs), size):
        train_pack(task, specs[i : i + size], config, criterion=space.success, data=data)
    return time.perf_counter() - start


def measure(pack: int, restarts: int, storage_dir: Path) -> dict:
    from robustness.study.search_space import parse_search_space
    from robustness.study.sweep import run_sweep

    space = parse_search_space(SPACE.format(pack=pack, restarts=restarts))
    n = len(space.restart_specs())
    start = time.perf_counter()
    result = run_sweep(space, storage=f"sqlite:///{storage_dir / f'p{pack}.db'}", checkpoint_every_s=1e9)
    wall = time.perf_counter() - start
    assert result.written == n, result
    train = _train_in_process(space)
    return {"pack_size": pack, "restarts": n, "packs": result.packs, "sweep_s": wall, "training_s": train,
            "overhead_ms_per_restart": 1000 * (wall - train) / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer restarts (<= 60 s on 2 cores)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    import ray

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    startup = time.perf_counter() - t0
    # one restart per trial (the design packs replace) vs packs of 256
    per_trial_restarts = 2 if args.quick else 8  # x 8 cells
    packed_restarts = 64 if args.quick else 256
    with tempfile.TemporaryDirectory() as d:
        rows = [measure(1, per_trial_restarts, Path(d)), measure(256, packed_restarts, Path(d))]
    ray.shutdown()
    single, packed = rows
    print(f"Ray start-up: {startup:.1f} s (paid once per sweep, not counted below)")
    print(f"{'pack size':>9} {'restarts':>8} {'packs':>5} {'sweep s':>8} {'train s':>8} {'overhead ms/restart':>20}")
    for r in rows:
        print(f"{r['pack_size']:>9} {r['restarts']:>8} {r['packs']:>5} {r['sweep_s']:>8.2f} {r['training_s']:>8.2f} "
              f"{r['overhead_ms_per_restart']:>20.1f}")
    ratio = single["overhead_ms_per_restart"] / max(packed["overhead_ms_per_restart"], 1e-9)
    print(f"packs cut the per-restart overhead {ratio:.0f}x; target <= 5 ms/restart: "
          f"{'PASS' if packed['overhead_ms_per_restart'] <= 5 else 'MISS'}")
    if args.json:
        print(json.dumps({
            "benchmark": "tune_overhead", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "python": sys.version.split()[0], "ray": ray.__version__},
            "ray_startup_s": startup, "rows": rows, "overhead_ratio_single_vs_packed": ratio,
            "target_ms_per_restart": 5.0, "pass": packed["overhead_ms_per_restart"] <= 5.0,
        }))


if __name__ == "__main__":
    main()
