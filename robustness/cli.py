"""The ``robustness`` command: a thin layer over the library.

Each command parses its options, calls the library function a Python user
would call, and prints. User errors (a bad file, an unknown study, an
unreachable server) become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from robustness._format import (
    COMPARISON_COLUMNS,
    comparison_rows,
    comparison_text,
    flatten_cells,
    render,
    text_table,
)
from robustness.errors import RobustnessError

_EPILOG_HINT = "Run 'robustness COMMAND --help' for a command's options and an example."


class OptionError(RobustnessError, ValueError):
    """An option the library rejected (an unknown axis, say)."""


# Set by a command once its work is done and its resources are closed (a sweep: storage
# closed, Ray shut down). The console entry point then skips the interpreter's teardown,
# which takes 1.1-1.3 s once torch and Ray Tune are imported.
_SKIP_TEARDOWN = False


def run() -> None:
    """The ``robustness`` command: :func:`main`, then a quick exit where a command allows it."""
    try:
        main()
        code: Any = 0
    except SystemExit as e:
        code = e.code
    if not _SKIP_TEARDOWN:
        sys.exit(code)
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors (:class:`~robustness.errors.RobustnessError`) -> 'Error: <one line>' and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RobustnessError as e:
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            click.echo(f"Error: {message}", err=True)
            sys.exit(2)

    return wrapper


def _storage_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--storage", envvar="ROBUSTNESS_STORAGE", default=None, metavar="URL",
        help="Optuna RDB URL: sqlite:///robustness.db (default; also $ROBUSTNESS_STORAGE) or "
        "postgresql+psycopg://user@host:port/db.",
    )(fn)


def _format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--format table|json|csv``, with ``--json`` as an alias of ``--format json``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool = False, format_: str = "table", **kwargs: Any) -> Any:
        return fn(*args, format_="json" if as_json else format_, **kwargs)

    wrapper = click.option("--json", "as_json", is_flag=True, help="The same as --format json.")(wrapper)
    return click.option("--format", "format_", type=click.Choice(["table", "json", "csv"]), default="table",
                        show_default=True, help="Output format; json is for scripts.")(wrapper)


def _json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--format text|json`` for commands that print lines, with ``--json`` as the alias every command takes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, as_json: bool = False, format_: str = "text", **kwargs: Any) -> Any:
        return fn(*args, as_json=as_json or format_ == "json", **kwargs)

    wrapper = click.option("--json", "as_json", is_flag=True, help="The same as --format json.")(wrapper)
    return click.option("--format", "format_", type=click.Choice(["text", "json"]), default="text",
                        show_default=True, help="Output format; json prints one JSON object, for scripts.")(wrapper)


@click.group(epilog=_EPILOG_HINT, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="restart-robustness")
def main() -> None:
    """Hyperparameter robustness studies: how often training succeeds across random
    restarts, and whether annealed gradient noise (Neelakantan et al., 2015) raises that rate.

    \b
    Typical session:
      robustness validate search_spaces/demo.yaml
      robustness sweep search_spaces/demo.yaml
      robustness stats demo-noise
      robustness report demo-noise -o report.html
    """


# -- validate -----------------------------------------------------------------------
@main.command(epilog="""Examples:

\b
    robustness validate search_spaces/paper_mnist_deep20.yaml --json
    robustness validate my_study.yaml --schema-only   # keys only: no data, no model
