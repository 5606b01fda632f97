"""Three routes to one study, end to end: `robustness sweep` against plain Optuna and plain Ray Tune scripts.

Every route trains the same restarts (the search space's ``restart_specs()``: same
cells, restart indices and seeds, with the task and settings of
``training_setup(space)``), starts from a fresh SQLite file, stores one Optuna
trial per restart (grid coordinates plus ``seed`` as params, the primary metric as
value, the curve as intermediate values, ``success`` as a user attr) and runs
in its own process, so imports, Ray start-up and storage writes all count:

- ``sweep``: the command a user types, ``python -m robustness sweep FILE --storage
  sqlite:///...`` (restart packs, one Tune trial per pack, bulk writes).
- ``optuna``: ``optuna.create_study(storage=...)``, every restart enqueued as fixed
  params, ``study.optimize(objective, n_trials=N, n_jobs=2)``; the objective trains
  its restart with ``robustness.training.reference.train_single`` (the plain
  ``nn.Module`` + ``torch.optim`` + ``GradientNoise`` loop a pack reproduces).
- ``tune``: one Tune trial per restart (``tune.grid_search`` over cell x restart), a
  function trainable calling ``train_single``, 1 CPU per trial,
  ``max_concurrent_trials`` = CPUs, ``reuse_actors=True``, and the Ray settings
  the sweep itself uses (no dashboard, no auto loggers, ``verbose=0``); the results
  go into the Optuna storage with ``study.add_trials`` at the end.

Each repetition runs every route once, in an order that rotates, so load on a
shared machine hits all routes alike; a figure is the median over repetitions.
The tool's lead over a route is that route's median wall time over the sweep's.
At the end every route must have stored the same restarts; success counts are
printed per route, with the restarts whose verdict differs from the plain loop's.

Targets (issue 13): the sweep >= 5x faster than the Optuna route and >= 4x faster
than the Tune route.

Example:
    python benchmarks/bench_routes.py --quick            # 9 restarts x 200 steps, 1 repetition, < 3 min on 2 cores
    python benchmarks/bench_routes.py --routes sweep,optuna --repeats 1
    python benchmarks/bench_routes.py --json | tail -n 1 > routes.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Only the standard library at module level: this file is also the Optuna and Tune
# routes' script (run with --child), and those must pay only their own imports.

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "search_spaces" / "demo.yaml"  # what the README's first command sweeps
ROUTES = ("sweep", "optuna", "tune")
TARGETS = {"optuna": 5.0, "tune": 4.0}  # issue 13: the tool's minimum lead over each route
# About 8 restarts in all (at least one per cell). 200 steps, not fewer, so that the success
# counts mean something: on the demo, He-init restarts first pass 0.5 test accuracy at 150-200 steps.
QUICK_RESTARTS, QUICK_STEPS = 8, 200
OPTUNA_JOBS = 2  # the Optuna route: study.optimize(..., n_jobs=2)


# -- the routes, each run as a child process --------------------------------------------
def _setup(space_path: str) -> tuple[Any, Any, Any, Any, list[Any]]:
    """(space, task, config, data, specs) of a search-space file, as every route sees them."""
    from robustness.study.plan import training_setup
    from robustness.study.search_space import load_search_space

    space = load_search_space(space_path)
    task, config = training_setup(space)
    return space, task, config, task.load_data(), space.restart_specs()


def _distributions(space: Any) -> dict[str, Any]:
    """The params every baseline route stores: the cell's index in ``space.cells()`` and the restart index."""
    import optuna

    return {"cell": optuna.distributions.IntDistribution(0, len(space.cells()) - 1),
            "restart": optuna.distributions.IntDistribution(0, space.restarts - 1)}


def _maximize(space: Any) -> bool:
    return space.success.op in (">", ">=")


def _finite_value(value: float, maximize: bool) -> float:
    # Optuna fails a trial whose objective returns NaN; store a diverged restart as the worst value, as the tool does.
    return value if math.isfinite(value) else (-math.inf if maximize else math.inf)


def _user_attrs(outcome: Any) -> dict[str, Any]:
    return {"seed": outcome.seed, "success": outcome.success, "diverged": outcome.diverged,
            "wall_time_s": outcome.wall_time_s,
            **{f"metrics.{k}": (v if math.isfinite(v) else None) for k, v in outcome.metrics.items()}}


