"""The dashboard in a real headless Chromium, over a real sweep (real Ray), on SQLite and on PostgreSQL.

Each storage gets one finished sweep; the page must list its study, re-judge success
when the threshold changes, open a cell's restarts with their curves, and show a
second sweep's progress growing while it writes, without a reload. Screenshots go to
a temporary folder (or $ROBUSTNESS_SCREENSHOTS), never into the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from robustness.dashboard import create_app
from robustness.storage import RestartStore
from robustness.study.search_space import parse_search_space
from robustness.study.sweep import run_sweep

SPACE = """
study: {study}
task: {{name: deep_mlp, dataset: digits, depth: 3, width: 16, steps: {steps}, batch_size: 32, eval_every: {every}}}
grid:
  lr: [0.05]
  clip: [10]
  init: [he, zero]
  noise:
    - schedule: none
    - schedule: annealed
      eta: [0.3]
restarts: {restarts}
success: {{metric: test_accuracy, op: ">=", threshold: 0.5}}
pack_size: {pack}
"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def swept(request: Any, ray_local: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A storage URL holding one finished sweep, ``dash-demo``: 2 inits x 2 arms x 4 restarts, with curves.

    At 300 updates He-initialized restarts pass the criterion and zero-initialized ones do not,
    so the success numbers have something to change when the threshold moves.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'sweep.db'}"
    else:
        url = _new_database(request.getfixturevalue("postgres_server"), "dashboard_browser")
    # 2 packs of 8: one round on the session's 2 CPUs
    space = parse_search_space(SPACE.format(study="dash-demo", steps=300, every=50, restarts=4, pack=8),
                               source="dash-demo.yaml")
    result = run_sweep(space, storage=url)
    assert result.recorded == 16
    yield url


def _new_database(server: Any, name: str) -> str:
    """A fresh database on the session's PostgreSQL server (the module's sweeps share it)."""
    psycopg = pytest.importorskip("psycopg")
    admin = f"host={server.host} port={server.port} user={server.user} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("ROBUSTNESS_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def server(swept: str) -> Iterator[str]:
    """The dashboard over ``swept`` on 127.0.0.1 (a free port), refreshing every half second."""
    from werkzeug.serving import make_server

    app = create_app(swept, refresh_s=0.5)
    httpd = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#graph-heatmap .main-svg", timeout=60_000)


def _successes(page: Any) -> list[str]:
    page.wait_for_selector("#cells-table td", timeout=30_000)
    return page.locator("#cells-table td[data-dash-column='successes']").all_inner_texts()


def _storage_name(url: str) -> str:
    return "postgres" if url.startswith("postgresql") else "sqlite"


def test_study_appears_and_the_threshold_re_judges_it(browser_page: Any, server: str, swept: str,
                                                      screenshots: Path) -> None:
    page = browser_page
    _open(page, f"{server}/?study=dash-demo")
    assert "dash-demo" in page.locator("#studies").inner_text()
    assert "16/16" in page.locator("#studies").inner_text()
    assert "password" not in page.content().lower()
    before = _successes(page)
    with RestartStore(swept) as store:
        table = store.read_table("dash-demo")
    assert sum(int(s.split("/")[0]) for s in before) == int(table.success.sum())
    page.screenshot(path=str(screenshots / f"success-{_storage_name(swept)}.png"), full_page=True)
    # every restart that did not diverge passes at accuracy >= 0
    page.fill("#threshold", "0")
    page.press("#threshold", "Enter")
    page.wait_for_function(
        "want => Array.from(document.querySelectorAll(\"#cells-table td[data-dash-column='successes']\"))"
        ".reduce((s, td) => s + parseInt(td.innerText.split('/')[0]), 0) === want",
        arg=int((~table.diverged).sum()), timeout=30_000)
    after = _successes(page)
    assert after != before or int(table.success.sum()) == int((~table.diverged).sum())
    heat = page.evaluate("document.querySelector('#graph-heatmap .js-plotly-plot').data.length")
    assert heat >= 1
    assert not page.problems, page.problems


def test_a_cell_opens_with_its_restarts_curves(browser_page: Any, server: str, swept: str, screenshots: Path) -> None:
    page = browser_page
    _open(page, f"{server}/?study=dash-demo")
    page.get_by_text("Restarts of a cell", exact=True).click()
    page.wait_for_selector("#graph-restarts .main-svg", timeout=60_000)
    rows = page.locator("#restarts-table td[data-dash-column='seed']").all_inner_texts()
    assert len(rows) == 4
    drawn = page.evaluate(
        "new Set(document.querySelector('#graph-restarts .js-plotly-plot').data"
        ".filter(t => /^(succeeded|failed)/.test(t.name || ''))"
        ".flatMap(t => (t.customdata || []).map(p => p[0])).filter(r => r !== null)).size")
    assert drawn == 4  # every restart of the cell has its curve drawn
    page.screenshot(path=str(screenshots / f"restarts-{_storage_name(swept)}.png"), full_page=True)
    for tab in ("Noise vs baseline", "Restart budget", "Curves and ECDF", "Importance", "Noise schedules"):
        page.get_by_text(tab, exact=True).click()
        page.wait_for_selector("#view .js-plotly-plot .main-svg", timeout=60_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(screenshots / f"{tab.split()[0].lower()}-{_storage_name(swept)}.png"), full_page=True)
    assert not page.problems, page.problems


def test_progress_grows_while_a_sweep_writes(browser_page: Any, server: str, swept: str, tmp_path: Path,
                                             screenshots: Path) -> None:
    """A second sweep, run by the CLI in its own process, shows up and its numbers grow without a reload."""
    study = f"dash-live-{_storage_name(swept)}"
    space = tmp_path / "live.yaml"
    space.write_text(SPACE.format(study=study, steps=300, every=20, restarts=2, pack=4))
    page = browser_page
    _open(page, f"{server}/?study=dash-demo")
    proc = subprocess.Popen([sys.executable, "-m", "robustness", "sweep", str(space), "--storage", swept,
                             "--num-cpus", "1", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # the new study appears in the list without a reload; select it there
        row = page.locator("#studies tr", has_text=study)
        row.wait_for(timeout=120_000)
        row.locator("input[type=checkbox]").check()
        page.locator("#studies tr", has_text="dash-demo").locator("input[type=checkbox]").uncheck()
        page.wait_for_function("s => document.querySelector('#study-title').innerText.includes(s)", arg=study,
                               timeout=30_000)
        # the progress panel follows on its next refresh: the live study's 8 x 300 restart-steps
        page.wait_for_function("() => ((document.querySelector('#progress-steps') || {}).innerText || '')"
                               ".includes('/ 2,400')", timeout=30_000)
        seen: list[int] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            text = page.locator("#progress-steps").inner_text(timeout=30_000)
            value = int(text.split("/")[0].replace(",", "").strip() or 0)
            if not seen or value != seen[-1]:
                seen.append(value)
            if len([v for v in seen if v > 0]) >= 3:
                break
            page.wait_for_timeout(250)
        page.screenshot(path=str(screenshots / f"progress-{_storage_name(swept)}.png"), full_page=True)
        assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] > seen[0], seen
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # never reloaded
    finally:
        out = proc.communicate(timeout=300)[0] if proc.poll() is None else proc.stdout.read()
    assert proc.returncode == 0, out
    page.wait_for_function(
        "() => (document.querySelector('#progress-restarts') || {}).innerText === '8 / 8'", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#study-title').innerText.includes('8 restarts')",
                           timeout=30_000)  # the views follow the study as it grows
    assert page.locator("#criterion-error").inner_text() == ""
    assert not page.problems, page.problems
