"""Planning a sweep: which restarts are left, how they are cut into packs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from robustness.storage import restart_key
from robustness.study.plan import (
    auto_pack_size,
    cut_packs,
    fingerprint,
    plan_sweep,
    training_setup,
)
from robustness.study.search_space import load_search_space, parse_search_space

ROOT = Path(__file__).resolve().parents[1]
TEXT = """
study: p
task: {{name: deep_mlp, dataset: digits, depth: 2, width: 8, steps: {steps}, eval_every: 5}}
optimizer: {{name: sgd, momentum: 0.9}}
grid: {{lr: {lr}, init: [he], clip: [10], noise: [{{schedule: none}}, {{schedule: annealed, eta: [0.3, 1.0]}}]}}
restarts: {restarts}
success: {{metric: test_accuracy, op: '>=', threshold: 0.5}}
"""


def space(*, restarts: int = 5, lr: str = "[0.1]", steps: int = 10):
    return parse_search_space(TEXT.format(restarts=restarts, lr=lr, steps=steps))


def test_plan_skips_stored_restarts_and_cuts_packs() -> None:
    sp = space()
    specs = sp.restart_specs()
    assert len(specs) == 15
    done = {restart_key(s.params, s.restart) for s in specs[:4]}
    plan = plan_sweep(sp, done_keys=done, key=restart_key, pack_size=4, slots=2)
    assert (plan.total, plan.done, plan.remaining) == (15, 4, 11)
    assert [len(p) for p in plan.packs] == [4, 4, 3]
    assert specs[4] == plan.packs[0][0]
    assert all(restart_key(s.params, s.restart) not in done for p in plan.packs for s in p)
    assert plan.todo == tuple(specs[4:])  # the file's order, whatever the packs


def test_packs_are_dealt_so_each_holds_the_same_mix_of_cells() -> None:
    sp = space(restarts=4, lr="[0.1, 0.01]")  # cells in grid order, 4 restarts each
    specs = sp.restart_specs()
    cells = sorted({tuple(sorted(s.params.items(), key=str)) for s in specs}, key=str)
    packs = cut_packs(specs, 8)
    assert len(packs) == math.ceil(len(specs) / 8) and sorted(len(p) for p in packs)[-1] - min(len(p) for p in packs) <= 1
    for pack in packs:  # every cell has the same number of restarts in every pack (up to one)
        per_cell = [sum(tuple(sorted(s.params.items(), key=str)) == c for s in pack) for c in cells]
        assert max(per_cell) - min(per_cell) <= 1, per_cell
    assert sorted((restart_key(s.params, s.restart) for p in packs for s in p)) == sorted(
        restart_key(s.params, s.restart) for s in specs)
    assert cut_packs([], 4) == ()


def test_auto_pack_size() -> None:
    assert auto_pack_size(96, slots=2) == 48  # spread over the parallel slots
    assert auto_pack_size(10_000, slots=2) == 250  # capped at 256 on CPU, in 20 whole rounds of 2 packs
    assert auto_pack_size(0, slots=2) == 1
    assert auto_pack_size(10_000, slots=1, device="cuda", per_restart_bytes=10**6, free_bytes=2 * 10**9) == 1000


def test_cpu_pack_size_follows_the_cache_share_of_a_slot() -> None:
    cpu = {"per_restart_bytes": 2_500_000, "cache_bytes": 300 * 2**20}  # deep-20 MNIST, 300 MiB L3
    assert auto_pack_size(10_000, slots=2, **cpu) == 62  # 150 MiB / 2.5 MB: past it, every step goes to memory
    assert auto_pack_size(10_000, slots=1, **cpu) == 125
    assert auto_pack_size(10_000, slots=2, per_restart_bytes=10**9, cache_bytes=32 * 2**20) == 8  # the floor
    assert auto_pack_size(10_000, slots=2, per_restart_bytes=1000, cache_bytes=2**30) == 250  # the cap
    assert auto_pack_size(40, slots=2, **cpu) == 20  # spread first


def test_auto_packs_come_in_whole_rounds_of_the_slots() -> None:
    cpu = {"per_restart_bytes": 2_500_000, "cache_bytes": 300 * 2**20}  # a cap of 62 on two slots
    # 150 restarts over caps of 62: 3 packs would leave a slot idle in the last round, so 4 of 37-38
    assert auto_pack_size(150, slots=2, **cpu) == 38
    assert [len(p) for p in cut_packs(list(range(150)), 38)] == [38, 38, 37, 37]
    # 130: a tenth of a pack over the cap per slot is cheaper than a second round
    assert auto_pack_size(130, slots=2, **cpu) == 65
    for n in range(1, 2000, 7):  # never above the cap by more than the slack, and the pack count is a multiple of the slots
        size = auto_pack_size(n, slots=2, **cpu)
        packs = math.ceil(n / size)
        assert size <= 62 * 1.1 or n <= 2 * 62 * 1.1
        assert packs == 1 or packs % 2 == 0, (n, size, packs)
    assert auto_pack_size(10_000, slots=2, per_restart_bytes=None, cache_bytes=2**30) == 250  # unknown: the cap


def test_last_level_cache_is_read_from_sysfs() -> None:
    from robustness.study.plan import last_level_cache_bytes

    cache = last_level_cache_bytes()
    if not Path("/sys/devices/system/cpu/cpu0/cache").is_dir():
        assert cache is None
    else:
        assert cache is not None and cache >= 2**20  # every x86 CPU of the last decade has >= 1 MiB


def test_gpu_pack_size_follows_free_memory_and_the_slots() -> None:
    gpu = {"device": "cuda", "per_restart_bytes": 2 * 10**6}
    # half of 80 GB over 2 MB per restart = 20,000, capped at 4096
    assert auto_pack_size(100_000, slots=1, free_bytes=80 * 10**9, **gpu) == 4000  # 25 packs of 4000
    assert auto_pack_size(100_000, slots=1, free_bytes=4 * 10**9, **gpu) == 1000  # a small GPU share
    assert auto_pack_size(1000, slots=4, free_bytes=80 * 10**9, **gpu) == 250  # four GPUs: four packs
    assert auto_pack_size(5, slots=1, free_bytes=10**6, **gpu) == 1  # never zero


def test_plan_sizes_gpu_packs_from_memory() -> None:
    s = space(restarts=100)  # 3 cells: 300 restarts
    plan = plan_sweep(s, done_keys=set(), key=restart_key, pack_size=None, slots=1, gpu_memory=(10**6, 2 * 64 * 10**6))
    assert plan.pack_size == 60 and [len(p) for p in plan.packs] == [60] * 5  # 5 packs of <= 64, dealt evenly
    assert plan_sweep(s, done_keys=set(), key=restart_key, pack_size=None, slots=2).pack_size == 150  # CPU


def test_restart_memory_measures_parameters_and_activations() -> None:
    from robustness.training.config import TrainConfig
    from robustness.training.memory import restart_memory
    from robustness.training.tasks import DeepMLPTask

    task = DeepMLPTask(dataset="digits", depth=6, width=32)
    P = 64 * 32 + 32 + 5 * (32 * 32 + 32) + 32 * 10 + 10
    small = restart_memory(task, TrainConfig(batch_size=32), fused_noise=True)
    big = restart_memory(task, TrainConfig(batch_size=128, optimizer="adam"), fused_noise=True)
    assert small.parameters == 4 * P * 3 and big.parameters == 4 * P * 5  # theta, grads, flat grad (+ Adam's 2)
    assert small.batch == 32 * 64 * 4 + 32 * 8  # float32 images, int64 labels
    # Autograd keeps at least every hidden layer's (B, 32) float32 output for the backward pass,
    # and four times the batch keeps four times as much.
    assert small.activations >= 2 * 6 * 32 * 32 * 4
    assert big.activations == pytest.approx(4 * small.activations, rel=0.05)
    philox = restart_memory(task, TrainConfig(batch_size=32, rng="philox"), fused_noise=False)
    assert philox.parameters > small.parameters  # the torch stream's (R, P) work, without the fused kernel
    assert small.total == small.parameters + small.batch + max(small.activations, small.evaluation)


def test_fingerprint_ignores_the_grid_but_not_the_training() -> None:
    assert fingerprint(space(restarts=5)) == fingerprint(space(restarts=9, lr="[0.1, 0.2]"))
    assert fingerprint(space(steps=10)) != fingerprint(space(steps=20))


def test_training_setup_follows_the_file() -> None:
    task, config = training_setup(space())
    assert (task.depth, task.width, task.dataset) == (2, 8, "digits")
    assert (config.optimizer, config.momentum, config.steps, config.eval_every) == ("sgd", 0.9, 10, 5)
    paper = load_search_space(ROOT / "search_spaces" / "paper_mnist_deep20.yaml")
    task, config = training_setup(paper)
    assert (task.depth, task.width, task.dataset, config.optimizer) == (20, 50, "mnist", "sgd")


def test_training_setup_maps_optimizer_knobs_and_lr_schedule() -> None:
    text = TEXT.format(restarts=2, lr="[0.1]", steps=10)
    sgd = text.replace("optimizer: {name: sgd, momentum: 0.9}",
                       "optimizer: {name: sgd, momentum: 0.9, nesterov: true, weight_decay: 0.001,\n"
                       "            lr_schedule: {name: step, step_size: 4, gamma: 0.5, warmup: 2}}")
    _, config = training_setup(parse_search_space(sgd))
    assert (config.optimizer, config.momentum, config.nesterov, config.weight_decay) == ("sgd", 0.9, True, 0.001)
    s = config.lr_schedule
    assert (s.name, s.step_size, s.gamma, s.warmup) == ("step", 4, 0.5, 2)
    assert [s.factor(t, 10) for t in range(7)] == [1 / 3, 2 / 3, 1, 1, 1, 1, 0.5]
    adamw = text.replace("optimizer: {name: sgd, momentum: 0.9}",
                         "optimizer: {name: adamw, betas: [0.8, 0.99], lr_schedule: {name: cosine, final_factor: 0.1}}")
    _, config = training_setup(parse_search_space(adamw))
    assert (config.optimizer, config.weight_decay, config.betas, config.nesterov) == ("adamw", 0.01, (0.8, 0.99), False)
    assert (config.lr_schedule.name, config.lr_schedule.final_factor, config.lr_schedule.warmup) == ("cosine", 0.1, 0)
    # the schedule is part of the training, so of the study's fingerprint
    assert fingerprint(parse_search_space(adamw)) != fingerprint(parse_search_space(adamw.replace("0.1}}", "0.2}}")))
