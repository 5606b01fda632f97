"""Fixed cost of a sweep: `robustness sweep` with nothing to train, against the floors it stands on.

The sweep runs a copy of a search space (default: the README's demo) cut to one
update per restart, so what remains of its wall time is the fixed cost: imports,
Ray's local start and stop, Tune's trials and their worker processes, the data
set, storage. Beside it, in the same run and each in a fresh process, the floors
that cost is made of:

- ``imports``: ``import robustness.study.sweep, optuna`` (what the driver loads besides Ray);
- ``ray``: ``ray.init`` with the sweep's settings, then ``ray.shutdown``;
- ``ray+tune``: the same, plus one ``tuner.fit`` of one trial per CPU whose trainable
  imports torch and the package's training code (a Tune worker's start), with
  ``reuse_actors=True``.

And ``sweep@ray``: the same sweep joining a Ray instance started once beforehand
(``ray start --head``, then ``--address``), which saves Ray's start and stop.

Each repetition runs every variant once, in a rotating order; figures are medians.
Target (issue 13): the sweep's fixed cost <= 5 s on an idle 2-core machine.

Example:
    python benchmarks/bench_fixed_cost.py --repeats 3
    python benchmarks/bench_fixed_cost.py --space search_spaces/paper_mnist_deep20.yaml --json | tail -n 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Only the standard library here: the harness must not load what it times.

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "search_spaces" / "demo.yaml"
TARGET_S = 5.0
VARIANTS = ("sweep", "sweep@ray", "imports", "ray", "ray+tune")
# The settings of robustness.study.sweep._connect_ray: the floors pay what the sweep pays.
_RAY_INIT = ("ray.init(include_dashboard=False, log_to_driver=False, logging_level='ERROR', "
             "configure_logging=True)")
_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0", "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled"}
_TUNE = """
import os, sys
import ray
from ray import tune
{init}
def trainable(config):
    import robustness.training.pack  # torch and the training code, as a pack trial loads them
    tune.report({{"ok": 1}})
cpus = int(ray.cluster_resources().get("CPU", 1))
tune.Tuner(tune.with_resources(trainable, {{"cpu": 1}}), param_space={{"i": tune.grid_search(list(range(cpus)))}},
           tune_config=tune.TuneConfig(reuse_actors=True),
           run_config=tune.RunConfig(storage_path=sys.argv[1], verbose=0, log_to_file=False)).fit()
