"""Each view of the dashboard as Dash components, from a study's data and the page's controls.

Pure functions of their arguments (no callbacks, no storage access beyond the
:class:`DashboardData` passed in), so tests call them directly. Figures come
from :mod:`robustness.figures`, the same functions the HTML report draws with.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from dash import dash_table, dcc, html

from robustness import figures
from robustness.criterion import Criterion
from robustness.dashboard._data import DashboardData, StudyData, cells_of
from robustness.figures._budget import budget_data, plot_budget
from robustness.figures._common import arm_label, arm_sort_key, fmt
from robustness.stats import cell_stats

__all__ = [
    "TABS",
    "budget_view",
    "cell_label",
    "compare_studies_view",
    "curves_view",
    "forest_view",
    "heatmap_view",
    "importance_view",
    "progress_view",
    "restarts_view",
    "schedules_view",
    "studies_rows",
]

# (value, label) of every tab, in page order.
TABS = (
    ("success", "Success per cell"),
    ("noise", "Noise vs baseline"),
    ("budget", "Restart budget"),
    ("curves", "Curves and ECDF"),
    ("restarts", "Restarts of a cell"),
    ("importance", "Importance"),
    ("schedules", "Noise schedules"),
)
_GRAPH_CONFIG = {"displaylogo": False, "showSendToCloud": False, "responsive": True}


def graph(fig: go.Figure, name: str) -> html.Div:
    """The figure in a ``div#graph-<name>``; the graph's own id is ``{"graph": name}``.

    A pattern-matching id lets a callback listen to clicks on a graph that only some
    tabs render (a plain id would have to exist in the layout from the start).
    """
    fig.update_layout(template="plotly_white", margin={"t": max(80, fig.layout.margin.t or 0), "l": 70, "r": 30, "b": 60})
    return html.Div(dcc.Graph(id={"graph": name}, figure=fig, config=_GRAPH_CONFIG), id=f"graph-{name}")


def note(text: str) -> html.P:
    return html.P(text, className="note")


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def studies_rows(data: DashboardData) -> list[dict[str, Any]]:
    """The study list: one row per study (name, restarts done/declared, successes, diverged, last write)."""
    rows = []
    for s in data.studies():
        declared = s.total_restarts
        done = f"{s.n_restarts}/{declared}" if declared else str(s.n_restarts)
        rows.append({
            "study": s.name, "done": done, "successes": s.n_successes, "diverged": s.n_diverged,
            "last_write": _when(s.last_write),
            "rate": "-" if s.n_restarts == 0 else f"{s.n_successes / s.n_restarts:.1%}",
        })
    return rows


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else (f"{m}m {s:02d}s" if m else f"{s}s")


def progress_view(progress: Any) -> html.Div:
    """Restarts stored, restart-steps trained with rate and ETA, and the packs in flight."""
    total = progress.total_restarts
    steps_total = progress.restart_steps_total
    share = progress.restart_steps_done / steps_total if steps_total else float("nan")
    rate = "-" if progress.rate is None else f"{progress.rate:,.0f} restart-steps/s"
    numbers = [
        ("restarts stored", f"{progress.recorded:,}" + (f" / {total:,}" if total else ""), "progress-restarts"),
        ("restart-steps trained",
         f"{progress.restart_steps_done:,}" + (f" / {steps_total:,} ({share:.1%})" if steps_total else ""),
         "progress-steps"),
        ("rate", rate, "progress-rate"),
        ("ETA", "done" if total and progress.recorded >= total else _duration(progress.eta_s), "progress-eta"),
        ("packs in flight", str(len(progress.in_flight)), "progress-packs"),
    ]
    items = [html.Div([html.Span(label, className="label"), html.Span(value, id=ident, className="value")],
                      className="number") for label, value, ident in numbers]
    children: list[Any] = [html.Div(items, className="numbers")]
    if total and steps_total:
        children.append(html.Progress(value=str(progress.restart_steps_done), max=str(steps_total), id="progress-bar"))
    if progress.in_flight:
        rows = [{"pack": p.pack, "restarts": p.restarts, "step": f"{p.step}/{p.steps}",
                 "interim": ", ".join(f"{k} {fmt(v)}" for k, v in sorted(p.metrics.items())),
                 "updated": _when(dt.datetime.fromtimestamp(p.updated_at, dt.timezone.utc))}
                for p in progress.in_flight]
        children.append(dash_table.DataTable(
            id="packs-table", data=rows, columns=[{"name": c, "id": c} for c in rows[0]],
            style_cell={"textAlign": "left", "fontSize": 13}, page_size=10))
    return html.Div(children, id="progress-content")


def _criterion_text(criterion: Criterion | None) -> str:
    return str(criterion) if criterion else "the success flag stored with each restart"


def heatmap_view(study: StudyData, criterion: Criterion | None) -> html.Div:
    table = study.table
    fig = figures.plot_heatmap(figures.heatmap_data(table, criterion=criterion))
    cells = cell_stats(table, criterion=criterion)
    rows = sorted(
        ({**{a: fmt(c.params.get(a)) for a in study.axes}, "successes": f"{c.successes}/{c.n}",
          "rate": round(c.rate, 4), "95% interval": f"[{c.ci_low:.3f}, {c.ci_high:.3f}]", "diverged": c.diverged}
         for c in cells),
        key=lambda r: r["rate"],
    )
    return html.Div([
        note(f"Successes out of restarts per cell under {_criterion_text(criterion)}; diverged restarts fail. "
             "Hover a cell for its Wilson 95% interval; click it to open its restarts. The table lists every cell, "
             "worst first."),
        graph(fig, "heatmap"),
        dash_table.DataTable(id="cells-table", data=rows, columns=[{"name": c, "id": c} for c in (rows[0] if rows else [])],
                             sort_action="native", page_size=15, style_cell={"textAlign": "left", "fontSize": 13}),
    ])


def forest_view(study: StudyData, criterion: Criterion | None, match: Sequence[str] | None) -> html.Div:
    """Every noise arm against its baseline, matched on ``match`` (None: every non-noise axis) and pooled over the rest."""
    try:
        data = figures.forest_data(study.table, criterion=criterion, match=match)
    except ValueError as e:
        return html.Div(note(f"No comparison: {e}"))
    if not len(data.labels):
        return html.Div(note("No comparison: this study has no noise arm with a matching baseline."))
    pooled = [a for a in study.settings if match is not None and a not in match]
    how = (f"matched on {', '.join(match) or 'nothing'}; pooled over {', '.join(pooled)} (each restart still pairs "
           "with the baseline restart of its own cell)") if pooled else "matched on every non-noise axis"
    rows = [{"comparison": data.labels[i], "noise": f"{data.noise_successes[i]}/{data.noise_n[i]}",
             "baseline": f"{data.baseline_successes[i]}/{data.baseline_n[i]}",
             "difference": round(float(data.risk_difference[i]), 4),
             "interval": f"[{data.low[i]:.3f}, {data.high[i]:.3f}]", "test": data.tests[i],
             "p": f"{data.p_value[i]:.3g}", "p adjusted": f"{data.p_adjusted[i]:.3g}"} for i in range(len(data.labels))]
    return html.Div([
        note(f"Noise minus baseline success rate under {_criterion_text(criterion)}, {how}. Paired on seeds "
             f"(exact McNemar) where restarts share seeds, else Fisher; p-values adjusted across all rows "
             f"({data.adjust})."),
        graph(figures.plot_forest(data), "forest"),
        dash_table.DataTable(id="forest-table", data=rows, columns=[{"name": c, "id": c} for c in rows[0]],
                             page_size=15, style_cell={"textAlign": "left", "fontSize": 13}),
    ])


def budget_view(study: StudyData, criterion: Criterion | None) -> html.Div:
    data = budget_data(study.table, criterion=criterion)
    return html.Div([
        note("How many restarts to pay for: P(at least one success in k restarts) per arm, from the arm's success "
             "rate pooled over its cells (restarts drawn with replacement), with the rate's Wilson interval carried "
             "through; and the expected best final metric over k restarts (Dodge et al. 2019)."),
        graph(plot_budget(data), "budget"),
    ])


def curves_view(data: DashboardData, study: StudyData, criterion: Criterion | None, split: str | None) -> html.Div:
    curves, used = data.band_curves(study.name)
    parts: list[Any] = []
    pooled = [a for a in study.settings if a != split and len(set(study.table.params[a].tolist())) > 1]
    what = f"split by {split}" if split else "pooled"
    parts.append(note(
        f"Median and interquartile band of the evaluation metric per arm ({what}; pooled over "
        f"{', '.join(pooled) or 'nothing'}), from {used:,} of {len(study.table):,} restarts"
        + ("" if used >= len(study.table) else " (the first restarts of every cell)")
        + ". Below: the empirical CDF of the final metric; diverged restarts are counted in the legend."))
    metric = study.table.primary_metric or "metric"
    if curves:
        parts.append(graph(figures.plot_curve_bands(figures.curve_band_data(curves, metric=metric, **_split(split))),
                           "curves"))
    else:
        parts.append(note("No learning curves were recorded in this study."))
    parts.append(graph(figures.plot_ecdf(figures.ecdf_data(study.table, criterion=criterion, **_split(split))), "ecdf"))
    return html.Div(parts)


def _split(split: str | None) -> dict[str, Any]:
    return {} if not split else {"split": split}


def cell_label(cell: Mapping[str, Any], arms: Sequence[str] = ()) -> str:
    """``"clip=10, init=zero, lr=0.01 · annealed η=0.3 γ=0.55"``: the setting, then the noise arm."""
    setting = ", ".join(f"{k}={fmt(v)}" for k, v in cell.items() if k not in arms)
    arm = {k: v for k, v in cell.items() if k in arms}
    return f"{setting} · {arm_label(arm)}" if arm else setting


def cell_options(study: StudyData, criterion: Criterion | None) -> list[dict[str, str]]:
    """Every cell as a dropdown option, labelled with its successes; the value is the cell's index."""
    stats = {c.params: c for c in cell_stats(study.table, criterion=criterion)}
    cells = cells_of(study.table)
    # Settings together, and within a setting the arms in the heatmap's order, baseline first.
    ordered = sorted(range(len(cells)), key=lambda i: (_arm_free(cells[i], study), arm_sort_key(cells[i])))
    return [{"label": f"{cell_label(cells[i], study.arms)}  ({stats[cells[i]].successes}/{stats[cells[i]].n})", "value": str(i)}
            for i in ordered]


