"""The dashboard's first view of a 10k- and a 100k-restart study, against stock optuna-dashboard.

Builds synthetic studies in SQLite through the storage fast path (a 3 x 2 x 3 x 4
grid = 72 cells, 10-point learning curves, 10% diverged, seed-paired; cached in
``--workdir``, so reruns skip the write), then, for each size:

- **server, library**: a fresh ``open_data`` (cold cache: a new server process's
  first page load) then ``first_view(data, study)``; and a second ``first_view``
  on the same data (warm: the study is cached until its restart count moves).
  The database file itself sits in the OS page cache in both;
- **server, HTTP**: the one data request our page makes, ``GET /_dash-layout``
  (the first view is computed inside it), as the first request to a fresh app
  (Dash's first-request setup, which calls the layout once more, included);
- **painted**: headless Chromium, a fresh app (cold cache) and a fresh browser
  (empty HTTP cache: a first visit) per run, from navigation start to the first
  view painted (``#graph-heatmap .main-svg`` and ``#cells-table td`` present,
  then one animation frame), taken in the page with ``performance.now()``; with
  the bytes the browser received by then (all responses, and the data ones
  alone: for us the layout and callbacks, for optuna-dashboard its ``/api/``
  requests), and when the HTML, the scripts and the data arrived. Also a
  **repeat visit**: one browser whose cache already holds the scripts, a fresh
  app behind the same address each run;
- the same for stock optuna-dashboard (``optuna_dashboard.wsgi``) on the same
  file: server time of ``GET /api/studies/<id>?after=0`` (the study-detail
  request its page makes, with every trial) against a fresh app, and painted =
  its study page until its trial history plot is drawn. It runs in a child
  process, so a load past ``--timeout-s`` can be stopped.

Targets (issue: the live dashboard): the first view of a 10k-restart study in
<= 1 s of server time and <= 2 s to a painted page; 100k restarts in <= 3 s and
<= 5 s. The verdicts take the cold server time and the first visit. Each figure
is a median over ``--reps`` runs (``--od-reps`` for optuna-dashboard, whose loads
take minutes). ``--profile`` adds, per size, the cold first view's parts timed
alone and a cProfile of it.

    python benchmarks/bench_dashboard.py --workdir /tmp/bench-dashboard [--sizes 10000,100000] [--reps 5]
        [--profile] [--json] [--skip-optuna-dashboard]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import platform
import pstats
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = "/usr/bin/chromium"  # Playwright's own browser download is not available here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-sync"]
BATCH = 5000  # restarts per write_outcomes call (one transaction each), like a large pack
TARGETS = {10_000: (1.0, 2.0), 100_000: (3.0, 5.0)}  # restarts -> (server s, painted s), from the issue
# Our first view, painted: the heatmap's SVG and a row of the cells table.
OURS_READY = ["#graph-heatmap .main-svg", "#cells-table td"]
# optuna-dashboard 0.21's study page: the trials' markers in its history plot (Plotly draws the empty
# axes first, before the study's trials have arrived).
OD_READY = ["#plot-history .scatterlayer .point"]
VIEWPORT = {"width": 1280, "height": 900}


# -- the studies ----------------------------------------------------------------
def grid() -> list[dict[str, Any]]:
    """The 72 cells: lr x clip x init x noise arm (baseline and three annealed etas)."""
    return [
        {"lr": lr, "clip": clip, "init": init, "schedule": s, "eta": eta, "gamma": None if eta is None else 0.55}
        for lr in (0.01, 0.03, 0.1) for clip in (10.0, 100.0) for init in ("simple", "zero", "random_walk")
        for s, eta in (("none", None), ("annealed", 0.01), ("annealed", 0.3), ("annealed", 1.0))
    ]


def synthetic(n_restarts: int, *, seed: int = 0, batch: int = BATCH) -> Iterator[list[Any]]:
    """Exactly ``n_restarts`` outcomes over the 72 cells (restart k of every cell shares seed k), in batches."""
    from robustness.records import CurvePoint, RestartOutcome

    rng = np.random.default_rng(seed)
    cells = grid()
    per, extra = divmod(n_restarts, len(cells))
    steps = range(100, 1001, 100)  # 10 evaluation points per restart
    out: list[Any] = []
    for i, cell in enumerate(cells):
        p = rng.uniform(0.05, 0.6)  # the cell's true success rate
        for k in range(per + (i < extra)):
            diverged = bool(rng.random() < 0.1)
            acc = float("nan") if diverged else float(np.clip(rng.normal(0.9 if rng.random() < p else 0.2, 0.05), 0, 1))
            curve = tuple(CurvePoint(s, 1.0, float("nan") if diverged else acc * (s / 1000) ** 0.3) for s in steps)
            out.append(RestartOutcome(
                params=cell, restart=k, seed=k, metrics={"test_accuracy": acc, "test_error": 1 - acc},
                primary_metric="test_accuracy", success=bool(acc >= 0.9) and not diverged, curve=curve,
                diverged=diverged, diverged_step=50 if diverged else None))
            if len(out) >= batch:
                yield out
                out = []
    if out:
        yield out


def study_name(n_restarts: int) -> str:
    return f"synthetic-{n_restarts // 1000}k" if n_restarts % 1000 == 0 else f"synthetic-{n_restarts}"


def _cached(path: Path, name: str) -> tuple[int, Any] | None:
    """Restarts recorded in study ``name`` of the SQLite file, and its storage format (None: no such study or file)."""
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        count = conn.execute("SELECT COUNT(*) FROM trials JOIN studies USING (study_id) WHERE study_name = ?",
                             (name,)).fetchone()[0]
        fmt = conn.execute("SELECT value_json FROM study_user_attributes JOIN studies USING (study_id) "
                           "WHERE study_name = ? AND key = 'storage_format'", (name,)).fetchone()
    return count, json.loads(fmt[0]) if fmt else None


def ensure_study(workdir: Path, n_restarts: int, say: Callable[[str], None]) -> tuple[str, str, float | None]:
    """The SQLite URL and study name of the synthetic study; written (and timed) unless cached in the current format."""
    from robustness.storage import STORAGE_FORMAT, RestartStore

    name = study_name(n_restarts)
    path = workdir / f"dashboard-{n_restarts}.db"
    if _cached(path, name) == (n_restarts, STORAGE_FORMAT):
        return f"sqlite:///{path}", name, None
    part = path.with_suffix(".part.db")
    for stale in (path, part, *(Path(f"{p}{s}") for p in (path, part) for s in ("-wal", "-shm"))):
        stale.unlink(missing_ok=True)
    say(f"writing {n_restarts:,} restarts to {path} ...")
    start = time.perf_counter()
    with RestartStore(f"sqlite:///{part}") as store:
        sid = store.open_study(name, attrs={"total_restarts": n_restarts, "criterion": "test_accuracy >= 0.9"})
        for outcomes in synthetic(n_restarts):
            store.write_outcomes(sid, outcomes)
    with contextlib.closing(sqlite3.connect(part)) as conn:  # fold the WAL in, so the file stands alone
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    part.replace(path)
    Path(f"{part}-wal").unlink(missing_ok=True)
    Path(f"{part}-shm").unlink(missing_ok=True)
    return f"sqlite:///{path}", name, time.perf_counter() - start


def optuna_study_id(url: str, name: str) -> int:
    path = url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT study_id FROM studies WHERE study_name = ?", (name,)).fetchone()[0])


# -- our dashboard, on the server -------------------------------------------------
def time_server(url: str, study: str, reps: int) -> dict[str, Any]:
    """Median seconds of a cold open + first view, of the open alone, and of a warm first view."""
    from robustness.dashboard import first_view, open_data

    cold, opened, warm = [], [], []
    for _ in range(reps):
        start = time.perf_counter()
        data = open_data(url)
        mid = time.perf_counter()
        first_view(data, study)
        cold.append(time.perf_counter() - start)
        opened.append(mid - start)
        start = time.perf_counter()
        first_view(data, study)
        warm.append(time.perf_counter() - start)
        data.store.close()
    return {"cold_s": statistics.median(cold), "open_s": statistics.median(opened), "warm_s": statistics.median(warm),
            "cold_runs_s": cold}


def time_parts(url: str, study: str, reps: int) -> dict[str, float]:
    """Median seconds of each call ``first_view`` makes, cold (a fresh open each run), without a profiler."""
    from robustness.dashboard import _views as views
    from robustness.dashboard import open_data
    from robustness.dashboard._app import render

    runs: dict[str, list[float]] = {}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = call()
        runs.setdefault(name, []).append(time.perf_counter() - start)
        return out

    for _ in range(reps):
        data = timed("open_data", lambda: open_data(url))
        timed("studies_rows", lambda: views.studies_rows(data))
        loaded = timed("data.study (read_table)", lambda: data.study(study))
        timed("progress_view(data.progress)", lambda: views.progress_view(data.progress(study)))
        timed("render success (heatmap_view)", lambda: render(data, loaded, "success", loaded.criterion))
        timed("cell_options", lambda: views.cell_options(loaded, loaded.criterion))
        data.store.close()
    return {name: statistics.median(t) for name, t in runs.items()}


def profile_first_view(url: str, study: str, reps: int, top: int = 30) -> str:
    """The parts of a cold first view (medians of ``reps``), then a cProfile of one (``top`` functions, cumulative)."""
    from robustness.dashboard import first_view, open_data

    parts = time_parts(url, study, reps)
    text = "".join(f"  {seconds:7.3f} s  {name}\n" for name, seconds in parts.items())
    prof = cProfile.Profile()
    prof.enable()
    data = open_data(url)
    first_view(data, study)
    prof.disable()
    data.store.close()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    return f"parts, no profiler (medians of {reps}):\n{text}\ncProfile (it slows Python calls down):{out.getvalue()}"


def our_app(url: str, *, partial_plotly: bool = True) -> Any:
    """A fresh app (so a cold cache) over ``url``; with plotly.js's cartesian bundle or Dash's full one."""
    from robustness.dashboard import create_app

    return create_app(url, partial_plotly=partial_plotly)


# -- serving and fetching -------------------------------------------------------
@contextlib.contextmanager
def serving(wsgi_app: Any) -> Iterator[str]:
    """``wsgi_app`` on a free loopback port in a thread (werkzeug, threaded like a real deployment); its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@contextlib.contextmanager