def route_optuna(space_path: str, storage: str, n_jobs: int) -> int:
    """A user's plain Optuna script: one trial per restart, trained by ``train_single``."""
    import optuna
    import torch

    from robustness.training.reference import train_single

    space, task, config, data, specs = _setup(space_path)
    # n_jobs threads share the cores: each gets its share, as Ray gives each trial its CPUs.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_jobs))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    maximize = _maximize(space)
    # GridSampler gives trial number i grid point i, so the two threads never train one restart twice
    # (enqueue_trial on SQLite with n_jobs > 1 can hand one trial to both: optuna/optuna#4002).
    grid = {"cell": list(range(len(space.cells()))), "restart": list(range(space.restarts))}
    study = optuna.create_study(study_name=space.study, storage=storage, sampler=optuna.samplers.GridSampler(grid),
                                direction="maximize" if maximize else "minimize")

    def objective(trial: optuna.Trial) -> float:
        cell = trial.suggest_int("cell", 0, len(grid["cell"]) - 1)
        restart = trial.suggest_int("restart", 0, space.restarts - 1)
        spec = specs[cell * space.restarts + restart]  # restart_specs() is cell-major
        outcome = train_single(task, spec, config, criterion=space.success, data=data)
        for point in outcome.curve:
            trial.report(point.metric, point.step)
        for k, v in _user_attrs(outcome).items():
            trial.set_user_attr(k, v)
        return _finite_value(outcome.value, maximize)

    study.optimize(objective, n_trials=len(specs), n_jobs=n_jobs)
    return len(specs)


def _tune_trial(trial_config: dict[str, Any], *, task: Any, config: Any, criterion: Any, data: Any,
                specs: list[Any], restarts: int) -> None:
    """Tune function trainable: restart ``trial_config['restart']`` of cell ``trial_config['cell']``."""
    from ray import tune

    from robustness.training.reference import train_single

    spec = specs[trial_config["cell"] * restarts + trial_config["restart"]]  # restart_specs() is cell-major
    outcome = train_single(task, spec, config, criterion=criterion, data=data)
    tune.report({"value": outcome.value, "curve": [[p.step, p.metric] for p in outcome.curve],
                 "attrs": _user_attrs(outcome)})


def route_tune(space_path: str, storage: str, workdir: str) -> int:
    """A user's plain Ray Tune script: one trial per restart, results into Optuna at the end."""
    # The Ray settings the sweep uses (robustness.study.sweep._connect_ray): the route pays no extra logging.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import optuna
    import ray
    from ray import tune

    space, task, config, data, specs = _setup(space_path)
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    trainable = tune.with_parameters(_tune_trial, task=task, config=config, criterion=space.success, data=data,
                                     specs=specs, restarts=space.restarts)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"cell": tune.grid_search(list(range(len(space.cells())))),
                     "restart": tune.grid_search(list(range(space.restarts)))},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=os.cpu_count()),
        run_config=tune.RunConfig(name="routes-tune", storage_path=workdir, verbose=0, log_to_file=False),
    )
    grid = tuner.fit()
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} Tune trials failed; first: {grid.errors[0]}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    maximize = _maximize(space)
    study = optuna.create_study(study_name=space.study, storage=storage,
                                direction="maximize" if maximize else "minimize")
    trials, dists = [], _distributions(space)
    for result in grid:
        m = result.metrics
        trials.append(optuna.trial.create_trial(
            params={k: result.config[k] for k in dists}, distributions=dists,
            value=_finite_value(m["value"], maximize),
            intermediate_values={int(step): metric for step, metric in m["curve"]}, user_attrs=m["attrs"]))
    study.add_trials(trials)
    ray.shutdown()
    return len(trials)


def child_main(route: str, space_path: str, storage: str, workdir: str, n_jobs: int) -> int:
    if route == "optuna":
        n = route_optuna(space_path, storage, n_jobs)
    else:
        n = route_tune(space_path, storage, workdir)
    print(json.dumps({"route": route, "restarts": n}), flush=True)
    return 0


# -- the harness --------------------------------------------------------------------------
def workload(space_path: Path, *, quick: bool, tmp: Path) -> tuple[Path, list[str]]:
    """The search-space file every route runs; with ``quick`` a copy cut to a few restarts and steps."""
    if not quick:
        return space_path, []
    import yaml

    from robustness.study.search_space import load_search_space

    cells = len(load_search_space(space_path).cells())
    doc = yaml.safe_load(space_path.read_text(encoding="utf-8"))
    restarts = max(1, QUICK_RESTARTS // cells)
    doc["restarts"] = restarts
    doc["study"] = f"{doc['study']}-quick"
    task = doc["task"]
    task["steps"] = QUICK_STEPS
    task["eval_every"] = min(int(task.get("eval_every", QUICK_STEPS)), QUICK_STEPS // 2)  # keep a 2-point curve
    path = tmp / f"{space_path.stem}-quick.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    note = (f"--quick: {space_path.name} cut to {restarts} restart(s) per cell x {cells} cells = "
            f"{restarts * cells} restarts, {QUICK_STEPS} steps, eval every {task['eval_every']}")
    return path, [note]


def route_argv(route: str, space: Path, url: str, workdir: Path, n_jobs: int) -> list[str]:
    if route == "sweep":
        return [sys.executable, "-m", "robustness", "sweep", str(space), "--storage", url, "--quiet", "--json",
                "--experiment-dir", str(workdir)]
    return [sys.executable, str(Path(__file__).resolve()), "--child", route, "--space", str(space),
            "--storage", url, "--workdir", str(workdir), "--optuna-jobs", str(n_jobs)]


def run_route(argv: list[str]) -> float:
    """Wall seconds of one route's whole process; raises with its output's tail if it failed."""
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv[1:4])} exited with {proc.returncode}:\n{tail}")
    return wall


