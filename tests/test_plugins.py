"""User code, found without editing the package: tasks and noise schedules by import path
and by entry point, with one-line errors for every broken plugin (exit 2, nothing written)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from robustness.cli import main
from robustness.noise import noise_axes
from robustness.study.search_space import SearchSpaceError, parse_search_space

PLUGIN = '''
import dataclasses
import torch
from torch import nn
from robustness.noise import NoiseSchedule
from robustness.training.data import load_dataset
from robustness.training.tasks import ClassificationTask, TensorData, TaskFieldError, as_task_data


@dataclasses.dataclass(frozen=True)
class TinyNet(ClassificationTask):
    """A one-hidden-layer net on the digits, with a knob of its own."""

    hidden: int = 8
    activation: str = "relu"

    def __post_init__(self):
        if self.hidden < 1:
            raise TaskFieldError("hidden", "an integer >= 1")

    def load_data(self):
        return as_task_data(load_dataset("digits"))

    def build_module(self, data):
        act = nn.ReLU() if self.activation == "relu" else nn.Tanh()
        return nn.Sequential(nn.Linear(64, self.hidden), act, nn.Linear(self.hidden, 10))


class _ShapeBug(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(63, 10)  # the digits have 64 features

    def forward(self, x):
        return self.fc(x)


@dataclasses.dataclass(frozen=True)
class BrokenForward(TinyNet):
    def build_module(self, data):
        return _ShapeBug()


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        if x.sum().item() > 0:  # Python control flow on a value: vmap cannot batch it
            return self.fc(x)
        return -self.fc(x)


@dataclasses.dataclass(frozen=True)
class NotVectorizable(TinyNet):
    def build_module(self, data):
        return _DataDependent()


class NotATask:
    pass


@dataclasses.dataclass(frozen=True)
class LinearDecay(NoiseSchedule):
    """Variance decaying linearly to zero over ``horizon`` updates: a parameter besides eta/gamma."""

    eta: float
    horizon: int

    def variance(self, t):
        return self.eta * max(0.0, 1.0 - t / self.horizon)
'''

STUDY = """
study: plug
task: {{name: '{task}', steps: 4, batch_size: 16, eval_every: 2{extra}}}
grid:
  lr: [0.05]
  noise:
    - schedule: none
    - schedule: '{schedule}'
      eta: [0.1]
      {schedule_keys}
restarts: 2
success: {{metric: {metric}, op: '>=', threshold: 0.5}}
"""


def study(task: str, *, extra: str = "", schedule: str = "annealed", schedule_keys: str = "gamma: [0.55]",
          metric: str = "test_accuracy") -> str:
    return STUDY.format(task=task, extra=extra, schedule=schedule, schedule_keys=schedule_keys, metric=metric)


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of user code on sys.path under a fresh name (the module cache is per name)."""
    name = f"user_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def installed(plugin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The same module registered as an installed package's entry points (a dist-info on sys.path)."""
    dist = tmp_path / "site" / "user_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[robustness.tasks]\ntiny_net = {plugin}:TinyNet\n\n[robustness.schedules]\nlinear_decay_ep = {plugin}:LinearDecay\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return plugin


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_a_task_by_import_path_gets_its_fields_checked(plugin: str) -> None:
    space = parse_search_space(study(f"{plugin}:TinyNet", extra=", hidden: 12"), source="s.yaml")
    task = space.task.build()
    assert type(task).__name__ == "TinyNet" and task.hidden == 12 and task.activation == "relu"
    assert space.task.fields() == {"hidden": 12, "activation": "relu"}
    for extra, message in [
        (", hidden: '12'", "s.yaml: task.hidden: expected an integer, got '12'"),
        (", hidden: 0", "s.yaml: task.hidden: expected an integer >= 1, got 0"),
        (", hiden: 3", "s.yaml: task.hiden: unknown key (did you mean 'hidden'?); expected one of: name, steps"),
        (", depth: 3", "s.yaml: task.depth: unknown key"),  # a deep_mlp key is not this task's
    ]:
        with pytest.raises(SearchSpaceError) as info:
            parse_search_space(study(f"{plugin}:TinyNet", extra=extra), source="s.yaml")
        assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_tasks_and_schedules_are_found_by_entry_point(installed: str) -> None:
    space = parse_search_space(study("tiny_net", schedule="linear_decay_ep", schedule_keys="horizon: [2, 4]"),
                               source="s.yaml")
    assert type(space.task.build()).__name__ == "TinyNet"
    assert {c["schedule"] for c in space.cells()} == {"none", "linear_decay_ep"}
    assert {c["horizon"] for c in space.cells()} == {None, 2, 4}
    # the schedule's own parameter is a noise axis, also in a process that only knows its name
    assert noise_axes(space.axes(), schedules=["linear_decay_ep"]) == ("schedule", "eta", "gamma", "horizon")


