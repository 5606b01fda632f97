"""The optimizer side of annealed Gaussian gradient noise (Neelakantan et al., 2015, arXiv 1511.06807).

At update ``t`` (the number of updates already taken, starting at 0) every
gradient element gets independent Gaussian noise *after* gradient clipping::

    g_t <- clip(g_t) + N(0, sigma_t^2),    sigma_t^2 = eta / (1 + t) ** gamma

``sigma_t^2`` is a **variance**; the standard deviation is its square root.
Public implementations got this wrong in three ways that the tests here rule
out: noise added before clipping (so clipping shrinks it), eta used as a
standard deviation, and noise added to a rebound loop variable so that it
never reached the optimizer. Each wrapper also owns its generator, so parallel
models never share a noise stream.

Noise is drawn as **one flat standard-normal vector per update**, covering the
parameters that have gradients in ``param_groups`` order. The restart-pack
trainer draws exactly the same vector for each restart, which is what makes a
restart trained in a pack equal to the same restart trained alone.

:class:`GradientNoise` is a thin ``torch.optim.Optimizer`` over
:func:`~robustness.noise.hook.attach_gradient_noise`: the clip and the noise
live in one place, :meth:`GradientNoiseHook.apply_
<robustness.noise.hook.GradientNoiseHook.apply_>`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from robustness.noise.hook import GradientNoiseHook, attach_gradient_noise, clip_coefficient
from robustness.noise.schedules import NoiseSchedule

__all__ = ["GradientNoise", "clip_coefficient"]


class GradientNoise(torch.optim.Optimizer):
    """Wrap any ``torch.optim.Optimizer`` so that each ``step()`` clips, adds noise, then steps.

    ``step()`` (1) evaluates ``closure`` when given, (2) clips the global
    gradient norm to ``clip_norm`` when set, (3) adds independent
    N(0, sigma_t^2) to every gradient element, in place on ``p.grad`` so the
    wrapped optimizer really sees it, (4) calls the wrapped optimizer's
    ``step``, and (5) advances ``t``. Steps (2), (3) and (5) are a noise hook
    attached to the wrapped optimizer (:func:`attach_gradient_noise`), so
    calling the wrapped optimizer's own ``step()`` is noisy too, and one
    optimizer cannot be wrapped twice.

    It is a real ``torch.optim.Optimizer`` that shares ``param_groups``,
    ``state`` and ``defaults`` with the wrapped one, so LR schedulers accept it
    and the learning rates they set are the wrapped optimizer's.

    Example::

        opt = GradientNoise(torch.optim.SGD(model.parameters(), lr=0.01),
                            AnnealedNoise(eta=0.3, gamma=0.55), clip_norm=10.0, seed=7)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1000, gamma=0.1)
        loss.backward(); opt.step(); sched.step(); opt.zero_grad()
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        schedule: NoiseSchedule,
        clip_norm: float | None = None,
        seed: int | None = None,
    ) -> None:
        # No super().__init__: it would build new param_groups and state, and an LR
        # scheduler must change the wrapped optimizer's, not copies of them.
        self._bind(optimizer, attach_gradient_noise(optimizer, schedule, clip_norm=clip_norm, seed=seed))

    def _bind(self, optimizer: torch.optim.Optimizer, noise: GradientNoiseHook) -> None:
        self.optimizer = optimizer
        self.noise = noise
        # What Optimizer.__init__ sets besides the parameters: hooks on the wrapper itself,
        # and the class-level step patch that runs them.
        self._optimizer_step_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_step_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks: OrderedDict = OrderedDict()
        self._optimizer_load_state_dict_post_hooks: OrderedDict = OrderedDict()
        self._patch_step_function()

    # -- shared with the wrapped optimizer ----------------------------------------
    # Properties, not copies: the wrapped optimizer's load_state_dict rebinds its lists.
    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    @property  # type: ignore[override]
    def state(self) -> Any:
        return self.optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.optimizer.state = value

    @property  # type: ignore[override]
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.optimizer.defaults = value

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    # -- the noise state, kept on the hook -------------------------------------------
    @property
    def schedule(self) -> NoiseSchedule:
        return self.noise.schedule

    @property
    def clip_norm(self) -> float | None:
        return self.noise.clip_norm

    @property
    def t(self) -> int:
        return self.noise.t

    @property
    def generator(self) -> torch.Generator:
        return self.noise.generator

    # -- the update -----------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            # Evaluated here, not passed on: the noise hook must see the closure's gradients.
            with torch.enable_grad():
                loss = closure()
        self.optimizer.step()  # the noise hook clips and adds noise, then the update runs
        return loss

    # -- resume ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), **self.noise.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.noise.load_state_dict(state)  # first: it refuses another schedule before anything changes
        self.optimizer.load_state_dict(state["optimizer"])

    # Pickling and deepcopy: the wrapped optimizer pickles without its hooks, so re-attach.
    def __getstate__(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer, "schedule": self.noise.schedule, "noise": self.noise.state_dict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        noise = attach_gradient_noise(state["optimizer"], state["schedule"])
        noise.load_state_dict(state["noise"])
        self._bind(state["optimizer"], noise)

    def __repr__(self) -> str:
        return f"GradientNoise({self.optimizer.__class__.__name__}, {self.schedule!r}, clip_norm={self.clip_norm}, t={self.t})"
