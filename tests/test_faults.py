"""Faults, for real: a Ray worker process killed in the middle of a pack.

The sweep must retry the pack from its last checkpoint, say so in one line (Ray's own
messages go to the log it names), record every restart exactly once, and give the same
numbers as a sweep nobody disturbed. docs/operations.md cites these tests.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from robustness.storage import RestartStore, restart_key
from robustness.study.search_space import parse_search_space
from robustness.study.sweep import run_sweep

STUDY = """
study: {study}
task: {{name: deep_mlp, dataset: digits, depth: 3, width: 16, steps: 1500, batch_size: 32, eval_every: 100}}
grid: {{lr: [0.05], clip: [10], init: [he], noise: [{{schedule: none}}, {{schedule: annealed, eta: [0.3]}}]}}
restarts: 3
success: {{metric: test_accuracy, op: ">=", threshold: 0.5}}
pack_size: 3
"""


def _sweep(tmp_path: Path, study: str) -> tuple[subprocess.Popen, str]:
    spec = tmp_path / f"{study}.yaml"
    spec.write_text(STUDY.format(study=study))
    url = f"sqlite:///{tmp_path / (study + '.db')}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "robustness", "sweep", str(spec), "--storage", url, "--checkpoint-every", "0",
         "--num-cpus", "2", "--experiment-dir", str(tmp_path / f"ray-{study}")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    return proc, url


def _descendants(root: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below ``root``."""
    parent, cmd = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmd[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    out, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid:
                out.append((child, cmd.get(child, "")))
                frontier.append(child)
    return out


def _outcomes(url: str, study: str) -> dict[str, object]:
    with RestartStore(url) as store:
        return {restart_key(o.params, o.restart): (o.metrics, o.curve) for o in store.iter_outcomes(study)}


def test_a_worker_killed_mid_pack_is_retried_from_its_checkpoint(ray_local, tmp_path: Path) -> None:
    proc, url = _sweep(tmp_path, "killed")
    try:
        deadline = time.monotonic() + 300
        while len({p.parent for p in (tmp_path / "ray-killed").rglob("checkpoint_*")}) < 2:  # both packs have
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before a checkpoint"
            time.sleep(0.5)
        workers = [pid for pid, cmd in _descendants(proc.pid) if cmd.startswith("ray::ImplicitFunc")]
        assert workers, "no pack worker found"
        os.kill(workers[0], signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    lines = out.replace("\r", "\n").splitlines()
    retried = [line for line in lines if line.startswith("pack ")]
    assert len(retried) == 1 and re.fullmatch(
        r"pack [01]: worker lost; retrying from update \d+ \(details in .*sweep\.log\)", retried[0]), out
    assert not any("(raylet)" in line or "Traceback" in line for line in lines), out  # Ray's detail is in the log
    got = _outcomes(url, "killed")
    assert len(got) == 6  # every restart once
    # The undisturbed run for comparison needs no process of its own: the session's Ray
    # (2 CPUs, as --num-cpus 2 above) trains the same packs in the same kind of worker.
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    run_sweep(parse_search_space(STUDY.format(study="clean")), storage=clean_url, checkpoint_every_s=0.0,
              experiment_dir=str(tmp_path / "ray-clean"))
    assert _outcomes(clean_url, "clean") == got  # bit-identical to an undisturbed run


def _kill_node(temp_dir: str) -> None:
    """SIGKILL a node as a power cut would: its raylet and agents (they name its temp dir) and
    every process they started (the pack workers, whose titles do not)."""
    roots = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace") + " "
            if entry.name.isdigit() and (temp_dir + "/" in cmd or temp_dir + " " in cmd):
                roots.append(int(entry.name))
        except OSError:
            continue
    assert roots, f"no process of the node at {temp_dir}"
    victims = set(roots) | {pid for root in roots for pid, _ in _descendants(root)}
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_a_lost_node_s_pack_is_retried_on_the_nodes_that_remain(tmp_path: Path) -> None:
    """A two-node cluster of one CPU each, two packs: the worker node dies mid-pack."""
    import shutil
    import tempfile

    from tests.fixtures.ray_cluster import _free_port, _kill_processes_mentioning

    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    assert ray_bin is not None
    temp = tempfile.mkdtemp(prefix="rayn-", dir="/tmp")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           # Until the head marks the dead node dead, Tune may place the retry there and wait. Ray's
           # defaults (a check every 3 s, dead after 5 missed, 10 s each) suit real networks; two
           # nodes on one machine are told dead after 3 missed checks half a second apart.
           "RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
           "RAY_health_check_timeout_ms": "2000"}
    common = ["--disable-usage-stats", "--object-store-memory=200000000", "--num-cpus=1", "--node-ip-address=127.0.0.1"]
    port = _free_port()
    proc = None
    try:
        subprocess.run([ray_bin, "start", "--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false",
                        f"--dashboard-agent-listen-port={_free_port()}", *common],
                       check=True, capture_output=True, env=env, timeout=180)
        subprocess.run([ray_bin, "start", f"--address=127.0.0.1:{port}", f"--temp-dir={temp}/w",
                        f"--dashboard-agent-listen-port={_free_port()}", *common],
                       check=True, capture_output=True, env=env, timeout=180)
        spec = tmp_path / "node.yaml"
        spec.write_text(STUDY.format(study="node"))
        url = f"sqlite:///{tmp_path / 'node.db'}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "robustness", "sweep", str(spec), "--storage", url, "--checkpoint-every", "0",
             "--address", f"127.0.0.1:{port}", "--experiment-dir", str(tmp_path / "ray")],
            env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        deadline = time.monotonic() + 300
        while len({p.parent for p in (tmp_path / "ray").rglob("checkpoint_*")}) < 2:  # both packs running
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before both checkpointed"
            time.sleep(0.5)
        _kill_node(f"{temp}/w")
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _kill_processes_mentioning(temp)
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, out
    assert list((tmp_path / "ray").rglob("error.txt")), "no pack was running on the node that died"
    assert "Traceback" not in out and "(raylet)" not in out, out  # Ray's detail goes to the sweep's log
    told = re.findall(r"pack [01]: [^\r\n]*", out)
    assert told and all(re.fullmatch(r"pack [01]: worker lost; retrying from update \d+ \(details in .*sweep\.log\)",
                                     line) for line in told), out
    assert len(_outcomes(url, "node")) == 6  # every restart once, though its node died