""")
@click.argument("file")  # checked by the library: one line for a directory or a missing file
@_json_option
@click.option("--max-cells", type=int, default=None, help="Refuse grids with more cells than this.")
@click.option("--schema-only", is_flag=True, help="Check the keys only; skip loading the data and the dry run.")
@handle_errors
def validate(file: str, as_json: bool, max_cells: int | None, schema_only: bool) -> None:
    """Check a search-space FILE and print its cells and restart counts.

    Besides the keys, it builds the task (importing a plugin), loads its data,
    checks the batch size, and trains two restarts for one update, as the
    sweep's first pack would: whatever would fail in a sweep fails here.
    """
    from robustness.study.search_space import load_search_space

    space = load_search_space(file, max_cells=max_cells)
    summary = space.summary()
    if not schema_only:
        from robustness.study.check import check_trainable

        summary["dry_run"] = check_trainable(space)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{file}: study {summary['study']!r} is valid")
    click.echo(f"  cells: {summary['cells']}  restarts per cell: {summary['restarts_per_cell']}  "
               f"total restarts: {summary['total_restarts']}")
    if not schema_only:
        dry = summary["dry_run"]
        click.echo(f"  task: {space.task.name}, {dry['parameters']:,} parameters per restart, trained "
                   + ("in restart packs (one update of a two-restart pack ran)" if dry["route"] == "pack"
                      else "by its own train(ctx) loop, one restart per trial"))


# -- sweep --------------------------------------------------------------------------
@main.command(epilog="""Examples:

\b
    robustness sweep search_spaces/demo.yaml
    robustness sweep search_spaces/paper_mnist_deep20.yaml --address 10.0.0.5:6379 \\
        --storage postgresql+psycopg://robustness@db:5432/robustness
""")
@click.argument("file")  # checked by the library: one line for a directory or a missing file
@_storage_option
@click.option("--address", default=None, metavar="HOST:PORT",
              help="Join a running Ray cluster instead of starting a local Ray instance.")
@click.option("--resume", is_flag=True, help="Continue an existing study (error if it does not exist). "
              "A plain rerun also continues: stored restarts are never trained twice.")
@click.option("--pack-size", type=click.IntRange(min=1), default=None, help="Restarts per pack (default: the file's, else automatic).")
@click.option("--max-failures", type=click.IntRange(min=0), default=2, show_default=True, help="Retries of a failed pack.")
@click.option("--num-cpus", type=click.IntRange(min=1), default=None, help="CPUs for the local Ray instance (default: all).")
@click.option("--checkpoint-every", type=float, default=60.0, show_default=True, help="Seconds between pack checkpoints.")
@click.option("--experiment-dir", default=None, metavar="DIR", help="Where Ray Tune keeps pack checkpoints and the "
              "sweep's log of Ray's own messages (default: <tmp>/robustness-ray).")
@_json_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def sweep(file: str, storage: str | None, address: str | None, resume: bool, pack_size: int | None,
          max_failures: int, num_cpus: int | None, checkpoint_every: float, experiment_dir: str | None, as_json: bool,
          quiet: bool) -> None:
    """Train every restart of FILE's grid with Ray Tune and record each one in storage.

    Restarts are trained in packs (many restarts vectorized in one process);
    each pack is one Ray Tune trial, and each finished pack is written in one
    transaction. Restarts already in storage are skipped, so an interrupted
    sweep is continued by running the same command again.

    The bar counts restart-steps (one update of one restart) of the restarts
    this run trains, with rate and ETA, and moves as packs report; beside it,
    the study's restarts stored and successes.
    """
    import optuna

    from robustness.study.search_space import load_search_space
    from robustness.study.sweep import run_sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress bar says what happens
    space = load_search_space(file)
    bar = _SweepBar(space.study, hidden=quiet or as_json)
    try:
        result = run_sweep(space, storage=storage, address=address, resume=resume, pack_size=pack_size,
                           max_failures=max_failures, num_cpus=num_cpus, checkpoint_every_s=checkpoint_every,
                           experiment_dir=experiment_dir, progress=bar.restarts, events=bar.event,
                           step_progress=bar.steps)
    finally:
        bar.close()
    global _SKIP_TEARDOWN
    _SKIP_TEARDOWN = True  # Ray is shut down and storage closed: nothing is left to tear down
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        # What this driver did: other drivers may have trained part of the study meanwhile.
        trained = (f"interrupted: {result.written} restarts trained and stored by this driver, in {result.packs} "
                   f"packs it started" if result.interrupted
                   else f"done: {result.written} restarts trained in {result.packs} packs")
        others = f", {result.by_others} stored by other drivers meanwhile" if result.by_others else ""
        click.echo(f"{trained} ({result.already_done} were already stored{others}) in {result.elapsed_s:.1f}s; "
                   f"study {result.study!r} has {result.recorded}/{result.total} restarts, "
                   f"{result.successes} successes ({space.success})")
        _print_cells(result.storage, result.study, by=None, criterion=None)
    if result.failed_packs:
        click.echo(f"Error: {result.failed_packs} packs failed after retries; rerun to train their restarts", err=True)
        sys.exit(1)
    if result.interrupted:
        sys.exit(130)


class _SweepBar:
    """The sweep's tqdm bar: restart-steps with rate and ETA; restarts stored and successes beside it."""

    def __init__(self, study: str, *, hidden: bool) -> None:
        self.study, self.hidden = study, hidden
        self.bar: Any = None
        self.counts = ""

    def steps(self, done: int, total: int) -> None:
        if self.hidden or (self.bar is None and total <= 0):
            return  # nothing to train: no bar (the summary line says so)
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=" restart-steps", unit_scale=True, desc=self.study, dynamic_ncols=True,
                            postfix=self.counts or None)
        if self.bar.total != total:  # other drivers recorded some of this run's restarts
            self.bar.total = total
        self.bar.update(done - self.bar.n)  # may go back: a retried pack resumes from its checkpoint

    def restarts(self, done: int, total: int, successes: int) -> None:
        self.counts = f"{done}/{total} restarts stored, {successes} successes"
        if self.bar is not None:
            self.bar.set_postfix_str(self.counts)

    def event(self, line: str) -> None:
        # A failed or retried pack: one line, above the bar (Ray's tracebacks go to the log it names).
        if self.bar is not None:
            self.bar.clear()
        click.echo(line, err=True)
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- submit / stop ------------------------------------------------------------------
@main.command(epilog="""Examples:

\b
    robustness submit search_spaces/paper_mnist_deep20.yaml --address http://10.0.0.5:8265 \\
        --storage postgresql+psycopg://robustness@db:5432/robustness
    robustness submit my_study.yaml --address http://10.0.0.5:8265 --json   # my_tasks.py travels along
""")
@click.argument("file")  # checked by the library: one line for a directory or a missing file
@click.option("--address", required=True, metavar="URL",
              help="The cluster's Ray job server: http://HEAD:8265 (the head node's dashboard port).")
