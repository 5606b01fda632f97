"""Search-space files: the shipped studies, cell expansion, seeds, and one-line errors."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from robustness.noise import (
    AnnealedNoise,
    ConstantNoise,
    NoiseSchedule,
    NoNoise,
    register_schedule,
    schedule_from_cell,
)
from robustness.study import search_space as ss
from robustness.study.search_space import (
    SearchSpaceError,
    load_search_space,
    parse_search_space,
)
from robustness.training.spec import restart_seed

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"
SIX = {"lr", "clip", "init", "schedule", "eta", "gamma"}

MINIMAL = """
study: tiny
task: {name: deep_mlp, steps: 10, eval_every: 5}
grid:
  lr: [0.1]
  noise: [{schedule: none}]
restarts: 2
success: {metric: test_accuracy, op: ">=", threshold: 0.9}
"""


def base() -> dict[str, Any]:
    """A small valid study as a mapping, for tests to break one key at a time."""
    return {
        "study": "t",
        "task": {"name": "deep_mlp", "dataset": "digits", "depth": 3, "width": 8, "steps": 100,
                 "batch_size": 32, "eval_every": 10},
        "optimizer": {"name": "sgd", "momentum": 0.0},
        "grid": {
            "lr": [0.01, 0.1],
            "clip": [10, "none"],
            "init": ["simple", "zero"],
            "noise": [{"schedule": "none"}, {"schedule": "annealed", "eta": [0.01, 0.3], "gamma": [0.55]}],
        },
        "restarts": 3,
        "success": {"metric": "test_accuracy", "op": ">=", "threshold": 0.9},
    }


def parse(doc: dict[str, Any], **kwargs: Any) -> ss.SearchSpace:
    return parse_search_space(yaml.safe_dump(doc), source="s.yaml", **kwargs)


def error_of(text: str, **kwargs: Any) -> str:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(text, source="s.yaml", **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith("s.yaml: ")
    return message


def broken(change: Callable[[dict[str, Any]], Any]) -> str:
    doc = base()
    change(doc)
    return error_of(yaml.safe_dump(doc))


# --- the shipped files -------------------------------------------------------------------


def test_paper_file_is_table_1() -> None:
    space = load_search_space(SPACES / "paper_mnist_deep20.yaml")
    arms = {(c["init"], c["clip"]) for c in space.cells()}
    # the paper's six arms (its row 1b, dropout, is not expressible), and nothing else
    assert arms == {("simple", None), ("simple", 100.0), ("simple", 10.0), ("random_walk", 10.0), ("he", 10.0),
                    ("zero", 10.0)}
    axes = space.axes()
    assert axes["lr"] == [0.1, 0.01] and axes["eta"] == [None, 0.01] and axes["gamma"] == [None, 0.55]
    assert axes["schedule"] == ["none", "annealed"]
    # 20 runs per learning rate, 40 per arm and noise setting
    assert space.summary() == {**space.summary(), "study": "paper-mnist-deep20", "cells": 24,
                               "restarts_per_cell": 20, "total_restarts": 480}
    assert (space.task.depth, space.task.width, space.task.dataset) == (20, 50, "mnist")
    assert (space.optimizer.name, space.optimizer.momentum) == ("sgd", 0.0)
    assert (space.success.metric, space.success.op, space.success.threshold) == ("test_accuracy", ">=", 0.9)


def test_eta_extension_adds_noise_levels_to_the_same_arms() -> None:
    paper = load_search_space(SPACES / "paper_mnist_deep20.yaml")
    extension = load_search_space(SPACES / "paper_mnist_deep20_eta_extension.yaml")
    assert extension.study != paper.study
    assert set(paper.cells()) < set(extension.cells())  # the paper's cells are among its own
    assert extension.axes()["eta"] == [None, 0.01, 0.3, 1.0] and extension.summary()["cells"] == 48
    assert (extension.task, extension.optimizer, extension.success) == (paper.task, paper.optimizer, paper.success)


def test_no_shipped_file_names_a_machine_path() -> None:
    for path in SPACES.glob("*.yaml"):
        assert "/work/" not in path.read_text() and "/home/" not in path.read_text(), path.name


def test_demo_file_is_small_and_has_both_arms() -> None:
    space = load_search_space(SPACES / "demo.yaml")
    (grid,) = space.grid
    settings = sum(len(b.eta or [None]) * len(b.gamma or [None]) for b in grid.noise)
    cells = len(grid.lr) * len(grid.clip) * len(grid.init) * settings
    assert space.summary()["cells"] == cells
    assert space.summary()["total_restarts"] == cells * space.restarts
    assert space.task.dataset == "digits"  # offline: no download in a 5-minute demo
    assert {"none", "annealed"} <= set(space.axes()["schedule"])
    assert 16 <= space.restarts and space.summary()["total_restarts"] <= 200


@pytest.mark.parametrize("name", ["demo.yaml", "paper_mnist_deep20.yaml", "paper_mnist_deep20_eta_extension.yaml",
                                  "paper_binary_multiplication.yaml", "paper_binary_multiplication_cpu.yaml"])
def test_shipped_file_text_is_kept(name: str) -> None:
    path = SPACES / name
    space = load_search_space(path)
    assert space.text == path.read_text() and space.source == str(path)


# --- cells ---------------------------------------------------------------------------------


def test_cells_have_the_six_keys_and_none_where_not_applicable() -> None:
    cells = parse(base()).cells()
    assert len(cells) == 2 * 2 * 2 * (1 + 2)
    assert all(set(cell) == SIX for cell in cells)
    none = [c for c in cells if c["schedule"] == "none"]
    assert len(none) == 8 and all(c["eta"] is None and c["gamma"] is None for c in none)
    assert {c["clip"] for c in cells} == {10.0, None}
    assert cells == parse(base()).cells()  # deterministic order


def test_noise_arms_of_a_cell_are_adjacent() -> None:
    first = parse(base()).cells()[:3]
    assert [(c["schedule"], c["eta"]) for c in first] == [("none", None), ("annealed", 0.01), ("annealed", 0.3)]
    assert len({(c["lr"], c["clip"], c["init"]) for c in first}) == 1


def test_constant_schedule_has_no_gamma_and_annealed_defaults_to_paper_gamma() -> None:
    doc = base()
    doc["grid"]["noise"] = [{"schedule": "constant", "eta": 0.01}, {"schedule": "annealed", "eta": [1]}]
    cells = parse(doc).cells()
    assert {(c["schedule"], c["eta"], c["gamma"]) for c in cells} == {("constant", 0.01, None),
                                                                      ("annealed", 1.0, 0.55)}


def test_identical_cells_are_deduplicated() -> None:
    doc = base()
    doc["grid"].update(lr=[0.1, 0.1], clip=[10, 10.0], init=["zero", "zero"])
    doc["grid"]["noise"] = [
        {"schedule": "none"},
        {"schedule": "none"},
        {"schedule": "annealed", "eta": [0.3, 0.3]},  # gamma defaults to 0.55 ...
        {"schedule": "annealed", "eta": [0.3], "gamma": [0.55]},  # ... so this is the same cell
    ]
    space = parse(doc)
    assert len(space.cells()) == 2
    assert space.summary()["total_restarts"] == 2 * 3


def test_axes_lists_distinct_values_per_coordinate() -> None:
    axes = parse(base()).axes()
    assert list(axes)[:6] == ["lr", "clip", "init", "schedule", "eta", "gamma"]
    assert axes["lr"] == [0.01, 0.1] and axes["init"] == ["simple", "zero"]
    assert axes["schedule"] == ["none", "annealed"] and axes["eta"] == [None, 0.01, 0.3]


def test_scalars_count_as_one_element_lists() -> None:
    doc = base()
    doc["grid"].update(lr=0.1, clip=None, init="he")
    doc["grid"]["noise"] = [{"schedule": "annealed", "eta": 0.3, "gamma": 0}]
    (cell,) = parse(doc).cells()
    assert dict(cell) == {"lr": 0.1, "clip": None, "init": "he", "schedule": "annealed", "eta": 0.3, "gamma": 0.0}


def test_defaults() -> None:
    space = parse_search_space(MINIMAL)
    assert (space.base_seed, space.pack_size, space.resources) == (0, None, {"cpu": 1, "gpu": 0})
    assert (space.optimizer.name, space.optimizer.momentum, space.optimizer.betas) == ("sgd", 0.0, None)
    (cell,) = space.cells()
    assert (cell["clip"], cell["init"]) == (None, "he")


def test_adam_gets_its_defaults_and_yaml_exponents_are_numbers() -> None:
    space = parse_search_space(MINIMAL + "optimizer: {name: adam, eps: 1e-6}\npack_size: 8\n"
                               "resources: {cpu: 2, gpu: 0.5}\n")
    assert (space.optimizer.betas, space.optimizer.eps, space.optimizer.momentum) == ((0.9, 0.999), 1e-6, None)
    assert space.pack_size == 8 and space.resources == {"cpu": 2, "gpu": 0.5}


def test_mnist_takes_a_data_dir_and_download() -> None:
    doc = base()
    doc["task"].update(dataset="mnist", data_dir="/data/mnist", download=True)
    task = parse(doc).task
    assert (task.dataset, task.data_dir, task.download) == ("mnist", "/data/mnist", True)


def test_space_is_hashable_and_picklable() -> None:
    space = parse(base())
    again = pickle.loads(pickle.dumps(space))
    assert again == space and hash(again) == hash(space)
    assert again.cells() == space.cells()


# --- seeds and restart specs ------------------------------------------------------------------


def test_restart_k_has_the_same_seed_in_every_cell() -> None:
    space = parse(base())
    specs = space.restart_specs()
    assert len(specs) == len(space.cells()) * 3
    by_restart: dict[int, set[int]] = {}
    for spec in specs:
        by_restart.setdefault(spec.restart, set()).add(spec.seed)
    assert by_restart == {k: {restart_seed(k, base_seed=0)} for k in range(3)}
    assert len({s for (s,) in by_restart.values()}) == 3  # restarts differ from each other


def test_base_seed_changes_every_seed() -> None:
    doc = base()
    doc["base_seed"] = 7
    seeds = {spec.restart: spec.seed for spec in parse(doc).restart_specs()}
    assert seeds == {k: restart_seed(k, base_seed=7) for k in range(3)}
    assert seeds[0] != restart_seed(0, base_seed=0)


def test_restart_specs_carry_the_cell() -> None:
    space = parse(base())
    noisy = [c for c in space.cells() if c["eta"] == 0.3 and c["clip"] is None][0]
    specs = space.restart_specs([noisy])
    assert [s.restart for s in specs] == [0, 1, 2]
    spec = specs[0]
    assert spec.params == noisy and spec.lr == noisy["lr"] and spec.init == noisy["init"]
    assert spec.clip_norm is None and spec.schedule == AnnealedNoise(eta=0.3, gamma=0.55)
    none = [c for c in space.cells() if c["schedule"] == "none" and c["clip"] == 10][0]
    (spec,) = space.restart_specs([dict(none)])[:1]
    assert spec.schedule == NoNoise() and spec.clip_norm == 10.0


def test_schedule_from_cell_rebuilds_from_plain_dicts() -> None:
    assert schedule_from_cell({"schedule": "constant", "eta": 0.5, "gamma": None}) == ConstantNoise(eta=0.5)
    assert schedule_from_cell({"schedule": "none", "eta": None, "gamma": None}) == NoNoise()


# --- user schedules ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_decay() -> str:
    name = f"test_linear_decay_{uuid.uuid4().hex[:8]}"  # the registry is global: never reuse a name

    @register_schedule(name)
    @dataclasses.dataclass(frozen=True)
    class LinearDecay(NoiseSchedule):
        eta: float
        horizon: int
        floor: float = 0.0

        def __post_init__(self) -> None:
            if self.horizon < 1:
                raise ValueError(f"horizon must be >= 1, got {self.horizon}")

        def variance(self, t: int) -> float:
            return max(self.floor, self.eta * (1 - t / self.horizon))

    return name


def test_user_schedule_keys_become_axes(linear_decay: str) -> None:
    doc = base()
    doc["grid"].update(lr=[0.1], clip=[10], init=["zero"])
    doc["grid"]["noise"] = [{"schedule": "none"}, {"schedule": linear_decay, "eta": [0.3], "horizon": [50, 100]}]
    space = parse(doc)
    cells = space.cells()
    assert len(cells) == 3
    assert all(set(c) == SIX | {"horizon", "floor"} for c in cells)
    assert cells[0]["horizon"] is None and cells[0]["floor"] is None  # the baseline has none
    assert [(c["horizon"], c["floor"], c["gamma"]) for c in cells[1:]] == [(50, 0.0, None), (100, 0.0, None)]
    spec = space.restart_specs([cells[2]])[0]
    assert spec.schedule.name == linear_decay and spec.schedule.horizon == 100  # type: ignore[attr-defined]
    assert space.axes()["horizon"] == [None, 50, 100]


def test_user_schedule_errors(linear_decay: str) -> None:
    def noise(block: dict[str, Any]) -> str:
        return broken(lambda d: d["grid"].update(noise=[block]))

    message = noise({"schedule": linear_decay, "eta": [0.3]})
    assert "grid.noise[0].horizon: missing required key" in message
    message = noise({"schedule": linear_decay, "eta": [0.3], "horizon": 5, "gama": [1]})
    assert "grid.noise[0].gama: unknown key" in message and "horizon" in message
    message = noise({"schedule": linear_decay, "eta": [0.3], "horizon": [5, 0]})
    assert "grid.noise[0]: schedule" in message and "horizon=0" in message and "horizon must be >= 1" in message
    message = noise({"schedule": linear_decay, "eta": [0.3], "horizon": [[5]]})
    assert "grid.noise[0].horizon[0]: expected a scalar" in message


# --- registries ------------------------------------------------------------------------------------


def test_task_names_come_from_the_live_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustness.training import tasks

    monkeypatch.setitem(tasks.TASKS, "toy_task", tasks.DeepMLPTask)
    assert ss.known_tasks() == ["binary_arithmetic", "deep_mlp", "toy_task"]
    doc = base()
    doc["task"]["name"] = "toy_task"
    assert parse(doc).task.name == "toy_task"


# --- errors: one line, naming the key path and what was expected ----------------------------------------


@pytest.mark.parametrize(
    ("change", "path", "expected"),
    [
        # unknown keys, with a suggestion
        (lambda d: d.update(restart=3), "restart: unknown key", "did you mean 'restarts'"),
        (lambda d: d["task"].update(dpeth=3), "task.dpeth: unknown key (did you mean 'depth'?)", "expected one of: name, steps, batch_size, eval_every, rng, dataset"),
        (lambda d: d["grid"]["noise"][1].update(gama=[1]), "grid.noise[1].gama: unknown key", "eta, gamma"),
        (lambda d: d["grid"]["noise"][0].update(eta=[1]), "grid.noise[0].eta: unknown key", "no parameters"),
        (lambda d: d.update(resources={"cpus": 1}), "resources.cpus: unknown key", "cpu, gpu"),
        (lambda d: d["optimizer"].update(betas=[0.9, 0.99]), "optimizer.betas: not an option of sgd", "momentum"),
        # wrong types: no silent casts
        (lambda d: d["task"].update(depth="20"), "task.depth", "expected an integer, got '20'"),
        (lambda d: d["task"].update(depth=0), "task.depth", "expected an integer >= 1, got 0"),
        (lambda d: d["task"].update(name="bogus"), "task.name", "expected a known task (one of: binary_arithmetic, deep_mlp)"),
        (lambda d: d["task"].update(name="no_such_pkg.tasks:Net"), "task.name", "no module named 'no_such_pkg'"),
        (lambda d: d["task"].update(name="robustness.records:RestartOutcome"), "task.name",
         "expected a subclass of robustness.training.tasks.Task"),
        (lambda d: d["task"].update(steps=100.0), "task.steps", "expected an integer >= 1, got 100.0"),
        (lambda d: d.update(restarts=True), "restarts", "expected an integer >= 1, got true"),
        (lambda d: d.update(task="deep_mlp"), "task", "expected a mapping, got 'deep_mlp'"),
        (lambda d: d["grid"].update(lr=["fast"]), "grid.lr[0]", "expected a number > 0, got 'fast'"),
        (lambda d: d["grid"].update(clip=[10, "off"]), "grid.clip[1]", "expected a number > 0 or none, got 'off'"),
        (lambda d: d["grid"]["noise"].append("none"), "grid.noise[2]", "expected a mapping, got 'none'"),
        (lambda d: d["success"].update(threshold="high"), "success.threshold", "expected a number, got 'high'"),
        # eta is a variance: > 0
        (lambda d: d["grid"]["noise"][1].update(eta=[0.3, -1]), "grid.noise[1].eta[1]", "expected a number > 0, got -1"),
        (lambda d: d["grid"]["noise"][1].update(eta=0), "grid.noise[1].eta", "expected a number > 0, got 0"),
        (lambda d: d["grid"]["noise"][1].pop("eta"), "grid.noise[1].eta: missing required key", "numbers > 0"),
        # gamma >= 0
        (lambda d: d["grid"]["noise"][1].update(gamma=[-0.5]), "grid.noise[1].gamma[0]", "expected a number >= 0"),
        # learning rate > 0
        (lambda d: d["grid"].update(lr=[0.1, 0]), "grid.lr[1]", "expected a number > 0, got 0"),
        (lambda d: d["grid"].update(lr=[float("nan")]), "grid.lr[0]", "expected a number > 0, got nan"),
        # restarts >= 1
        (lambda d: d.update(restarts=0), "restarts", "expected an integer >= 1, got 0"),
        # empty axes
        (lambda d: d["grid"].update(lr=[]), "grid.lr", "expected a non-empty list of numbers > 0, got []"),
        (lambda d: d["grid"].update(init=[]), "grid.init", "expected a non-empty list"),
        (lambda d: d["grid"].update(noise=[]), "grid.noise", "expected a non-empty list of noise blocks"),
        (lambda d: d["grid"]["noise"][1].update(eta=[]), "grid.noise[1].eta", "expected a non-empty list"),
        # unknown names, listing the known ones
        (lambda d: d["task"].update(name="cnn"), "task.name", "expected a known task (one of: binary_arithmetic, deep_mlp"),
        (lambda d: d["grid"]["noise"][1].update(schedule="anealed"), "grid.noise[1].schedule",
         "expected a registered noise schedule (one of: annealed, constant"),
        (lambda d: d["optimizer"].update(name="rmsprop"), "optimizer.name", "expected a known optimizer (one of: adam"),
        (lambda d: d["grid"].update(init=["good"]), "grid.init[0]", "expected a known init scheme (one of:"),
        # missing keys say what belongs there
        (lambda d: d["task"].pop("steps"), "task.steps: missing required key", "expected the number of updates"),
        (lambda d: d.pop("grid"), "grid: missing required key", "expected a mapping"),
        # the rest of the schema
        (lambda d: d["task"].update(eval_every=1000), "task.eval_every", "expected an integer <= task.steps (100)"),
        (lambda d: d["task"].update(data_dir="/data"), "task.data_dir", "only mnist"),
        (lambda d: d["task"].update(download=True), "task.download", "expected no download for dataset 'digits'"),
        (lambda d: d["task"].update(dataset="mnist", download="yes"), "task.download", "expected true or false"),
        (lambda d: d["task"].update(dataset="cifar"), "task.dataset", "expected a known data set (one of: digits"),
        (lambda d: d.update(study="my study"), "study", "expected a name made of letters"),
        (lambda d: d["success"].update(op="=>"), "success.op", "expected a comparison (one of: <, <=, >, >=)"),
        (lambda d: d.update(pack_size=0), "pack_size", "expected an integer >= 1 or 'auto', got 0"),
        (lambda d: d.update(resources={"gpu": -1}), "resources.gpu", "expected a number >= 0, got -1"),
        (lambda d: d.update(optimizer={"name": "adam", "betas": [0.9]}), "optimizer.betas", "two numbers"),
        (lambda d: d["optimizer"].update(momentum=1), "optimizer.momentum", "expected a number >= 0 and < 1"),
    ],
)
def test_invalid_key_is_named_with_what_was_expected(change: Callable[[dict[str, Any]], Any], path: str,
                                                     expected: str) -> None:
    message = broken(change)
    assert f"s.yaml: {path}" in message
    assert expected in message


def test_only_the_first_problem_is_described_but_others_are_counted() -> None:
    message = broken(lambda d: (d.update(restarts=0), d["task"].update(depth=0)))
    assert message == "s.yaml: task.depth: expected an integer >= 1, got 0 (and 1 more problem)"


def test_grid_above_the_cell_cap() -> None:
    doc = base()  # 24 cells
    doc["max_cells"] = 20
    message = error_of(yaml.safe_dump(doc))
    assert "s.yaml: grid: expected at most 20 cells (max_cells), got 24 = 2 lr x 2 clip x 2 init x 3 noise" in message
    assert parse(doc, max_cells=24).summary()["cells"] == 24  # the loader's argument wins
    message = error_of(yaml.safe_dump(base()), max_cells=10)
    assert "expected at most 10 cells" in message


def test_a_huge_grid_with_raised_caps_is_refused_from_the_axis_lengths() -> None:
    doc = base()
    doc["grid"]["lr"] = [0.001 * (i + 1) for i in range(1000)]
    doc["grid"]["clip"] = [float(i + 1) for i in range(1000)]
    doc.update(restarts=500_000, max_cells=10**12, max_restarts=10**12)  # 10^12 restarts asked for
    message = error_of(yaml.safe_dump(doc))
    assert "restarts: expected at most 5000000 restarts in total (max_restarts; the tool's ceiling is 5000000)" in message


def test_values_a_user_would_expect_refused() -> None:
    assert "base_seed: expected an integer >= 0 and < 2**63, got 18446744073709551616" in broken(
        lambda d: d.update(base_seed=2**64))
    assert "task.depth: expected depth and width giving at most 50,000,000 parameters" in broken(
        lambda d: d["task"].update(depth=100_000_000))
    assert "task.width: expected depth and width giving at most 50,000,000 parameters" in broken(
        lambda d: d["task"].update(width=1_000_000_000))


def test_runaway_grid_is_refused_before_expansion() -> None:
    doc = base()
    doc["grid"]["lr"] = [0.001 * (i + 1) for i in range(3000)]  # 3000 x 2 x 2 x 3 = 36,000 cells
    assert "expected at most 10000 cells (max_cells), got 36000" in error_of(yaml.safe_dump(doc))


def test_total_restarts_above_the_cap() -> None:
    doc = base()
    message = error_of(yaml.safe_dump(doc), max_restarts=50)
    assert ("s.yaml: restarts: expected at most 50 restarts in total (max_restarts; the tool's ceiling is 5000000), "
            "got up to 24 cells x 3 = 72") in message
    doc["max_restarts"] = 72
    assert parse(doc).summary()["total_restarts"] == 72


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("study: x\n  task: [\n", "s.yaml: line 2, column 7: malformed YAML: mapping values are not allowed here"),
        ("study: x\ntask:\n\tname: a\n", "s.yaml: line 3, column 1: malformed YAML: found character '\\t'"),
        (MINIMAL + "restarts: 3\n", "malformed YAML: duplicate key 'restarts'"),
        ("1: 2\n", "s.yaml: line 1, column 1: malformed YAML: keys must be strings, got 1"),
        ("study: 2024-13-45\n", "s.yaml: malformed YAML: month must be in 1..12"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "s.yaml: line 1, column 35: malformed YAML: nested deeper than 32 levels"),
        ("- study\n- task\n", "s.yaml: expected a mapping at the top level (study, task, grid, ...), got ['study'"),
        ("just text\n", "s.yaml: expected a mapping at the top level (study, task, grid, ...), got 'just text'"),
        ("", "s.yaml: the file is empty; expected a mapping with keys study, task, grid"),
        ("  \n", "s.yaml: the file is empty"),
        ("# only a comment\n", "s.yaml: the file is empty"),
    ],
)
def test_unreadable_documents(text: str, expected: str) -> None:
    assert expected in error_of(text)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SearchSpaceError, match=r"nope\.yaml: cannot read the file"):
        load_search_space(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("restarts: 2", "restarts: -2"))
    with pytest.raises(SearchSpaceError) as info:
        load_search_space(bad)
    assert str(info.value) == f"{bad}: restarts: expected an integer >= 1, got -2"
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SearchSpaceError, match="expected a UTF-8 text file"):
        load_search_space(binary)


def test_error_is_a_value_error_without_chained_traceback() -> None:
    with pytest.raises(ValueError) as info:
        parse_search_space("study: [", source="s.yaml")
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --- a list of grids is their union ----------------------------------------------------------------


def test_a_list_of_grids_is_the_union_of_their_cells() -> None:
    doc = base()
    def noise() -> list:  # a fresh list each time: a shared one would be dumped as a YAML alias
        return [{"schedule": "none"}, {"schedule": "annealed", "eta": [0.01]}]

    doc["grid"] = [
        {"lr": [0.1], "clip": [None, 100, 10], "init": ["simple"], "noise": noise()},
        {"lr": [0.1], "clip": [10], "init": ["he", "zero", "simple"], "noise": noise()},  # simple/10 is in both
    ]
    space = parse(doc)
    arms = [(c["init"], c["clip"]) for c in space.cells()]
    # 3 + 3 (init, clip) arms, the shared one once; x 2 noise settings
    assert len(arms) == 2 * 5 and len(set(arms)) == 5
    assert ("he", None) not in arms and ("zero", 100.0) not in arms  # not a full product
    assert space.axes()["init"] == ["simple", "he", "zero"] and space.axes()["clip"] == [None, 100.0, 10.0]
    assert space.summary()["total_restarts"] == 10 * space.restarts
    # every cell has every key, so the seeds pair across the whole union
    assert {frozenset(c) for c in space.cells()} == {frozenset(space.cells()[0])}


def test_errors_inside_a_list_of_grids_name_the_grid() -> None:
    doc = base()
    doc["grid"] = [copy.deepcopy(doc["grid"]), {**copy.deepcopy(doc["grid"]), "lr": [-1]}]
    assert "s.yaml: grid[1].lr[0]: expected a number > 0, got -1" in broken(lambda d: d.update(grid=doc["grid"]))
    assert "grid: expected a mapping with at least lr and noise, or a non-empty list" in broken(lambda d: d.update(grid=[]))
    assert "grid.lr[0]: expected a number > 0" in broken(lambda d: d["grid"].update(lr=[-1]))  # one grid: no [0]


# --- optimizer knobs and the LR schedule -------------------------------------------------------------


def test_optimizer_knobs_and_lr_schedule_get_their_defaults() -> None:
    sgd = parse_search_space(MINIMAL + "optimizer: {name: sgd, momentum: 0.9, nesterov: true, weight_decay: 5e-4}\n")
    o = sgd.optimizer
    assert (o.momentum, o.nesterov, o.weight_decay, o.betas) == (0.9, True, 5e-4, None)
    assert (o.lr_schedule.name, o.lr_schedule.warmup) == ("constant", 0)  # the default: a fixed lr
    adamw = parse_search_space(MINIMAL + "optimizer: {name: adamw, lr_schedule: {name: cosine, warmup: 3}}\n").optimizer
    assert (adamw.weight_decay, adamw.betas, adamw.eps, adamw.nesterov) == (0.01, (0.9, 0.999), 1e-8, None)
    assert (adamw.lr_schedule.final_factor, adamw.lr_schedule.warmup, adamw.lr_schedule.gamma) == (0.0, 3, None)
    step = parse_search_space(MINIMAL + "optimizer: {name: adam, lr_schedule: {name: step, step_size: 4}}\n")
    assert (step.optimizer.weight_decay, step.optimizer.lr_schedule.gamma) == (0.0, 0.1)  # StepLR's gamma


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [
        ({"nesterov": True}, "optimizer.nesterov: expected momentum > 0 with nesterov: true, got momentum 0.0"),
        ({"momentum": 0, "nesterov": True}, "optimizer.nesterov: expected momentum > 0 with nesterov: true"),
        ({"momentum": 0.9, "nesterov": "yes"}, "optimizer.nesterov: expected true or false, got 'yes'"),
        ({"name": "adam", "nesterov": False},
         "optimizer.nesterov: not an option of adam; expected only: name, betas, eps, weight_decay, lr_schedule"),
        ({"name": "adamw", "momentum": 0.9}, "optimizer.momentum: not an option of adamw"),
        ({"weight_decay": -0.1}, "optimizer.weight_decay: expected a number >= 0, got -0.1"),
        ({"weight_decay": "small"}, "optimizer.weight_decay: expected a number >= 0, got 'small'"),
        ({"lr_schedule": "cosine"}, "optimizer.lr_schedule: expected a mapping, got 'cosine'"),
        ({"lr_schedule": {"name": "linear"}},
         "optimizer.lr_schedule.name: expected a known lr schedule (one of: constant, cosine, step), got 'linear'"),
        ({"lr_schedule": {"name": "step"}}, "optimizer.lr_schedule.step_size: missing required key for schedule 'step'"),
        ({"lr_schedule": {"name": "step", "step_size": 0}},
         "optimizer.lr_schedule.step_size: expected an integer >= 1, got 0"),
        ({"lr_schedule": {"name": "step", "step_size": 2, "gamma": 0}},
         "optimizer.lr_schedule.gamma: expected a number > 0, got 0"),
        ({"lr_schedule": {"name": "cosine", "gamma": 0.5}},
         "optimizer.lr_schedule.gamma: not an option of cosine; expected only: name, final_factor, warmup"),
        ({"lr_schedule": {"step_size": 2}}, "optimizer.lr_schedule.step_size: not an option of constant"),
        ({"lr_schedule": {"name": "cosine", "final_factor": -1}},
         "optimizer.lr_schedule.final_factor: expected a number >= 0, got -1"),
        ({"lr_schedule": {"warmup": 2.5}}, "optimizer.lr_schedule.warmup: expected an integer >= 0, got 2.5"),
        ({"lr_schedule": {"warmpu": 2}}, "optimizer.lr_schedule.warmpu: unknown key (did you mean 'warmup'?)"),
        ({"lr_shedule": {}}, "optimizer.lr_shedule: unknown key (did you mean 'lr_schedule'?)"),
    ],
)
def test_optimizer_knobs_are_checked_in_one_line(optimizer: dict[str, Any], message: str) -> None:
    assert f"s.yaml: {message}" in broken(lambda d: d.update(optimizer=optimizer))


# --- hostile files: refused fast, never expanded ---------------------------------------------------

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")) + "study: x\n"


def test_anchors_and_aliases_are_refused_before_anything_expands() -> None:
    # Run in a child with a deadline: expanding these aliases would take hours and gigabytes.
    code = ("import sys; from robustness.study.search_space import parse_search_space, SearchSpaceError\n"
            "try:\n    parse_search_space(sys.stdin.read(), source='laughs.yaml')\n"
            "except SearchSpaceError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], input=LAUGHS, capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("laughs.yaml: line 1, column 4: malformed YAML: anchors and aliases")
    assert "paper_mnist" not in out.stdout and out.returncode == 0


def test_deep_nesting_and_huge_files_are_refused() -> None:
    assert "nested deeper than 32 levels" in error_of("study: " + "[" * 40 + "]" * 40)
    assert "expected a search space of at most 1024 KiB" in error_of("study: x\n" + "#" * (1 << 21))


def test_values_are_rendered_only_as_far_as_they_are_printed() -> None:
    from robustness.study.schema import _show

    level: list = ["lol"] * 9
    for _ in range(12):  # 9**13 leaves if walked in full
        level = [level] * 9
    shown = _show(level)
    assert len(shown) <= 60 and shown.startswith("[[[[") and shown.endswith("...")
    assert _show({"k" * 1000: 1}) == "a mapping with keys " + "k" * 37 + "..."


def test_task_rng_is_checked_and_only_a_non_default_rng_enters_the_fingerprint() -> None:
    from robustness.study.plan import fingerprint, training_setup

    text = (SPACES / "demo.yaml").read_text()
    base = parse_search_space(text)
    keyed = parse_search_space(text.replace("task:\n", "task:\n  rng: philox\n", 1))
    assert training_setup(keyed)[1].rng == "philox" and training_setup(base)[1].rng == "generator"
    # studies from before the key keep their fingerprint; switching streams starts another study
    explicit = parse_search_space(text.replace("task:\n", "task:\n  rng: generator\n", 1))
    assert fingerprint(explicit) == fingerprint(base) != fingerprint(keyed)
    with pytest.raises(SearchSpaceError, match=r"task.rng: expected a random-stream kind \(one of: generator, philox\)"):
        parse_search_space(text.replace("task:\n", "task:\n  rng: mersenne\n", 1))
