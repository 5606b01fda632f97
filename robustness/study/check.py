"""Everything a sweep would hit, checked before anything starts: the dry run behind ``validate``.

Parsing a file checks its keys. This goes further, the way a sweep's first pack
would, but on two restarts and one update, in the driver:

1. build the task (a plugin is imported here) and load or describe its data;
2. check the batch size against the data;
3. build one module and run it, its loss and a backward pass on one batch;
4. run one update of a two-restart pack (this is where a model ``torch.func``
   cannot vectorize shows itself);
5. evaluate, and check that the success metric and the primary metric exist.

A task with its own ``train(ctx)`` loop stops after step 2 and one module: its
loop is the user's code and runs only in the sweep. Every failure is a
:class:`TaskCheckError` with one line that says what to change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from robustness.errors import RobustnessError
from robustness.study.search_space import SearchSpace

__all__ = ["TaskCheckError", "check_trainable"]

_OWN_LOOP_HINT = "train it with your own loop instead: give the task a train(ctx) method (docs/tasks.md)"


class TaskCheckError(RobustnessError, ValueError):
    """The search space parses, but its task cannot be trained as declared."""


def check_trainable(space: SearchSpace) -> dict[str, Any]:
    """Dry-run ``space``'s task; returns what was checked (for ``validate --json``)."""
    import torch

    from robustness.training.data import DataError
    from robustness.training.loop import uses_own_loop
    from robustness.training.pack import PackTrainer
    from robustness.training.tasks import TensorData, as_task_data

    where = f"{space.source}: task {space.task.name!r}"
    task = space.task.build()
    try:
        data = as_task_data(task.load_data())
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 (a plugin's data code: one line, not a traceback)
        raise TaskCheckError(f"{where}: load_data() failed: {_one_line(e)}") from None
    batch = space.task.batch_size
    if isinstance(data, TensorData) and batch > data.n_train:
        raise TaskCheckError(f"{space.source}: task.batch_size: expected at most the {data.n_train} training "
                             f"examples of the task's data, got {batch}")
    try:
        module = task.build_module(data)
    except Exception as e:  # noqa: BLE001
        raise TaskCheckError(f"{where}: build_module() failed: {_one_line(e)}") from None
    if not isinstance(module, torch.nn.Module):
        raise TaskCheckError(f"{where}: build_module() must return a torch.nn.Module, got {type(module).__name__}")
    parameters = sum(p.numel() for p in module.parameters())
    if uses_own_loop(task):
        return {"route": "own loop", "parameters": parameters}

    _forward_one_batch(task, module, data, batch, where=where)

    from robustness.study.plan import training_setup

    _, config = training_setup(space)
    specs = space.restart_specs(space.cells()[:1])[:2]
    # One update, no evaluation point, then the metrics on a small slice of the evaluation set.
    dry = dataclasses.replace(config, steps=2, eval_every=2, eval_chunk=min(config.eval_chunk, 64))
    try:
        trainer = PackTrainer(task, specs, dry, criterion=space.success, data=_small(data))
        try:
            trainer.run(until=1)
            metrics = [*trainer.eval_metrics(), "train_loss"]
        finally:
            trainer.close()
    except Exception as e:  # noqa: BLE001 (the model works alone, so it is the vectorizing that fails)
        raise TaskCheckError(f"{where}: a restart pack cannot vectorize this model ({_one_line(e)}); "
                             f"{_OWN_LOOP_HINT}") from None
    for what, name in (("success.metric", space.success.metric), ("primary metric", task.primary_metric)):
        if name not in metrics:
            known = ", ".join(sorted(metrics))
            raise TaskCheckError(f"{space.source}: {what}: expected one of the task's metrics ({known}), got {name!r}")
    return {"route": "pack", "parameters": parameters, "metrics": sorted(metrics)}


def _forward_one_batch(task: Any, module: Any, data: Any, batch: int, *, where: str) -> None:
    """The plain module, its loss and its metrics on one batch: a bug here is the model's, not the pack's."""
    import torch

    from robustness.training.tasks import TensorData

    if isinstance(data, TensorData):
        x, y = data.train_x[:batch], data.train_y[:batch]
    else:
        x, y = data.sample(torch.Generator().manual_seed(0), batch)
    try:
        out = module(x)
        loss = task.loss(out, y)
        if tuple(loss.shape) != (x.shape[0],):
            raise ValueError(f"loss(output, target) must give one value per example, shape ({x.shape[0]},), "
                             f"got {tuple(loss.shape)}")
        loss.mean().backward()
    except Exception as e:  # noqa: BLE001 (user code: one line)
        raise TaskCheckError(f"{where}: the model failed on one batch (input {tuple(x.shape)}): {_one_line(e)}") from None


def _small(data: Any) -> Any:
    """The data with its evaluation set cut to 8 examples: the dry run checks shapes, not accuracy
    (and a Neural GPU's 200-digit test tapes cost about 20 GFLOP each)."""
    from robustness.training.tasks import SampledData, TensorData

    if isinstance(data, TensorData):
        return TensorData(data.train_x, data.train_y, data.test_x[:8], data.test_y[:8])
    if isinstance(data, SampledData):
        return SampledData(data.sample, data.test_x[:8], data.test_y[:8])
    return data


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
