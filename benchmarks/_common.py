"""Shared pieces of the benchmark scripts: data, the two trainers under test, timing, output.

Nothing here re-implements a training step. A pack is the library's own
``PackTrainer`` (timed through ``run(until=step + k)``); the loop baseline is
the body of ``robustness.training.reference.train_single``: an ``nn.Module``,
``make_optimizer`` (``torch.optim`` inside ``GradientNoise``) and the same
``BatchOrder``, stepped one batch at a time.

Timing rule: every variant is timed in the same process, in interleaved rounds
(the order rotates each round), and a figure is the median over rounds. On a
shared machine load then hits all variants alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robustness.criterion import Criterion
from robustness.noise import NoiseSchedule
from robustness.training.data import DataError, Dataset, load_dataset
from robustness.training.models import init_module
from robustness.training.pack import BatchOrder, PackTrainer, TrainConfig
from robustness.training.reference import make_optimizer
from robustness.training.spec import RestartSpec, derived_seeds
from robustness.training.tasks import DeepMLPTask

# The shared offline MNIST copy, as seen from <repo>/benchmarks/<script>.py.
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
BATCH = 128  # the benchmark batch (also TrainConfig's default)
DEPTH, WIDTH = 20, 50  # the paper's deep MNIST net (section 4.1)
LR = 0.01  # small enough that no restart diverges (a frozen restart would do less work)
CLIP = 10.0  # the product's real workload clips (issue section 5)
NEVER = 10**9  # steps / eval_every: no evaluation ever falls inside a timed region
CRITERION = Criterion("test_accuracy", ">=", 0.9)  # required by PackTrainer; never judged here


# -- setup ----------------------------------------------------------------------
def add_common_args(parser: argparse.ArgumentParser) -> None:
    default_dev = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (<= 60 s on 2 CPU cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with all figures as the last line")
    parser.add_argument("--device", default=default_dev, help=f"torch device (default: {default_dev})")
    parser.add_argument("--data-dir", default=None,
                        help="MNIST folder (default: $ROBUSTNESS_DATA_DIR, else ../shared/data/mnist)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice, usually all cores)")
    parser.add_argument("--rng", choices=["auto", "generator", "philox"], default="auto",
                        help="the packs' random streams (default auto: philox on CUDA, generator on CPU; see TrainConfig.rng)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default: a few with --quick, more without)")


def setup_torch(threads: int | None, device: str) -> torch.device:
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device")
    return dev


def load_task(data_dir: str | None) -> tuple[DeepMLPTask, Dataset, list[str]]:
    """The deep-20 MNIST task, or the digits task with a note when no MNIST files are found."""
    folder = data_dir or os.environ.get("ROBUSTNESS_DATA_DIR") or str(REPO_DATA_DIR)
    task = DeepMLPTask(dataset="mnist", data_dir=folder, depth=DEPTH, width=WIDTH)
    notes = []
    # The NumPy data set (its name says which MNIST training set was found); trainers take it as is.
    try:
        data = load_dataset(task.dataset, data_dir=task.data_dir)
    except DataError as exc:
        task = DeepMLPTask(dataset="digits", depth=DEPTH, width=WIDTH)
        data = load_dataset(task.dataset)
        notes.append(f"no MNIST found ({exc}); using scikit-learn digits: input dim 64, not 784, "
                     "so the first layer and the FLOPs per step are smaller than MNIST's")
    if data.name == "mnist-5k":
        notes.append("MNIST training set is the offline 5,000-image subset: same step cost, shorter epochs")
    return task, data, notes


def linear_macs(module: nn.Module) -> int:
    """Multiply-accumulates per example in the ``nn.Linear`` layers (sum of in x out)."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def flops_per_restart_step(module: nn.Module, batch: int) -> int:
    """6 x batch x MACs: forward 2 FLOPs per MAC, backward 4 (input and weight gradients).

    Biases, ReLU, the loss, clipping, noise and the optimizer are not counted.
    """
    return 6 * batch * linear_macs(module)


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_model": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "device": str(device), "device_name": name,
        "python": platform.python_version(), "platform": platform.platform(),
        "load_average_at_start": load,
    }


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# -- the things timed --------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels are asynchronous: time them, not their launch


def make_specs(R: int, schedule: NoiseSchedule) -> list[RestartSpec]:
    return [RestartSpec.make(restart=r, lr=LR, schedule=schedule, clip_norm=CLIP) for r in range(R)]


def resolve_rng(rng: str, device: torch.device) -> str:
    """``--rng auto``: the keyed streams on CUDA (one launch per update), the per-restart generators on CPU."""
    return ("philox" if device.type == "cuda" else "generator") if rng == "auto" else rng


