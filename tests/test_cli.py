"""The CLI: every command documented with an example, JSON for scripts, and user
errors as one line with exit code 2 (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from robustness.cli import main
from robustness.records import CurvePoint, RestartOutcome
from robustness.stats import cell_stats, compare_arms, restarts_needed
from robustness.storage import RestartStore

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_every_command_has_help_with_an_example() -> None:
    for name, command in main.commands.items():
        code, out, _ = run(name, "--help")
        assert code == 0, name
        assert "Example" in out, f"{name} --help has no example"
        assert command.help, f"{name} has no description"


def test_validate_json_and_errors(tmp_path: Path) -> None:
    code, out, _ = run("validate", str(ROOT / "search_spaces" / "paper_mnist_deep20.yaml"), "--json", "--schema-only")
    assert code == 0
    summary = json.loads(out)
    assert list(summary)[:4] == ["study", "cells", "restarts_per_cell", "total_restarts"]
    assert summary["total_restarts"] == summary["cells"] * summary["restarts_per_cell"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: x\ntask: {name: deep_mlp, steps: 10, eval_every: 5}\ngrid: {lr: [-1], noise: [{schedule: none}]}\n"
                   "restarts: 2\nsuccess: {metric: test_accuracy, op: '>=', threshold: 0.9}\n")
    code, out, err = run("validate", str(bad))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("Error: ") and "grid.lr" in err and "Traceback" not in err
    code, _, err = run("validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and err.count("\n") == 1


def _records() -> list[RestartOutcome]:
    """2 arms x 6 seed-paired restarts; noise succeeds on restarts 0-4, the baseline on 0-1."""
    out = []
    for schedule, eta, wins in (("none", None, 2), ("annealed", 0.3, 5)):
        for k in range(6):
            acc = 0.95 if k < wins else 0.1
            out.append(RestartOutcome(
                params={"lr": 0.1, "clip": 10.0, "init": "zero", "schedule": schedule, "eta": eta, "gamma": None if eta is None else 0.55},
                restart=k, seed=1000 + k, metrics={"test_accuracy": acc, "test_error": 1 - acc},
                primary_metric="test_accuracy", success=acc >= 0.9, curve=(CurvePoint(10, 1.0, acc),)))
    return out


@pytest.fixture
def study_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with RestartStore(url) as store:
        sid = store.open_study("cli", attrs={"total_restarts": 12, "criterion": "test_accuracy >= 0.9"})
        store.write_outcomes(sid, _records())
    return url


def test_stats_json_matches_the_library(study_url: str) -> None:
    code, out, _ = run("stats", "cli", "--storage", study_url, "--format", "json")
    assert code == 0
    data = json.loads(out)
    with RestartStore(study_url) as store:
        table = store.read_table("cli")
    want = [c.to_dict() for c in cell_stats(table)]
    assert data["cells"] == want
    by_schedule = {c["params"]["schedule"]: c for c in data["cells"]}
    assert (by_schedule["none"]["successes"], by_schedule["annealed"]["successes"]) == (2, 5)
    for key in ("n", "successes", "rate", "ci_low", "ci_high"):
        assert key in data["cells"][0]
    (comp,) = data["comparisons"]
    assert comp == compare_arms(table)[0].to_dict()
    assert comp["test"].lower().startswith("mcnemar") and comp["p_value"] == pytest.approx(0.25)  # b=3, c=0
    for key in ("p_value", "p_adjusted", "risk_difference", "rd_low", "rd_high", "risk_ratio"):
        assert key in comp


def test_stats_rejudged_at_query_time_and_csv(study_url: str) -> None:
    code, out, _ = run("stats", "cli", "--storage", study_url, "--metric", "test_error", "--op", "<", "--threshold", "0.95", "--format", "json")
    assert code == 0
    assert {c["successes"] for c in json.loads(out)["cells"]} == {6}  # every restart has error < 0.95
    code, out, _ = run("stats", "cli", "--storage", study_url, "--format", "csv", "--by", "schedule")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].startswith("schedule,n,successes,rate") and len(lines) == 3


def test_compare_status_and_unknown_study(study_url: str) -> None:
    code, out, _ = run("compare", "cli", "--storage", study_url, "--format", "json")
    assert code == 0 and len(json.loads(out)["comparisons"]) == 1
    code, out, _ = run("status", "--storage", study_url, "--format", "json")
    assert code == 0 and json.loads(out) == [{"study": "cli", "restarts": 12, "total": 12, "successes": 7,
                                               "rate": pytest.approx(7 / 12), "diverged": 0}]
    code, out, err = run("stats", "nope", "--storage", study_url)
    assert code == 2 and err.startswith("Error: no study 'nope'") and err.count("\n") == 1


def test_within_k_is_the_budget_view(study_url: str) -> None:
    # none: 2 of 6 succeed, so P(>= 1 in 3) = 1 - (4/6)^3; annealed: 5 of 6, 1 - (1/6)^3
    code, out, _ = run("stats", "cli", "--storage", study_url, "--within", "1,3", "--json")
    assert code == 0
    by = {c["params"]["schedule"]: c["within"] for c in json.loads(out)["cells"]}
    assert [w["k"] for w in by["none"]] == [1, 3]
    assert by["none"][0]["p"] == pytest.approx(2 / 6) and by["none"][1]["p"] == pytest.approx(1 - (4 / 6) ** 3)
    assert by["annealed"][1]["p"] == pytest.approx(1 - (1 / 6) ** 3)
    assert all(w["low"] <= w["p"] <= w["high"] for ws in by.values() for w in ws)
    code, out, _ = run("stats", "cli", "--storage", study_url, "--within", "3", "--format", "csv")
    header, *rows = out.strip().splitlines()
    assert code == 0 and header.endswith("p_within_3,low_3,high_3") and len(rows) == 2
    code, _, err = run("stats", "cli", "--storage", study_url, "--within", "0")
    assert code == 2 and "--within" in err


def test_json_and_format_json_are_the_same_everywhere(study_url: str) -> None:
    for args in (("stats", "cli", "--storage", study_url), ("compare", "cli", "--storage", study_url),
                 ("status", "--storage", study_url), ("power", "--p1", "0.1", "--p2", "0.3"),
                 ("validate", str(ROOT / "search_spaces" / "demo.yaml"), "--schema-only")):
        a, b = run(*args, "--json"), run(*args, "--format", "json")
        assert a[0] == b[0] == 0 and json.loads(a[1]) == json.loads(b[1]), args[0]


def test_compare_match_pools_the_other_axes(tmp_path: Path) -> None:
    # Two learning rates of _records()'s arms: --match init pools them, pairs stay within each lr.
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    records = _records() + [RestartOutcome(**{**o.__dict__, "params": {**o.params, "lr": 0.01}}) for o in _records()]
    with RestartStore(url) as store:
        store.write_outcomes(store.open_study("pool"), records)
    code, out, _ = run("compare", "pool", "--storage", url, "--match", "init", "--json")
    data = json.loads(out)
    assert code == 0 and data["pooled"] == ["clip", "lr"] and len(data["comparisons"]) == 1
    (c,) = data["comparisons"]
    assert (c["n_pairs"], c["noise_only"], c["baseline_only"], c["noise_successes"], c["baseline_successes"]) == \
        (12, 6, 0, 10, 4)
    code, out, _ = run("compare", "pool", "--storage", url, "--match", "init")
    assert code == 0 and "pooled over clip, lr" in out


def test_report_writes_html_and_bad_paths_exit_2(study_url: str, tmp_path: Path) -> None:
    code, out, _ = run("report", "cli", "--storage", study_url, "-o", str(tmp_path / "r.html"))
    assert code == 0 and (tmp_path / "r.html").stat().st_size > 100_000
    code, _, err = run("report", "cli", "--storage", study_url, "-o", str(tmp_path / "no" / "such" / "dir" / "r.html"))
    assert code == 2 and err.count("\n") == 1


def test_report_split(study_url: str, tmp_path: Path) -> None:
    code, out, _ = run("report", "cli", "--storage", study_url, "-o", str(tmp_path / "r.html"), "--split", "init")
    assert code == 0 and "Split by init" in (tmp_path / "r.html").read_text()
    code, _, err = run("report", "cli", "--storage", study_url, "-o", str(tmp_path / "s.html"), "--split", "nope")
    assert code == 2 and err.count("\n") == 1 and "no axis 'nope' to split by" in err
    assert not (tmp_path / "s.html").exists()


def test_power_both_directions() -> None:
    code, out, _ = run("power", "--p1", "0.013", "--p2", "0.113", "--json")
    assert code == 0 and json.loads(out)["restarts_per_arm"] == restarts_needed(0.013, 0.113)
    code, out, _ = run("power", "--p1", "0.013", "--n", "100", "--json")
    p2 = json.loads(out)["detectable_p2"]
    assert code == 0 and 0.013 < p2 < 1
    # the reverse question answers the forward one: n restarts detect p2
    assert restarts_needed(0.013, p2) <= 101
    code, _, err = run("power", "--p1", "0.1")
    assert code == 2 and "exactly one of" in err


def test_bad_storage_url_is_one_line() -> None:
    code, _, err = run("status", "--storage", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert code == 2 and err.startswith("Error: ") and err.count("\n") == 1


VALID = """study: s
task: {name: deep_mlp, steps: 10, eval_every: 5}
optimizer: {name: sgd}
grid:
  lr: [0.1]
  noise: [{schedule: none}, {schedule: annealed, eta: [0.3], gamma: [0.55]}]
