"""The dashboard's server side: each view's numbers, the checks on values from the browser, read-only
storage, the CLI's one-line errors, and the WSGI entry served by a real gunicorn.

The browser tests (a real sweep, real Chromium) are in test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robustness.criterion import Criterion
from robustness.dashboard import DashboardData, create_app, first_view, open_data
from robustness.dashboard import _views as views
from robustness.dashboard._app import _clicked_cell, _criterion, render
from robustness.dashboard._data import cells_of
from robustness.errors import RobustnessError
from robustness.figures._budget import budget_data, default_budgets
from robustness.stats import cell_stats, success_within
from robustness.storage import RestartStore, StorageError
from tests.test_report import DEMO, demo_outcomes

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    with RestartStore(url) as store:
        study = store.open_study(DEMO.study, attrs={"total_restarts": len(DEMO.cells()) * DEMO.restarts,
                                                   "criterion": str(DEMO.success)})
        store.write_outcomes(study, demo_outcomes())
    return url


@pytest.fixture
def data(demo_url: str) -> DashboardData:
    d = open_data(demo_url)
    yield d
    d.store.close()


def _find(component: Any, ident: Any, attr: str) -> Any:
    """``attr`` of the component with id ``ident`` inside a rendered view."""
    found = []

    def walk(node: Any) -> None:
        if getattr(node, "id", None) == ident:
            found.append(getattr(node, attr))
        children = getattr(node, "children", None)
        for child in children if isinstance(children, list) else [children] if children is not None else []:
            walk(child)

    walk(component)
    assert found, f"no {ident} in the view"
    return found[0]


def _figure(component: Any, name: str) -> dict[str, Any]:
    """The plotly figure of the graph named ``name`` inside a rendered view."""
    figure = _find(component, {"graph": name}, "figure")
    return figure.to_plotly_json() if hasattr(figure, "to_plotly_json") else figure


def _table(component: Any, ident: str) -> list[dict[str, Any]]:
    return _find(component, ident, "data")


def test_study_list_counts_match_the_storage(data: DashboardData) -> None:
    outcomes = demo_outcomes()
    (row,) = views.studies_rows(data)
    assert row["study"] == DEMO.study
    assert row["done"] == f"{len(outcomes)}/{len(DEMO.cells()) * DEMO.restarts}"
    assert row["successes"] == sum(o.success for o in outcomes)
    assert row["diverged"] == sum(o.diverged for o in outcomes)
    assert row["last_write"].endswith("UTC") and row["last_write"][:4].isdigit()


def test_changing_the_threshold_re_judges_the_success_table(data: DashboardData) -> None:
    study = data.study(DEMO.study)
    outcomes = demo_outcomes()
    for threshold in (0.9, 0.5):
        crit = Criterion("test_accuracy", ">=", threshold)
        rows = _table(render(data, study, "success", crit), "cells-table")
        shown = sum(int(r["successes"].split("/")[0]) for r in rows)
        assert shown == sum(crit.judge(o) for o in outcomes)
        assert sum(int(r["successes"].split("/")[1]) for r in rows) == len(outcomes)
        assert [r["rate"] for r in rows] == sorted(r["rate"] for r in rows)  # worst cell first


def test_values_from_the_browser_are_checked_against_the_study(data: DashboardData) -> None:
    study = data.study(DEMO.study)
    assert _criterion(study, None, None, None) == study.criterion == DEMO.success
    assert _criterion(study, "test_error", "<", "0.2") == Criterion("test_error", "<", 0.2)
    for metric, op, threshold, message in (
        ("x'; DROP TABLE trials; --", ">=", 0.5, "no metric"),
        ("test_accuracy", "==", 0.5, "comparison"),
        ("test_accuracy", ">=", "abc", "number"),
        ("test_accuracy", ">=", float("inf"), "finite"),
    ):
        with pytest.raises(RobustnessError, match=message):
            _criterion(study, metric, op, threshold)
    with pytest.raises(RobustnessError, match="no axis"):
        render(data, study, "curves", None, split="'; DROP TABLE studies")
    with pytest.raises(RobustnessError, match="match on axes"):
        render(data, study, "noise", None, match=["nope"])
    with pytest.raises(RobustnessError, match="no view"):
        render(data, study, "nope", None)


def test_forest_pools_the_axes_left_out_of_match(data: DashboardData) -> None:
    study = data.study(DEMO.study)
    full = _table(views.forest_view(study, None, None), "forest-table")
    pooled = _table(views.forest_view(study, None, []), "forest-table")  # match on nothing: pool every setting

    def arm(row: dict[str, Any]) -> str:
        return row["comparison"].split("· ")[-1]

    assert len(full) == 6 and len(pooled) == 2  # 3 inits x 2 noise arms, then the 2 noise arms
    for row in pooled:
        parts = [r for r in full if arm(r) == arm(row)]
        assert len(parts) == 3
        for side in ("noise", "baseline"):
            for i in (0, 1):  # successes, then restarts: the pooled counts are the cells' sums
                assert sum(int(r[side].split("/")[i]) for r in parts) == int(row[side].split("/")[i])


def test_budget_numbers_are_one_minus_the_failure_rate_to_the_k(data: DashboardData) -> None:
    table = data.study(DEMO.study).table
    b = budget_data(table, k=[1, 2, 5])
    assert b.labels[0] == "none"
    for i, arm in enumerate(b.arms):
        mask = np.all([table.params[a] == arm[a] for a in arm], axis=0)
        q = table.success[mask].mean()
        np.testing.assert_allclose(b.p[i], 1 - (1 - q) ** np.array([1, 2, 5]))
        assert b.low[i][0] <= b.p[i][0] <= b.high[i][0]
    ref = {c.params: c.p for c in success_within(table, [1, 2, 5], by=tuple(b.arms[0]))}
    np.testing.assert_allclose(b.p, [ref[a] for a in b.arms])
    assert list(default_budgets(7)) == list(range(1, 8))
    ks = default_budgets(1000)
    assert ks[0] == 1 and ks[-1] == 1000 and np.all(np.diff(ks) > 0)


def test_a_cell_opens_with_every_restart_and_its_curve(data: DashboardData) -> None:
    study = data.study(DEMO.study)
    cell = cells_of(study.table)[3]
    view = views.restarts_view(data, study, study.criterion, cell)
    rows = _table(view, "restarts-table")
    mine = [o for o in demo_outcomes() if all(o.params[k] == v for k, v in cell.items())]
    assert sorted(r["seed"] for r in rows) == sorted(o.seed for o in mine)
    assert [r["success"] == "yes" for r in rows] == [o.success for o in sorted(mine, key=lambda o: o.restart)]
    figure = _figure(view, "restarts")
    drawn = {p[0] for t in figure["data"] if str(t.get("name", "")).startswith(("succeeded", "failed"))
             for p in t["customdata"] if p[0] is not None}
    assert drawn == {o.restart for o in mine}  # every restart's curve, one trace per outcome group


def test_a_click_on_the_heatmap_names_its_cell(data: DashboardData) -> None:
    from robustness import figures
    from robustness.figures._common import fmt

    study = data.study(DEMO.study)
    heat = figures.heatmap_data(study.table)
    panel, i, j = 1, 0, 2
    click = {"points": [{"curveNumber": panel, "x": heat.arm_labels[j].replace(" ", "<br>"), "y": fmt(heat.rows[i])}]}
    chosen = cells_of(study.table)[int(_clicked_cell(study, click))]
    assert chosen == {**heat.panels[panel].setting, **heat.arms[j], heat.row_axis: heat.rows[i]}
    assert _clicked_cell(study, {"points": [{"curveNumber": 99, "x": "?", "y": "?"}]}) is None


def test_every_view_renders_and_the_first_view_has_what_the_page_shows(data: DashboardData) -> None:
    study = data.study(DEMO.study)
    for tab, _ in views.TABS:
        view = render(data, study, tab, study.criterion, cell="0")
        assert view is not None and "className='error'" not in str(view), tab
    rows, progress, success, cells = first_view(data, DEMO.study)
    assert rows[0]["study"] == DEMO.study and len(cells) == len(cell_stats(study.table))
    assert _figure(success, "heatmap")["data"]


def test_the_study_is_read_again_only_when_it_grew(demo_url: str, data: DashboardData) -> None:
    data.list_ttl_s = 0.0  # see every write at once (the page shares one listing per refresh)
    first = data.study(DEMO.study)
    assert data.study(DEMO.study) is first
    extra = [o for o in demo_outcomes(seed=1)][:3]
    extra = [type(o)(**{**o.__dict__, "restart": o.restart + 1000, "seed": o.seed + 1000}) for o in extra]
    with RestartStore(demo_url) as store:
        store.write_outcomes(DEMO.study, extra)
    again = data.study(DEMO.study)
    assert again is not first and len(again.table) == len(first.table) + 3


def test_storage_is_opened_read_only(demo_url: str, tmp_path: Path) -> None:
    data = open_data(demo_url)
    with pytest.raises(StorageError, match="read-only"):
        data.store.write_outcomes(DEMO.study, demo_outcomes()[:1])
    missing = tmp_path / "missing.db"
    with pytest.raises(StorageError):
        open_data(f"sqlite:///{missing}")
    assert not missing.exists()


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "robustness", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_cli_bad_storage_is_one_line_without_the_password(tmp_path: Path) -> None:
    done = _cli("dashboard", "--storage", f"sqlite:///{tmp_path}/nope.db", "--port", "0")
    assert done.returncode == 2 and done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "nope.db").exists()
    secret = "s3cret-pw"
    done = _cli("dashboard", "--storage", f"postgresql+psycopg://me:{secret}@127.0.0.1:1/db", "--port", "0")
    assert done.returncode == 2 and secret not in done.stderr + done.stdout, done.stderr


def test_cli_help_has_examples() -> None:
    done = _cli("dashboard", "--help")
    assert done.returncode == 0 and "Examples:" in done.stdout and "--host" in done.stdout
    assert "127.0.0.1" in done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, *, data: bytes | None = None, timeout: float = 30) -> tuple[int, bytes, Any]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read(), response.headers


def test_cli_serves_on_loopback_by_default(demo_url: str) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "robustness", "dashboard", "--storage", demo_url, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert f"http://127.0.0.1:{port}/" in line, line
        status, body, headers = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"Restart robustness" in body and headers["X-Content-Type-Options"] == "nosniff"
        listening = [c for c in _listening_sockets(proc.pid) if c.endswith(f":{port}")]
        assert listening and all(c.startswith("127.0.0.1:") for c in listening), listening
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _listening_sockets(pid: int) -> list[str]:
    """host:port of the TCP sockets ``pid`` listens on (from /proc, no tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            host_hex, port_hex = fields[1].split(":")
            host = ".".join(str(int(host_hex[i:i + 2], 16)) for i in (6, 4, 2, 0))
            out.append(f"{host}:{int(port_hex, 16)}")
    return out


def test_wsgi_entry_under_gunicorn_serves_the_layout_without_the_password(demo_url: str, tmp_path: Path) -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed (the dashboard extra)")
    port = _free_port()
    proc = subprocess.Popen(
        [str(gunicorn), "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2", "--pythonpath",
         str(ROOT / "dashboards"), "wsgi:application"],
        env={**os.environ, "ROBUSTNESS_STORAGE": demo_url}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body, _ = _get(f"http://127.0.0.1:{port}/_dash-layout")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.3)
        assert status == 200 and "(read-only)" in body.decode()
        # one real callback round trip: the study list's refresh, as the page asks for it
        payload = {"output": "studies.data", "outputs": {"id": "studies", "property": "data"},
                   "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}], "changedPropIds": ["tick.n_intervals"]}
        status, body, _ = _get(f"http://127.0.0.1:{port}/_dash-update-component", data=json.dumps(payload).encode())
        assert json.loads(body)["response"]["studies"]["data"][0]["study"] == DEMO.study
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_page_loads_plotly_js_from_the_partial_bundle_of_the_same_version(demo_url: str) -> None:
    from plotly.offline import get_plotlyjs_version

    from robustness.dashboard._app import _BUNDLE, PLOTLY_BUNDLE_VERSION

    # the vendored bundle must be the plotly.js that plotly.py writes figures for; when plotly is
    # upgraded, replace robustness/dashboard/static/ (npm: plotly.js-cartesian-dist-min@<version>)
    assert get_plotlyjs_version() == PLOTLY_BUNDLE_VERSION
    client = create_app(demo_url).server.test_client()
    page = client.get("/").get_data(as_text=True)
    assert f'<script src="/_robustness/{_BUNDLE}"></script>' in page
    script = client.get(f"/_robustness/{_BUNDLE}")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert script.get_data()[:80].decode().startswith(f"/**\n* plotly.js (cartesian - minified) v{PLOTLY_BUNDLE_VERSION}")
    full = create_app(demo_url, partial_plotly=False).server.test_client().get("/").get_data(as_text=True)
    assert "_robustness/" not in full


def test_create_app_refuses_a_bad_refresh(demo_url: str) -> None:
    with pytest.raises(ValueError, match="refresh_s"):
        create_app(demo_url, refresh_s=0)


def test_two_studies_compare_per_arm_with_their_own_counts(demo_url: str, data: DashboardData) -> None:
    data.list_ttl_s = 0.0
    outcomes = demo_outcomes(seed=3)
    with RestartStore(demo_url) as store:
        store.write_outcomes(store.open_study("second", attrs={"criterion": str(DEMO.success)}), outcomes)
    rows = _table(views.compare_studies_view(data, [DEMO.study, "second"], None), "compare-table")
    for name, source in ((DEMO.study, demo_outcomes()), ("second", outcomes)):
        mine = [r for r in rows if r["study"] == name]
        assert mine[0]["arm"] == "none"  # baseline first
        assert sum(int(r["successes"].split("/")[0]) for r in mine) == sum(o.success for o in source)
        assert sum(int(r["successes"].split("/")[1]) for r in mine) == len(source)
