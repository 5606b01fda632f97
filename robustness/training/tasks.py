"""Tasks: what one restart trains, on what data, and how it is judged.

A task is a frozen dataclass. A search space names it in its ``task:`` block
(a built-in name, an installed plugin's entry point, or ``package.module:Class``)
and sets its fields there; the fields are validated like every other key.

A task says (see ``docs/tasks.md`` for a worked example):

- ``load_data()``: the data, as :class:`TensorData` (examples in memory, any
  shapes ``(n, *input)`` and ``(n, *target)``) or :class:`SampledData` (batches drawn
  from each restart's own generator, for synthetic tasks);
- ``build_module(data)``: a fresh ``nn.Module``; each restart's parameters are
  then drawn from its own generator (:func:`robustness.training.models.init_module`);
- ``loss(output, target)``: the training loss **per example**, shape ``(B,)``;
- ``metrics(output, target)``: evaluation metrics **per example**, each ``(N,)``;
  a restart's metric is their mean over the evaluation set;
- ``primary_metric``: the metric stored as the trial's value and drawn in curves.

Optionally ``pack_model(module, vectorized=...)`` gives a hand-batched fast path
(the paper's MLP has one), and ``train(ctx)`` replaces the pack by the user's own
training loop (:mod:`robustness.training.loop`) for models ``torch.func`` cannot vectorize.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustness.plugins import PluginError, entry_point_names, load_entry_point, load_import_path
from robustness.training.data import DATASETS, DEFAULT_DATASET, Dataset, load_dataset
from robustness.training.models import make_mlp
from robustness.training.pack_models import PackModel, StackedMLP, VmapModel

__all__ = [
    "ClassificationTask", "DeepMLPTask", "SampledData", "TASKS", "Task", "TaskData", "TaskFieldError", "TensorData",
    "as_task_data", "known_tasks", "make_task", "task_class",
]


class TaskFieldError(ValueError):
    """A task field holds a value the task cannot use: ``field`` and what was ``expected``.

    Raise it from a task's ``__post_init__``; the search-space loader reports it
    as ``task.<field>: expected <expected>, got <value>``.
    """

    def __init__(self, field: str, expected: str) -> None:
        super().__init__(f"{field}: expected {expected}")
        self.field, self.expected = field, expected


@dataclasses.dataclass(frozen=True, eq=False)
class TensorData:
    """Examples in memory: ``train_x`` ``(n, *input)``, ``train_y`` ``(n, *target)``; the test split alike."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"{split}_x has {x.shape[0]} examples but {split}_y has {y.shape[0]}")

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])

    def to(self, device: torch.device) -> TensorData:
        return TensorData(*(getattr(self, f).to(device) for f in ("train_x", "train_y", "test_x", "test_y")))


@dataclasses.dataclass(frozen=True, eq=False)
class SampledData:
    """Training batches drawn on the fly: ``sample(generator, batch_size) -> (x, y)``, each ``(B, ...)``.

    ``generator`` is the restart's own CPU ``torch.Generator`` (its data stream),
    so a restart sees the same batches in any pack. Evaluation uses the fixed
    ``test_x``/``test_y``.
    """

    sample: Callable[[torch.Generator, int], tuple[torch.Tensor, torch.Tensor]]
    test_x: torch.Tensor
    test_y: torch.Tensor

    def to(self, device: torch.device) -> SampledData:
        return SampledData(self.sample, self.test_x.to(device), self.test_y.to(device))


TaskData = TensorData | SampledData


def as_task_data(data: Dataset | TensorData | SampledData) -> TensorData | SampledData:
    """A classification :class:`~robustness.training.data.Dataset` (NumPy) as :class:`TensorData`."""
    if isinstance(data, Dataset):
        return TensorData(*(torch.from_numpy(getattr(data, f).copy()) for f in ("train_x", "train_y", "test_x", "test_y")))
    return data


class Task:
    """Base class for tasks. Subclasses are frozen dataclasses; override what differs.

    ``name`` is how a search space names a built-in task; a plugin is named by its
    import path or entry point instead. ``primary_metric`` must be a key of ``metrics``.
    """

    name: ClassVar[str] = ""
    primary_metric: ClassVar[str] = "test_loss"

    def load_data(self) -> TaskData:
        raise NotImplementedError

    def build_module(self, data: TaskData) -> nn.Module:
        raise NotImplementedError

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss per example, ``(B,)``."""
        raise NotImplementedError

    def metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Evaluation metrics per example, each ``(N,)``; the default is the test loss."""
        return {"test_loss": self.loss(output, target)}

    def pack_model(self, module: nn.Module, *, vectorized: bool = True) -> PackModel:
        """How a pack runs R copies of ``module``: ``torch.func.vmap`` unless a task has a faster way."""
        return VmapModel(module)