restarts: 2
success: {metric: test_accuracy, op: '>=', threshold: 0.9}
"""
INVALID = {
    "unknown key": (VALID + "colour: red\n", "colour"),
    "wrong type": (VALID.replace("restarts: 2", "restarts: two"), "restarts"),
    "eta <= 0": (VALID.replace("eta: [0.3]", "eta: [0]"), "eta"),
    "gamma < 0": (VALID.replace("gamma: [0.55]", "gamma: [-1]"), "gamma"),
    "lr <= 0": (VALID.replace("lr: [0.1]", "lr: [-0.1]"), "grid.lr"),
    "restarts < 1": (VALID.replace("restarts: 2", "restarts: 0"), "restarts"),
    "empty axis": (VALID.replace("lr: [0.1]", "lr: []"), "grid.lr"),
    "unknown task": (VALID.replace("name: deep_mlp", "name: gpu_multiply"), "task.name"),
    "unknown schedule": (VALID.replace("schedule: annealed", "schedule: cosine"), "schedule"),
    "unknown optimizer": (VALID.replace("name: sgd", "name: lbfgs"), "optimizer.name"),
    "grid above the cap": (VALID + "max_cells: 1\n", "cells"),
    "malformed YAML": ("study: [\n", "malformed YAML"),
    "not a mapping": ("- a\n- b\n", "expected a mapping"),
    "empty file": ("", "empty"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_sweep_refuses_every_invalid_file_and_writes_nothing(case: str, tmp_path: Path) -> None:
    text, where = INVALID[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    db = tmp_path / "never.db"
    code, out, err = run("sweep", str(path), "--storage", f"sqlite:///{db}")
    assert code == 2 and out == "", case
    assert err.startswith("Error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert where in err, err
    assert not db.exists()  # nothing written, not even an empty database
    code, _, err2 = run("validate", str(path))
    assert code == 2 and err2 == err


@pytest.mark.parametrize(
    "args",
    [
        ("stats", "cli", "--by", "typo"),
        ("compare", "cli", "--baseline", "typo=1"),
        ("compare", "cli", "--match", "schedule"),
    ],
)
def test_options_the_statistics_reject_are_one_line_errors(study_url: str, args: tuple[str, ...]) -> None:
    code, out, err = run(*args, "--storage", study_url)
    assert code == 2 and out == ""
    assert err.startswith("Error: ") and err.count("\n") == 1, err


def test_every_user_facing_error_has_the_one_base_class_the_cli_catches() -> None:
    from robustness.errors import RobustnessError
    from robustness.report import ReportError
    from robustness.storage import StorageError
    from robustness.study.search_space import SearchSpaceError
    from robustness.study.sweep import SweepError
    from robustness.training.data import DataError

    for cls in (DataError, ReportError, SearchSpaceError, StorageError, SweepError):
        assert issubclass(cls, RobustnessError), cls.__name__
    # anything else is a bug and keeps its traceback: the CLI does not swallow it
    import robustness.cli as cli

    @cli.handle_errors
    def boom() -> None:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        boom()


def test_bad_options_are_one_line_and_exit_2(study_url: str, tmp_path: Path) -> None:
    code, _, err = run("power", "--p1", "nan", "--p2", "0.1")
    assert code == 2 and err == "Error: --p1 must be a success rate in [0, 1], got nan\n"
    code, out, err = run("compare", "cli", "--storage", study_url, "--baseline", "schedule=bogus")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "baseline schedule='bogus' matches no cell; the study's schedule values: annealed, none" in err
    code, _, err = run("validate", str(tmp_path))
    assert code == 2 and err == f"Error: {tmp_path}: expected a search-space file, got a directory\n"


@pytest.mark.parametrize("url", ["postgresql://me:hunter2@@db:port/x", "hunter2 sqlite:///x.db", "sqlite//hunter2"])
def test_a_malformed_storage_url_is_never_echoed(url: str) -> None:
    code, _, err = run("status", "--storage", url)
    assert code == 2 and err.startswith("Error: not a database URL") and err.count("\n") == 1
    assert "hunter2" not in err


def test_sweep_bar_counts_restart_steps_and_quiet_hides_it(ray_local, tmp_path: Path) -> None:
    from tests.test_sweep import TINY

    path = tmp_path / "bar.yaml"
    path.write_text(TINY.format(study="bar", restarts=2, steps=30, pack=2, more_inits=""))
    url = f"sqlite:///{tmp_path / 'bar.db'}"
    code, out, err = run("sweep", str(path), "--storage", url)
    assert code == 0, err
    # 2 arms x 2 restarts x 30 updates, with the study's counts beside the bar
    assert "120/120" in err and "restart-step" in err and "4/4 restarts stored, " in err, err
    assert "done: 4 restarts trained in 2 packs" in out
    path.write_text(TINY.format(study="bar", restarts=3, steps=30, pack=2, more_inits=""))
    code, out, err = run("sweep", str(path), "--storage", url, "-q")
    assert code == 0 and "restart-step" not in err and "done: 2 restarts trained" in out, err


def test_console_entry_skips_teardown_only_when_a_command_allows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import robustness.cli as cli

    exits: list[int] = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)

    def finished_sweep() -> None:  # what `sweep` does once Ray is down and storage closed
        cli._SKIP_TEARDOWN = True
        raise SystemExit(1)

    monkeypatch.setattr(cli, "main", finished_sweep)
    monkeypatch.setattr(cli, "_SKIP_TEARDOWN", False)
    cli.run()
    assert exits == [1]  # the command's exit code, without the interpreter's teardown

    monkeypatch.setattr(cli, "_SKIP_TEARDOWN", False)
    monkeypatch.setattr(cli, "main", lambda: None)
    with pytest.raises(SystemExit) as done:  # every other command: a normal exit
        cli.run()
    assert done.value.code == 0 and exits == [1]