def _arm_free(cell: Mapping[str, Any], study: StudyData) -> str:
    return repr(tuple(fmt(cell.get(a)) for a in study.settings))


def restarts_view(data: DashboardData, study: StudyData, criterion: Criterion | None, cell: Mapping[str, Any]) -> html.Div:
    """One cell's restarts: seed, final metrics, diverged step, success; curves overlaid on the cell's band."""
    outcomes = data.cell_outcomes(study.name, cell)
    if not outcomes:
        return html.Div(note(f"No restarts recorded in cell {cell_label(cell, study.arms)}."))
    metric = study.table.primary_metric or "metric"
    curves = figures.restart_curves_data(outcomes, metric=metric, criterion=criterion)
    metrics = sorted({k for o in outcomes for k in o.metrics})
    judged = {o.restart: (criterion.judge(o) if criterion and criterion.metric in o.metrics else o.success)
              for o in outcomes}
    rows = [{"restart": o.restart, "seed": o.seed, "success": "yes" if judged[o.restart] else "no",
             "diverged at": "-" if not o.diverged else fmt(o.diverged_step),
             **{m: fmt(round(o.metrics[m], 6)) if m in o.metrics else "-" for m in metrics}} for o in outcomes]
    ok = sum(judged.values())
    return html.Div([
        note(f"Cell {cell_label(cell, study.arms)}: {ok}/{len(outcomes)} restarts succeed under {_criterion_text(criterion)}. "
             "Each restart's curve over the cell's median and interquartile band; failed restarts in red."),
        graph(figures.plot_restart_curves(curves), "restarts"),
        dash_table.DataTable(id="restarts-table", data=rows, columns=[{"name": c, "id": c} for c in rows[0]],
                             sort_action="native", page_size=20, style_cell={"textAlign": "left", "fontSize": 13},
                             style_data_conditional=[{"if": {"filter_query": '{success} = "no"'},
                                                      "backgroundColor": "#fdecea"}]),
    ])