def test_a_schedule_by_import_path(plugin: str) -> None:
    space = parse_search_space(study(f"{plugin}:TinyNet", schedule=f"{plugin}:LinearDecay",
                                     schedule_keys="horizon: [3]"), source="s.yaml")
    spec = space.restart_specs()[-1]
    assert type(spec.schedule).__name__ == "LinearDecay" and spec.schedule.variance(3) == 0.0


def test_validate_dry_runs_the_plugin_and_reports_its_route(plugin: str, tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(study(f"{plugin}:TinyNet"))
    code, out, err = run("validate", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["dry_run"] == {"route": "pack", "parameters": 64 * 8 + 8 + 8 * 10 + 10,
                                          "metrics": ["test_accuracy", "test_error", "test_loss", "train_loss"]}


@pytest.mark.parametrize(
    ("task", "metric", "expected"),
    [
        ("no_such_package.tasks:Net", "test_accuracy", "task.name: no module named 'no_such_package'"),
        ("{plugin}:Missing", "test_accuracy", "task.name: module {plugin} has no attribute 'Missing'"),
        ("{plugin}:NotATask", "test_accuracy", "task.name: expected a subclass of robustness.training.tasks.Task"),
        ("{plugin}:BrokenForward", "test_accuracy", "the model failed on one batch (input (16, 64)): RuntimeError: mat1 and mat2"),
        ("{plugin}:NotVectorizable", "test_accuracy", "train it with your own loop instead"),
        ("{plugin}:TinyNet", "accuracy", "success.metric: expected one of the task's metrics (test_accuracy, test_error"),
    ],
    ids=["missing-module", "missing-class", "wrong-class", "forward-fails", "not-vectorizable", "unknown-metric"],
)
def test_every_bad_plugin_is_one_line_exit_2_and_writes_nothing(plugin: str, tmp_path: Path, task: str,
                                                                metric: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(study(task.format(plugin=plugin), metric=metric))
    for command in (["validate", str(path)], ["sweep", str(path), "--storage", f"sqlite:///{tmp_path / 'x.db'}"]):
        code, out, err = run(*command)
        assert code == 2 and out == "", command
        assert err.count("\n") == 1 and err.startswith("Error: ") and "Traceback" not in err, err
        assert expected.format(plugin=plugin) in err, err
    assert not (tmp_path / "x.db").exists()  # the sweep stopped before storage was touched


def test_a_batch_larger_than_the_data_stops_at_validate(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(study("deep_mlp", extra=", depth: 2, width: 8").replace("batch_size: 16", "batch_size: 5000"))
    code, _, err = run("validate", str(path))
    assert code == 2 and "task.batch_size: expected at most the 1347 training examples" in err


def test_user_code_on_the_path_of_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `robustness sweep` is a console script: the current directory is not on sys.path,
    # so the loader adds it, as `python -m` would.
    name = f"cwd_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        space = parse_search_space(study(f"{name}:TinyNet"), source="s.yaml")
        assert type(space.task.build()).__module__ == name
    finally:
        sys.modules.pop(name, None)