@_storage_option
@click.option("--schema-only", is_flag=True, help="Check the keys only; skip the local dry run "
              "(when the data is on the cluster only).")
@_json_option
@handle_errors
def submit(file: str, address: str, storage: str | None, schema_only: bool, as_json: bool) -> None:
    """Run FILE's sweep on a Ray cluster as a Ray Job, which goes on after this machine leaves.

    FILE is checked here as 'validate' checks it; nothing is submitted unless it
    passes. The file, and any plugin module it names by import path that is not
    installed, travel with the job; its driver runs 'robustness sweep' on the head
    node. The storage must be reachable from the cluster and from here (PostgreSQL;
    SQLite only for a head on this machine). The job id is recorded with the study:
    'robustness status' shows the job's state, 'robustness stop JOB_ID' ends it.
    """
    from robustness.study.submit import submit_sweep

    job = submit_sweep(file, address=address, storage=storage, schema_only=schema_only)
    if as_json:
        click.echo(json.dumps({"job_id": job.job_id, "address": job.address, "study": job.study}))
        return
    click.echo(f"submitted job {job.job_id} for study {job.study!r} to {job.address}; follow it with "
               f"'robustness status {job.study}' or 'ray job logs --follow {job.job_id} --address {job.address}'")


@main.command(epilog="""Examples:

\b
    robustness stop robustness-demo-noise-1a2b3c4d        # the job server recorded in storage
    robustness stop raysubmit_XYZ --address http://10.0.0.5:8265
""")
@click.argument("job_id")
@click.option("--address", default=None, metavar="URL",
              help="The job server (default: the one recorded with the job in storage).")
