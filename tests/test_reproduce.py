"""`robustness reproduce`: the shipped paper search spaces, and a report whose numbers are the stored studies'."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from robustness.reproduce import (
    PAPER_TABLE1,
    PAPER_TABLE6,
    WALL_ATTR,
    ReproduceError,
    default_files,
    neural_gpu_flops,
    run_reproduction,
    with_steps,
)
from robustness.storage import RestartStore
from robustness.study.check import check_trainable
from robustness.study.search_space import load_search_space
from robustness.training.arithmetic import BinaryArithmeticTask
from robustness.training.neural_gpu import NeuralGPU

ROOT = Path(__file__).resolve().parents[1]
FILES = default_files(ROOT)


def test_the_cpu_sized_binary_study_validates() -> None:
    space = load_search_space(FILES["binary"])
    summary = check_trainable(space)  # what 'robustness validate' runs: data, model, one pack update
    assert summary["route"] == "pack"
    task = space.task.build()
    assert isinstance(task, BinaryArithmeticTask) and task.op == "mul"
    assert task.test_length > task.train_length  # tested on lengths never trained on
    assert {c["schedule"] for c in space.cells()} == {"none", "annealed"}
    assert {c["eta"] for c in space.cells()} == {None, 1.0}
    assert len(space.cells()) * space.restarts == 128


def test_the_full_binary_study_is_the_papers_size_and_seed_paired() -> None:
    space = load_search_space(FILES["full_binary"])
    task = space.task.build()
    assert (task.train_length, task.test_length, task.op) == (20, 200, "mul")
    assert len(space.cells()) * space.restarts == 7290
    noise = [c for c in space.cells() if c["schedule"] == "annealed"]
    assert len(noise) == 27 and {(c["eta"], c["gamma"]) for c in noise} == {(1.0, 0.55)}
    specs = space.restart_specs()
    by_arm: dict[str, set[int]] = {}
    for s in specs:
        by_arm.setdefault(s.params["schedule"], set()).add(s.seed)
    assert by_arm["none"] == by_arm["annealed"] and len(by_arm["none"]) == 135


def test_with_steps_renames_the_study_and_changes_only_the_length() -> None:
    original = load_search_space(FILES["mnist"])
    short = with_steps(FILES["mnist"], 300)
    assert short.study == f"{original.study}-steps300"
    assert (short.task.steps, short.task.eval_every) == (300, 300)
    assert short.cells() == original.cells() and short.restarts == original.restarts
    assert short.text.startswith(f"# {FILES['mnist']} with task.steps = 300")


@pytest.mark.parametrize(("width", "maps", "height", "layers"), [(9, 8, 4, 2), (5, 3, 2, 1)])
def test_the_flop_count_is_torchs(width: int, maps: int, height: int, layers: int) -> None:
    model = NeuralGPU(symbols=5, classes=2, maps=maps, height=height, layers=layers, kernel=3)
    x = torch.randint(1, 5, (2, width))
    with FlopCounterMode(display=False) as counter:
        model(x)
    convs = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op))
    assert convs == 2 * neural_gpu_flops(width=width, height=height, maps=maps, layers=layers, kernel=3)


def test_the_paper_tables_are_the_papers() -> None:
    # paper-notes.md, Tables 1 and 6, checked against the paper's text
    assert PAPER_TABLE6 == {0.01: (28, 58), 0.02: (90, 159), 0.03: (172, 282), 0.05: (387, 570)}
    assert PAPER_TABLE1[("zero", 10.0)][1:] == ((11.4, 10.1), (94.5, 49.7))
    assert len(PAPER_TABLE1) == 6


TABLE1 = """
study: t1
task: {name: deep_mlp, dataset: digits, depth: 2, width: 16, steps: 400, batch_size: 32, eval_every: 100}
grid:
  - lr: [0.1, 0.01]
    init: [simple]
    clip: [none, 10]
    noise: [{schedule: none}, {schedule: annealed, eta: [0.01], gamma: [0.55]}]
  - lr: [0.1, 0.01]
    init: [zero]
    clip: [10]
    noise: [{schedule: none}, {schedule: annealed, eta: [0.01], gamma: [0.55]}]