def make_pack(task: DeepMLPTask, data: Dataset, R: int, schedule: NoiseSchedule, device: torch.device,
              rng: str = "generator") -> PackTrainer:
    config = TrainConfig(steps=NEVER, batch_size=BATCH, eval_every=NEVER, rng=rng)
    return PackTrainer(task, make_specs(R, schedule), config, criterion=CRITERION, device=device, data=data)


class LoopRunner:
    """One restart the plain way: the step of ``train_single``, one batch per call."""

    def __init__(self, task: DeepMLPTask, data: Dataset, schedule: NoiseSchedule, device: torch.device) -> None:
        spec = make_specs(1, schedule)[0]
        config = TrainConfig(steps=NEVER, batch_size=BATCH, eval_every=NEVER)
        init_seed, data_seed, noise_seed = derived_seeds(spec.seed)
        self.device = device
        self.train_x = torch.tensor(data.train_x, device=device)
        self.train_y = torch.tensor(data.train_y, device=device)
        module = init_module(task.build_module(data), spec.init, torch.Generator().manual_seed(init_seed))
        self.module = module.to(device)
        self.opt = make_optimizer(self.module, spec, config, seed=noise_seed)
        self.order = BatchOrder(data_seed, self.train_x.shape[0], BATCH)
        self.step, self.diverged = 0, False

    def run(self, k: int) -> None:
        for _ in range(k):
            idx = self.order.indices(self.step).to(self.device)
            loss = F.cross_entropy(self.module(self.train_x[idx]), self.train_y[idx])
            self.diverged |= plain_update(self.module, self.opt, loss)
            self.step += 1


def plain_update(module: nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor) -> bool:
    """One update of the plain loop, as ``train_single`` takes it; returns True if it diverged (no step).

    The divergence check's sync points are included: the baseline pays what it pays there.
    """
    opt.zero_grad()
    loss.backward()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()]))
    if math.isfinite(loss.item()) and math.isfinite(norm.item()):
        opt.step()
        return False
    return True


@dataclasses.dataclass
class Variant:
    """Something timed: ``run(k)`` does k steps (or k GEMMs) of ``work`` FLOPs each for ``restarts`` restarts."""

    name: str
    run: Callable[[int], None]
    restarts: int
    flops: float  # per call of the unit that run(k) repeats k times
    steps: int = 1  # units per timed block, set by calibrate()
    times: list[float] = dataclasses.field(default_factory=list)  # seconds per unit, one per round

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def time_block(v: Variant, k: int, device: torch.device) -> float:
    """Seconds per unit for k units of ``v``."""
    sync(device)
    start = time.perf_counter()
    v.run(k)
    sync(device)
    return (time.perf_counter() - start) / k


def calibrate(v: Variant, block_s: float, device: torch.device, *, max_steps: int = 10_000) -> float:
    """Warm up (one unit), then set ``v.steps`` so that a block lasts about ``block_s``."""
    time_block(v, 1, device)  # first call: allocations, kernel selection, caches
    per_unit = time_block(v, 1, device)
    v.steps = max(1, min(max_steps, round(block_s / per_unit)))
    return per_unit


def interleave(groups: Sequence[Sequence[Variant]], rounds: int, device: torch.device) -> None:
    """Time every variant once per round; groups rotate, and a group's members alternate (ABBA).

    Members of a group (say noisy and clean) always run back to back, so their
    per-round ratio sees the same load; alternating their order each round
    cancels any advantage of running first.
    """
    for i in range(rounds):
        shift = i % len(groups)
        for group in [*groups[shift:], *groups[:shift]]:
            for v in (group if i % 2 == 0 else list(reversed(group))):
                v.times.append(time_block(v, v.steps, device))


def gemm_variant(device: torch.device, n: int = 2048, dtype: torch.dtype = torch.float32) -> Variant:
    """A large square matmul: the machine's practical FLOP/s ceiling for this dtype."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=gen, device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def run(k: int) -> None:
        for _ in range(k):
            torch.mm(a, b, out=out)

    return Variant(f"gemm {n}x{n} {str(dtype).removeprefix('torch.')}", run, restarts=0, flops=2.0 * n**3)


# -- output ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    value: float
    op: str  # "<=" or ">="
    threshold: float

    @property
    def passed(self) -> bool:
        return self.value <= self.threshold if self.op == "<=" else self.value >= self.threshold

    def line(self) -> str:
        return f"  [{'PASS' if self.passed else 'FAIL'}] {self.name}: {self.value:.3g} (target {self.op} {self.threshold:g})"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "op": self.op, "threshold": self.threshold, "pass": self.passed}


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def emit(text_lines: Sequence[str], payload: dict[str, Any], *, as_json: bool) -> None:
    print("\n".join(text_lines), flush=True)
    if as_json:
        print(json.dumps(payload, sort_keys=False), flush=True)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