def serving_optuna_dashboard(url: str) -> Iterator[str]:
    """Stock optuna-dashboard over ``url``, served the same way in a child process (so a slow load can be stopped)."""
    child = subprocess.Popen([sys.executable, __file__, "--serve-optuna-dashboard", url], stdout=subprocess.PIPE,
                             text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        if not line.startswith("PORT "):
            raise RuntimeError(f"optuna-dashboard did not start (it said {line!r})")
        base = f"http://127.0.0.1:{int(line.split()[1])}"
        fetch(f"{base}/api/meta", timeout_s=60)  # start-up and imports, not the study load
        yield base
    finally:
        child.kill()
        child.wait()


def serve_optuna_dashboard(url: str) -> None:
    """The child process: ``optuna_dashboard.wsgi(url)`` on a free port, which it prints first."""
    from optuna_dashboard import wsgi
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, wsgi(url), threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


def fetch(address: str, *, timeout_s: float, headers: dict[str, str] | None = None) -> tuple[float, int]:
    """Seconds to the whole response body, and its size in bytes."""
    start = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(address, headers=headers or {}), timeout=timeout_s) as r:
        body = r.read()
    return time.perf_counter() - start, len(body)


def time_layout_http(url: str, study: str, reps: int) -> dict[str, Any]:
    """Our page's one data request, ``GET /_dash-layout`` (first view inside), against a fresh app each time."""
    times, size = [], 0
    for _ in range(reps):
        app = our_app(url)
        with serving(app.server) as base:
            # The layout reads ?study= from the page's address, which the browser sends as the referrer.
            seconds, size = fetch(f"{base}/_dash-layout", timeout_s=600, headers={"Referer": f"{base}/?study={study}"})
        times.append(seconds)
    return {"server_http_s": statistics.median(times), "layout_bytes": size}


