"""The Dash app: layout, and callbacks that turn the page's controls into views.

One page. The study list and the live progress refresh every ``refresh_s``
seconds (a ``dcc.Interval``); the views refresh when a study's restart count
changes or a control moves. Every value from the browser is checked against
what the study holds (a study name must be listed, a metric must be one the
study recorded, an axis must be one of its axes) before it is used, and
storage is read through :class:`~robustness.storage.RestartStore`'s bound
queries only.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import urllib.parse
from collections.abc import Sequence
from html import escape as html_escape
from pathlib import Path
from typing import Any

import dash
from dash import ALL, Input, Output, State, dash_table, dcc, html

from robustness.criterion import OPERATORS, Criterion
from robustness.dashboard import _views as views
from robustness.dashboard._data import DashboardData, StudyData, cells_of
from robustness.errors import RobustnessError

__all__ = ["build_app"]

log = logging.getLogger("robustness.dashboard")

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #2d3436; color: #fff; padding: 10px 24px; display: flex; align-items: baseline; gap: 24px; }
header h1 { font-size: 20px; margin: 0; }
header .storage { font-family: monospace; font-size: 13px; opacity: .8; }
main { padding: 12px 24px; }
section { background: #fff; border: 1px solid #e3e3e3; border-radius: 6px; padding: 10px 16px; margin-bottom: 14px; }
h2 { font-size: 16px; margin: 4px 0 8px; }
.note { color: #555; font-size: 13px; margin: 4px 0 8px; }
.numbers { display: flex; flex-wrap: wrap; gap: 28px; margin: 4px 0 8px; }
.number .label { display: block; font-size: 12px; color: #666; }
.number .value { font-size: 18px; font-variant-numeric: tabular-nums; }
progress { width: 100%; height: 14px; }
.controls { display: flex; flex-wrap: wrap; gap: 18px; align-items: end; }
.control { min-width: 150px; font-size: 13px; }
.control label { display: block; color: #666; margin-bottom: 2px; }
.error { color: #b00020; font-size: 14px; }
"""


# plotly.js's "cartesian" partial bundle (MIT; npm plotly.js-cartesian-dist-min), which has every
# trace type the views draw (scatter, heatmap, bar) in 1.5 MB instead of the full bundle's 4.8 MB:
# the browser spends less time evaluating it before the first figure (docs/benchmarks.md).
# Used only when it is the plotly.js version plotly.py draws for; else Dash loads its own.
PLOTLY_BUNDLE_VERSION = "4.1.1"
_STATIC = Path(__file__).with_name("static")
_BUNDLE = f"plotly-cartesian-{PLOTLY_BUNDLE_VERSION}.min.js"


def _partial_bundle() -> bool:
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version() == PLOTLY_BUNDLE_VERSION and (_STATIC / _BUNDLE).is_file()


def _page(title: str, plotly_src: str | None) -> str:
    # dcc.Graph uses window.Plotly when a script defined it, and fetches the full bundle otherwise.
    plotly = f'<script src="{plotly_src}"></script>' if plotly_src else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head>{{%metas%}}<title>{title}</title>{{%favicon%}}{{%css%}}<style>{_CSS}</style></head>
