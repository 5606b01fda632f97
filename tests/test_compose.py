"""docker-compose.yml can't run here (no Docker engine); its topology is run for real,
without Docker, in test_sweep.py and test_submit.py. This checks that the file describes
that same topology, keeps credentials out, pins its images, gives every Ray node the same
auth setting, reserves GPUs for GPU workers, and that every command in it parses with the
real CLIs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from robustness.cli import main

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docker-compose.yml").read_text()


def _compose() -> dict:
    return yaml.safe_load(TEXT)


def _env(service: dict) -> dict:
    return service.get("environment") or {}


def test_services_form_the_tested_topology() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "ray-head", "ray-worker", "ray-gpu-worker", "sweep", "dashboard"}
    head = shlex.split(services["ray-head"]["command"])
    assert head[:3] == ["ray", "start", "--head"] and "--port=6379" in head
    for name in ("ray-worker", "ray-gpu-worker"):
        worker = shlex.split(services[name]["command"])
        assert worker[:2] == ["ray", "start"] and "--address=ray-head:6379" in worker
    sweep = services["sweep"]
    assert _env(sweep)["ROBUSTNESS_STORAGE"].startswith("postgresql+psycopg://")
    assert sweep["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_no_credentials_in_the_file() -> None:
    services = _compose()["services"]
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD"):
        assert re.fullmatch(r"\$\{" + key + r":\?.*\}", _env(services["postgres"])[key])
    assert "${POSTGRES_PASSWORD:?" in _env(services["sweep"])["ROBUSTNESS_STORAGE"]
    example = (ROOT / ".env.example").read_text()
    assert "POSTGRES_PASSWORD=" in example and "RAY_AUTH_MODE=" in example
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_images_are_pinned_and_gpu_workers_get_a_device_and_a_cuda_build() -> None:
    services = _compose()["services"]
    assert re.fullmatch(r"postgres:\d+\.\d+[-\w]*", services["postgres"]["image"])
    assert re.search(r"^FROM python:\d+\.\d+\.\d+", (ROOT / "Dockerfile").read_text(), re.M)
    assert 'torch==${TORCH_VERSION}' in (ROOT / "Dockerfile").read_text()
    gpu = services["ray-gpu-worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
    assert "/whl/cu" in gpu["build"]["args"]["TORCH_INDEX"]
    assert services["ray-head"]["build"]["args"]["TORCH_INDEX"].endswith("/whl/cpu")


def test_every_ray_node_and_the_driver_share_the_auth_setting() -> None:
    services = _compose()["services"]
    modes = {name: _env(s).get("RAY_AUTH_MODE") for name, s in services.items() if name not in ("postgres", "dashboard")}
    assert len(set(modes.values())) == 1 and None not in modes.values(), modes


def test_the_head_exposes_the_job_server_for_submit() -> None:
    head = _compose()["services"]["ray-head"]
    assert "--dashboard-port=8265" in shlex.split(head["command"])
    assert "127.0.0.1:8265:8265" in head["ports"]  # reachable from this host only


def test_the_dashboard_serves_the_wsgi_entry_read_only_on_loopback() -> None:
    dash = _compose()["services"]["dashboard"]
    argv = shlex.split(dash["command"])
    assert argv[0] == "gunicorn" and argv[-1] == "wsgi:application"
    assert argv[argv.index("--pythonpath") + 1] == "dashboards" and (ROOT / "dashboards" / "wsgi.py").is_file()
    assert dash["ports"] == ["127.0.0.1:8050:8050"]  # no login: published on the host's loopback only
    assert "${POSTGRES_PASSWORD:?" in _env(dash)["ROBUSTNESS_STORAGE"]
    assert dash["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "COPY dashboards" in (ROOT / "Dockerfile").read_text() and "dashboard]" in (ROOT / "Dockerfile").read_text()


def test_every_robustness_command_parses_with_the_real_cli() -> None:
    commands = [s["command"] for s in _compose()["services"].values() if str(s.get("command", "")).startswith("robustness")]
    # the usage lines in the header, as `docker compose run --rm SERVICE robustness ...`
    commands += re.findall(r"--rm \w+ (robustness \w+[^\n#]*)", TEXT.split("services:")[0])
    assert commands
    for command in commands:
        argv = shlex.split(command)
        ctx = main.make_context("robustness", argv[1:])
        sub = main.get_command(ctx, argv[1])
        assert sub is not None, command
        params = sub.make_context(argv[1], argv[2:]).params
        if "file" in params:
            assert (ROOT / params["file"]).is_file(), command