def time_od_api(url: str, study_id: int, reps: int, timeout_s: float) -> dict[str, Any]:
    """optuna-dashboard's ``GET /api/studies/<id>?after=0`` against a fresh server each time (None: timed out)."""
    times, size = [], 0
    for _ in range(reps):
        with serving_optuna_dashboard(url) as base:
            try:
                seconds, size = fetch(f"{base}/api/studies/{study_id}?after=0", timeout_s=timeout_s)
            except OSError:  # socket timeout: no answer within timeout_s
                return {"server_http_s": None, "api_bytes": None, "runs": len(times)}
        times.append(seconds)
    return {"server_http_s": statistics.median(times), "api_bytes": size, "runs": len(times)}


# -- the browser --------------------------------------------------------------------
# Set in the page before any of its scripts: the time (ms since navigation start) of the
# first animation frame after every selector in SELECTORS matches.
_PAINT_PROBE = """
(() => {
  const selectors = SELECTORS;
  const check = () => {
    if (window.__seen === undefined && selectors.every((s) => document.querySelector(s))) {
      window.__seen = performance.now();
      requestAnimationFrame(() => { window.__painted = performance.now(); });
    }
  };
  new MutationObserver(check).observe(document, {childList: true, subtree: true});
})();
"""


# Where a painted page's time went, from the page's own timings (ms since navigation start).
_TIMINGS = """
(mainData) => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const data = res.find((e) => e.name.includes(mainData));
  return {html: nav.responseEnd, dom_ready: nav.domContentLoadedEventEnd,
          scripts_end: Math.max(0, ...res.filter((e) => e.initiatorType === 'script').map((e) => e.responseEnd)),
          data_end: data ? data.responseEnd : null};
}
"""


