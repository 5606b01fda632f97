"""Build a study's report and serve it on http://127.0.0.1:PORT/ (stdlib http.server only).

Example:
    python dashboards/serve.py demo-noise --storage sqlite:///robustness.db --port 8050
    python dashboards/serve.py demo-noise --refresh 60     # rebuild at most once a minute while a sweep runs

The page is the same self-contained file ``write_report`` produces; serving it
only saves copying it around. The server listens on 127.0.0.1 alone: the report
holds the study's results, and exposing them is the user's call (e.g. an SSH
tunnel: ``ssh -L 8050:127.0.0.1:8050 cluster``).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustness.report import ReportError, write_report
from robustness.storage import StorageError

REPORT_NAME = "index.html"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves the report page and nothing else; rebuilds it first when older than ``refresh_s``.

    Only ``/`` and ``/index.html`` exist: the folder the page lives in may hold a
    database, logs or anything else, and none of it is served.
    """

    def __init__(self, *args: Any, rebuild: Any, page: Path, **kwargs: Any) -> None:
        self._rebuild, self._page = rebuild, page
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/", f"/{REPORT_NAME}"):
            self.send_error(404, "only the report is served here: /")
            return
        try:
            self._rebuild()
        except Exception as e:  # noqa: BLE001 - keep serving the last good report
            print(f"rebuild failed, serving the previous report: {e}", file=sys.stderr)
        body = self._page.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per request would drown the URL we printed


def make_server(
    storage: str | None,
    study: str,
    *,
    port: int = 8050,
    directory: Path | None = None,
    criterion: str | None = None,
    thresholds: Sequence[float] | None = None,
    refresh_s: float | None = None,
) -> http.server.ThreadingHTTPServer:
    """Write the report once into ``directory`` (default a temp dir) and return a server for it on 127.0.0.1.

    ``port=0`` picks a free port (see ``server.server_address``). With
    ``refresh_s``, a request for the page rebuilds it when the last build is
    older than that; without it the page is built once.
    """
    directory = Path(directory or tempfile.mkdtemp(prefix="robustness-report-"))
    page = directory / REPORT_NAME
    lock = threading.Lock()
    built = [0.0]

    def rebuild(force: bool = False) -> None:
        with lock:  # one build at a time; concurrent requests wait and get the fresh file
            if force or (refresh_s is not None and time.monotonic() - built[0] >= refresh_s):
                write_report(storage, study, page, criterion=criterion, thresholds=thresholds)
                built[0] = time.monotonic()

    rebuild(force=True)
    handler = functools.partial(_Handler, rebuild=rebuild, page=page)
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="study name in the storage")
    parser.add_argument("--storage", default=None, help="storage URL (default $ROBUSTNESS_STORAGE or sqlite:///robustness.db)")
    parser.add_argument("--port", type=int, default=8050, help="port on 127.0.0.1 (0: any free port)")
    # --metric/--op/--threshold as in `robustness report`; default the study's own criterion.
    parser.add_argument("--metric", default=None, help="final metric to re-judge success on (e.g. test_error)")
    parser.add_argument("--op", choices=["<", "<=", ">", ">="], default=None, help="comparison for --threshold")
    parser.add_argument("--threshold", type=float, default=None, help="re-judge success at this threshold")
    parser.add_argument("--thresholds", type=_floats, default=None, help="success-count table thresholds, e.g. 0.01,0.02")
    parser.add_argument("--refresh", type=float, default=None, metavar="SECONDS", help="rebuild on request when older than this")
    parser.add_argument("--out", type=Path, default=None, help="directory to keep the report in (default a temp dir)")
    args = parser.parse_args(argv)
    given = [x is not None for x in (args.metric, args.op, args.threshold)]
    if any(given) and not all(given):
        parser.error("--metric, --op and --threshold go together")
    criterion = f"{args.metric} {args.op} {args.threshold!r}" if all(given) else None
    try:
        server = make_server(
            args.storage, args.study, port=args.port, directory=args.out, criterion=criterion,
            thresholds=args.thresholds, refresh_s=args.refresh,
        )
    except (StorageError, ReportError, OSError) as e:  # one line and exit code 2, never a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"serving the report of {args.study!r} at http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