def test_a_database_restart_mid_sweep_loses_and_doubles_nothing(postgres_server, postgres_url, tmp_path: Path) -> None:
    """PostgreSQL restarted (every connection dropped) while packs train and are written."""
    spec = tmp_path / "pg.yaml"
    # 2 packs of 3 on one CPU, one a round: the server restarts while the second trains, and the
    # second's write, the claims after it and the progress rows all go through new connections
    spec.write_text(STUDY.format(study="pg").replace("steps: 1500", "steps: 600"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "robustness", "sweep", str(spec), "--storage", postgres_url,
                             "--num-cpus", "1", "--experiment-dir", str(tmp_path / "ray")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        # The first pack is stored and the second claimed (leased), not stored: the driver is
        # training it, and its next statements are the second pack's progress rows and write.
        stored: set[str] = set()
        held: dict[str, str] = {}
        while not (len(stored) >= 3 and set(held) - stored):
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before a pack was stored"
            time.sleep(0.2)
            try:
                with RestartStore(postgres_url) as store:
                    stored, held = store.done_keys("pg"), store.leases("pg")
            except Exception:  # noqa: BLE001 (the study does not exist yet)
                continue
        assert len(stored) < 6
        postgres_server.restart()
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert "done: 6 restarts trained in 2 packs" in out and "Traceback" not in out, out
    assert len(_outcomes(postgres_url, "pg")) == 6


def test_claims_releases_and_writes_wait_for_a_database_that_is_down(postgres_server, postgres_url) -> None:
    """Between packs the driver finds its study, claims and releases: a server down at that moment
    (a restart, a failover) is waited for, as a pack's write waits, not the end of the sweep."""
    from robustness.storage import StorageError
    from tests.test_storage import outcome

    def down_for(seconds: float) -> threading.Timer:
        postgres_server.stop()
        back = threading.Timer(seconds, postgres_server.start)
        back.start()
        return back

    restart = outcome(restart=0)
    keys = [restart_key(restart.params, 0), restart_key(restart.params, 1)]
    with RestartStore(postgres_url, reconnect_s=60) as store:
        study = store.open_study("down", attrs={"total_restarts": 2})
        back = down_for(2.0)
        assert store.claim_restarts(study, keys, holder="h", n=2, ttl_s=60) == keys
        back.join()
        back = down_for(2.0)
        assert store.release_leases(study, "h") == 2
        back.join()
        back = down_for(2.0)
        assert store.write_outcomes("down", [restart]) == 1
        back.join()
        assert store.done_keys("down") == {keys[0]} and store.leases("down") == {}
    with RestartStore(postgres_url, reconnect_s=1) as store:  # a server that stays down is still an error
        back = down_for(5.0)
        try:
            with pytest.raises(StorageError, match="Connection refused"):
                store.claim_restarts("down", keys, holder="h", n=2, ttl_s=60)
        finally:
            back.join()
