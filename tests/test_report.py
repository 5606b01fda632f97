"""The HTML report: self-contained, complete, and rendered by a real headless Chromium.

Two synthetic studies: the demo's grid (read from search_spaces/demo.yaml, so
it follows that file; with learning curves, built as RestartOutcome records) and a
10,125-restart grid (135 cells x 75 restarts) built directly as a columnar
RestartTable with curve arrays, the size of the paper's Neural GPU study.
"""

from __future__ import annotations

import html.parser
import itertools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robustness import figures
from robustness.criterion import Criterion
from robustness.records import CurvePoint, FrozenMap, RestartOutcome
from robustness.report import (
    SECTIONS,
    ReportError,
    build_report,
    parse_criterion,
    write_report,
)
from robustness.study.search_space import load_search_space
from robustness.table import RestartTable

ROOT = Path(__file__).resolve().parents[1]
DEMO = load_search_space(ROOT / "search_spaces" / "demo.yaml")
ARMS_10K = (("none", None, None), ("constant", 0.001, None), ("annealed", 0.01, 0.55), ("annealed", 0.3, 0.55), ("annealed", 1.0, 0.55))


def demo_outcomes(seed: int = 0) -> list[RestartOutcome]:
    """One synthetic outcome per restart of the demo grid; noise helps, zero init often fails."""
    rng = np.random.default_rng(seed)
    steps = np.arange(DEMO.task.eval_every, DEMO.task.steps + 1, DEMO.task.eval_every)
    out = []
    for spec in DEMO.restart_specs():
        p = 0.3 + 0.35 * (spec.params["schedule"] != "none") - 0.15 * (spec.params["init"] == "zero")
        ok = bool(rng.random() < p)
        diverged = not ok and bool(rng.random() < 0.1)
        final = math.nan if diverged else float(rng.uniform(0.85, 0.97) if ok else rng.uniform(0.08, 0.6))
        curve = [final * (1 - math.exp(-4 * s / steps[-1])) for s in steps]
        if diverged:
            curve[-3:] = [math.nan] * 3
        out.append(
            RestartOutcome(
                params=spec.params, restart=spec.restart, seed=spec.seed,
                metrics={"test_accuracy": final, "test_error": 1 - final}, primary_metric="test_accuracy",
                success=DEMO.success.passes(final, diverged=diverged), diverged=diverged,
                diverged_step=int(steps[-3]) if diverged else None,
                curve=tuple(CurvePoint(int(s), 1.0, float(m)) for s, m in zip(steps, curve)),
            )
        )
    return out


def study_10k(restarts: int = 75, seed: int = 0) -> tuple[RestartTable, dict[FrozenMap, tuple[np.ndarray, np.ndarray]]]:
    """3 lr x 3 clip x 3 init x 5 noise arms x 75 restarts = 10,125 restarts, built in NumPy."""
    rng = np.random.default_rng(seed)
    cells = list(itertools.product((0.01, 0.03, 0.1), (None, 10.0, 100.0), ("simple", "zero", "he"), ARMS_10K))
    rows = np.repeat(np.arange(len(cells)), restarts)
    column = lambda f: np.array([f(cells[c]) for c in rows], dtype=object)  # noqa: E731
    params = {
        "lr": column(lambda c: c[0]), "clip": column(lambda c: c[1]), "init": column(lambda c: c[2]),
        "schedule": column(lambda c: c[3][0]), "eta": column(lambda c: c[3][1]), "gamma": column(lambda c: c[3][2]),
    }
    p = np.array([0.2 + 0.15 * (c[3][0] != "none") + 0.1 * (c[2] == "he") for c in cells])[rows]
    ok = rng.random(rows.size) < p
    diverged = ~ok & (rng.random(rows.size) < 0.05)
    accuracy = np.where(ok, rng.uniform(0.8, 0.99, rows.size), rng.uniform(0.05, 0.79, rows.size))
    accuracy[diverged] = np.nan
    restart = np.tile(np.arange(restarts), len(cells)).astype(np.int64)
    table = RestartTable(
        params=params, restart=restart, seed=1000 + restart, metrics={"test_accuracy": accuracy},
        diverged=diverged, success=ok & ~diverged, primary_metric="test_accuracy",
    )
    steps = np.arange(100, 1001, 100)
    shape = 1 - np.exp(-4 * steps / steps[-1])
    curves = {}
    for arm in ARMS_10K:
        mask = (params["schedule"] == arm[0]) & (params["eta"] == arm[1])
        curves[FrozenMap(schedule=arm[0], eta=arm[1], gamma=arm[2])] = (steps, accuracy[mask][:, None] * shape[None, :])
    return table, curves


# -- the HTML itself ------------------------------------------------------------------------


