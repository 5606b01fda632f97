"""Annealed gradient noise on any existing ``torch.optim`` optimizer, through a step pre-hook.

This module holds the one implementation of "clip, then add noise" that both
:func:`attach_gradient_noise` and :class:`~robustness.noise.GradientNoise` use
(Neelakantan et al., 2015, arXiv 1511.06807)::

    g_t <- clip(g_t) + N(0, sigma_t^2),    sigma_t^2 = schedule.variance(t)

- ``sigma_t^2`` is a **variance**: the standard deviation is ``schedule.std(t)``.
- Clipping comes first, so it never shrinks the noise.
- The noise is added in place on ``p.grad``, so the optimizer's update really sees it.
- Each hook owns its ``torch.Generator``: two models never share a noise stream,
  and the global RNG is never touched.
- Noise is drawn as **one flat standard-normal vector per update** over the
  parameters that have gradients, in ``param_groups`` order (the restart-pack
  trainer draws the same vector, which keeps a packed restart equal to a lone one).

The hook runs in ``optimizer.step()`` before the update, so the user's own
optimizer object stays in place: LR schedulers, ``GradScaler`` (which calls
``step()`` only for finite, already-unscaled gradients, so skipped steps draw no
noise and do not advance ``t``) and ``optimizer.state_dict()`` work unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from robustness.noise.schedules import NoiseSchedule

__all__ = ["GradientNoiseHook", "attach_gradient_noise", "clip_coefficient"]


def clip_coefficient(total_norm: torch.Tensor, clip_norm: float | torch.Tensor) -> torch.Tensor:
    """The factor ``torch.nn.utils.clip_grad_norm_`` scales gradients by (at most 1)."""
    return torch.clamp(clip_norm / (total_norm + 1e-6), max=1.0)


def _schedule_record(schedule: NoiseSchedule) -> dict[str, Any]:
    return {"name": schedule.name, **dataclasses.asdict(schedule)}  # type: ignore[call-overload]


def _first_device(optimizer: torch.optim.Optimizer) -> torch.device:
    for group in optimizer.param_groups:
        for p in group["params"]:
            return p.device
    return torch.device("cpu")


def _has_noise(optimizer: Any) -> bool:
    """Whether noise is already attached to ``optimizer`` or to an optimizer it wraps."""
    while isinstance(optimizer, torch.optim.Optimizer):
        hooks = getattr(optimizer, "_optimizer_step_pre_hooks", {})
        if any(isinstance(getattr(h, "__self__", None), GradientNoiseHook) for h in hooks.values()):
            return True
        optimizer = getattr(optimizer, "optimizer", None)  # GradientNoise and similar wrappers
    return False


class GradientNoiseHook:
    """Clip-then-noise state for one optimizer: the schedule, ``clip_norm``, the generator and ``t``.

    ``t`` is the number of noisy updates already taken (the first one uses
    ``t = 0``); it advances once per ``optimizer.step()``. Build one with
    :func:`attach_gradient_noise`; checkpoint it with :meth:`state_dict` next to
    the optimizer's own state dict.
    """

    def __init__(self, schedule: NoiseSchedule, *, clip_norm: float | None = None, seed: int | None = None,
                 device: torch.device | str = "cpu") -> None:
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm}")
        self.schedule = schedule
        self.clip_norm = clip_norm
        self.t = 0
        # Our own generator: the global RNG is never touched, and two hooks never share a stream.
        self.generator = torch.Generator(device=device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self._handle: RemovableHandle | None = None

    @torch.no_grad()
    def apply_(self, param_groups: list[dict[str, Any]]) -> None:
        """One update's clip and noise, in place on the ``p.grad`` of ``param_groups``; then ``t += 1``."""
        grads = [p.grad for group in param_groups for p in group["params"] if p.grad is not None]
        if grads and self.clip_norm is not None:
            # Clip first: noise added before clipping would be shrunk by it.
            norms = torch.stack([torch.linalg.vector_norm(g) for g in grads])
            coef = clip_coefficient(torch.linalg.vector_norm(norms), self.clip_norm)
            torch._foreach_mul_(grads, coef)
        if grads and self.schedule.is_noisy:
            std = self.schedule.std(self.t)  # sqrt of the variance eta / (1 + t)^gamma
            noise = torch.randn(
                sum(g.numel() for g in grads), generator=self.generator, device=grads[0].device, dtype=grads[0].dtype
            )
            # In place on p.grad: `for g in grads: g = g + noise` would never reach the optimizer.
            for g, chunk in zip(grads, torch.split(noise, [g.numel() for g in grads])):
                g.add_(chunk.view_as(g), alpha=std)
        self.t += 1

    def _pre_hook(self, optimizer: torch.optim.Optimizer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        closure = args[1] if len(args) > 1 else kwargs.get("closure")
        if closure is not None:
            # The closure computes its gradients inside step(), after this hook: noise added
            # now would land on stale gradients and be overwritten by the closure's backward.
            raise RuntimeError(
                "attach_gradient_noise cannot noise the gradients a closure computes inside step(); "
                "call loss.backward() before optimizer.step(), or wrap the optimizer in GradientNoise, "
                "whose step(closure) evaluates the closure before adding noise"
            )
        self.apply_(optimizer.param_groups)

    # -- attach / detach ----------------------------------------------------------
    def _attach(self, optimizer: torch.optim.Optimizer) -> None:
        if _has_noise(optimizer):
            raise ValueError(f"gradient noise is already attached to this {type(optimizer).__name__}; remove() it first")
        self._handle = optimizer.register_step_pre_hook(self._pre_hook)

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def remove(self) -> None:
        """Detach: later ``step()`` calls update with plain gradients. Safe to call twice."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # -- resume -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "generator": self.generator.get_state(),
            "clip_norm": self.clip_norm,
            "schedule": _schedule_record(self.schedule),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved, mine = state["schedule"], _schedule_record(self.schedule)
        if saved != mine:
            # Continuing another schedule at the saved t would silently change the experiment.
            raise ValueError(f"checkpoint was saved with noise schedule {saved}, this one has {mine}")
        self.t = int(state["t"])
        self.generator.set_state(state["generator"])
        self.clip_norm = state["clip_norm"]

    def __repr__(self) -> str:
        return f"GradientNoiseHook({self.schedule!r}, clip_norm={self.clip_norm}, t={self.t}, attached={self.attached})"


def attach_gradient_noise(
    optimizer: torch.optim.Optimizer,
    schedule: NoiseSchedule,
    *,
    clip_norm: float | None = None,
    seed: int | None = None,
) -> GradientNoiseHook:
    """Make every ``optimizer.step()`` clip the global gradient norm, then add N(0, sigma_t^2) noise.

    The optimizer object stays the user's own, so LR schedulers and
    checkpointing of it keep working. The returned hook holds the generator
    (on the device of the first parameter, seeded with ``seed``; a fresh
    random seed when ``None``) and ``t``; save ``hook.state_dict()`` beside
    ``optimizer.state_dict()`` to resume bit-identically. ``hook.remove()``
    detaches it. Attaching twice to one optimizer is refused.

    The hook runs before the update inside ``step()``, on the gradients that
    are already there, so ``step(closure)`` is refused (the closure's gradients
    do not exist yet when the hook runs); call ``backward()`` first, or use
    :class:`~robustness.noise.GradientNoise`, which evaluates closures first.

    Example::

        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        noise = attach_gradient_noise(opt, AnnealedNoise(eta=0.3), clip_norm=1.0, seed=7)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=100)
        loss.backward(); opt.step(); sched.step(); opt.zero_grad()
        torch.save({"opt": opt.state_dict(), "noise": noise.state_dict()}, path)
    """
    hook = GradientNoiseHook(schedule, clip_norm=clip_norm, seed=seed, device=_first_device(optimizer))
    hook._attach(optimizer)
    return hook
