"""A small convolutional net on the 8x8 digits, trained in restart packs.

Named in ``cnn_digits.yaml`` by import path, ``cnn:SmallCNN``: run the study from
this folder, where ``robustness`` finds ``cnn.py`` in the current directory.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from robustness.training.data import load_dataset
from robustness.training.tasks import ClassificationTask, TaskFieldError, TensorData, as_task_data


@dataclasses.dataclass(frozen=True)
class SmallCNN(ClassificationTask):
    """conv 3x3 -> GroupNorm -> ReLU -> linear, on the digits as (1, 8, 8) images.

    Cross-entropy per example, and test_accuracy / test_error / test_loss, come from
    ClassificationTask; test_accuracy is the primary metric.
    """

    channels: int = 8  # conv filters; 8 is enough for ~95 % test accuracy on the digits
    groups: int = 2  # GroupNorm groups: no batch statistics, so training = evaluation behaviour

    def __post_init__(self) -> None:
        # Raised here, reported by the loader as one line: "cnn_digits.yaml: task.channels: expected ..."
        if self.channels < 1:
            raise TaskFieldError("channels", "an integer >= 1")
        if self.groups < 1 or self.channels % self.groups:
            raise TaskFieldError("groups", f"an integer >= 1 that divides channels ({self.channels})")

    def load_data(self) -> TensorData:
        d = as_task_data(load_dataset("digits"))  # flat (n, 64) float32 in [0, 1]
        return TensorData(d.train_x.view(-1, 1, 8, 8), d.train_y, d.test_x.view(-1, 1, 8, 8), d.test_y)

    def build_module(self, data: TensorData) -> nn.Module:
        c = self.channels
        classes = 10
        return nn.Sequential(
            nn.Conv2d(1, c, kernel_size=3, padding=1),
            nn.GroupNorm(self.groups, c),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c * 8 * 8, classes),
        )
