"""Training: what one restart is asked to do, and the code that does it.

- :mod:`~robustness.training.spec`: :class:`RestartSpec`, one restart's hyperparameters and seeds;
- :mod:`~robustness.training.config`: :class:`TrainConfig`, optimizer names and defaults;
- :mod:`~robustness.training.tasks`, :mod:`~robustness.training.data`, :mod:`~robustness.training.models`:
  what is trained, on what, from which initialization;
- :mod:`~robustness.training.pack`: the restart-pack trainer (many restarts, one process), with
  :mod:`~robustness.training.pack_models` and :mod:`~robustness.training.optimizers`;
- :mod:`~robustness.training.reference`: the same restart as a plain ``nn.Module`` +
  ``torch.optim`` + ``GradientNoise`` loop, the definition a pack must reproduce;
- :mod:`~robustness.training.loop`: a task's own ``train(ctx)`` loop, for models a pack cannot vectorize.
"""
