"""docker-compose.yml can't run here (no Docker engine); its topology is run for real,
without Docker, in test_sweep.py. This checks that the file describes that same
topology and that every command in it parses with the real CLIs."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from robustness.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_form_the_tested_topology() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "ray-head", "ray-worker", "sweep"}
    assert services["postgres"]["image"].startswith("postgres:15")
    head = shlex.split(services["ray-head"]["command"])
    worker = shlex.split(services["ray-worker"]["command"])
    assert head[:3] == ["ray", "start", "--head"] and "--port=6379" in head
    assert worker[:2] == ["ray", "start"] and "--address=ray-head:6379" in worker
    sweep = services["sweep"]
    assert sweep["environment"]["ROBUSTNESS_STORAGE"].startswith("postgresql+psycopg://")
    assert sweep["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_driver_command_parses_with_the_real_cli() -> None:
    argv = shlex.split(_compose()["services"]["sweep"]["command"])
    assert argv[:2] == ["robustness", "sweep"]
    ctx = main.make_context("robustness", argv[1:])
    sub = main.get_command(ctx, argv[1])
    params = sub.make_context("sweep", argv[2:]).params
    assert params["address"] == "ray-head:6379"
    assert (ROOT / params["file"]).is_file()
