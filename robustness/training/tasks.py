"""Tasks: a model, a data set and what counts as its primary metric.

A task is a frozen dataclass named in a search space's ``task:`` block. The
restart-pack trainer asks it for data and for a fresh ``nn.Module``; it asks
for a :class:`~robustness.training.pack_models.PackModel` to run many restarts at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

from torch import nn

from robustness.training.data import DEFAULT_DATASET, Dataset, load_dataset
from robustness.training.models import make_mlp
from robustness.training.pack_models import PackModel, StackedMLP, VmapModel

__all__ = ["DeepMLPTask", "TASKS", "Task", "make_task"]


class Task(Protocol):
    name: ClassVar[str]
    primary_metric: ClassVar[str]

    def load_data(self) -> Dataset: ...

    def build_module(self, data: Dataset) -> nn.Module: ...

    def pack_model(self, module: nn.Module, *, vectorized: bool = True) -> PackModel: ...


@dataclasses.dataclass(frozen=True)
class DeepMLPTask:
    """The paper's deep fully connected classifier (section 4.1): ``depth`` x ``width`` ReLU.

    ``dataset`` is ``"mnist"`` (the paper's) or ``"digits"`` (scikit-learn's
    bundled 8x8 digits: real data that needs no download, the demo default).
    """

    name: ClassVar[str] = "deep_mlp"
    # Accuracy is what the paper reports; test_error = 1 - accuracy is stored too.
    primary_metric: ClassVar[str] = "test_accuracy"

    dataset: str = DEFAULT_DATASET
    data_dir: str | None = None
    depth: int = 20
    width: int = 50
    download: bool = False

    def load_data(self) -> Dataset:
        return load_dataset(self.dataset, data_dir=self.data_dir, download=self.download)

    def build_module(self, data: Dataset) -> nn.Module:
        return make_mlp(data.input_dim, data.num_classes, depth=self.depth, width=self.width)

    def pack_model(self, module: nn.Module, *, vectorized: bool = True) -> PackModel:
        # The hand-batched MLP is faster than vmap; the generic path stays
        # available to check it against.
        return StackedMLP(module) if vectorized else VmapModel(module)  # type: ignore[arg-type]


TASKS: dict[str, type[Any]] = {"deep_mlp": DeepMLPTask}


def make_task(name: str, **kwargs: Any) -> Task:
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None
    return cls(**kwargs)
