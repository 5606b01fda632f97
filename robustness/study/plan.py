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

__all__ = ["SweepPlan", "auto_pack_size", "last_level_cache_bytes", "code_revision", "cut_packs", "fingerprint", "plan_sweep", "study_attrs", "training_setup"]

# CPU packs beyond this gain little per restart (see docs/benchmarks.md) and make
# retries and checkpoints coarse.
MAX_CPU_PACK = 256
# Below this, a CPU pack's per-restart cost rises again: the fixed cost of a step
# (Python, op dispatch, the optimizer's launches) is shared by too few restarts.
MIN_CPU_PACK = 8
# On a GPU the pack is bounded by memory instead (see auto_pack_size).
MAX_GPU_PACK = 4096
# How far (in packs per slot) the packs may pass their modelled cap rather than add a round.
CAP_SLACK = 0.1


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


def last_level_cache_bytes() -> int | None:
    """The size of this machine's largest CPU cache (Linux sysfs), or None where it is not known."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = f.read_text().strip()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:].upper(), 1)
        digits = text[:-1] if scale > 1 else text
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes) if sizes else None


def auto_pack_size(n: int, *, slots: int, device: str = "cpu", per_restart_bytes: int | None = None,
                   free_bytes: int | None = None, cache_bytes: int | None = None) -> int:
    """Restarts per pack when the file says ``auto``.

    CPU: spread the work over the parallel slots, at most as many restarts as
    the slot's share of the last-level cache holds (``cache_bytes / slots /
    per_restart_bytes``), but no fewer than MIN_CPU_PACK and no more than
    MAX_CPU_PACK. A pack's step streams its parameters, gradients and
    activations: while they fit in cache, the cost per restart-step is flat in
    R; past it, every step goes to memory. On the 2-core Xeon of
    docs/benchmarks.md (300 MiB L3, deep-20 MNIST at about 2.2 MB a restart,
    a cap of 70 on two slots) one pack on both threads costs the same per
    restart-step from R = 32 to 128 and 27 % more at R = 256, where the pack
    alone outgrows the cache.
    GPU: spread over the slots too, but no more than half the free memory of one
    trial's GPU share holds (``per_restart_bytes`` from
    ``robustness.training.memory.restart_memory``; the other half is headroom
    for the allocator and for what the estimate misses), at most MAX_GPU_PACK.
    Either way the restarts are then dealt into whole rounds of ``slots`` packs.
    """
    if n <= 0:
        return 1
    slots = max(slots, 1)
    if device.startswith("cuda") and per_restart_bytes and free_bytes:
        cap = max(1, min(MAX_GPU_PACK, free_bytes // 2 // per_restart_bytes))
    else:
        cap = MAX_CPU_PACK
        if per_restart_bytes and cache_bytes:
            cap = min(cap, max(MIN_CPU_PACK, cache_bytes // slots // per_restart_bytes))
    # Whole rounds: every slot trains the same number of packs, so none idles while
    # the last round runs. The cap is a model, so the packs may pass it by a tenth
    # of a pack per slot rather than add a round (144 restarts, cap 70, two slots:
    # 2 packs of 72, not 4 of 36); with many rounds that slack spreads thin.
    rounds = max(1, math.ceil(n / (slots * cap) - CAP_SLACK))
    return max(1, math.ceil(n / (slots * rounds)))


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
               own_loop: bool = False, gpu_memory: tuple[int, int] | None = None,
               cpu_memory: tuple[int, int] | None = None) -> SweepPlan:
    """Every restart of the grid whose key is not done yet, in packs of ``pack_size``.

    ``key(params, restart)`` is storage's ``restart_key``; passing it in keeps
    this module free of the database layer. A task with its own training loop
    (``own_loop``) gets one restart per trial unless a pack size is given.
    ``gpu_memory``: (bytes per restart, free bytes of a trial's GPU share) when
    packs train on GPUs; ``cpu_memory``: (bytes per restart, last-level cache
    bytes) on CPUs. Either then bounds the automatic pack size (see :func:`auto_pack_size`).
    """
    specs = space.restart_specs()
    todo = [s for s in specs if key(s.params, s.restart) not in done_keys]
    if gpu_memory:
        auto = auto_pack_size(len(todo), slots=slots, device="cuda", per_restart_bytes=gpu_memory[0],
                              free_bytes=gpu_memory[1])
    else:
        per_restart, cache = cpu_memory or (None, None)
        auto = auto_pack_size(len(todo), slots=slots, per_restart_bytes=per_restart, cache_bytes=cache)
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


