"""``robustness submit``: the sweep's driver as a Ray Job on a real head node with its job
server on 127.0.0.1. The submitting process exits right away (the laptop leaves), the
study still completes exactly once, a job stops on request, and every refusal is one
line with exit code 2, before anything is submitted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from robustness.cli import main
from robustness.storage import RestartStore
from robustness.study.search_space import parse_search_space
from robustness.study.submit import JOBS_ATTR, JobRecord, plugin_sources, submit_sweep
from tests.fixtures import missing

STUDY = """
study: {study}
task: {{name: {task}, dataset: digits, depth: 2, width: 8, steps: {steps}, batch_size: 32, eval_every: 10}}
grid:
  lr: [0.05]
  clip: [10]
  init: [he]
  noise:
    - schedule: none
    - schedule: annealed
      eta: [0.3]
restarts: {restarts}
success: {{metric: test_accuracy, op: ">=", threshold: 0.5}}
pack_size: 2
"""

# A user's own task in a file next to the YAML, named by import path: not installed
# anywhere, so it reaches the head only by travelling with the job.
PLUGIN = '''
import dataclasses

from robustness.training.tasks import DeepMLPTask


@dataclasses.dataclass(frozen=True)
class TinyMLP(DeepMLPTask):
    """deep_mlp under the user's own name."""