class _Refs(html.parser.HTMLParser):
    """Collects the src and href attributes of the page's elements (script bodies are data, not tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v or "" for k, v in attrs if k in ("src", "href")]


def external_refs(page: str) -> list[str]:
    """Every src= / href= attribute that points off the file (http, https or protocol-relative).

    plotly.js itself holds link strings (its logo, map attributions) that only
    become elements in features the report does not use; the browser tests
    check the rendered DOM and block every non-file request as well.
    """
    parser = _Refs()
    parser.feed(page)
    parser.close()
    return [r for r in parser.refs if re.match(r"(?i)\s*(https?:)?//", r)]


def test_report_is_self_contained_and_complete() -> None:
    outcomes = demo_outcomes()
    table = RestartTable.from_outcomes(outcomes)
    page = build_report(table, outcomes, study="demo-noise", criterion=DEMO.success)
    assert external_refs(page) == []
    assert page.count("* plotly.js v") == 1  # the library inline, once
    assert page.count("Plotly.newPlot(") == 7
    for sid, heading in SECTIONS:
        assert f'id="{sid}"' in page and heading in page
    # Pooled by default, and the notes say over what (clip and lr have one value each: nothing to pool there).
    assert page.count("Each arm is pooled over init;") == 2
    assert "demo-noise" in page and str(DEMO.success).replace(">", "&gt;").replace("<", "&lt;") in page
    cells = len(DEMO.cells())
    assert f"<dd>{cells * DEMO.restarts}</dd>" in page and f"<dd>{cells}</dd>" in page  # restarts and cells


def test_report_without_curves_leaves_that_section_out() -> None:
    table = RestartTable.from_outcomes(demo_outcomes())
    page = build_report(table, study="demo-noise", title="My title")
    assert 'id="curves"' not in page and 'id="restarts"' not in page and page.count("Plotly.newPlot(") == 5
    assert "<title>My title</title>" in page and "stored with each restart" in page


def test_empty_study_is_an_error() -> None:
    with pytest.raises(ReportError, match="no restarts"):
        build_report(RestartTable.from_outcomes([]), study="empty")


def test_parse_criterion() -> None:
    assert parse_criterion("test_error < 0.01") == Criterion("test_error", "<", 0.01)
    assert parse_criterion("test_accuracy>=0.9") == Criterion("test_accuracy", ">=", 0.9)
    assert parse_criterion(str(Criterion("a", ">", 1e-3))) == Criterion("a", ">", 0.001)
    with pytest.raises(ReportError, match="expected a criterion"):
        parse_criterion("test_error == 0.01")


def test_10k_restart_report_is_complete_and_small() -> None:
    # Its build time is a benchmark's business (dashboards/README.md), not a test's: machines are shared.
    table, curves = study_10k()
    assert len(table) == 10_125
    page = build_report(table, curves, study="synthetic-10k", criterion=Criterion("test_accuracy", ">=", 0.8))
    assert external_refs(page) == [] and page.count("Plotly.newPlot(") == 6  # no restarts: curve arrays have no seeds
    assert len(page) < 8_000_000  # plotly.js is ~4.8 MB of it


# -- split, drill-down, importance ----------------------------------------------------------


def test_split_report_splits_curves_and_ecdf_and_says_so() -> None:
    outcomes = demo_outcomes()
    table = RestartTable.from_outcomes(outcomes)
    page = build_report(table, outcomes, study="demo-noise", criterion=DEMO.success, split="init")
    assert page.count("Split by init: one panel per value, the arms inside each, one scale for all; nothing pooled.") == 2
    inits = sorted({c["init"] for c in DEMO.cells()})
    per_init = len(DEMO.cells()) // len(inits) * DEMO.restarts
    for init in inits:  # a curve panel per init, titled with its restarts
        assert f"init={init} (n={per_init})" in page
    assert page.count("Plotly.newPlot(") == 7


def test_unknown_split_axis_is_a_report_error() -> None:
    table = RestartTable.from_outcomes(demo_outcomes())
    with pytest.raises(ReportError, match="no axis 'nope' to split by; the study's axes are clip, eta, gamma, init, lr"):
        build_report(table, study="demo-noise", split="nope")
    table_10k, per_arm = study_10k(restarts=3)
    with pytest.raises(ReportError, match="cannot split the learning curves: no axis 'init'"):
        build_report(table_10k, per_arm, study="synthetic-10k", split="init")  # curves grouped per arm only


def test_importance_section_names_the_method() -> None:
    table, curves = study_10k(restarts=8)
    page = build_report(table, curves, study="synthetic-10k")
    section = page[page.index('<section id="importance">'):page.index('<section id="forest">')]
    assert "fANOVA (Hutter, Hoos &amp; Leyton-Brown 2014)" in section and "across 135 cells" in section
    assert "computed exactly on the complete grid" in section and "Wilson 95% intervals" in section


def test_restarts_drill_down_caps_cells_and_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustness.report import MAX_DRILL_CELLS, MAX_DRILL_RESTARTS

    # 40 learning rates x 1 arm x 25 restarts; cell i has i % 26 successes, so rates run from 0 to 1.
    lrs = [round(0.001 * (i + 1), 3) for i in range(40)]
    outcomes = [
        RestartOutcome(params={"lr": lr, "schedule": "none", "eta": None, "gamma": None}, restart=k, seed=k,
                       metrics={"test_accuracy": 0.9 if k < i % 26 else 0.1}, primary_metric="test_accuracy",
                       success=k < i % 26, curve=(CurvePoint(10, 1.0, 0.5), CurvePoint(20, 1.0, 0.9 if k < i % 26 else 0.1)))
        for i, lr in enumerate(lrs) for k in range(25)
    ]
    drawn: list[Any] = []
    plot = figures.plot_restart_curves
    monkeypatch.setattr("robustness.report.figures.plot_restart_curves", lambda data: drawn.extend(data) or plot(data))
    page = build_report(RestartTable.from_outcomes(outcomes), outcomes, study="many-cells")
    assert len(drawn) == MAX_DRILL_CELLS == 36
    rates = sorted(d.n_success / d.n_restarts for d in drawn)
    assert rates[0] == 0.0 and rates[-1] == 1.0  # spread from the worst cell to the best
    assert [d.cell["lr"] for d in drawn] == sorted(d.cell["lr"] for d in drawn)  # in the heatmap's order
    assert {len(d.restarts) for d in drawn} == {MAX_DRILL_RESTARTS} and {d.n_restarts for d in drawn} == {25}
    assert page.count('"method":"update"') == 36  # one dropdown entry per cell
    assert "36 of 40 cells, spread evenly" in page and "the first 20 restarts of each cell" in page


# -- real headless Chromium -----------------------------------------------------------------


def render(page: Any, path: Path, figures_expected: int) -> dict[str, Any]:
    """Open ``path`` offline (any non-file request is blocked and recorded), wait for every figure to draw."""
    blocked: list[str] = []

    def only_files(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_files)
    page.goto(path.as_uri())
    page.wait_for_function(
        "n => { const d = document.querySelectorAll('.js-plotly-plot');"
        " return d.length === n && Array.from(d).every(g => g._fullLayout && g.querySelector('.main-svg')); }",
        arg=figures_expected,
        timeout=60_000,
    )
    info = page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => ({id: g.id, traces: g.data.length}))"
    )
    links = page.evaluate(
        "() => Array.from(document.querySelectorAll('[src], [href]')).map(e => e.getAttribute('src') || e.getAttribute('href'))"
    )
    external = [u for u in links if re.match(r"(?i)\s*(https?:)?//", u)]
    return {"figures": info, "blocked": blocked, "external": external}


def heatmap_z(page: Any) -> list[Any]:
    return page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[0].data.map(t => t.z)")


def expected_z(data: figures.HeatmapData) -> list[Any]:
    return [[[None if math.isnan(v) else v for v in row] for row in p.rate.tolist()] for p in data.panels]


def test_demo_report_renders_in_chromium(browser_page: Any, tmp_path: Path) -> None:
    outcomes = demo_outcomes()
    table = RestartTable.from_outcomes(outcomes)
    path = tmp_path / "demo.html"
    path.write_text(build_report(table, outcomes, study="demo-noise", criterion=DEMO.success), encoding="utf-8")

    seen = render(browser_page, path, 7)
    assert [f["id"] for f in seen["figures"]] == ["fig-heatmap", "fig-importance", "fig-forest", "fig-schedules",
                                                  "fig-curves", "fig-restarts", "fig-ecdf"]
    assert seen["blocked"] == seen["external"] == [] and browser_page.problems == []
    data = figures.heatmap_data(table, criterion=DEMO.success)
    assert heatmap_z(browser_page) == expected_z(data)  # JSON round-trips doubles exactly
    # one panel per (init, clip) setting, each holding every arm's restarts
    settings = {(c["init"], c["clip"]) for c in DEMO.cells()}
    arms_per_setting = len(DEMO.cells()) // len(settings)
    assert len(data.panels) == len(settings) and data.panels[0].n.sum() == arms_per_setting * DEMO.restarts

    # Hovering a cell shows its k/n and interval.
    panel = data.panels[0]
    x, y = browser_page.evaluate(
        "() => { const gd = document.getElementById('fig-heatmap'); gd.scrollIntoView();"
        " const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;"
        " return [r.left + xa._offset + xa.l2p(1), r.top + ya._offset + ya.l2p(0)]; }"
    )
    browser_page.mouse.move(x, y)  # a real pointer over row 0, column 1 (the noise arm)
    browser_page.wait_for_function("() => document.querySelector('#fig-heatmap .hoverlayer').textContent.length > 0")
    hover = browser_page.locator("#fig-heatmap .hoverlayer").text_content() or ""
    assert f"{panel.successes[0, 1]}/{panel.n[0, 1]}" in hover and "CI" in hover

    tables = browser_page.locator("#tables table")
    assert tables.count() == 2 and tables.nth(1).locator("tbody tr").count() == len(data.arms)
    browser_page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    assert (tmp_path / "demo.png").stat().st_size > 50_000


def test_10k_report_renders_in_chromium(browser_page: Any, tmp_path: Path) -> None:
    table, curves = study_10k()
    criterion = Criterion("test_accuracy", ">=", 0.8)
    path = tmp_path / "10k.html"
    path.write_text(build_report(table, curves, study="synthetic-10k", criterion=criterion), encoding="utf-8")

    seen = render(browser_page, path, 6)
    assert seen["blocked"] == seen["external"] == [] and browser_page.problems == []
    data = figures.heatmap_data(table, criterion=criterion)
    assert len(data.panels) == 9 and [f["traces"] for f in seen["figures"]][0] == 9
    assert heatmap_z(browser_page) == expected_z(data)
    forest_rows = browser_page.evaluate("() => document.getElementById('fig-forest').data[0].y.length")
    assert forest_rows == 27 * 4  # every (lr, clip, init) group, 4 noise arms each
    browser_page.screenshot(path=str(tmp_path / "10k.png"), full_page=True)


# -- from storage ---------------------------------------------------------------------------


@pytest.fixture
def demo_store(tmp_path: Path) -> str:
    from robustness.storage import RestartStore

    url = f"sqlite:///{tmp_path}/robustness.db"
    with RestartStore(url) as store:
        study = store.open_study(DEMO.study, attrs={"criterion": str(DEMO.success), "search_space": DEMO.text})
        assert store.write_outcomes(study, demo_outcomes()) == len(DEMO.cells()) * DEMO.restarts
    return url


def test_write_report_from_sqlite(demo_store: str, tmp_path: Path, browser_page: Any) -> None:
    path = write_report(demo_store, DEMO.study, tmp_path / "report.html")
    assert path == (tmp_path / "report.html").resolve()
    page = path.read_text(encoding="utf-8")
    # the study's own criterion, from its attrs
    assert str(DEMO.success).replace(">", "&gt;").replace("<", "&lt;") in page
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert path.stat().st_mode & 0o044  # readable by others: mkstemp's 0600 is not kept

    seen = render(browser_page, path, 7)
    assert seen["blocked"] == seen["external"] == [] and browser_page.problems == []
    table = RestartTable.from_outcomes(demo_outcomes())
    assert heatmap_z(browser_page) == expected_z(figures.heatmap_data(table, criterion=DEMO.success))
    # σ_t is drawn over the search space's task.steps.
    # (_fullData: numeric arrays travel base64-encoded in .data and are decoded there.)
    last_t = browser_page.evaluate("() => { const x = document.getElementById('fig-schedules')._fullData[0].x; return x[x.length - 1]; }")
    assert last_t == DEMO.task.steps


def test_write_report_with_another_criterion(demo_store: str, tmp_path: Path) -> None:
    page = write_report(demo_store, DEMO.study, tmp_path / "r.html", criterion="test_error < 0.1", thresholds=[0.05, 0.1]).read_text()
    assert "test_error &lt; 0.1" in page and "test_error &lt; 0.05" in page


def test_write_report_split(demo_store: str, tmp_path: Path) -> None:
    page = write_report(demo_store, DEMO.study, tmp_path / "r.html", split="init").read_text()
    assert page.count("Split by init") == 2 and 'id="restarts"' in page
    with pytest.raises(ReportError, match="no axis 'nope'"):
        write_report(demo_store, DEMO.study, tmp_path / "s.html", split="nope")
    assert not (tmp_path / "s.html").exists()


def test_a_failed_run_leaves_the_old_report(demo_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report")

    def boom(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("figure failed")

    monkeypatch.setattr("robustness.report.build_report", boom)
    with pytest.raises(RuntimeError):
        write_report(demo_store, DEMO.study, target)
    assert target.read_text() == "old report"

    monkeypatch.undo()
    monkeypatch.setattr("robustness.report.os.replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(ReportError, match="cannot write .*No space left"):
        write_report(demo_store, DEMO.study, target)
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_missing_directory_fails_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no directory"):
        write_report(f"sqlite:///{tmp_path}/never-opened.db", "demo-noise", tmp_path / "missing" / "r.html")
    assert not (tmp_path / "never-opened.db").exists()


def test_unknown_study_is_a_storage_error(demo_store: str, tmp_path: Path) -> None:
    from robustness.storage import StorageError

    with pytest.raises(StorageError, match="no study"):
        write_report(demo_store, "nope", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()