@_storage_option
@click.option("--wait", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds to wait for the job to end.")
@handle_errors
def stop(job_id: str, address: str | None, storage: str | None, wait: float) -> None:
    """Stop a submitted job. Packs it stored stay stored; submit the file again to continue."""
    from robustness.study.submit import stop_job

    state = stop_job(job_id, address=address, storage=storage, wait=wait)
    click.echo(f"job {job_id}: {state}")


# -- status -------------------------------------------------------------------------
@main.command(epilog="Example:\n\n    robustness status --storage sqlite:///robustness.db")
@click.argument("study", required=False)
@_storage_option
@_format_option
@handle_errors
def status(study: str | None, storage: str | None, format_: str) -> None:
    """List studies (or one STUDY): restarts done / declared and successes so far.

    A study run with 'robustness submit' also shows its latest job and that job's
    state, asked of the job server (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED,
    or unreachable).
    """
    from robustness.storage import RestartStore, StorageError
    from robustness.study.submit import job_states, submitted_jobs

    with RestartStore(storage) as store:
        summaries = [s for s in store.studies() if study is None or s.name == study]
        latest = {s.name: jobs[-1] for s in summaries if (jobs := submitted_jobs(store, s.name))}
    rows = [{"study": s.name, "restarts": s.n_restarts, "total": s.total_restarts,
             "successes": s.n_successes, "diverged": s.n_diverged} for s in summaries]
    if study is not None and not rows:
        raise StorageError(f"no study {study!r} in this storage")
    states = job_states(latest.values())
    for r in rows:
        r["rate"] = r["successes"] / r["restarts"] if r["restarts"] else None
        if r["study"] in latest:
            r["job"] = latest[r["study"]].job_id
            r["state"] = states[r["job"]]
    columns = ["study", "restarts", "total", "successes", "rate", "diverged"] + (["job", "state"] if latest else [])
    click.echo(render(rows, columns, format=format_))


# -- stats / compare ---------------------------------------------------------------------
def _criterion(metric: str | None, op: str | None, threshold: float | None) -> Any:
    from robustness.criterion import Criterion

    given = [x is not None for x in (metric, op, threshold)]
    if not any(given):
        return None
    if not all(given):
        raise click.UsageError("--metric, --op and --threshold go together")
    try:
        return Criterion(metric=metric, op=op, threshold=threshold)  # type: ignore[arg-type]
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def _criterion_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--threshold", type=float, default=None, help="Re-judge success at this threshold.")(fn)
    fn = click.option("--op", type=click.Choice(["<", "<=", ">", ">="]), default=None, help="Comparison for --threshold.")(fn)
    fn = click.option("--metric", default=None, help="Final metric to re-judge success on (e.g. test_error).")(fn)
    return fn


def _axes(by: str | None) -> tuple[str, ...] | None:
    return None if by is None else tuple(a.strip() for a in by.split(",") if a.strip())


def _print_cells(storage: str | None, study: str, *, by: tuple[str, ...] | None, criterion: Any) -> None:
    from robustness.stats import cell_stats
    from robustness.storage import RestartStore

    with RestartStore(storage) as store:
        table = store.read_table(study, criterion=criterion)
    cells = [c.to_dict() for c in cell_stats(table, by=by, criterion=criterion)]
    rows, axes = flatten_cells(cells)
    click.echo(text_table(rows, [*axes, "n", "successes", "rate", "ci_low", "ci_high", "diverged"]))


@main.command(epilog="""Examples:

\b
    robustness stats demo-noise
    robustness stats demo-noise --metric test_error --op '<' --threshold 0.05 --format json
    robustness stats demo-noise --by schedule,eta --format csv
    robustness stats demo-noise --within 1,5,10        # P(at least one success in K restarts)
""")
@click.argument("study")
@_storage_option
@_criterion_options
@click.option("--by", default=None, metavar="AXES", help="Pool cells over all other axes: comma-separated axes to keep.")
@click.option("--method", type=click.Choice(["wilson", "clopper-pearson"]), default="wilson", show_default=True)
@click.option("--confidence", type=click.FloatRange(0.5, 0.9999), default=0.95, show_default=True)
@click.option("--baseline", default="schedule=none", show_default=True, help="The arm noise is compared with (AXIS=VALUE,...).")
@click.option("--within", default=None, metavar="K[,K...]", help="Also give P(at least one success in K restarts) per "
              "cell, with its interval: what a budget of K restarts buys.")
@_format_option
@handle_errors
def stats(study: str, storage: str | None, metric: str | None, op: str | None, threshold: float | None,
          by: str | None, method: str, confidence: float, baseline: str, within: str | None, format_: str) -> None:
    """Success rates per cell with confidence intervals, and noise-vs-baseline tests.

    Success is the study's stored criterion unless --metric/--op/--threshold re-judge it
    from the stored final metrics. Diverged restarts always count as failures.
    --format table prints the comparisons after the cells; json holds both ("cells",
    "comparisons"); csv holds the cells only (use 'robustness compare --format csv').
    """
    from robustness.stats import cell_stats, compare_arms, success_within
    from robustness.storage import RestartStore

    crit = _criterion(metric, op, threshold)
    budgets = _budgets(within)
    with RestartStore(storage) as store:
        table = store.read_table(study, criterion=crit)
    arm = _parse_arm(baseline)
    with _as_usage_errors():
        cells = [c.to_dict() for c in cell_stats(table, by=_axes(by), criterion=crit, method=method, confidence=confidence)]
        if budgets:
            curves = success_within(table, budgets, by=_axes(by), criterion=crit, method=method, confidence=confidence)
            for cell, curve in zip(cells, curves):  # both in group_rows order
                cell["within"] = [{"k": k, "p": p, "low": lo, "high": hi}
                                  for k, p, lo, hi in zip(curve.k, curve.p, curve.low, curve.high)]
        # A study without the baseline's axes (no noise axis, say) has cell rates but nothing to compare.
        comparable = len(table) and all(k in table.params for k in arm)
        comparisons = [c.to_dict() for c in compare_arms(table, baseline=arm, criterion=crit, confidence=confidence)] if comparable else []
    if format_ == "json":
        click.echo(json.dumps({"study": study, "restarts": len(table), "cells": cells, "comparisons": comparisons}, indent=2))
        return
    rows, axes = flatten_cells(cells)
    extra = []
    for k in budgets:
        extra += [f"p_within_{k}", f"low_{k}", f"high_{k}"]
    for row, cell in zip(rows, cells):
        for point in cell.get("within", []):
            k = point["k"]
            row |= {f"p_within_{k}": point["p"], f"low_{k}": point["low"], f"high_{k}": point["high"]}
    click.echo(render(rows, [*axes, "n", "successes", "rate", "ci_low", "ci_high", "diverged", *extra], format=format_))
    if format_ == "table" and comparisons:
        click.echo("")
        click.echo(comparison_text(comparisons))


@contextlib.contextmanager
def _as_usage_errors() -> Iterator[None]:
    """The statistics reject unknown axes and impossible pairings with KeyError/ValueError:
    those come from the user's options, so they are usage errors (one line, exit 2)."""
    try:
        yield
    except (KeyError, ValueError) as e:
        message = e.args[0] if e.args else type(e).__name__
        raise OptionError(str(message).splitlines()[0]) from None


def _budgets(text: str | None) -> list[int]:
    if text is None:
        return []
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise click.UsageError(f"--within expects restart counts >= 1 separated by commas, got {text!r}")
    return ks


def _parse_arm(text: str) -> dict[str, Any]:
    arm: dict[str, Any] = {}
    for part in text.split(","):
        if "=" not in part:
            raise click.UsageError(f"--baseline expects AXIS=VALUE[,AXIS=VALUE], got {text!r}")
        k, v = (s.strip() for s in part.split("=", 1))
        try:
            arm[k] = json.loads(v)
        except json.JSONDecodeError:
            arm[k] = v
    return arm


@main.command(epilog="""Examples:

\b
    robustness compare demo-noise --baseline 'schedule=none'
    robustness compare demo-noise --match init          # pooled over lr and clip
    robustness compare demo-noise --match lr,init --unpaired --format json
""")
@click.argument("study")
@_storage_option
@click.option("--baseline", default="schedule=none", show_default=True, help="The baseline arm (AXIS=VALUE,...).")
@click.option("--match", "--by", "match", default=None, metavar="AXES",
              help="Axes on which compared arms must agree (default: every non-noise axis); other non-noise "
              "axes are pooled, with restarts still paired within their own cell.")
@click.option("--unpaired", is_flag=True, help="Ignore seed pairing: Fisher's exact test instead of McNemar's.")
@click.option("--test", "unpaired_test", type=click.Choice(["fisher", "boschloo"]), default="fisher", show_default=True)
@click.option("--adjust", type=click.Choice(["holm", "fdr_bh", "none"]), default="holm", show_default=True)
@_criterion_options
@_format_option
@handle_errors
def compare(study: str, storage: str | None, baseline: str, match: str | None, unpaired: bool, unpaired_test: str,
            adjust: str, metric: str | None, op: str | None, threshold: float | None, format_: str) -> None:
    """Noise arms against the baseline in matched cells: tests, adjusted p-values, effect sizes."""
    from robustness.stats import compare_arms
    from robustness.storage import RestartStore

    crit = _criterion(metric, op, threshold)
    with RestartStore(storage) as store:
        table = store.read_table(study, criterion=crit)
    with _as_usage_errors():
        comps = compare_arms(table, baseline=_parse_arm(baseline), match=_axes(match), criterion=crit,
                             paired=not unpaired, unpaired_test=unpaired_test, adjust=adjust)
    dicts = [c.to_dict() for c in comps]
    if format_ == "json":
        click.echo(json.dumps({"study": study, "match": list(comps.match), "pooled": list(comps.pooled),
                               "comparisons": dicts, "unmatched": [dict(u) for u in comps.unmatched]},
                              indent=2, default=str))
        return
    click.echo(render(comparison_rows(dicts), COMPARISON_COLUMNS, format=format_))
    if format_ == "table" and comps.pooled:
        click.echo(f"pooled over {', '.join(comps.pooled)}: each row sums its cells' restarts, and pairs restarts "
                   "by seed within each cell")


@main.command(epilog="""Examples:

\b
    robustness power --p1 0.013 --p2 0.113              # restarts per arm needed
    robustness power --p1 0.013 --n 40                  # smallest detectable p2 with 40 restarts
""")
@click.option("--p1", type=click.FloatRange(0, 1), required=True, help="Baseline success rate.")
@click.option("--p2", type=click.FloatRange(0, 1), default=None, help="Success rate to detect.")
@click.option("--n", "n", type=click.IntRange(min=2), default=None, help="Restarts per arm (the reverse question).")
@click.option("--alpha", type=click.FloatRange(0.0001, 0.5), default=0.05, show_default=True)
@click.option("--power", "power_", type=click.FloatRange(0.05, 0.9999), default=0.8, show_default=True)
@_json_option
@handle_errors
def power(p1: float, p2: float | None, n: int | None, alpha: float, power_: float, as_json: bool) -> None:
    """Restarts per arm to detect P1 -> P2 (two-sided, Cohen's h), or the P2 detectable with N."""
    from robustness.stats import detectable_difference, restarts_needed

    if (p2 is None) == (n is None):
        raise click.UsageError("give exactly one of --p2 (how many restarts?) or --n (what can they detect?)")
    for name, value in (("--p1", p1), ("--p2", p2)):
        if value is not None and not 0 <= value <= 1:  # NaN fails this too
            raise OptionError(f"{name} must be a success rate in [0, 1], got {value}")
    if p2 is not None:
        if p2 == p1:
            raise click.UsageError("--p1 and --p2 must differ")
        need = restarts_needed(p1, p2, alpha=alpha, power=power_)
        out = {"p1": p1, "p2": p2, "alpha": alpha, "power": power_, "restarts_per_arm": need}
        click.echo(json.dumps(out) if as_json else f"{need} restarts per arm detect {p1:g} -> {p2:g} "
                   f"(alpha {alpha:g}, power {power_:g})")
    else:
        p = detectable_difference(n, p1, alpha=alpha, power=power_)
        out = {"p1": p1, "n": n, "alpha": alpha, "power": power_, "detectable_p2": None if p != p else p}
        click.echo(json.dumps(out) if as_json else f"with {n} restarts per arm, the smallest detectable rate above "
                   f"{p1:g} is {p:.4g} (alpha {alpha:g}, power {power_:g})")


# -- report -------------------------------------------------------------------------
@main.command(epilog="Examples:\n\n\b\n    robustness report demo-noise -o report.html\n"
              "    robustness report demo-noise -o report.html --split init   # curves and ECDF per init")
@click.argument("study")
@_storage_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="report.html", show_default=True)
@_criterion_options
@click.option("--thresholds", default=None, metavar="X,Y", help="Thresholds for the successes-out-of-N table "
              "(default: the criterion's and one twice as strict).")