<body>{{%app_entry%}}<footer>{{%config%}}{plotly}{{%scripts%}}{{%renderer%}}</footer></body></html>"""


def _control(label: str, component: Any) -> html.Div:
    return html.Div([html.Label(label), component], className="control")


@dataclasses.dataclass
class _First:
    """What the first paint shows: computed in the layout request, so the page needs no callback round trip."""

    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    picked: list[int] = dataclasses.field(default_factory=list)
    names: list[str] = dataclasses.field(default_factory=list)
    version: list[Any] | None = None
    controls: tuple[Any, ...] = ([], None, None, None, [], [], [], "Select a study above")
    cells: tuple[list[dict[str, str]], Any] = ([], None)
    progress: Any = None
    view: Any = None


def _wanted_study() -> list[str]:
    """The ``?study=`` of the page being loaded: Dash fetches its layout from /_dash-layout, so read the referrer."""
    import flask

    page = flask.request.referrer if flask.has_request_context() else None
    query = urllib.parse.urlsplit(page).query if page else ""
    return urllib.parse.parse_qs(query).get("study", [])


def _for_the_page() -> bool:
    """Whether this layout goes to a page (``/_dash-layout``), not to Dash's own check of it.

    Dash calls the layout function once while answering the first request, to
    validate it; computing a study's first view there would hold up the page's
    HTML instead of overlapping with its scripts' download.
    """
    import flask

    return flask.has_request_context() and flask.request.path.endswith("/_dash-layout")


def _first(data: DashboardData) -> _First:
    if not _for_the_page():
        return _First()
    first = _First(rows=views.studies_rows(data))
    wanted = _wanted_study()
    first.picked = [i for i, r in enumerate(first.rows) if r["study"] in wanted]
    if not first.picked and first.rows and not wanted:
        first.picked = [len(first.rows) - 1]  # the newest study
    first.names = [first.rows[i]["study"] for i in first.picked]
    if not first.names:
        return first
    study = data.study(first.names[0])
    first.version = [len(study.table)]
    first.controls = _control_values(study, first.names)
    first.cells = _cell_values(study, study.criterion, None)
    first.progress = _guard(lambda: views.progress_view(data.progress(study.name)))
    first.view = _guard(lambda: render(data, study, "success", study.criterion))
    return first


def layout(data: DashboardData, refresh_s: float) -> html.Div:
    columns = [("study", "study"), ("done", "restarts done/declared"), ("successes", "successes"),
               ("rate", "success rate"), ("diverged", "diverged"), ("last_write", "last write")]
    try:
        first = _first(data)
    except RobustnessError as e:  # the page still loads; the list says what is wrong on the next refresh
        log.warning("first view: %s", e)
        first = _First()
    metrics, metric, op, threshold, splits, matches, match, title = first.controls
    cell_options, cell = first.cells
    return html.Div([
        dcc.Interval(id="tick", interval=int(refresh_s * 1000)),
        dcc.Store(id="selected", data=first.names),
        dcc.Store(id="version", data=first.version),
        html.Header([html.H1("Restart robustness"), html.Span(f"storage: {data.url} (read-only)", className="storage")]),
        html.Main([
            html.Section([
                html.H2("Studies"),
                views.note("Every study in the storage. Select one to open it; select two or more to compare them."),
                dash_table.DataTable(
                    id="studies", columns=[{"name": n, "id": i} for i, n in columns], data=first.rows,
                    row_selectable="multi", selected_rows=first.picked, page_size=10, sort_action="none",
                    style_cell={"textAlign": "left", "fontSize": 13}),
            ]),
            html.Div(id="compare-section"),
            html.Section([html.H2("Progress", id="progress-title"), html.Div(first.progress, id="progress")],
                         id="progress-section"),
            html.Section([
                html.H2(title, id="study-title"),
                html.Div([
                    _control("metric", dcc.Dropdown(id="metric", options=metrics, value=metric, clearable=False)),
                    _control("comparison", dcc.Dropdown(id="op", options=list(OPERATORS), value=op, clearable=False)),
                    _control("threshold", dcc.Input(id="threshold", type="number", value=threshold, debounce=True,
                                                    step="any")),
                    _control("split curves and ECDF by", dcc.Dropdown(id="split", options=splits, placeholder="pooled")),
                    _control("noise vs baseline: match on", dcc.Dropdown(
                        id="match", options=matches, value=match, multi=True, placeholder="nothing (pool everything)")),
                    _control("cell", dcc.Dropdown(id="cell", options=cell_options, value=cell,
                                                  style={"minWidth": "420px"})),
                ], className="controls"),
                html.Div(id="criterion-error", className="error"),
                dcc.Tabs(id="tabs", value="success", children=[dcc.Tab(label=lab, value=val) for val, lab in views.TABS]),
                dcc.Loading(html.Div(first.view or views.note("Select a study in the list above."), id="view"),
                            delay_show=300),
            ], id="study-section"),
        ]),
    ])


def _control_values(study: StudyData, names: Sequence[str]) -> tuple[Any, ...]:
    """The controls for ``study``: metric options and the study's criterion, split and match axes, the title."""
    crit = study.criterion
    title = f"Study {study.name}: {len(study.table):,} restarts" + (
        f" (compared with {', '.join(names[1:])} above)" if len(names) > 1 else "")
    return (list(study.metrics), crit.metric if crit else None, crit.op if crit else None,
            crit.threshold if crit else None, list(study.axes), list(study.settings), list(study.settings), title)


def _cell_values(study: StudyData, criterion: Criterion | None, cell: Any) -> tuple[list[dict[str, str]], Any]:
    options = views.cell_options(study, criterion)
    values = {o["value"] for o in options}
    return options, cell if cell in values else (options[0]["value"] if options else None)


def _criterion(study: StudyData, metric: Any, op: Any, threshold: Any) -> Criterion | None:
    """The page's criterion, from values checked against the study; the study's own while a control is unset."""
    if metric is None or op is None or threshold in (None, ""):
        return study.criterion
    if metric not in study.table.metrics:
        raise RobustnessError(f"the study recorded no metric {metric!r}; it has {', '.join(study.metrics)}")
    if op not in OPERATORS:
        raise RobustnessError(f"choose a comparison: one of {', '.join(OPERATORS)}")
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise RobustnessError("the threshold must be a number") from None
    if not math.isfinite(value):
        raise RobustnessError("the threshold must be finite")
    return Criterion(metric=metric, op=op, threshold=value)


