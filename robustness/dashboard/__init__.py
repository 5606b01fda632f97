"""``robustness dashboard``: a live Dash (Plotly) app over every study in one storage.

The same numbers as the report (:mod:`robustness.figures`, :mod:`robustness.stats`),
recomputed on the server as the page's controls move, and refreshed while a sweep
writes. Storage is opened read-only; the browser gets figures of aggregates,
never the restarts themselves.

Views (one tab each, for the study selected in the list):

- success per cell: heatmap and table with Wilson intervals, under the page's criterion;
- noise vs baseline: forest plot with adjusted p-values, matched on chosen axes and pooled over the rest;
- restart budget: P(at least one success in k restarts) and the expected best metric against k;
- curves and ECDF: median and quartile bands per arm, split by any axis;
- restarts of a cell: every restart's curve over the cell's band, failed ones in red, with its seed and metrics;
- importance: which axes move the success rate most, beside per-axis marginal success rates;
- noise schedules: σ_t of every schedule in the study.

Above them: the study list (select two or more to compare) and the live
progress of a sweep (restarts stored, restart-steps trained, rate, ETA, packs
in flight with their interim metrics), which the sweep's driver writes to storage.

Example::

    app = create_app("sqlite:///robustness.db")
    app.run(host="127.0.0.1", port=8050)          # or serve app.server with any WSGI server
"""

from __future__ import annotations

from typing import Any

from robustness.dashboard._data import DashboardData, StudyData

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardData", "StudyData", "create_app", "first_view", "open_data"]

# Loopback only unless the user says otherwise: the page shows every study's results, and has no login.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


def open_data(storage: str | None = None) -> DashboardData:
    """The storage at ``storage`` (default ``$ROBUSTNESS_STORAGE`` or ``sqlite:///robustness.db``), opened read-only.

    Raises:
        StorageError: it cannot be opened (one line, password masked).
    """
    from robustness.storage import RestartStore

    return DashboardData(RestartStore(storage, read_only=True))


def create_app(storage: str | DashboardData | None = None, *, refresh_s: float = 2.0, partial_plotly: bool = True) -> Any:
    """The Dash app over ``storage`` (a URL, or data already opened); ``create_app(...).server`` is a WSGI app.

    ``refresh_s``: how often the page polls for new studies, restarts and progress.
    ``partial_plotly``: serve plotly.js's 1.5 MB cartesian bundle (the default) instead of
    Dash's 4.8 MB full one.
    """
    from robustness.dashboard._app import build_app

    if not refresh_s > 0:
        raise ValueError(f"refresh_s must be positive, got {refresh_s!r}")
    data = storage if isinstance(storage, DashboardData) else open_data(storage)
    return build_app(data, refresh_s=refresh_s, partial_plotly=partial_plotly)


def first_view(data: DashboardData, study: str) -> list[Any]:
    """What the page computes on the server to show ``study`` first: its list row, progress and success view.

    For benchmarks and tests: the same calls the callbacks make, without a browser.
    """
    from robustness.dashboard import _views as views
    from robustness.dashboard._app import render

    rows = views.studies_rows(data)
    loaded = data.study(study)
    return [rows, views.progress_view(data.progress(study)), render(data, loaded, "success", loaded.criterion),
            views.cell_options(loaded, loaded.criterion)]