@click.option("--split", default=None, metavar="AXIS", help="Draw the learning curves and the ECDF with one panel "
              "per value of this grid axis (e.g. init) instead of pooling it.")
@handle_errors
def report(study: str, storage: str | None, output: str, metric: str | None, op: str | None, threshold: float | None,
           thresholds: str | None, split: str | None) -> None:
    """Write a self-contained HTML report (Plotly, works offline) for STUDY.

    Success-rate heatmaps, the importance of each axis for success, a noise-vs-baseline
    forest plot, noise schedules beside their success rates, learning-curve bands, each
    cell's restarts curve by curve, ECDFs and the paper-style tables.
    """
    from robustness.report import write_report

    try:
        cuts = None if thresholds is None else [float(x) for x in thresholds.split(",") if x.strip()]
    except ValueError:
        raise click.UsageError(f"--thresholds expects numbers separated by commas, got {thresholds!r}") from None
    path = write_report(storage, study, output, criterion=_criterion(metric, op, threshold), thresholds=cuts,
                        split=split)
    click.echo(f"wrote {path}")


# -- data ---------------------------------------------------------------------------
@main.command("download-mnist", epilog="Example:\n\n    robustness download-mnist --data-dir ~/.cache/robustness")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar="ROBUSTNESS_DATA_DIR",
              help="Where to put mnist/ (default: $ROBUSTNESS_DATA_DIR or ~/.cache/robustness).")
