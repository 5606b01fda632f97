"""How much device memory one restart of a pack takes: the GPU pack size follows from it.

On a GPU a pack is bounded by memory, not by cores. Per restart, a pack holds
parameter-sized rows (theta, the per-layer gradients, the flat gradient, the
optimizer's slots, and with ``rng: philox`` but no Triton the noise draw and its
integer work), its batch, and the activations autograd keeps for the backward
pass. The activations are measured, not guessed: one update of a one-restart
pack runs on CPU under ``saved_tensors_hooks``, which sees every tensor autograd
saves, whatever the model. Evaluation keeps no graph, so it needs at most the
saved bytes per example times its chunk.
"""

from __future__ import annotations

import dataclasses

import torch

from robustness.criterion import Criterion
from robustness.noise import AnnealedNoise
from robustness.training import triton_noise
from robustness.training.config import TrainConfig
from robustness.training.data import Dataset
from robustness.training.spec import RestartSpec
from robustness.training.tasks import Task, TaskData, as_task_data

__all__ = ["RestartMemory", "restart_memory"]

# Live int64 tensors of (R, P) while the torch Philox stream draws: counters, key words, products.
_PHILOX_TORCH_WORDS = 8


@dataclasses.dataclass(frozen=True)
class RestartMemory:
    """Bytes per restart of a pack, by part; ``total`` is what sizes a pack."""

    parameters: int  # theta, per-layer gradients, the flat gradient, optimizer slots, noise work
    batch: int  # the gathered training batch and its targets
    activations: int  # what autograd saves for one update's backward pass, and as much again for its gradients
    evaluation: int  # an evaluation chunk's live activations (no graph)

    @property
    def total(self) -> int:
        return self.parameters + self.batch + max(self.activations, self.evaluation)


def restart_memory(task: Task, config: TrainConfig, data: Dataset | TaskData | None = None, *,
                   fused_noise: bool | None = None) -> RestartMemory:
    """Measure one restart's memory for ``task`` trained with ``config`` (on CPU, one update).

    ``fused_noise``: whether the pack will draw noise with the Triton kernel
    (default: whether Triton is installed); without it, ``rng: philox`` draws in torch ops
    and holds their (R, P) integer work.
    """
    from robustness.training.pack import PackTrainer  # the pack imports this module's siblings

    data = as_task_data(data if data is not None else task.load_data())
    spec = RestartSpec.make(restart=0, lr=1e-3, schedule=AnnealedNoise(eta=0.01), clip_norm=1.0)
    probe = dataclasses.replace(config, steps=1, eval_every=1)
    trainer = PackTrainer(task, [spec], probe, criterion=Criterion(task.primary_metric, ">=", 0.0), data=data)
    try:
        P = trainer.theta.shape[1]
        params_at = trainer.theta.untyped_storage().data_ptr()
        saved = largest = 0
        seen: set[int] = set()

        def keep(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved, largest
            # Parameter views are not new memory; a tensor saved by several ops is one allocation.
            key = t.untyped_storage().data_ptr()
            if key != params_at and key not in seen:
                seen.add(key)
                saved += t.untyped_storage().nbytes()
                largest = max(largest, t.untyped_storage().nbytes())
            return t

        x, y = trainer._batch()
        batch = x.numel() * x.element_size() + y.numel() * y.element_size()
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            trainer._update()
    finally:
        trainer.close()
    slots = {"sgd": 1 if config.momentum > 0 else 0, "adam": 2, "adamw": 2}[config.optimizer]
    rows = 3 + slots  # theta, per-layer gradient leaves, the flat gradient
    if fused_noise is None:
        fused_noise = triton_noise.triton is not None
    noise = 0
    if config.rng == "philox" and not fused_noise:
        noise = 4 * P + 8 * _PHILOX_TORCH_WORDS * P
    parameters = 4 * P * rows + noise
    activations = 2 * saved
    # Evaluation runs without a graph: a layer's input, output and a temporary at a time,
    # each at most the largest saved activation, scaled from the batch to the chunk.
    evaluation = 3 * largest * config.eval_chunk // config.batch_size
    return RestartMemory(parameters=parameters, batch=batch, activations=activations, evaluation=evaluation)