def paint(owner: Any, address: str, ready: list[str], *, data_paths: tuple[str, ...],
          timeout_s: float) -> dict[str, Any]:
    """Seconds from navigation start to ``ready`` painted, in a new page of ``owner`` (a browser or a context).

    ``painted_s`` is None when the page was not painted within ``timeout_s`` (the
    caller then closes the browser, which may still be busy). Bytes are the headers
    and (encoded) bodies of the responses completed by then; data bytes those
    whose address contains one of ``data_paths``. Also: when the HTML, the last
    script and the first response of ``data_paths[0]`` arrived, and the main thread's script and
    task time (Chromium's Performance.getMetrics), all in seconds.
    """
    page = owner.new_page()
    page.set_viewport_size(VIEWPORT)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    finished: list[Any] = []
    page.on("requestfinished", lambda request: finished.append(request))
    page.add_init_script(script=_PAINT_PROBE.replace("SELECTORS", json.dumps(ready)))
    start = time.perf_counter()
    try:
        page.goto(address, wait_until="commit", timeout=timeout_s * 1000)
        left_ms = max(1.0, (timeout_s - (time.perf_counter() - start)) * 1000)
        page.wait_for_function("window.__painted !== undefined", timeout=left_ms, polling=100)
    except Exception as e:  # playwright's TimeoutError
        if "Timeout" not in type(e).__name__:
            raise
        return {"painted_s": None, "wall_s": time.perf_counter() - start, "bytes": None, "data_bytes": None}
    wall = time.perf_counter() - start
    painted = page.evaluate("window.__painted") / 1000
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    timings = {f"{k}_s": v / 1000 for k, v in page.evaluate(_TIMINGS, data_paths[0]).items() if v is not None}
    total = data = 0
    for request in list(finished):
        size = request.sizes()
        n = size["responseBodySize"] + size["responseHeadersSize"]
        total += n
        data += n if any(p in request.url for p in data_paths) else 0
    page.close()
    return {"painted_s": painted, "wall_s": wall, "bytes": total, "data_bytes": data, **timings,
            "script_s": metrics.get("ScriptDuration"), "task_s": metrics.get("TaskDuration")}


class Swappable:
    """A WSGI app that forwards to whichever app was set last: a fresh app behind the same address."""

    def __init__(self) -> None:
        self.app: Any = None

    def __call__(self, environ: Any, start_response: Any) -> Any:
        return self.app(environ, start_response)


def _median_paint(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in results[0] if all(isinstance(r.get(k), (int, float)) for r in results)]
    return {**{k: statistics.median(r[k] for r in results) for k in keys},
            "painted_runs_s": [r["painted_s"] for r in results], "runs": len(results)}