Verdicts = dict[tuple[int, int], tuple[bool, float]]  # (cell index, restart index) -> (success, final value)


def stored_verdicts(url: str, space: Any) -> Verdicts:
    """Success and value per stored restart, keyed by (cell index, restart index), read with stock Optuna.

    The baseline routes store those two as params; the tool stores the cell's
    coordinates plus ``seed``, mapped back here through the search space.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cell_index = {_cell_key(c): i for i, c in enumerate(space.cells())}
    restart_of = {s.seed: s.restart for s in space.restart_specs(space.cells()[:1])}
    trials = optuna.load_study(study_name=space.study, storage=url).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    out = {}
    for t in trials:
        p = t.params
        key = (p["cell"], p["restart"]) if "cell" in p else (cell_index[_cell_key(p)], restart_of[p["seed"]])
        out[key] = (bool(t.user_attrs.get("success")), float(t.value))
    return out


def _cell_key(params: Any) -> str:
    return json.dumps({k: v for k, v in params.items() if k != "seed"}, sort_keys=True)


def measure(routes: Sequence[str], space_path: Path, space: Any, *, repeats: int, n_jobs: int,
            tmp: Path) -> tuple[dict[str, list[float]], dict[str, Verdicts]]:
    """Wall times per route (one per repetition, order rotated) and each route's stored verdicts."""
    walls: dict[str, list[float]] = {r: [] for r in routes}
    verdicts: dict[str, Verdicts] = {}
    for i in range(repeats):
        for route in [*routes[i % len(routes):], *routes[:i % len(routes)]]:
            db, workdir = tmp / f"{route}-{i}.db", tmp / f"{route}-{i}-ray"
            url = f"sqlite:///{db}"
            walls[route].append(run_route(route_argv(route, space_path, url, workdir, n_jobs)))
            print(f"  repetition {i + 1}/{repeats}: {route} {walls[route][-1]:.1f} s", file=sys.stderr, flush=True)
            found = stored_verdicts(url, space)
            if route in verdicts and found != verdicts[route]:
                print(f"  note: {route} stored other outcomes than in repetition 1", file=sys.stderr)
            verdicts[route] = found
            db.unlink()
    return walls, verdicts


def agreement(v: Verdicts, loop: Verdicts) -> tuple[int, float]:
    """(restarts whose success differs from the plain loop's, largest |final value - the loop's|)."""
    differ = sum(k not in v or v[k][0] != ok for k, (ok, _) in loop.items())
    deltas = [abs(v[k][1] - x) for k, (_, x) in loop.items() if k in v and math.isfinite(v[k][1] - x)]
    return differ, max(deltas, default=0.0)


def report(routes: Sequence[str], walls: dict[str, list[float]], verdicts: dict[str, Verdicts],
           expected: int) -> tuple[list[str], dict[str, Any], list[Any]]:
    from _common import Target, format_table

    median = {r: statistics.median(walls[r]) for r in routes}
    loop = verdicts.get("optuna")  # the plain loop: the definition a pack reproduces
    rows, figures = [], {}
    for r in routes:
        v, lead = verdicts[r], (median[r] / median["sweep"] if "sweep" in routes else None)
        differ, delta = agreement(v, loop) if loop is not None else (None, None)
        successes = sum(ok for ok, _ in v.values())
        figures[r] = {"wall_s": walls[r], "median_s": median[r], "restarts_per_s": expected / median[r],
                      "stored": len(v), "successes": successes, "differ_from_plain_loop": differ,
                      "max_value_delta_from_plain_loop": delta, "sweep_lead": lead}
        rows.append([r, f"{median[r]:.1f}", f"{min(walls[r]):.1f}", f"{max(walls[r]):.1f}",
                     f"{expected / median[r]:.2f}", f"{len(v)}/{expected}", str(successes),
                     "-" if differ is None else f"{differ} ({delta:.2g})", "-" if lead is None else f"{lead:.2f}x"])
    lines = [format_table(["route", "median s", "min s", "max s", "restarts/s", "stored", "successes",
                           "differ vs loop (max |d value|)", "sweep lead"], rows)]
    targets = [Target(f"sweep lead over the {r} route (x)", figures[r]["sweep_lead"], ">=", TARGETS[r])
               for r in routes if r in TARGETS and "sweep" in routes]
    return lines, figures, targets