def _names(data: DashboardData, selected: Sequence[Any] | None) -> list[str]:
    known = {s.name for s in data.studies()}
    return [n for n in (selected or []) if isinstance(n, str) and n in known]


def build_app(data: DashboardData, *, refresh_s: float = 2.0, title: str = "Restart robustness",
              partial_plotly: bool = True) -> dash.Dash:
    """The Dash app over ``data``; ``app.server`` is its Flask (WSGI) application.

    ``partial_plotly=False`` serves Dash's full plotly.js bundle (benchmarks compare the two).
    """
    app = dash.Dash(__name__, title=title, update_title=None, suppress_callback_exceptions=True,
                    serve_locally=True, assets_folder="__no_assets__")
    plotly_src = None
    if partial_plotly and _partial_bundle():
        plotly_src = f"{app.config.requests_pathname_prefix}_robustness/{_BUNDLE}"

        @app.server.route(f"{app.config.routes_pathname_prefix}_robustness/{_BUNDLE}")
        def _plotly_bundle() -> Any:
            import flask

            return flask.send_from_directory(_STATIC, _BUNDLE, mimetype="text/javascript", max_age=86400)

    app.index_string = _page(html_escape(title), plotly_src)
    app.layout = lambda: layout(data, refresh_s)

    @app.server.after_request
    def _headers(response: Any) -> Any:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")  # the layout request reads ?study= from it
        return response

    # Every callback fires on a change only (prevent_initial_call): the layout already holds the first view.
    @app.callback(Output("studies", "data"), Input("tick", "n_intervals"), prevent_initial_call=True)
    def _studies(_: Any) -> Any:
        return views.studies_rows(data)

    @app.callback(Output("selected", "data"), Input("studies", "selected_rows"), State("studies", "data"),
                  prevent_initial_call=True)
    def _select(selected: list[int] | None, rows: list[dict[str, Any]] | None) -> Any:
        rows = rows or []
        return [rows[i]["study"] for i in sorted(selected or []) if isinstance(i, int) and 0 <= i < len(rows)]

    @app.callback(Output("version", "data"), Input("tick", "n_intervals"), Input("selected", "data"),
                  State("version", "data"), prevent_initial_call=True)
    def _version(_: Any, selected: list[str], old: Any) -> Any:
        counts = {s.name: s.n_restarts for s in data.studies()}
        new = [counts.get(n) for n in _names(data, selected)]
        return dash.no_update if new == old else new

    @app.callback(Output("metric", "options"), Output("metric", "value"), Output("op", "value"),
                  Output("threshold", "value"), Output("split", "options"), Output("match", "options"),
                  Output("match", "value"), Output("study-title", "children"),
                  Input("selected", "data"), Input("version", "data"), State("metric", "value"),
                  prevent_initial_call=True)
    def _controls(selected: list[str], _: Any, metric: Any) -> Any:
        names = _names(data, selected)
        if not names:
            return _First().controls
        study = data.study(names[0])
        values = _control_values(study, names)
        if dash.ctx.triggered_id == "version" and metric in study.table.metrics:
            # The study grew: new options and title, but the criterion and axes the user chose stay.
            return (values[0], dash.no_update, dash.no_update, dash.no_update, values[4], values[5], dash.no_update,
                    values[7])
        return values

    @app.callback(Output("cell", "options"), Output("cell", "value"),
                  Input("selected", "data"), Input("version", "data"), Input("metric", "value"), Input("op", "value"),
                  Input("threshold", "value"), Input({"graph": ALL}, "clickData"), State("cell", "value"),
                  prevent_initial_call=True)
    def _cells(selected: list[str], _: Any, metric: Any, op: Any, threshold: Any, clicks: Any, cell: Any) -> Any:
        names = _names(data, selected)
        if not names:
            return [], None
        study = data.study(names[0])
        try:
            criterion = _criterion(study, metric, op, threshold)
        except RobustnessError:
            criterion = study.criterion
        click = _heatmap_click()
        clicked = _clicked_cell(study, click) if click else None
        return _cell_values(study, criterion, clicked if clicked is not None else cell)

    @app.callback(Output("tabs", "value"), Input({"graph": ALL}, "clickData"), prevent_initial_call=True)
    def _open_restarts(_: Any) -> Any:
        return "restarts" if _heatmap_click() else dash.no_update

    @app.callback(Output("progress", "children"), Input("tick", "n_intervals"), Input("selected", "data"),
                  prevent_initial_call=True)
    def _progress(_: Any, selected: list[str]) -> Any:
        names = _names(data, selected)
        if not names:
            return views.note("No study selected.")
        return _guard(lambda: views.progress_view(data.progress(names[0])))

    @app.callback(Output("compare-section", "children"), Input("selected", "data"), Input("version", "data"),
                  Input("metric", "value"), Input("op", "value"), Input("threshold", "value"), prevent_initial_call=True)
    def _compare(selected: list[str], _: Any, metric: Any, op: Any, threshold: Any) -> Any:
        names = _names(data, selected)
        if len(names) < 2:
            return None

        def view() -> Any:
            first = data.study(names[0])
            try:
                criterion = _criterion(first, metric, op, threshold)
            except RobustnessError:
                criterion = None
            return views.compare_studies_view(data, names, criterion)

        return html.Section([html.H2(f"Comparing {len(names)} studies"), _guard(view)])

    @app.callback(Output("view", "children"), Output("criterion-error", "children"),
                  Input("selected", "data"), Input("version", "data"), Input("tabs", "value"),
                  Input("metric", "value"), Input("op", "value"), Input("threshold", "value"),
                  Input("split", "value"), Input("match", "value"), Input("cell", "value"), prevent_initial_call=True)
    def _view(selected: list[str], _: Any, tab: str, metric: Any, op: Any, threshold: Any, split: Any, match: Any,
              cell: Any) -> Any:
        names = _names(data, selected)
        if not names:
            return views.note("Select a study in the list above."), ""
        study = data.study(names[0])
        try:
            criterion = _criterion(study, metric, op, threshold)
        except RobustnessError as e:
            return dash.no_update, str(e)
        return _guard(lambda: render(data, study, tab, criterion, split=split, match=match, cell=cell)), ""

    return app


