"""Restart packs: train R restarts of one architecture at once, in one process.

This is what makes thousands of restarts affordable: one Ray trial, one
process and one set of batched kernels per pack instead of per restart.

Shapes (R restarts, P parameters per restart, B batch size):
``theta`` (R, P) holds all parameters; the model reads named views of it
(one leaf per layer tensor) and each restart's buffers, (R, *shape); batches
are gathered per restart as (R, B, *input), since each restart has its own
data order. Any task works: its loss and metrics are per example, so the pack
computes them on the flattened (R * B) outputs and averages per restart.

Each restart keeps its own seed for initialization, data order and noise
(see ``robustness.training.spec.derived_seeds``), its own learning rate, clip threshold,
init scheme and noise schedule. A restart trained in a pack gives the same
result as the same restart trained alone with ``robustness.training.reference`` (a
plain ``nn.Module``, ``torch.optim`` and ``GradientNoise``): the tests check it.

Where the data order and the noise come from is ``TrainConfig.rng``:

- ``generator`` (default): one ``torch.Generator`` per restart and stream, drawn
  restart by restart (R small calls per update; the plain loop's streams);
- ``philox``: counter-based streams keyed by the restart's seeds
  (``robustness.training.philox``), each drawn for the whole pack in one call:
  the data order once per epoch as an (R, n) batched sort, the noise by the fused
  Triton kernel on CUDA (``robustness.training.triton_noise``) or torch ops
  elsewhere. Launches and Python calls per update then do not depend on R.

One update, in the order of the paper (and of ``GradientNoise.step``)::

    loss_r = mean_b task.loss(f(theta_r, x_rb), y_rb)   forward, backward on sum_r loss_r
    ok_r   = finite(loss_r) and finite(|g_r|)  else restart r is frozen (diverged)
    g_r   *= min(1, clip_r / (|g_r| + 1e-6))   per-restart global-norm clipping
    g_r   += sqrt(eta_r / (1+t)^gamma_r) * z_r z_r ~ N(0, I) from restart r's generator
    theta_r <- optimizer(theta_r, g_r, lr_r f(t))  SGD (momentum, Nesterov), Adam or AdamW, weight
                                                  decay; f(t) the pack's shared LR schedule
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from robustness.criterion import Criterion
from robustness.noise import clip_coefficient
from robustness.records import CurvePoint, RestartOutcome
from robustness.training import triton_noise
from robustness.training.config import TrainConfig
from robustness.training.data import Dataset
from robustness.training.models import flatten_params, init_module
from robustness.training.optimizers import make_pack_optimizer
from robustness.training.philox import keyed_permutations, noise_offsets, philox_randn
from robustness.training.spec import RestartSpec, derived_seeds
from robustness.training.tasks import SampledData, Task, TaskData, TensorData, as_task_data

__all__ = ["PackTrainer", "TrainConfig", "evaluate", "train_pack"]

class BatchOrder:
    """One restart's data order: a fresh permutation each epoch from its own generator.

    The last partial batch of an epoch is dropped, so every batch has B examples.
    """

    def __init__(self, seed: int, n: int, batch_size: int) -> None:
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} training examples")
        self.generator = torch.Generator().manual_seed(seed)  # CPU: same order on any device
        self.n, self.batch_size = n, batch_size
        self.per_epoch = n // batch_size
        self.perm: torch.Tensor | None = None

    def indices(self, step: int) -> torch.Tensor:
        i = step % self.per_epoch
        if i == 0 or self.perm is None:
            self.perm = torch.randperm(self.n, generator=self.generator)
        return self.perm[i * self.batch_size : (i + 1) * self.batch_size]


class SampledOrder:
    """A synthetic task's data stream: the restart's own generator, which ``sample`` draws from."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)  # CPU: the same batches on any device
        self.perm: torch.Tensor | None = None  # (checkpoints store BatchOrder and SampledOrder alike)