def caveats(quick: bool, figures: dict[str, Any]) -> list[str]:
    notes = []
    if quick:
        notes.append("--quick checks the plumbing: with this little training, start-up (imports, Ray) dominates "
                     "every wall time, so the leads say nothing about the targets")
    if (figures.get("sweep", {}).get("differ_from_plain_loop") or 0) > 0:
        notes.append("the sweep's packs match the plain loop update by update to float rounding; a deep net at this "
                     "lr amplifies that difference (chaotically), so restarts that end near the threshold can flip")
    return notes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("Example:")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", type=Path, default=DEMO, help=f"search-space file (default: {DEMO.relative_to(REPO)})")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repetitions; each runs every route once (default 3, with --quick 1)")
    ap.add_argument("--quick", action="store_true",
                    help=f"a copy of the space cut to about {QUICK_RESTARTS} restarts x {QUICK_STEPS} steps")
    ap.add_argument("--routes", default=",".join(ROUTES), help="comma-separated subset of sweep,optuna,tune")
    ap.add_argument("--optuna-jobs", type=int, default=OPTUNA_JOBS, help="n_jobs of the Optuna route (default 2)")
    ap.add_argument("--json", action="store_true", help="print one JSON object with all figures as the last line")
    # The Optuna and Tune routes run this file again as their script.
    ap.add_argument("--child", choices=ROUTES[1:], help=argparse.SUPPRESS)
    ap.add_argument("--storage", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, str(args.space), args.storage, args.workdir, args.optuna_jobs)
    from importlib import metadata

    import torch
    from _common import emit, fail, machine_info, now_utc

    from robustness.errors import RobustnessError
    from robustness.study.search_space import load_search_space

    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    if not routes or any(r not in ROUTES for r in routes) or len(set(routes)) != len(routes):
        return fail(f"--routes takes distinct names from {','.join(ROUTES)}, got {args.routes!r}")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3  # one quick repetition already takes 1.5 min on 2 cores
    if args.repeats < 1 or args.optuna_jobs < 1:
        return fail("--repeats and --optuna-jobs must be >= 1")
    machine, date = machine_info(torch.device("cpu")), now_utc()
    machine.update({name: metadata.version(name) for name in ("optuna", "ray")})
    with tempfile.TemporaryDirectory(prefix="bench-routes-") as d:
        try:
            space_path, notes = workload(args.space.resolve(), quick=args.quick, tmp=Path(d))
            space = load_search_space(space_path)
            expected = len(space.restart_specs())
            print(f"{expected} restarts x {space.task.steps} steps ({space_path.name}); routes {','.join(routes)}; "
                  f"{args.repeats} repetition(s)", file=sys.stderr, flush=True)
            walls, verdicts = measure(routes, space_path, space, repeats=args.repeats,
                                      n_jobs=args.optuna_jobs, tmp=Path(d))
        except (RobustnessError, RuntimeError) as e:
            return fail(str(e))
    table, figures, targets = report(routes, walls, verdicts, expected)
    same = len({frozenset(v) for v in verdicts.values()}) == 1 and all(len(v) == expected for v in verdicts.values())
    notes += caveats(args.quick, figures)
    load = "/".join(f"{x:.1f}" for x in machine["load_average_at_start"] or ())
    lines = [f"machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, load {load or '?'}; torch {machine['torch']}, "
             f"optuna {machine['optuna']}, ray {machine['ray']}; {date}",
             f"workload: {space.study}, {len(space.cells())} cells x {space.restarts} restarts = {expected} restarts "
             f"x {space.task.steps} steps; median of {args.repeats} repetition(s), route order rotated",
             *(f"note: {n}" for n in notes), "", *table, "",
             f"every route stored the same {expected} restarts: {same}", "targets (issue 13):",
             *((t.line() for t in targets) if targets else ["  none judged: they need the sweep route"])]
    payload = {"benchmark": "routes", "date": date, "machine": machine,
               "settings": {"space": str(args.space), "quick": args.quick, "repeats": args.repeats, "routes": routes,
                            "optuna_jobs": args.optuna_jobs, "restarts": expected, "steps": space.task.steps},
               "notes": notes, "routes": figures, "same_restarts": same,
               "targets": [t.as_dict() for t in targets]}
    emit(lines, payload, as_json=args.json)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
