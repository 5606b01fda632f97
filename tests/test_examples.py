"""The examples/ folder through the real CLI, at a tiny size: validate, sweep, stats, compare, report.

Each test copies an example's YAML to tmp_path with fewer steps and restarts (a string
replace, so the file tested is the one shipped) and runs it against a fresh SQLite file.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from robustness.cli import main
from robustness.plugins import entry_point_names

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.stderr
    return result.stdout


def tiny(src: Path, dst: Path, replacements: dict[str, str]) -> Path:
    """``src`` with each key replaced once by its value (each must be there: the example changed otherwise)."""
    text = src.read_text()
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{src.name}: expected one {old!r}"
        text = text.replace(old, new)
    dst.write_text(text)
    return dst


@pytest.fixture
def from_folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path, str], None]]:
    """Run in an example's folder, as its README says; its module is shipped to the Ray workers by value.

    The session's Ray instance was started from the repository root, so its workers cannot
    import a module from an example's folder (the CLI's own Ray would have that folder on their path).
    """
    import ray.cloudpickle

    registered = []

    def enter(folder: Path, module: str) -> None:
        monkeypatch.chdir(folder)
        monkeypatch.syspath_prepend(str(folder))
        mod = importlib.import_module(module)
        ray.cloudpickle.register_pickle_by_value(mod)
        registered.append(mod)

    yield enter
    for mod in registered:
        ray.cloudpickle.unregister_pickle_by_value(mod)
        sys.modules.pop(mod.__name__, None)


def stats(study: str, url: str) -> dict:
    return json.loads(run("stats", study, "--storage", url, "--format", "json"))


def test_cnn_digits_in_packs(ray_local, from_folder, tmp_path: Path) -> None:
    folder = EXAMPLES / "cnn_digits"
    from_folder(folder, "cnn")
    path = tiny(folder / "cnn_digits.yaml", tmp_path / "cnn.yaml",
                {"steps: 300": "steps: 20", "eval_every: 50": "eval_every: 10", "restarts: 8": "restarts: 2"})
    checked = json.loads(run("validate", str(path), "--json"))
    assert checked["cells"] == 4 and checked["dry_run"]["route"] == "pack"
    assert checked["dry_run"]["parameters"] == (9 * 8 + 8) + 2 * 8 + (8 * 64 * 10 + 10)  # conv, norm, linear
    url = f"sqlite:///{tmp_path / 'cnn.db'}"
    run("sweep", str(path), "--storage", url)
    result = stats("cnn-digits", url)
    assert result["restarts"] == 8 and [c["n"] for c in result["cells"]] == [2, 2, 2, 2]


def test_cnn_digits_rejects_a_bad_field(from_folder, tmp_path: Path) -> None:
    folder = EXAMPLES / "cnn_digits"
    from_folder(folder, "cnn")
    path = tiny(folder / "cnn_digits.yaml", tmp_path / "bad.yaml", {"channels: 8": "channels: 0"})
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr == f"Error: {path}: task.channels: expected an integer >= 1, got 0\n"


def test_gru_loop_one_restart_per_trial(ray_local, from_folder, tmp_path: Path) -> None:
    folder = EXAMPLES / "gru_loop"
    from_folder(folder, "gru_parity")
    path = tiny(folder / "gru_parity.yaml", tmp_path / "gru.yaml",
                {"steps: 400": "steps: 20", "eval_every: 50": "eval_every: 10", "restarts: 6": "restarts: 1"})
    assert json.loads(run("validate", str(path), "--json"))["dry_run"]["route"] == "own loop"
    url = f"sqlite:///{tmp_path / 'gru.db'}"
    run("sweep", str(path), "--storage", url)
    result = stats("gru-parity", url)
    assert result["restarts"] == 2 and [c["params"]["schedule"] for c in result["cells"]] == ["none", "annealed"]
    from robustness.storage import RestartStore

    with RestartStore(url) as store:
        curves = [[p.step for p in o.curve] for o in store.iter_outcomes("gru-parity")]
    assert curves == [[10, 20], [10, 20]]  # ctx.report's points, stored as the learning curve


def test_plugin_schedule_by_entry_point(ray_local, tmp_path: Path) -> None:
    pytest.importorskip("robustness_linear_decay",
                        reason="the example plugin is not installed: pip install -e examples/plugin (.ci/run does)")
    assert "linear_decay" in entry_point_names("robustness.schedules")  # the real entry point, not an import path
    path = tiny(EXAMPLES / "plugin" / "linear_decay.yaml", tmp_path / "ld.yaml",
                {"depth: 20": "depth: 3", "steps: 800": "steps: 20", "eval_every: 100": "eval_every: 10",
                 "restarts: 8": "restarts: 2"})
    assert json.loads(run("validate", str(path), "--json"))["axes"]["horizon"] == [None, 200, 800]
    url = f"sqlite:///{tmp_path / 'ld.db'}"
    run("sweep", str(path), "--storage", url)
    assert stats("linear-decay", url)["restarts"] == 6
    comparisons = json.loads(run("compare", "linear-decay", "--storage", url, "--format", "json"))["comparisons"]
    # one comparison per horizon, each against the no-noise baseline of the same cell
    assert sorted(c["noise"]["horizon"] for c in comparisons) == [200, 800]
    assert {c["baseline"]["schedule"] for c in comparisons} == {"none"}
    assert all(c["n_pairs"] == 2 for c in comparisons)
    run("report", "linear-decay", "--storage", url, "-o", str(tmp_path / "report.html"))
    html = (tmp_path / "report.html").read_text()
    assert "linear_decay \\u03b7=0.3 horizon=200" in html and "horizon=800" in html  # arm labels, in Plotly's JSON
