"""``robustness report STUDY -o report.html``: one self-contained HTML file per study.

The file opens offline: plotly.js is embedded once, inline, and every figure
is a ``<div>`` plus a ``Plotly.newPlot`` call on plain JSON, so nothing is
fetched from a CDN. Figures come from :mod:`robustness.figures` (numbers
computed apart from drawing); tables are plain HTML. A report is written to a
temporary file next to its target and renamed over it, so a failed run never
leaves a half-written report behind.

Sections, in page order (:data:`SECTIONS`): the success-rate heatmap; the
importance of each axis for success (fANOVA) beside its marginal success
rates; noise against baseline (forest plot); the noise schedules; the
learning-curve bands; the restarts of each cell, curve by curve (a dropdown
picks the cell; at most :data:`MAX_DRILL_CELLS` cells and
:data:`MAX_DRILL_RESTARTS` restarts per cell, so the file stays small); the
ECDF of the final metric; the paper-style tables. Curves and ECDFs pool every
non-noise axis unless ``split`` names one axis to give a panel per value.

Example::

    write_report("sqlite:///robustness.db", "demo-noise", "report.html", split="init")
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.offline

from robustness import figures
from robustness.criterion import OPERATORS, Criterion
from robustness.errors import RobustnessError
from robustness.figures import Curves, FigureError, PaperTables
from robustness.figures._common import fmt, setting_axes, setting_label
from robustness.records import RestartOutcome
from robustness.stats import cell_stats
from robustness.table import RestartTable

__all__ = ["MAX_DRILL_CELLS", "MAX_DRILL_RESTARTS", "SECTIONS", "ReportError", "build_report", "parse_criterion",
           "write_report"]

# (id, heading) of every section, in page order. "curves" is left out without curves, and
# "restarts" without the restart outcomes themselves (curve arrays carry no seeds).
SECTIONS = (
    ("heatmap", "Success rate per cell"),
    ("importance", "Importance"),
    ("forest", "Noise vs baseline"),
    ("schedules", "Noise schedules"),
    ("curves", "Learning curves"),
    ("restarts", "Restarts per cell"),
    ("ecdf", "Final metric distribution"),
    ("tables", "Paper-style tables"),
)
# The drill-down holds every drawn point in the page: 36 cells x 20 restarts x 10 evaluations
# is ~0.5 MB of JSON; past that, a dashboard (robustness dashboard) serves one cell at a time.
MAX_DRILL_CELLS = 36
MAX_DRILL_RESTARTS = 20
MAX_DRILL_POINTS = 40_000  # fewer restarts per cell when the curves are long
# σ_t is drawn over this many updates when neither the curves nor the study say how long training ran.
DEFAULT_STEPS = 1000
# No mode-bar link to plotly's cloud: the report must not point off the machine.
_PLOT_CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False}
_CRITERION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


class ReportError(RobustnessError, ValueError):
    """A report cannot be made (no restarts, unwritable path, malformed criterion). The message is one line."""


def parse_criterion(text: str) -> Criterion:
    """``"test_error < 0.01"`` -> ``Criterion("test_error", "<", 0.01)`` (the form ``str(Criterion)`` writes)."""
    match = _CRITERION.match(text)
    if match is None:
        raise ReportError(f"expected a criterion like 'test_error < 0.01' (one of {sorted(OPERATORS)}), got {text!r}")
    metric, op, threshold = match.groups()
    return Criterion(metric=metric, op=op, threshold=float(threshold))


def build_report(
    table: RestartTable,
    outcomes: Iterable[RestartOutcome] | Curves | None = None,
    *,
    study: str,
    criterion: Criterion | None = None,
    thresholds: Sequence[float] | None = None,
    title: str | None = None,
    steps: int | None = None,
    created: dt.datetime | None = None,
    split: str | None = None,
) -> str:
    """The whole report as one HTML string.

    Args:
        table: the study's ``N`` restarts.
        outcomes: restart outcomes, for the learning-curve bands and the
            restarts of each cell; or curves already grouped
            (:func:`robustness.figures.curve_arrays`, per arm or per cell), for
            the bands alone; ``None`` leaves both sections out.
        study: the study's name, for the header.
        criterion: re-judge success from the final metrics; ``None`` uses the
            stored success flag.
        thresholds: for the success-counts table (criterion's metric and comparison).
        steps: updates over which σ_t is drawn; default the last curve step, else 1000.
        created: the time in the header; default now (UTC).
        split: a grid axis (e.g. ``"init"``): the learning curves and the ECDF
            get one panel per value of it instead of pooling it.

    Raises:
        ReportError: the table has no restarts, ``split`` is not one of its
            axes, or the given curves were grouped without it.
    """
    if len(table) == 0:
        raise ReportError(f"study {study!r} has no restarts yet; nothing to report")
    _check_split(table, split)
    rows: list[RestartOutcome] | None = None
    if outcomes is None or isinstance(outcomes, Mapping):
        curves = outcomes
    else:
        rows = list(outcomes)
        curves = figures.curve_arrays(rows, by=sorted(table.params))  # whole cells: pooled or split below
    if steps is None:
        steps = max((int(s[-1]) for s, _ in curves.values() if len(s)), default=DEFAULT_STEPS) if curves else DEFAULT_STEPS
    forest = figures.forest_data(table, criterion=criterion)
    importance = figures.importance_data(table, criterion=criterion)
    parts = {
        "heatmap": _figure("heatmap", figures.plot_heatmap(figures.heatmap_data(table, criterion=criterion))),
        "importance": _figure("importance", figures.plot_importance(importance)),
        "forest": _forest_section(forest),
        "schedules": _figure("schedules", figures.plot_schedules(figures.schedule_data(table, steps=steps, criterion=criterion))),
        "ecdf": _figure("ecdf", figures.plot_ecdf(figures.ecdf_data(table, criterion=criterion, split=split))),
        "tables": _tables(figures.paper_tables_data(table, criterion=criterion, thresholds=thresholds)),
    }
    notes = dict(_NOTES, importance=html.escape(importance.method_note))
    notes["ecdf"] += " " + _split_note(table, split)
    if curves:
        metric = table.primary_metric or "metric"
        try:
            bands = figures.curve_band_data(curves, metric=metric, split=split)
        except FigureError as e:
            raise ReportError(f"cannot split the learning curves: {e}") from None
        parts["curves"] = _figure("curves", figures.plot_curve_bands(bands))
        notes["curves"] += " " + _split_note(table, split)
    if rows:
        drill, notes["restarts"] = _restarts_section(rows, table.primary_metric or None, criterion)
        if drill:
            parts["restarts"] = drill
    body = "\n".join(
        f'<section id="{sid}"><h2>{html.escape(heading)}</h2>\n<p class="note">{notes[sid]}</p>\n{parts[sid]}</section>'
        for sid, heading in SECTIONS
        if sid in parts
    )
    header = _header(table, study=study, criterion=criterion, created=created)
    return _page(title or f"Robustness report: {study}", header, body)


def _check_split(table: RestartTable, split: str | None) -> None:
    if split is not None and split not in table.params:
        raise ReportError(f"no axis {split!r} to split by; the study's axes are {', '.join(sorted(table.params))}")


def _split_note(table: RestartTable, split: str | None) -> str:
    """What the curves and ECDF pool, in words: a pooled band over settings that differ can mean nothing."""
    # Only axes with more than one value are really pooled; a constant one changes nothing.
    pooled = [a for a in setting_axes(table, exclude=() if split is None else (split,))
              if len({fmt(v) for v in table.params[a].tolist()}) > 1]
    over = f"pooled over {html.escape(', '.join(pooled))}" if pooled else "nothing pooled"
    if split is None:
        return f"Each arm is {over}; split by one of them (--split AXIS) when they behave differently."
    return f"Split by {html.escape(split)}: one panel per value, the arms inside each, one scale for all; {over}."


def write_report(
    store_or_url: Any,
    study: str | int,
    path: str | os.PathLike[str],
    *,
    criterion: Criterion | str | None = None,
    thresholds: Sequence[float] | None = None,
    split: str | None = None,
) -> Path:
    """Read ``study`` from storage and write its report to ``path`` atomically; return the path.

    ``store_or_url`` is a :class:`~robustness.storage.RestartStore` or a storage
    URL. Without ``criterion`` the study's own (its ``criterion`` attribute)
    is used when recorded, else the stored success flag. σ_t is drawn over the
    search space's ``task.steps`` when the study recorded its search space.
    ``split``: a grid axis to split the learning curves and the ECDF by.

    Raises:
        ReportError: no restarts, a malformed criterion, an unknown ``split``
            axis, or ``path`` cannot be written.
        StorageError: the storage or the study cannot be read.
    """
    from robustness.storage import (
        RestartStore,  # storage (optuna, SQLAlchemy) only when reading from it
        steps_per_restart,
    )

    path = Path(path).expanduser().resolve()
    if not path.parent.is_dir():  # fail before reading the whole study, not after
        raise ReportError(f"cannot write {path}: no directory {path.parent}")
    store = store_or_url if isinstance(store_or_url, RestartStore) else RestartStore(store_or_url)
    try:
        attrs = store.study_attrs(study)
        if criterion is None and isinstance(attrs.get("criterion"), str):
            try:
                criterion = parse_criterion(attrs["criterion"])
            except ReportError:
                criterion = None  # a study attr in another form: judge by the stored success flag instead
        elif isinstance(criterion, str):
            criterion = parse_criterion(criterion)
        table = store.read_table(study, criterion=criterion)
        if len(table):
            _check_split(table, split)  # before reading every curve
        outcomes = list(store.iter_outcomes(study))  # kept: the drill-down needs each restart's seed and curve
    finally:
        if store is not store_or_url:
            store.close()
    page = build_report(table, outcomes, study=str(study), criterion=criterion, thresholds=thresholds,
                        steps=steps_per_restart(attrs), split=split)
    return _write_atomically(path, page)


# -- pieces of the page ---------------------------------------------------------------------

_NOTES = {
    "heatmap": "Successes out of restarts per grid cell: η across, learning rate down, one panel per setting. "
    "Diverged restarts count as failures. Hover a cell for k/n and its Wilson interval.",
    "forest": "Each noise arm against the baseline of its matched cell (same learning rate, clip, init): "
    "risk difference with its interval, paired on seeds (McNemar) where restarts share seeds. "
    "Labels give p-values adjusted across all comparisons (Holm).",
    "schedules": "The noise standard deviation σ<sub>t</sub> = sqrt(variance(t)) of every schedule in the study "
    "(η is a variance), beside the schedule's success rate pooled over all its cells.",
    "curves": "Median (line) and 25-75% quantiles (band) of the evaluation metric at each step, over the restarts "
    "of each arm that are still finite at that step.",
    "ecdf": "Empirical CDF of each arm's final metric; diverged restarts are left out of the curve and counted in "
    "the legend (pooled) or the hover (split). The dashed line is the success threshold.",
    "tables": "Best and mean final metric per setting (the paper's \"best / average over runs\"; the mean's "
    "interval is a seeded percentile bootstrap), and successful restarts out of all at several thresholds.",
}


def _figure(name: str, fig: go.Figure) -> str:
    fig.update_layout(template="plotly_white", autosize=True)
    height = fig.layout.height or 450
    div = fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"fig-{name}", config=_PLOT_CONFIG, default_height=f"{height}px"
    )
    return f'<div class="figure" data-figure="{name}">{div}</div>'


def _forest_section(data: figures.ForestData) -> str:
    unmatched = ""
    if data.unmatched:
        listed = "; ".join(html.escape(setting_label(u)) for u in data.unmatched)
        unmatched = f'<p class="note">Not tested (no baseline cell to match): {listed}</p>'
    if not data.labels:
        return '<p class="empty">No noise arm has a matched baseline, so nothing is compared.</p>' + unmatched
    return _figure("forest", figures.plot_forest(data)) + unmatched


def _restarts_section(rows: Sequence[RestartOutcome], metric: str | None, criterion: Criterion | None) -> tuple[str, str]:
    """One figure with a dropdown over cells, each cell's restarts over its band; and the section's note."""
    drill = figures.restart_curves_by_cell(rows, metric=metric, criterion=criterion, max_cells=MAX_DRILL_CELLS,
                                           max_restarts=MAX_DRILL_RESTARTS, max_points=MAX_DRILL_POINTS)
    if not drill.cells:
        return "", "No restart recorded a learning curve."
    capped = []
    if drill.sampled:
        capped.append(f"{len(drill.cells)} of {drill.n_cells} cells, spread evenly from the lowest success rate to the highest")
    if drill.per_cell is not None:
        capped.append(f"the first {drill.per_cell} restarts of each cell (the band and the counts cover all of them)")
    note = (
        "Each restart's learning curve over its cell's median and interquartile band: successful restarts thin grey, "
        "failed ones red, a divergence marked ✕ where the curve stops. Hover a curve for its restart, seed and final "
        "metric; pick the cell in the menu (its successes out of restarts in brackets)."
        + (f" Shown: {'; '.join(capped)}." if capped else "")
        + " The dashboard (robustness dashboard) shows any cell with all its restarts and a table of them."
    )
    return _figure("restarts", figures.plot_restart_curves(drill.cells)), html.escape(note)


def _html_table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, text_columns: int) -> str:
    """A plain table; the first ``text_columns`` columns are labels, the rest numbers (right-aligned)."""

    def cell(tag: str, j: int, value: Any) -> str:
        cls = ' class="num"' if j >= text_columns else ""
        return f"<{tag}{cls}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", j, h) for j, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", j, c) for j, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.4g}"


def _tables(data: PaperTables) -> str:
    arms = set(data.count_axes)
    setting = [a for a in data.summary_axes if a not in arms]
    summary_rows = [
        [*(fmt(s.params[a]) for a in setting), figures.arm_label(s.params), s.n, s.n - s.n_used,
         _num(s.best), _num(s.mean), f"[{_num(s.mean_low)}, {_num(s.mean_high)}]"]
        for s in data.summary
    ]
    pct = f"{data.summary[0].confidence:.0%}" if data.summary else ""
    best = "min" if data.direction == "minimize" else "max"
    summary = _html_table(
        f"Best / mean final {data.metric} per setting and noise arm (diverged restarts left out of best and mean)",
        [*setting, "noise", "restarts", "left out", f"best ({best})", "mean", f"mean {pct} CI"],
        summary_rows,
        text_columns=len(setting) + 1,
    )
    count_rows = [
        [figures.arm_label(c.params), c.n, *(f"{k} ({k / c.n:.1%})" if c.n else "0" for k in c.successes)]
        for c in data.counts
    ]
    counts = _html_table(
        "Successful restarts out of all restarts per noise arm (diverged restarts are failures)",
        ["noise", "restarts", *data.criteria],
        count_rows,
        text_columns=1,
    )
    return summary + "\n" + counts


def _header(table: RestartTable, *, study: str, criterion: Criterion | None, created: dt.datetime | None) -> str:
    cells = cell_stats(table, criterion=criterion)
    successes = sum(c.successes for c in cells)
    when = (created or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    try:
        version = metadata.version("restart-robustness")
    except metadata.PackageNotFoundError:
        version = "unknown"
    facts = {
        "study": study,
        "restarts": f"{len(table):,}",
        "cells": f"{len(cells):,}",
        "successes": f"{successes:,} ({successes / len(table):.1%})",
        "diverged": f"{int(np.count_nonzero(table.diverged)):,}",
        "success criterion": str(criterion) if criterion else "the success flag stored with each restart",
        "grid axes": ", ".join(sorted(table.params)),
        "created": when,
        "generator": f"restart-robustness {version}",
    }
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts.items())
    return f'<dl class="facts">{items}</dl>'


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1rem 2rem 3rem; color: #222; }
h1 { margin-bottom: .3rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .5rem 0 1rem; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
p.note { color: #555; max-width: 60rem; } p.empty { font-style: italic; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 1rem 0 2rem; font-size: .92rem; }
caption { text-align: left; font-weight: 600; padding-bottom: .4rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
th { background: #f4f6f8; } .num { text-align: right; font-variant-numeric: tabular-nums; }
"""


def _page(title: str, header: str, body: str) -> str:
    nav = " ".join(f'<a href="#{sid}">{html.escape(h)}</a>' for sid, h in SECTIONS if f'id="{sid}"' in body)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
        # plotly.js once, inline: the file must render with no network at all.
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>\n'
        f"</head>\n<body>\n<h1>{html.escape(title)}</h1>\n{header}\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n"
    )


# -- reading and writing ----------------------------------------------------------------------


def _write_atomically(path: Path, text: str) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ReportError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is meant to be shared
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old or the new file
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ReportError(f"cannot write {path}: {e.strerror or e}") from e
        raise
    return path