def importance_view(study: StudyData, criterion: Criterion | None) -> html.Div:
    data = figures.importance_data(study.table, criterion=criterion)
    return html.Div([
        note(data.method_note),
        graph(figures.plot_importance(data), "importance"),
    ])


def schedules_view(study: StudyData, criterion: Criterion | None) -> html.Div:
    data = figures.schedule_data(study.table, steps=study.steps, criterion=criterion)
    return html.Div([
        note("σ_t = sqrt(variance(t)) of every noise schedule in the study over its training length (η is a "
             "variance), beside each schedule's success rate pooled over all its cells."),
        graph(figures.plot_schedules(data), "schedules"),
    ])


def compare_studies_view(data: DashboardData, names: Sequence[str], criterion: Criterion | None) -> html.Div:
    """Two or more studies side by side: success rate per arm (pooled over each study's other axes)."""
    fig = go.Figure()
    rows = []
    skipped = []
    for name in names:
        study = data.study(name)
        crit = criterion if criterion is not None and criterion.metric in study.table.metrics else study.criterion
        if criterion is not None and crit is not criterion:
            skipped.append(name)
        stats = sorted(cell_stats(study.table, by=study.arms, criterion=crit), key=lambda c: arm_sort_key(c.params))
        labels = [arm_label(c.params) for c in stats]
        rate = np.array([c.rate for c in stats])
        fig.add_trace(go.Bar(
            x=labels, y=rate, name=name,
            error_y={"type": "data", "symmetric": False, "array": np.array([c.ci_high for c in stats]) - rate,
                     "arrayminus": rate - np.array([c.ci_low for c in stats])},
            customdata=[f"{c.successes}/{c.n}" for c in stats],
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.1%}} (%{{customdata}})<extra></extra>"))
        rows += [{"study": name, "arm": lab, "successes": f"{c.successes}/{c.n}", "rate": f"{c.rate:.1%}",
                  "95% interval": f"[{c.ci_low:.3f}, {c.ci_high:.3f}]", "criterion": _criterion_text(crit)}
                 for lab, c in zip(labels, stats)]
    fig.update_layout(barmode="group", title={"text": "Success rate per arm, each study pooled over its other axes"},
                      yaxis={"title": {"text": "success rate"}, "range": [0, 1], "tickformat": ".0%"},
                      xaxis={"title": {"text": "noise arm"}}, height=420, legend={"title": {"text": "study"}})
    children: list[Any] = [graph(fig, "compare-studies")]
    if skipped:
        children.insert(0, note(f"{', '.join(skipped)}: no metric {criterion.metric!r}; judged by its own criterion."))
    children.append(dash_table.DataTable(id="compare-table", data=rows, columns=[{"name": c, "id": c} for c in rows[0]],
                                         page_size=20, style_cell={"textAlign": "left", "fontSize": 13}))
    return html.Div(children)