restarts: 3
success: {metric: test_accuracy, op: ">=", threshold: 0.5}
"""
TABLE6 = """
study: t6
task: {name: binary_arithmetic, train_length: 2, test_length: 3, test_size: 8, maps: 2, height: 2, layers: 1,
       steps: 4, batch_size: 4, eval_every: 2}
optimizer: {name: adam}
grid:
  lr: [0.01]
  clip: [1.0]
  noise: [{schedule: none}, {schedule: annealed, eta: [1.0], gamma: [0.55]}]
restarts: 4
success: {metric: test_digit_error, op: "<", threshold: 0.01}
"""
FULL = TABLE6.replace("study: t6", "study: t6-full").replace("train_length: 2", "train_length: 3")


def _row(text: str, start: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {start}"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_the_report_holds_the_stored_studies_numbers(ray_local, tmp_path: Path) -> None:
    for name, text in (("t1.yaml", TABLE1), ("t6.yaml", TABLE6), ("full.yaml", FULL)):
        (tmp_path / name).write_text(text)
    url, out = f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "reproduction.md"
    files = {"mnist": tmp_path / "t1.yaml", "binary": tmp_path / "t6.yaml", "full_binary": tmp_path / "full.yaml"}
    lines: list[str] = []
    run_reproduction(**files, output=out, storage=url, mnist_steps=200, say=lines.append)
    doc = out.read_text()
    with RestartStore(url) as store:
        t1 = list(store.iter_outcomes("t1-steps200"))
        t6 = list(store.iter_outcomes("t6"))
        wall = store.study_attrs("t6")[WALL_ATTR]
    assert len(t1) == 36 and all(o.curve[-1].step == 200 for o in t1)  # the override reached training
    assert wall > 0 and " cores, torch " in doc

    # Table 1: best / average accuracy per (init, clip, arm) over both learning rates, in percent
    def arm(init: str, clip: float | None, schedule: str) -> list[float]:
        return [o.metrics["test_accuracy"] for o in t1
                if (o.params["init"], o.params["clip"], o.params["schedule"]) == (init, clip, schedule)]

    for (init, clip), (label, *_) in PAPER_TABLE1.items():
        if init not in ("simple", "zero") or clip == 100.0:
            assert not any(line.startswith(f"| {label}") for line in doc.splitlines())
            continue
        row = _row(doc, label)
        for column, schedule in ((2, "none"), (4, "annealed")):
            values = arm(init, clip, schedule)
            assert row[column] == f"{100 * max(values):.1f} / {100 * sum(values) / len(values):.1f}"
        successes = sum(v >= 0.5 for v in arm(init, clip, "none"))
        assert row[5].startswith(f"{successes}/6 ")

    # Table 6: successes out of N at each threshold, per arm, against the paper's counts
    for t, (p0, p1) in PAPER_TABLE6.items():
        row = _row(doc, f"< {100 * t:g}%")
        assert row[1:3] == [str(p0), str(p1)]
        for column, schedule in ((4, "none"), (5, "annealed")):
            n = sum(o.metrics["test_digit_error"] < t for o in t6 if o.params["schedule"] == schedule)
            assert row[column] == f"{n}/4"
    assert re.search(r"trained in \d[\d,]* s \(", doc)
    assert re.search(r"\*\*[\d.]+ × 10¹⁸ FLOP\*\*", doc)

    # A second run trains nothing, keeps the recorded wall time, and rewrites the report.
    run_reproduction(**files, output=out, storage=url, mnist_steps=200, say=lines.append)
    with RestartStore(url) as store:
        assert store.study_attrs("t6")[WALL_ATTR] == wall
    assert any("(0 trained now" in line for line in lines)


def test_bad_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with pytest.raises(ReproduceError, match="no directory"):
        run_reproduction(**FILES, output=tmp_path / "missing" / "r.md", storage=url)
    with pytest.raises(ReproduceError, match="mnist-steps"):
        run_reproduction(**FILES, output=tmp_path / "r.md", storage=url, mnist_steps=0)
    assert not (tmp_path / "r.db").exists()
