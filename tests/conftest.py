"""Shared fixtures. Servers (Ray, PostgreSQL, Chromium) are started once per session.

Each server's fixture lives in its own plugin module under tests/fixtures/.
"""

import pytest  # noqa: F401

pytest_plugins: list[str] = [
    "tests.fixtures.postgres",
    "tests.fixtures.browser",
    "tests.fixtures.ray_cluster",
]