@handle_errors
def download_mnist_cmd(data_dir: str | None) -> None:
    """Download the published MNIST files and verify their md5 checksums."""
    from pathlib import Path

    from robustness.training.data import default_data_dir, download_mnist

    dest = Path(data_dir) / "mnist" if data_dir else default_data_dir() / "mnist"
    click.echo(f"MNIST verified in {download_mnist(dest)}")


# -- reproduce ----------------------------------------------------------------------
@main.command(epilog="""Examples:

\b
    ROBUSTNESS_DATA_DIR=../shared/data robustness reproduce          # about 1.5 hours on 2 cores
    robustness reproduce --mnist-steps 10000 --storage sqlite:///reproduction.db -o docs/reproduction.md
""")
@click.option("--storage", envvar="ROBUSTNESS_STORAGE", default="sqlite:///reproduction.db", show_default=True,
              metavar="URL", help="Where the two studies are stored (also $ROBUSTNESS_STORAGE); a rerun resumes them.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="docs/reproduction.md", show_default=True)
@click.option("--mnist-steps", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Updates per MNIST restart (the study is named paper-mnist-deep20-steps<N>).")
@click.option("--mnist", "mnist_file", default="search_spaces/paper_mnist_deep20.yaml", show_default=True,
              help="The Table 1 search space.")
@click.option("--binary", "binary_file", default="search_spaces/paper_binary_multiplication_cpu.yaml",
              show_default=True, help="The CPU-sized Table 6 search space.")
@click.option("--full-binary", "full_file", default="search_spaces/paper_binary_multiplication.yaml",
              show_default=True, help="The full Table 6 search space, for the scale estimate.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@handle_errors
def reproduce(storage: str, output: str, mnist_steps: int, mnist_file: str, binary_file: str, full_file: str,
              quiet: bool) -> None:
    """Rerun the paper's Table 1 (MNIST) and Table 6 (binary multiplication) and write docs/reproduction.md.

    Trains both studies through the same runner as 'sweep' (local Ray), measures the
    Neural GPU pack against a plain loop at the full study's size, and writes the
    report: every number in it comes from these studies, that measurement, or the
    paper's tables. Run from a clone's top level, with MNIST where the MNIST search
    space looks for it ($ROBUSTNESS_DATA_DIR/mnist).
    """
    import optuna
    from tqdm import tqdm

    from robustness.reproduce import run_reproduction

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bars: dict[str, Any] = {}

    def progress(study: str, done: int, total: int) -> None:
        if quiet:
            return
        if study not in bars:
            bars[study] = tqdm(total=total, initial=done, unit="restart", desc=study, dynamic_ncols=True)
        bars[study].update(done - bars[study].n)
        if done >= total:
            bars[study].close()

    def say(line: str) -> None:
        for bar in bars.values():
            bar.clear()
        click.echo(line, err=True)

    try:
        path = run_reproduction(mnist=mnist_file, binary=binary_file, full_binary=full_file, output=output,
                                storage=storage, mnist_steps=mnist_steps, progress=progress, say=say)
    finally:
        for bar in bars.values():
            bar.close()
    click.echo(f"wrote {path}")


# -- dashboard ----------------------------------------------------------------------
_DASHBOARD_EXAMPLES = """Examples:

\b
    robustness dashboard                                   # sqlite:///robustness.db on http://127.0.0.1:8050/
    robustness dashboard --storage sqlite:///runs.db --port 8060
    robustness dashboard --storage postgresql+psycopg://me@db:5432/robustness
    ssh -L 8050:127.0.0.1:8050 cluster                     # then open it from your laptop

Open http://127.0.0.1:8050/?study=NAME to land on one study."""


@main.command(epilog=_DASHBOARD_EXAMPLES)
@_storage_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. Anything but loopback shows every study to the network, without a login.")
@click.option("--port", type=click.IntRange(0, 65535), default=8050, show_default=True, help="0: any free port.")
@click.option("--refresh", type=click.FloatRange(min=0.2), default=2.0, show_default=True, metavar="SECONDS",
              help="How often the page polls for new restarts and sweep progress.")
@handle_errors
def dashboard(storage: str | None, host: str, port: int, refresh: float) -> None:
    """Serve a live dashboard of every study in the storage (read-only).

    Study list, live sweep progress, success heatmap and table under a criterion you
    set on the page, noise-vs-baseline forest plot with pooling, restart budgets,
    curves split by any axis, each cell's restarts, importance and noise schedules.
    For a long-lived server use dashboards/wsgi.py with gunicorn.
    """
    import logging

    from werkzeug.serving import make_server

    from robustness.dashboard import create_app, open_data

    data = open_data(storage)  # read-only; a bad URL or an unreadable file is one line and exit 2
    app = create_app(data, refresh_s=refresh)
    try:
        server = make_server(host, port, app.server, threaded=True)
    except (OSError, SystemExit) as e:  # werkzeug exits on a taken port; say it in one line instead
        raise OptionError(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or 'address in use'}") from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach it sees every study (no login)", err=True)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"dashboard of {data.url} at http://{shown}:{server.server_port}/  (Ctrl-C to stop)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