'''


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "robustness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _job_server(ray_cluster):
    if not ray_cluster.job_server:
        missing("the head's job server needs ray[default] (pip install -e '.[dev]')")
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(ray_cluster.job_server)


def _wait_for(client, job_id: str, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = str(client.get_job_status(job_id).value)
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def _status(url: str, cwd: Path) -> dict[str, dict]:
    done = _cli("status", "--storage", url, "--format", "json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return {row["study"]: row for row in json.loads(done.stdout)}


def test_a_submitted_study_completes_once_after_the_client_has_gone(ray_cluster, tmp_path: Path) -> None:
    client = _job_server(ray_cluster)
    (tmp_path / "my_tasks.py").write_text(PLUGIN)
    (tmp_path / "study.yaml").write_text(STUDY.format(study="away", task="'my_tasks:TinyMLP'", steps=30, restarts=2))
    url = f"sqlite:///{tmp_path / 'away.db'}"
    # The submitting process returns as soon as the job server has the job, and exits:
    # nothing of the sweep runs here any more.
    submitted = _cli("submit", "study.yaml", "--address", ray_cluster.job_server, "--storage", url, "--json",
                     cwd=tmp_path, env=ray_cluster.env)
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["study"] == "away" and job["address"] == ray_cluster.job_server
    try:
        state = _wait_for(client, job["job_id"], {"SUCCEEDED", "FAILED", "STOPPED"}, timeout=240)
        assert state == "SUCCEEDED", client.get_job_logs(job["job_id"])[-12000:]
    finally:
        client.stop_job(job["job_id"])  # a no-op for a finished job; never leave one running
    with RestartStore(url) as store:
        keys = sorted(store.done_keys("away"))
        jobs = store.study_attrs("away")[JOBS_ATTR]
    assert len(keys) == len(set(keys)) == 4  # 2 arms x 2 restarts, each exactly once
    assert len(optuna.load_study(study_name="away", storage=url).trials) == 4
    assert [j["job_id"] for j in jobs] == [job["job_id"]]
    row = _status(url, tmp_path)["away"]
    assert (row["restarts"], row["total"], row["job"], row["state"]) == (4, 4, job["job_id"], "SUCCEEDED")


def test_a_submitted_job_stops_on_request(ray_cluster, tmp_path: Path, monkeypatch) -> None:
    client = _job_server(ray_cluster)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    (tmp_path / "long.yaml").write_text(STUDY.format(study="long", task="deep_mlp", steps=200_000, restarts=2))
    url = f"sqlite:///{tmp_path / 'long.db'}"
    job = submit_sweep(tmp_path / "long.yaml", address=ray_cluster.job_server, storage=url)
    try:
        assert _wait_for(client, job.job_id, {"RUNNING"}, timeout=60) == "RUNNING"
        assert _status(url, tmp_path)["long"]["state"] == "RUNNING"
        # The job server is found from the record in storage: no --address needed.
        stopped = _cli("stop", job.job_id, "--storage", url, cwd=tmp_path, env=ray_cluster.env)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == f"job {job.job_id}: STOPPED"
    finally:
        client.stop_job(job.job_id)
    assert str(client.get_job_status(job.job_id).value) == "STOPPED"
    assert _status(url, tmp_path)["long"]["state"] == "STOPPED"


def _one_line_error(args: list[str], starts: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"Error: {starts}"), result.stderr


def test_refusals_are_one_line_and_submit_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.yaml").write_text(STUDY.format(study="ok", task="deep_mlp", steps=10, restarts=1))
    (tmp_path / "bad.yaml").write_text(STUDY.format(study="bad", task="deep_mlp", steps=10, restarts=1)
                                       .replace("lr: [0.05]", "lr: [-1]"))
    db = tmp_path / "x.db"
    nowhere = "http://127.0.0.1:1"
    # a bad file fails its validation here, before the (dead) job server is even asked
    _one_line_error(["submit", "bad.yaml", "--address", nowhere, "--storage", f"sqlite:///{db}"], "bad.yaml: grid.lr")
    _one_line_error(["submit", "ok.yaml", "--address", nowhere, "--storage", "sqlite:///:memory:"],
                    "--storage: an in-memory SQLite database")
    _one_line_error(["submit", "ok.yaml", "--address", "not a url"], "--address: expected")
    _one_line_error(["submit", "ok.yaml", "--address", nowhere, "--storage", f"sqlite:///{db}"],
                    "cannot reach the Ray job server at http://127.0.0.1:1")
    assert not db.exists()  # refused before the storage was touched
    _one_line_error(["stop", "raysubmit_nope", "--storage", f"sqlite:///{db}"], "job 'raysubmit_nope' is not recorded")


def test_status_says_unreachable_for_a_job_server_that_is_gone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    record = JobRecord(job_id="robustness-gone-1", address="http://127.0.0.1:1", study="gone",
                       submitted_at="2026-01-01T00:00:00+00:00")
    with RestartStore(url) as store:
        store.open_study("gone", attrs={"total_restarts": 4, JOBS_ATTR: [record.to_dict()]})
        store.open_study("local", attrs={"total_restarts": 2})
    rows = _status(url, tmp_path)
    assert (rows["gone"]["job"], rows["gone"]["state"]) == ("robustness-gone-1", "unreachable")
    assert "job" not in rows["local"]  # a study swept locally looks as it always did
    table = _cli("status", "--storage", url, cwd=tmp_path)
    assert table.returncode == 0 and "unreachable" in table.stdout and "Traceback" not in table.stderr


def test_plugins_named_by_import_path_travel_and_installed_code_does_not(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "submit_plugin_tasks.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = STUDY.format(study="p", task="'submit_plugin_tasks:TinyMLP'", steps=10, restarts=1)
    try:
        space = parse_search_space(text, source="p.yaml")
        assert plugin_sources(space) == [tmp_path / "submit_plugin_tasks.py"]
    finally:
        sys.modules.pop("submit_plugin_tasks", None)
    # built-in and installed names (robustness, site-packages) stay where they are
    assert plugin_sources(parse_search_space(text.replace("'submit_plugin_tasks:TinyMLP'", "deep_mlp"))) == []


@pytest.mark.parametrize(("given", "url"), [("127.0.0.1:8265", "http://127.0.0.1:8265"),
                                            ("http://head:8265/", "http://head:8265")])
def test_job_server_addresses(given: str, url: str) -> None:
    from robustness.study.submit import job_server_url

    assert job_server_url(given) == url