def time_paint(pw: Any, runs: int, serve: Callable[[], Any], path: str, ready: list[str], *,
               data_paths: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
    """Median of ``runs`` first visits: a fresh browser (empty cache) and a fresh server from ``serve()`` each.

    Stops at the first load past ``timeout_s``.
    """
    results = []
    for _ in range(runs):
        with serve() as base:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                r = paint(browser, base + path, ready, data_paths=data_paths, timeout_s=timeout_s)
            finally:
                browser.close()
        results.append(r)
        if r["painted_s"] is None:
            return {**r, "runs": len(results)}
    return _median_paint(results)


def time_repeat_paint(pw: Any, runs: int, make_app: Callable[[], Any], path: str, ready: list[str], *,
                      data_paths: tuple[str, ...], timeout_s: float) -> dict[str, Any]:
    """Median of ``runs`` repeat visits: one browser whose cache holds the scripts, a fresh app (cold cache) each."""
    swap = Swappable()
    swap.app = make_app()
    with serving(swap) as base:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            paint(context, base + path, ready, data_paths=data_paths, timeout_s=timeout_s)  # fills the cache
            results = []
            for _ in range(runs):
                swap.app = make_app()
                results.append(paint(context, base + path, ready, data_paths=data_paths, timeout_s=timeout_s))
                if results[-1]["painted_s"] is None:
                    return {**results[-1], "runs": len(results)}
        finally:
            browser.close()
    return _median_paint(results)


# -- report -------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {p: version(p) for p in ("dash", "optuna-dashboard", "plotly", "optuna", "playwright")}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0], "versions": versions}


def _s(x: float | None, timeout_s: float) -> str:
    return f"> {timeout_s:.0f}" if x is None else f"{x:.2f}"


def _b(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:.2f} MB" if x >= 1e5 else f"{x / 1e3:.1f} kB"


def verdict(row: dict[str, Any]) -> dict[str, bool] | None:
    """Our row against the issue's targets: server (cold open + first view) and painted."""
    target = TARGETS.get(row["restarts"])
    if row["dashboard"] != "ours" or target is None:
        return None
    painted = row["painted_s"]
    return {"server": row["server_cold_s"] <= target[0], "painted": painted is not None and painted <= target[1]}


def print_table(rows: list[dict[str, Any]], timeout_s: float) -> None:
    head = ("restarts", "dashboard", "server cold s", "server warm s", "data request s", "painted s",
            "painted, repeat visit s", "bytes (all)", "bytes (data)", "target s (server / painted)", "load (1 min)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        v = verdict(r)
        target = TARGETS.get(r["restarts"])
        judged = "-" if v is None or target is None else (
            f"{target[0]:g} / {target[1]:g}: {'PASS' if v['server'] else 'MISS'} / {'PASS' if v['painted'] else 'MISS'}")
        warm = "-" if r.get("server_warm_s") is None else f"{r['server_warm_s']:.2f}"
        repeat = "-" if "repeat" not in r else _s(r["repeat"]["painted_s"], timeout_s)
        print(f"| {r['restarts']:,} | {r['dashboard']} | {_s(r['server_cold_s'], timeout_s)} | {warm} "
              f"| {_s(r['server_http_s'], timeout_s)} | {_s(r['painted_s'], timeout_s)} | {repeat} "
              f"| {_b(r['bytes'])} | {_b(r['data_bytes'])} | {judged} "
              f"| {r['load_1min'][0]:.1f}–{r['load_1min'][1]:.1f} |")


def print_breakdown(r: dict[str, Any]) -> None:
    """Where a painted page's time went (medians, seconds since navigation start)."""
    for label, p in (("first visit", r), ("repeat visit", r.get("repeat"))):
        if not p or p.get("painted_s") is None or "html_s" not in p:
            continue
        data = "-" if p.get("data_end_s") is None else f"{p['data_end_s']:.2f}"
        print(f"{r['restarts']:,} {r['dashboard']}, {label}: HTML {p['html_s']:.2f}, "
              f"scripts in {p['scripts_end_s']:.2f}, data in {data}, painted {p['painted_s']:.2f}; "
              f"main thread: script {p['script_s']:.2f} of {p['task_s']:.2f} busy; {_b(p['bytes'])} received; painted in runs: "
              + ", ".join(f"{x:.2f}" for x in p.get("painted_runs_s", [])))
    if r.get("server_cold_runs_s"):
        print(f"{r['restarts']:,} {r['dashboard']}, server cold in runs: "
              + ", ".join(f"{x:.2f}" for x in r["server_cold_runs_s"]))


# -- the run ----------------------------------------------------------------------
def measure_ours(pw: Any, url: str, study: str, n: int, args: argparse.Namespace, *,
                 partial_plotly: bool = True) -> dict[str, Any]:
    server = time_server(url, study, args.reps)
    http = time_layout_http(url, study, args.reps)

    @contextlib.contextmanager
    def serve() -> Iterator[str]:
        with serving(our_app(url, partial_plotly=partial_plotly).server) as base:  # a fresh app per run: cold
            yield base

    data_paths = ("/_dash-layout", "/_dash-update-component")
    page = time_paint(pw, args.reps, serve, f"/?study={study}", OURS_READY, data_paths=data_paths,
                      timeout_s=args.timeout_s)
    repeat = time_repeat_paint(pw, args.reps, lambda: our_app(url, partial_plotly=partial_plotly).server,
                               f"/?study={study}", OURS_READY, data_paths=data_paths, timeout_s=args.timeout_s)
    label = "ours" if partial_plotly else "ours, full plotly.js"
    return {"repeat": repeat, "restarts": n, "dashboard": label, "server_cold_s": server["cold_s"],
            "server_warm_s": server["warm_s"], "open_s": server["open_s"], "server_cold_runs_s": server["cold_runs_s"],
            "server_http_s": http["server_http_s"], "layout_bytes": http["layout_bytes"], **page}


def measure_optuna_dashboard(pw: Any, url: str, study: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    sid = optuna_study_id(url, study)
    api = time_od_api(url, sid, args.od_reps, args.timeout_s)
    page = time_paint(pw, args.od_reps, lambda: serving_optuna_dashboard(url), f"/dashboard/studies/{sid}", OD_READY,
                      data_paths=("/api/studies/", "/api/"), timeout_s=args.timeout_s)
    return {"restarts": n, "dashboard": "optuna-dashboard", "server_cold_s": api["server_http_s"], "server_warm_s": None,
            "server_http_s": api["server_http_s"], "api_bytes": api["api_bytes"], **page}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=None, help="where the SQLite files are cached (default: a temporary folder)")
    ap.add_argument("--sizes", default="10000,100000", help="restarts per study, comma-separated")
    ap.add_argument("--reps", type=int, default=3, help="runs per figure of ours (median)")
    ap.add_argument("--od-reps", type=int, default=1, help="runs per figure of optuna-dashboard (its loads take minutes)")
    ap.add_argument("--timeout-s", type=float, default=300.0, help="give up on a load (server or page) after this long")
    ap.add_argument("--skip-optuna-dashboard", action="store_true")
    ap.add_argument("--full-plotly", action="store_true",
                    help="also time our page with Dash's full plotly.js bundle instead of the cartesian one")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one cold first view per size")
    ap.add_argument("--json", action="store_true", help="also print JSON lines: the run, then one per table row")
    ap.add_argument("--serve-optuna-dashboard", metavar="URL", help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.serve_optuna_dashboard:
        return serve_optuna_dashboard(args.serve_optuna_dashboard)
    sizes = [int(s) for s in args.sizes.split(",")]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log lines in the table
    from playwright.sync_api import sync_playwright

    from robustness.dashboard import first_view, open_data

    with contextlib.ExitStack() as stack:
        workdir = Path(args.workdir) if args.workdir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        run = {"benchmark": "dashboard", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), "load_start": os.getloadavg(), "reps": args.reps, "od_reps": args.od_reps,
               "timeout_s": args.timeout_s, "written_s": {}}
        pw = stack.enter_context(sync_playwright())
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        run["machine"]["versions"]["chromium"] = browser.version
        browser.close()
        rows, profiles = [], {}
        for n in sizes:
            url, study, written = ensure_study(workdir, n, lambda m: print(m, file=sys.stderr))
            run["written_s"][n] = written
            warm_up = open_data(url)
            first_view(warm_up, study)  # imports, and the file into the OS page cache: not timed
            warm_up.store.close()
            print(f"{n:,} restarts: ours ...", file=sys.stderr)
            load = os.getloadavg()[0]
            rows.append({**measure_ours(pw, url, study, n, args), "load_1min": [load, os.getloadavg()[0]]})
            if args.full_plotly:  # the same page with Dash's full plotly.js bundle, right after
                load = os.getloadavg()[0]
                rows.append({**measure_ours(pw, url, study, n, args, partial_plotly=False),
                             "load_1min": [load, os.getloadavg()[0]]})
            if args.profile:
                profiles[n] = profile_first_view(url, study, args.reps)
            if not args.skip_optuna_dashboard:
                print(f"{n:,} restarts: optuna-dashboard ...", file=sys.stderr)
                load = os.getloadavg()[0]
                rows.append({**measure_optuna_dashboard(pw, url, study, n, args),
                             "load_1min": [load, os.getloadavg()[0]]})
        run["load_end"] = os.getloadavg()
    m = run["machine"]
    print(f"{run['date']}  {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    print("load average (1, 5, 15 min): start " + " ".join(f"{x:.2f}" for x in run["load_start"])
          + ", end " + " ".join(f"{x:.2f}" for x in run["load_end"]))
    print(f"medians of {args.reps} runs (ours) and {args.od_reps} (optuna-dashboard); timeout {args.timeout_s:.0f} s\n")
    print_table(rows, args.timeout_s)
    print()
    for r in rows:
        print_breakdown(r)
    for n, text in profiles.items():
        print(f"\ncProfile of a cold open + first view, {n:,} restarts:\n{text}")
    if args.json:
        print(json.dumps({**run, "kind": "run"}))
        for r in rows:
            print(json.dumps({"benchmark": "dashboard", "kind": "row", **r, "pass": verdict(r)}))


if __name__ == "__main__":
    main()