class ClassificationTask(Task):
    """Cross-entropy over class logits ``(B, C)`` and integer labels ``(B,)``: accuracy, error, loss."""

    # Accuracy is what the paper reports; test_error = 1 - accuracy is stored too.
    primary_metric: ClassVar[str] = "test_accuracy"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target, reduction="none")

    def metrics(self, output: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        correct = (output.argmax(-1) == target).to(output.dtype)
        return {"test_accuracy": correct, "test_error": 1.0 - correct, "test_loss": self.loss(output, target)}


@dataclasses.dataclass(frozen=True)
class DeepMLPTask(ClassificationTask):
    """The paper's deep fully connected classifier (section 4.1): ``depth`` x ``width`` ReLU.

    ``dataset`` is ``"mnist"`` (the paper's) or ``"digits"`` (scikit-learn's
    bundled 8x8 digits: real data that needs no download, the demo default).
    """

    name: ClassVar[str] = "deep_mlp"

    dataset: str = DEFAULT_DATASET
    data_dir: str | None = None
    depth: int = 20
    width: int = 50
    download: bool = False

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise TaskFieldError("dataset", f"a known data set (one of: {', '.join(DATASETS)})")
        for key in ("depth", "width"):
            if getattr(self, key) < 1:
                raise TaskFieldError(key, "an integer >= 1")
        # An upper bound on parameters per restart (784 MNIST inputs): a pack holds R copies.
        params = 784 * self.width + (self.depth - 1) * (self.width + 1) * self.width + 11 * self.width
        if params > MAX_MLP_PARAMETERS:
            key = "width" if self.width > 50 * self.depth else "depth"
            raise TaskFieldError(key, f"depth and width giving at most {MAX_MLP_PARAMETERS:,} parameters per "
                                      f"restart (depth {self.depth} x width {self.width} give about {params:,})")
        if self.dataset != "mnist":
            if self.data_dir is not None:
                raise TaskFieldError("data_dir", f"no data_dir for dataset {self.dataset!r} (only mnist reads files)")
            if self.download:
                raise TaskFieldError("download", f"no download for dataset {self.dataset!r} (only mnist reads files)")

    def load_data(self) -> TaskData:
        return as_task_data(load_dataset(self.dataset, data_dir=self.data_dir, download=self.download))

    def build_module(self, data: TaskData | Dataset) -> nn.Module:
        data = as_task_data(data)  # a NumPy Dataset (as the benchmarks load it) is fine too
        assert isinstance(data, TensorData)
        classes = int(torch.cat([data.train_y, data.test_y]).max()) + 1
        return make_mlp(data.train_x[0].numel(), classes, depth=self.depth, width=self.width)

    def pack_model(self, module: nn.Module, *, vectorized: bool = True) -> PackModel:
        # The hand-batched MLP is faster than vmap; the generic path stays available to check it against.
        return StackedMLP(module) if vectorized else VmapModel(module)  # type: ignore[arg-type]


MAX_MLP_PARAMETERS = 50_000_000  # 200 MB per restart in float32: far beyond the paper's 88k


# Built-in tasks: a class, or the import path of one kept in its own module (loaded on first use,
# so that importing this module stays cheap and built-ins may subclass Task without a cycle).
TASKS: dict[str, type[Task] | str] = {
    "deep_mlp": DeepMLPTask,
    "binary_arithmetic": "robustness.training.arithmetic:BinaryArithmeticTask",
}
TASK_GROUP = "robustness.tasks"


def _wrong_task(obj: Any) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, Task)):
        return f"expected a subclass of robustness.training.tasks.Task, got {type(obj).__name__} {getattr(obj, '__name__', obj)!r}"
    if not dataclasses.is_dataclass(obj):
        return f"expected a dataclass (decorate {obj.__name__} with @dataclasses.dataclass(frozen=True))"
    return None


def task_class(name: str) -> type[Task]:
    """The task called ``name``: built-in, entry point (``robustness.tasks``), or ``package.module:Class``."""
    if name in TASKS:
        found = TASKS[name]
        return load_import_path(found, what="task", check=_wrong_task) if isinstance(found, str) else found
    found = load_entry_point(TASK_GROUP, name, what="task", check=_wrong_task)
    if found is not None:
        return found
    if ":" not in name:
        raise PluginError(f"task {name!r}: expected a known task (one of: {', '.join(known_tasks())}) "
                          "or an import path 'package.module:Class'")
    return load_import_path(name, what="task", check=_wrong_task)


def known_tasks() -> list[str]:
    return sorted({*TASKS, *entry_point_names(TASK_GROUP)})


def make_task(name: str, **fields: Any) -> Task:
    """Build the task ``name`` with its own ``fields`` (as a search space's ``task:`` block gives them)."""
    return task_class(name)(**fields)


def task_fields(cls: type[Task]) -> Mapping[str, dataclasses.Field[Any]]:
    """The fields a search space may set on a task class."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