ray.shutdown()
"""


def one_update_copy(space: Path, tmp: Path) -> Path:
    """The search space with one update per restart and one evaluation: training costs next to nothing."""
    import yaml  # PyYAML: a dependency of the package, cheap, and only the harness loads it

    doc = yaml.safe_load(space.read_text())
    doc["study"] = f"{doc['study']}-fixed-cost"
    doc["task"]["steps"], doc["task"]["eval_every"] = 1, 1
    path = tmp / space.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def argv_of(variant: str, space: Path, tmp: Path, n: int, address: str) -> list[str]:
    py = sys.executable
    if variant.startswith("sweep"):
        at = ["--address", address] if variant == "sweep@ray" else []
        return [py, "-m", "robustness", "sweep", str(space), "--storage", f"sqlite:///{tmp / f'{variant}{n}.db'}",
                "--experiment-dir", str(tmp / "ray"), "--quiet", "--json", *at]
    if variant == "imports":
        return [py, "-c", "import robustness.study.sweep, optuna"]
    if variant == "ray":
        return [py, "-c", f"import ray; {_RAY_INIT}; ray.shutdown()"]
    return [py, "-c", _TUNE.format(init=_RAY_INIT), str(tmp / "tune")]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_cli(*args: str) -> None:
    ray = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray) if ray.exists() else "ray", *args], check=True, capture_output=True,
                   env={**os.environ, **_ENV}, timeout=180)


def timed(argv: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **_ENV}, cwd=REPO)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise RuntimeError(f"{argv[1:3]} failed (exit {proc.returncode}):\n{tail}")
    return wall, proc.stdout


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Example:\n  python benchmarks/bench_fixed_cost.py --repeats 3 --json",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=DEMO, help="search-space file (default: search_spaces/demo.yaml)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions, each running every variant once (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with all figures as the last line")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if not args.space.is_file():
        parser.error(f"--space: no such file: {args.space}")
    load = os.getloadavg()
    walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
    sweep_elapsed: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fixed-cost-") as d:
        tmp = Path(d)
        space = one_update_copy(args.space, tmp)
        port = free_port()
        address = f"127.0.0.1:{port}"
        ray_cli("start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                "--disable-usage-stats", f"--temp-dir={tmp / 'ray-head'}", f"--dashboard-agent-listen-port={free_port()}")
        try:
            status = run_all(args, space, tmp, address, walls, sweep_elapsed)
        finally:
            ray_cli("stop", "--force")
        if status:
            return status
    return report(args, load, walls, sweep_elapsed)


def run_all(args: argparse.Namespace, space: Path, tmp: Path, address: str, walls: dict[str, list[float]],
            sweep_elapsed: list[float]) -> int:
    """Every variant once per repetition, in a rotating order (the head started for ``sweep@ray`` idles meanwhile)."""
    for rep in range(args.repeats):
        order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[:rep % len(VARIANTS)]
        for variant in order:
            try:
                wall, out = timed(argv_of(variant, space, tmp, rep, address))
            except RuntimeError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            walls[variant].append(wall)
            if variant == "sweep":
                sweep_elapsed.append(json.loads(out.strip().splitlines()[-1])["elapsed_s"])
            print(f"repetition {rep + 1}: {variant} {wall:.2f} s", file=sys.stderr, flush=True)
    return 0


def report(args: argparse.Namespace, load: tuple[float, float, float], walls: dict[str, list[float]],
           sweep_elapsed: list[float]) -> int:
    med = {v: statistics.median(w) for v, w in walls.items()}
    rows = [(v, med[v], min(walls[v]), max(walls[v])) for v in VARIANTS]
    lines = [f"bench_fixed_cost: {args.space.name} cut to 1 update per restart; {cpu_model()}, {os.cpu_count()} CPUs; "
             f"load average at start {load[0]:.2f}; medians of {args.repeats}",
             "", f"{'variant':>9}  {'wall s':>7}  {'min':>6}  {'max':>6}"]
    lines += [f"{v:>9}  {m:7.2f}  {lo:6.2f}  {hi:6.2f}" for v, m, lo, hi in rows]
    own = med["sweep"] - med["ray+tune"] - med["imports"]
    lines += ["", f"a sweep joining a running Ray instance (sweep@ray) saves {med['sweep'] - med['sweep@ray']:.2f} s",
              f"the sweep's run_sweep() alone (its JSON elapsed_s, Ray's stop not included): "
                  f"{statistics.median(sweep_elapsed):.2f} s",
              f"the sweep over its floors (sweep - ray+tune - imports): {own:+.2f} s",
              "", "targets:",
              f"  [{'PASS' if med['sweep'] <= TARGET_S else 'FAIL'}] fixed cost of a sweep: {med['sweep']:.2f} s "
              f"(target <= {TARGET_S:g} s; Ray's start, Tune's workers and the driver's imports alone: "
              f"{med['ray+tune'] + med['imports']:.2f} s)"]
    payload: dict[str, Any] = {
        "benchmark": "bench_fixed_cost",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "load_average_at_start": load},
        "settings": {"space": str(args.space), "repeats": args.repeats},
        "walls_s": walls, "medians_s": med, "sweep_elapsed_s": sweep_elapsed,
        "targets": [{"name": "fixed cost of a sweep", "value": med["sweep"], "op": "<=", "threshold": TARGET_S,
                     "pass": med["sweep"] <= TARGET_S}],
    }
    print("\n".join(lines), flush=True)
    if args.json:
        print(json.dumps(payload), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