@torch.no_grad()
def evaluate(task: Task, model: Any, state: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
             chunk: int) -> dict[str, torch.Tensor]:
    """Every metric of ``task`` for every restart on ``(x, y)``: name -> (R,), the mean over examples.

    ``state`` holds each restart's parameters and buffers, name -> (R, *shape).
    The examples are shared by the restarts and evaluated ``chunk`` at a time.
    """
    R = next(iter(state.values())).shape[0]
    sums: dict[str, torch.Tensor] = {}
    for start in range(0, x.shape[0], chunk):
        xb, yb = x[start : start + chunk], y[start : start + chunk]
        out = model.forward(state, xb, shared=True)  # (R, n, ...)
        targets = yb.unsqueeze(0).expand(R, *yb.shape).flatten(0, 1)
        for name, per_example in task.metrics(out.flatten(0, 1), targets).items():
            # float64: counts stay exact and k / N rounds once, so an accuracy of exactly 0.9
            # reads as 0.9 (a float32 mean reads 0.89999998 and fails ">= 0.9").
            total = per_example.detach().double().view(R, -1).sum(1)
            sums[name] = sums[name] + total if name in sums else total
    return {name: total / x.shape[0] for name, total in sums.items()}


class PackTrainer:
    """Trains a pack; ``run()`` can stop early and ``state_dict()`` resumes it bit-identically."""

    def __init__(
        self,
        task: Task,
        specs: Sequence[RestartSpec],
        config: TrainConfig,
        *,
        criterion: Criterion,
        device: str | torch.device = "cpu",
        data: Dataset | TaskData | None = None,
        vectorized: bool = True,
    ) -> None:
        if not specs:
            raise ValueError("a pack needs at least one restart")
        self.task, self.specs, self.config, self.criterion = task, list(specs), config, criterion
        self.device = torch.device(device)
        data = as_task_data(data if data is not None else task.load_data())
        self.module = task.build_module(data)
        self.data = data.to(self.device)
        self.model = task.pack_model(self.module, vectorized=vectorized)
        self.model.train(True)  # training mode between evaluations
        R = len(self.specs)
        seeds = [derived_seeds(s.seed) for s in self.specs]  # (init, data, noise) per restart

        rows, buffers = [], []
        for spec, (init_seed, _, _) in zip(self.specs, seeds):
            init_module(self.module, spec.init, torch.Generator().manual_seed(init_seed))
            rows.append(flatten_params(self.module))
            buffers.append({n: b.detach().clone() for n, b in self.module.named_buffers()})
        self.theta = torch.stack(rows).to(self.device)  # (R, P)
        # Each restart's own buffers (e.g. normalization statistics), name -> (R, *shape).
        self.buffers = {n: torch.stack([b[n] for b in buffers]).to(self.device) for n in buffers[0]}
        # One autograd leaf per layer tensor, each a view of theta. Backpropagating
        # into views of a single leaf theta instead would make autograd build a
        # zero-filled (R, P) gradient per layer tensor and sum them: 42 passes over
        # the pack per step for the deep MLP (2.5x slower at R=64, see docs/benchmarks.md).
        self._leaves = [v.requires_grad_(True) for v in self.model.layout.views(self.theta).values()]
        self._params = dict(zip(self.model.layout.names, self._leaves))
        self._grad = torch.empty_like(self.theta)
        self._xbuf: torch.Tensor | None = None

        # Restarts share schedules (they come from a grid): compute sigma_t once per distinct schedule.
        self._schedules = list(dict.fromkeys(s.schedule for s in self.specs))
        self._schedule_of = [self._schedules.index(s.schedule) for s in self.specs]
        self.philox = config.rng == "philox"
        tensor_data = isinstance(self.data, TensorData)
        if tensor_data and config.batch_size > self.data.n_train:
            raise ValueError(f"batch_size {config.batch_size} exceeds the {self.data.n_train} training examples")
        self.orders: list[BatchOrder | SampledOrder] = []
        self.noise_gens: dict[int, torch.Generator] = {}
        if self.philox:
            # Keyed streams: every restart's data order and noise for an update in one call each.
            self._data_seeds = torch.tensor([d for _, d, _ in seeds], dtype=torch.int64, device=self.device)
            self._noise_seeds = torch.tensor([z for _, _, z in seeds], dtype=torch.int64, device=self.device)
            self._schedule_index = torch.tensor(self._schedule_of, device=self.device)
            self._noisy_pack = any(s.schedule.is_noisy for s in self.specs)
            self._perm: torch.Tensor | None = None  # (R, n): this epoch's order of every restart
            self._perm_epoch = -1
            if not tensor_data:  # synthetic batches come from the task's sampler, restart by restart
                self.orders = [SampledOrder(d) for _, d, _ in seeds]
        else:
            if tensor_data:
                self.orders = [BatchOrder(d, self.data.n_train, config.batch_size) for _, d, _ in seeds]
            else:  # synthetic batches, drawn from each restart's own data generator
                self.orders = [SampledOrder(d) for _, d, _ in seeds]
            self.noise_gens = {
                r: torch.Generator(device=self.device).manual_seed(seeds[r][2])
                for r, s in enumerate(self.specs)
                if s.schedule.is_noisy
            }
        self.lr = torch.tensor([s.lr for s in self.specs], device=self.device)
        self.clip = torch.tensor([s.clip_norm or float("inf") for s in self.specs], device=self.device)
        self.optimizer = make_pack_optimizer(config, self.theta)
        self.step = 0
        self.active = torch.ones(R, dtype=torch.bool, device=self.device)
        self.diverged_at = torch.full((R,), -1, dtype=torch.long, device=self.device)
        self._loss_sum = torch.zeros(R, device=self.device)
        # Per restart: a restart frozen mid-interval averages only the updates it took.
        self._loss_n = torch.zeros(R, device=self.device)
        self.curve: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, train loss, metric)
        self.elapsed = 0.0
        threads = torch.get_num_threads() if self.device.type == "cpu" else 1
        # torch.randn releases the GIL, so CPU draws for different restarts run in parallel.
        self._pool = ThreadPoolExecutor(threads) if threads > 1 and len(self.noise_gens) > 1 else None
        self._noisy = sorted(self.noise_gens)
        self._noise_work = [self._noisy[i::threads] for i in range(threads)] if self._pool else [self._noisy]

    # -- one update ------------------------------------------------------------
    def _indices(self) -> torch.Tensor:
        """Every restart's example indices for this update, flat: (R * B,) on the pack's device."""
        B = self.config.batch_size
        if not self.philox:
            return torch.stack([o.indices(self.step) for o in self.orders]).to(self.device).view(-1)
        epoch, i = divmod(self.step, self.data.n_train // B)  # the last partial batch is dropped, as in BatchOrder
        if epoch != self._perm_epoch:
            self._perm, self._perm_epoch = keyed_permutations(self._data_seeds, self.data.n_train, epoch), epoch
        return self._perm[:, i * B : (i + 1) * B].reshape(-1)  # type: ignore[index]

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each restart's own batch: x ``(R, B, *input)``, y ``(R, B, *target)``."""
        R, B = len(self.specs), self.config.batch_size
        if isinstance(self.data, SampledData):
            pairs = [self.data.sample(o.generator, B) for o in self.orders]
            return (torch.stack([x for x, _ in pairs]).to(self.device),
                    torch.stack([y for _, y in pairs]).to(self.device))
        train_x, train_y = self.data.train_x, self.data.train_y
        idx = self._indices()  # (R * B,)
        if self._xbuf is None:
            self._xbuf = torch.empty(R * B, *train_x.shape[1:], dtype=train_x.dtype, device=self.device)
        # Gather into one reused buffer: the batch is the largest tensor of a step.
        torch.index_select(train_x, 0, idx, out=self._xbuf)
        return self._xbuf.view(R, B, *train_x.shape[1:]), train_y[idx].view(R, B, *train_y.shape[1:])

    @property
    def _state(self) -> dict[str, torch.Tensor]:
        return {**self._params, **self.buffers}

    def _add_noise(self, g: torch.Tensor) -> None:
        """g[r] += sigma_t(r) * z_r, z_r ~ N(0, I) drawn from restart r's own stream.

        Philox: one call for the pack (see the module docstring). Generators: each
        restart's draw lands in a small per-thread buffer and is added at
        once, while it is still in cache: no (R, P) noise tensor, no extra pass.
        The arithmetic is GradientNoise.step's: ``g.add_(z, alpha=sigma_t)``.
        """
        stds = [math.sqrt(s.variance(self.step)) for s in self._schedules]
        if self.philox:
            # One call for the pack: sigma per restart by one gather, the draws keyed by restart seeds.
            std = torch.tensor(stds, dtype=g.dtype).to(self.device)[self._schedule_index]
            if triton_noise.available(self.device):
                triton_noise.add_noise_(g, self._noise_seeds, std, self.step)
            else:
                z = philox_randn(self._noise_seeds, noise_offsets(self.step, g.shape[1], self.device))
                g.addcmul_(z, std.unsqueeze(1))
            return
        P = g.shape[1]

        def work(rows: Sequence[int]) -> None:
            z = torch.empty(P, device=g.device, dtype=g.dtype)
            for r in rows:
                torch.randn(P, generator=self.noise_gens[r], out=z)
                g[r].add_(z, alpha=stds[self._schedule_of[r]])

        if self._pool is None:
            work(self._noisy)
        else:
            list(self._pool.map(work, self._noise_work))

    def _update(self) -> None:
        x, y = self._batch()
        out = self.model.forward(self._state, x)  # (R, B, ...), in training mode (see eval_metrics)
        R, B = y.shape[:2]
        loss = self.task.loss(out.flatten(0, 1), y.flatten(0, 1)).view(R, B).mean(1)  # (R,)
        # Row r of each layer's gradient is restart r's own: the restarts share no parameters.
        grads = torch.autograd.grad(loss.sum(), self._leaves)
        g = torch.cat([gl.reshape(R, -1) for gl in grads], dim=1, out=self._grad)  # (R, P), theta's layout
        with torch.no_grad():
            norm = torch.linalg.vector_norm(g, dim=1)
            ok = torch.isfinite(loss) & torch.isfinite(norm)
            self.diverged_at = torch.where(self.active & ~ok, self.step, self.diverged_at)
            self.active &= ok
            # Clip first, then add noise: clipping after would shrink the noise.
            g.mul_(clip_coefficient(norm, self.clip).unsqueeze(1))
            # Frozen restarts: no NaN may leak into optimizer state. On CPU, checking
            # first is free and saves a pass; on a GPU it would be a sync point.
            if self.device.type != "cpu" or not bool(self.active.all()):
                g.masked_fill_(~self.active.unsqueeze(1), 0.0)
            if self.noise_gens or (self.philox and self._noisy_pack):
                self._add_noise(g)
            # The pack's LR schedule: one factor, a function of the update count alone, for all restarts.
            self.optimizer.step(g, self.lr * self.active * self.config.lr_schedule.factor(self.step, self.config.steps))
            self._loss_sum += torch.where(self.active, loss.detach(), 0.0)
            self._loss_n += self.active
        self.step += 1

    def eval_metrics(self) -> dict[str, torch.Tensor]:
        """Every metric of the task for every restart now, on the evaluation set: name -> (R,)."""
        # Evaluation mode only here: switching modes walks every submodule, not a per-step cost.
        self.model.train(False)
        try:
            state = {**self.model.layout.views(self.theta), **self.buffers}
            return evaluate(self.task, self.model, state, self.data.test_x, self.data.test_y,
                            chunk=self.config.eval_chunk)
        finally:
            self.model.train(True)

    def _evaluate_point(self) -> None:
        metric = self.eval_metrics()[self.task.primary_metric]
        # NaN, not 0, for a restart that took no update in the interval (it had diverged).
        train_loss = torch.where(self._loss_n > 0, self._loss_sum / self._loss_n.clamp(min=1), float("nan"))
        self.curve.append((self.step, train_loss, metric))
        self._loss_sum.zero_()
        self._loss_n.zero_()

    # -- driving -----------------------------------------------------------------
    def run(self, *, until: int | None = None, callback: Callable[[PackTrainer], None] | None = None) -> None:
        """Train up to ``until`` updates (default: all), evaluating every ``eval_every``."""
        until = self.config.steps if until is None else min(until, self.config.steps)
        last = time.perf_counter()
        while self.step < until:
            self._update()
            if self.step % self.config.eval_every == 0 or self.step == self.config.steps:
                self._evaluate_point()
                # Before the callback: a checkpoint taken there must carry the time so far.
                now = time.perf_counter()
                self.elapsed, last = self.elapsed + now - last, now
                if callback is not None:
                    callback(self)
        self.elapsed += time.perf_counter() - last

    @property
    def done(self) -> bool:
        return self.step >= self.config.steps

    def outcomes(self) -> list[RestartOutcome]:
        """One record per restart; call after ``run()`` finished."""
        if not self.done:
            raise RuntimeError(f"pack stopped at update {self.step} of {self.config.steps}")
        final = {name: values.tolist() for name, values in self.eval_metrics().items()}
        train_l = self.curve[-1][1].tolist() if self.curve else [float("nan")] * len(self.specs)
        div_l = self.diverged_at.tolist()
        curves = [(s, tl.tolist(), m.tolist()) for s, tl, m in self.curve]
        share = self.elapsed / len(self.specs)
        out = []
        for r, spec in enumerate(self.specs):
            metrics = {**{name: values[r] for name, values in final.items()}, "train_loss": train_l[r]}
            diverged = div_l[r] >= 0
            outcome = RestartOutcome(
                params=spec.params, restart=spec.restart, seed=spec.seed, metrics=metrics,
                primary_metric=self.task.primary_metric, success=False,
                curve=tuple(CurvePoint(s, tl[r], m[r]) for s, tl, m in curves),
                diverged=diverged, diverged_step=div_l[r] if diverged else None,
                wall_time_s=share, device=str(self.device),
            )
            out.append(dataclasses.replace(outcome, success=self.criterion.judge(outcome)))
        return out

    # -- checkpointing -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot: copies, so that training on does not change it (``.cpu()`` alone
        would alias the live tensors on a CPU pack)."""

        def snap(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to("cpu", copy=True)

        return {
            "rng": self.config.rng, "step": self.step, "theta": snap(self.theta), "optimizer": self.optimizer.state_dict(),
            "buffers": {n: snap(b) for n, b in self.buffers.items()},
            "active": snap(self.active), "diverged_at": snap(self.diverged_at),
            "loss_sum": snap(self._loss_sum), "loss_n": snap(self._loss_n), "elapsed": self.elapsed,
            "orders": [(o.generator.get_state(), None if o.perm is None else o.perm.clone()) for o in self.orders],
            "noise_gens": {r: g.get_state() for r, g in self.noise_gens.items()},
            "curve": [(s, snap(tl), snap(m)) for s, tl, m in self.curve],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["theta"].shape != self.theta.shape:
            raise ValueError(f"checkpoint holds parameters of shape {tuple(state['theta'].shape)}, "
                             f"this pack {tuple(self.theta.shape)}")
        if state.get("rng", "generator") != self.config.rng:
            raise ValueError(f"checkpoint drew from rng {state.get('rng', 'generator')!r}, this pack from {self.config.rng!r}")
        dev = self.device

        def own(t: torch.Tensor) -> torch.Tensor:  # never keep the caller's tensors
            return t.to(dev, copy=True)

        self.step = int(state["step"])
        with torch.no_grad():
            self.theta.copy_(state["theta"].to(dev))
            for n, b in state["buffers"].items():
                self.buffers[n].copy_(b.to(dev))
        self.optimizer.load_state_dict(state["optimizer"])
        self.active, self.diverged_at = own(state["active"]), own(state["diverged_at"])
        self._loss_sum, self._loss_n, self.elapsed = own(state["loss_sum"]), own(state["loss_n"]), state["elapsed"]
        for o, (gen_state, perm) in zip(self.orders, state["orders"]):
            o.generator.set_state(gen_state)
            o.perm = None if perm is None else perm.clone()
        for r, gs in state["noise_gens"].items():
            self.noise_gens[r].set_state(gs)
        self.curve = [(s, own(tl), own(m)) for s, tl, m in state["curve"]]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def train_pack(
    task: Task,
    specs: Sequence[RestartSpec],
    config: TrainConfig,
    *,
    criterion: Criterion,
    device: str | torch.device = "cpu",
    data: Dataset | TaskData | None = None,
    vectorized: bool = True,
    callback: Callable[[PackTrainer], None] | None = None,
) -> list[RestartOutcome]:
    """Train ``specs`` as one pack and return one :class:`RestartOutcome` per restart, in order."""
    trainer = PackTrainer(task, specs, config, criterion=criterion, device=device, data=data, vectorized=vectorized)
    try:
        trainer.run(callback=callback)
        return trainer.outcomes()
    finally:
        trainer.close()