def render(data: DashboardData, study: StudyData, tab: str, criterion: Criterion | None, *, split: Any = None,
           match: Any = None, cell: Any = None) -> Any:
    """The view of ``tab`` (one of :data:`views.TABS`) with the controls' values, checked against the study."""
    if split is not None and split not in study.axes:
        raise RobustnessError(f"no axis {split!r} in this study")
    if match is not None and not (isinstance(match, list) and all(m in study.settings for m in match)):
        raise RobustnessError(f"match on axes of this study only: {', '.join(study.settings)}")
    if len(study.table) == 0:
        return views.note(f"Study {study.name} has no restarts recorded yet; its sweep's progress is above.")
    if tab == "success":
        return views.heatmap_view(study, criterion)
    if tab == "noise":
        return views.forest_view(study, criterion, match)
    if tab == "budget":
        return views.budget_view(study, criterion)
    if tab == "curves":
        return views.curves_view(data, study, criterion, split)
    if tab == "restarts":
        cells = cells_of(study.table)
        try:
            chosen = cells[int(cell)]
        except (TypeError, ValueError, IndexError):
            return views.note("Choose a cell above (or click one in the success heatmap).")
        return views.restarts_view(data, study, criterion, chosen)
    if tab == "importance":
        return views.importance_view(study, criterion)
    if tab == "schedules":
        return views.schedules_view(study, criterion)
    raise RobustnessError(f"no view {tab!r}")


def _clicked_cell(study: StudyData, click: Any) -> str | None:
    """The cell (its option value) of a click on the success heatmap: panel, row and arm from the point."""
    from robustness import figures
    from robustness.figures._common import fmt
    from robustness.records import FrozenMap

    heat = figures.heatmap_data(study.table)
    try:
        point = click["points"][0]
        panel = heat.panels[int(point["curveNumber"])]
        row = next(r for r in heat.rows if fmt(r) == point["y"])
        arm = next(a for a, lab in zip(heat.arms, heat.arm_labels) if lab.replace(" ", "<br>") == point["x"])
    except (KeyError, IndexError, TypeError, ValueError, StopIteration):
        return None
    cell = FrozenMap({**panel.setting, **arm, **({heat.row_axis: row} if heat.row_axis in study.axes else {})})
    cells = cells_of(study.table)
    return str(cells.index(cell)) if cell in cells else None


def _heatmap_click() -> Any:
    """The click that triggered this callback, if it was on the success heatmap."""
    if dash.ctx.triggered_id != {"graph": "heatmap"}:
        return None
    return dash.ctx.triggered[0].get("value") if dash.ctx.triggered else None


def _guard(make: Any) -> Any:
    """A view, or one line saying why not: never a traceback in the page."""
    try:
        return make()
    except RobustnessError as e:
        return html.Div(str(e), className="error")
    except Exception:  # the page stays up; the detail goes to the server log
        log.exception("a dashboard view failed")
        return html.Div("this view failed; the server log has the details", className="error")
