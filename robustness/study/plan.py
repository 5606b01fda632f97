"""From a search space to packs: what a sweep still has to train, and how to split it.

Ray-free and database-free, so it tests on its own. The sweep runner asks the
store which restart keys are done, then calls :func:`plan_sweep`; with other
drivers on the same study it then claims the plan's restarts a round at a time
and cuts each round's claim into packs with :func:`cut_packs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from robustness.criterion import Criterion
from robustness.study.search_space import SearchSpace
from robustness.training.config import TrainConfig
from robustness.training.spec import RestartSpec
from robustness.training.tasks import Task

__all__ = ["SweepPlan", "auto_pack_size", "code_revision", "cut_packs", "fingerprint", "plan_sweep", "study_attrs", "training_setup"]

# CPU packs beyond this gain little per restart (see docs/benchmarks.md) and make
# retries and checkpoints coarse.
MAX_CPU_PACK = 256
# On a GPU the pack is bounded by memory instead (see auto_pack_size).
MAX_GPU_PACK = 4096


def training_setup(space: SearchSpace) -> tuple[Task, TrainConfig]:
    """The task and the shared training settings a search space declares."""
    t, o = space.task, space.optimizer
    task = t.build()
    config = TrainConfig.from_options(o.name, o.model_dump(exclude={"name"}), steps=t.steps,
                                      batch_size=t.batch_size, eval_every=t.eval_every, rng=t.rng)
    return task, config


def fingerprint(space: SearchSpace) -> str:
    """What must not change between runs of one study: task, optimizer, criterion, seeds.

    Grid axes and restart counts may grow (only new restarts then run); changing
    these would mix incomparable restarts in one study.
    """
    payload = {
        "task": {"name": space.task.name, "steps": space.task.steps, "batch_size": space.task.batch_size,
                 "eval_every": space.task.eval_every, **space.task.fields()},
        "optimizer": space.optimizer.model_dump(mode="json"),
        "success": str(space.success),
        "base_seed": space.base_seed,
    }
    if space.task.rng != "generator":  # only when set, so that studies from before the key keep their fingerprint
        payload["task"]["rng"] = space.task.rng
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def code_revision() -> str:
    """The git commit of the package's checkout if there is one, else its version."""
    from importlib import metadata

    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode == 0:
            return rev.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return "restart-robustness " + metadata.version("restart-robustness")
    except metadata.PackageNotFoundError:
        return "unknown"


def study_attrs(space: SearchSpace, versions: dict[str, str]) -> dict[str, Any]:
    return {
        "search_space": space.text,
        "search_space_source": space.source,
        "versions": versions,
        "code_revision": code_revision(),
        "total_restarts": len(space.cells()) * space.restarts,
        "criterion": str(space.success),
        "criterion_parts": {"metric": space.success.metric, "op": space.success.op, "threshold": space.success.threshold},
        "fingerprint": fingerprint(space),
        "direction": "minimize" if space.success.op in ("<", "<=") else "maximize",
    }


def auto_pack_size(n: int, *, slots: int, device: str = "cpu", per_restart_bytes: int | None = None,
                   free_bytes: int | None = None) -> int:
    """Restarts per pack when the file says ``auto``.

    CPU: spread the work over the parallel slots, at most MAX_CPU_PACK a pack.
    GPU: spread over the slots too, but no more than half the free memory of one
    trial's GPU share holds (``per_restart_bytes`` from
    ``robustness.training.memory.restart_memory``; the other half is headroom
    for the allocator and for what the estimate misses), at most MAX_GPU_PACK.
    """
    if n <= 0:
        return 1
    spread = math.ceil(n / max(slots, 1))
    if device.startswith("cuda") and per_restart_bytes and free_bytes:
        return max(1, min(spread, MAX_GPU_PACK, free_bytes // 2 // per_restart_bytes))
    return max(1, min(MAX_CPU_PACK, spread))


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """The restarts still to train, split into packs (each a list of specs)."""

    study: str
    total: int  # restarts the file declares
    done: int  # restarts already in storage
    packs: tuple[tuple[RestartSpec, ...], ...]
    criterion: Criterion
    pack_size: int = 1  # restarts per pack (packs differ by at most one)
    todo: tuple[RestartSpec, ...] = ()  # the restarts still to train, in the file's order (every driver sees the same)

    @property
    def remaining(self) -> int:
        return sum(len(p) for p in self.packs)


def plan_sweep(space: SearchSpace, *, done_keys: set[str], key: Any, pack_size: int | None, slots: int,
               own_loop: bool = False, gpu_memory: tuple[int, int] | None = None) -> SweepPlan:
    """Every restart of the grid whose key is not done yet, in packs of ``pack_size``.

    ``key(params, restart)`` is storage's ``restart_key``; passing it in keeps
    this module free of the database layer. A task with its own training loop
    (``own_loop``) gets one restart per trial unless a pack size is given.
    ``gpu_memory``: (bytes per restart, free bytes of a trial's GPU share) when
    packs train on GPUs, which then bounds the automatic pack size.
    """
    specs = space.restart_specs()
    todo = [s for s in specs if key(s.params, s.restart) not in done_keys]
    per_restart, free = gpu_memory or (None, None)
    auto = auto_pack_size(len(todo), slots=slots, device="cuda" if gpu_memory else "cpu",
                          per_restart_bytes=per_restart, free_bytes=free)
    size = pack_size or space.pack_size or (1 if own_loop else auto)
    return SweepPlan(study=space.study, total=len(specs), done=len(specs) - len(todo), packs=cut_packs(todo, size),
                     criterion=space.success, pack_size=size, todo=tuple(todo))


def cut_packs(specs: Sequence[RestartSpec], size: int) -> tuple[tuple[RestartSpec, ...], ...]:
    """``specs`` dealt round-robin into ``ceil(n / size)`` packs of at most ``size``.

    Cells come in grid order and differ in cost (a noise arm draws a Gaussian per
    weight per update; an own-loop task may train longer), so cutting them in
    order gives packs of unequal cost that finish at different times while a core
    idles. Dealt, every pack holds the same mix of cells, and pack sizes differ by
    at most one.
    """
    count = math.ceil(len(specs) / size) if specs else 0
    return tuple(tuple(specs[j::count]) for j in range(count))


