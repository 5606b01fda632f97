"""The dashboard as a WSGI application, for a long-lived server (gunicorn, uwsgi, mod_wsgi).

    ROBUSTNESS_STORAGE=postgresql+psycopg://reader@db:5432/robustness \
        gunicorn --bind 127.0.0.1:8050 --workers 2 --threads 4 --pythonpath dashboards wsgi:application

The storage comes from ``$ROBUSTNESS_STORAGE`` (default ``sqlite:///robustness.db``) and is
opened read-only; ``$ROBUSTNESS_DASHBOARD_REFRESH`` sets the page's polling interval in
seconds (default 2). ``robustness dashboard`` serves the same app for one user.
Bind to loopback and tunnel to it, or put it behind a proxy that authenticates: the app
has no login.
"""

from __future__ import annotations

import os

from robustness.dashboard import create_app

application = create_app(
    os.environ.get("ROBUSTNESS_STORAGE"), refresh_s=float(os.environ.get("ROBUSTNESS_DASHBOARD_REFRESH", "2"))
).server
