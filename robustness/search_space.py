"""Search spaces: one YAML file describes one robustness study, and is validated here.

A study is a grid of cells (learning rate x clip x init x noise setting) and
``restarts`` random restarts per cell. Restart ``k`` of *every* cell gets the same
seed (:func:`robustness.spec.restart_seed`), so a noise arm and its no-noise
baseline start from the same initialization and see the same batches; only the
noise stream, derived separately from that seed, differs. That pairing is what
lets the statistics use McNemar's test instead of comparing independent samples.

The schema is documented in ``search_spaces/README.md``. Every user error becomes
one :class:`SearchSpaceError` line naming the file, the key path and what was
expected, e.g. ``demo.yaml: grid.noise[1].eta[0]: expected a number > 0, got -1``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Optional, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from robustness.criterion import OPERATORS, Criterion
from robustness.noise import SCHEDULES, NoiseSchedule, make_schedule
from robustness.outcome import FrozenMap
from robustness.spec import RestartSpec, restart_seed

__all__ = [
    "GridConfig", "NoiseBlock", "OptimizerConfig", "SearchSpace", "SearchSpaceError", "TaskConfig",
    "cell_schedule", "known_inits", "known_optimizers", "known_tasks", "load_search_space",
    "parse_search_space",
]

# Fallbacks until robustness.tasks / robustness.pack / robustness.models exist; the
# known_* functions prefer the real registries so new entries need no change here.
TASKS: frozenset[str] = frozenset({"deep_mlp"})
OPTIMIZERS: frozenset[str] = frozenset({"sgd", "adam"})
INIT_SCHEMES: frozenset[str] = frozenset({"simple", "zero", "he", "random_walk"})
DATASETS = ("digits", "mnist")
DEFAULT_MAX_CELLS = 10_000
DEFAULT_MAX_RESTARTS = 1_000_000
GRID_KEYS = ("lr", "clip", "init", "schedule", "eta", "gamma")  # every cell has all six
# Which optional optimizer keys apply to which optimizer; defaults are PyTorch's.
_OPTIMIZER_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8},
}


class SearchSpaceError(ValueError):
    """A search-space file is invalid. The message is one complete line."""


def _registry(module: str, attr: str, fallback: Iterable[str]) -> list[str]:
    try:
        names = getattr(importlib.import_module(module), attr, None)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # the module exists but is broken: don't hide that
            raise
        names = None
    return sorted(fallback if names is None else names)


def known_tasks() -> list[str]:
    return _registry("robustness.tasks", "TASKS", TASKS)


def known_optimizers() -> list[str]:
    return _registry("robustness.pack", "OPTIMIZERS", OPTIMIZERS)


def known_inits() -> list[str]:
    return _registry("robustness.models", "INIT_SCHEMES", INIT_SCHEMES)


# --- scalar checks ---------------------------------------------------------------
# Each check returns the cleaned value or raises _Bad; _plain turns that into a
# pydantic error whose context carries our one-line message and any sub-path.


class _Bad(Exception):
    def __init__(self, expect: str, value: Any, at: tuple[Any, ...] = ()) -> None:
        super().__init__(f"expected {expect}, got {_show(value)}")
        self.expect, self.value, self.at = expect, value, at


def _error(message: str, at: tuple[Any, ...] = ()) -> PydanticCustomError:
    return PydanticCustomError("search_space", "{message}", {"message": message, "at": at})


def _plain(check: Callable[[Any], Any]) -> PlainValidator:
    def run(value: Any) -> Any:
        try:
            return check(value)
        except _Bad as bad:
            raise _error(str(bad), bad.at) from None

    return PlainValidator(run)


def _show(value: Any) -> str:
    """A short, one-line, YAML-flavoured rendering of a user value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "a mapping" + (f" with keys {', '.join(map(str, value))}" if value else " {}")
    if isinstance(value, list):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _number(*, gt: float | None = None, ge: float | None = None, lt: float | None = None,
            keep_int: bool = False) -> Callable[[Any], float]:
    bounds = [f"{sym} {b:g}" for sym, b in ((">", gt), (">=", ge), ("<", lt)) if b is not None]
    expect = "a number" + (" " + " and ".join(bounds) if bounds else "")

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad(expect, value)
        try:
            number = float(value)
        except OverflowError:
            raise _Bad(expect, value) from None
        if (not math.isfinite(number) or (gt is not None and not number > gt)
                or (ge is not None and not number >= ge) or (lt is not None and not number < lt)):
            raise _Bad(expect, value)
        return value if keep_int and isinstance(value, int) else number

    return check


def _integer(*, ge: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        # Strict: 2000.0, "2000" and true are all rejected, not silently cast.
        if isinstance(value, bool) or not isinstance(value, int) or value < ge:
            raise _Bad(f"an integer >= {ge}", value)
        return value

    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("true or false", value)
    return value


def _choice(what: str, names: Callable[[], Iterable[str]]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        known = sorted(names())
        if not isinstance(value, str) or value not in known:
            raise _Bad(f"{what} (one of: {', '.join(known)})", value)
        return value

    return check


def _pattern(what: str, regex: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(regex, value):
            raise _Bad(what, value)
        return value

    return check


def _or(check: Callable[[Any], Any], *, none: tuple[Any, ...] = (None,), expect: str = "") -> Callable[[Any], Any]:
    """``check``, except that the values in ``none`` (e.g. null, "none", "auto") mean None."""

    def either(value: Any) -> Any:
        if value in none:
            return None
        try:
            return check(value)
        except _Bad as bad:
            raise _Bad(expect, value) if expect else bad from None

    return either


def _scalar(value: Any) -> Any:
    if isinstance(value, (Mapping, list)):
        raise _Bad("a scalar (number, string, boolean or null)", value)
    return value


def _list_of(item: Callable[[Any], Any], what: str) -> Callable[[Any], list[Any]]:
    """A non-empty list of ``item``s; a single value counts as a one-element list."""

    def check(value: Any) -> list[Any]:
        if isinstance(value, Mapping) or value == []:
            raise _Bad(f"a non-empty list of {what}", value)
        if not isinstance(value, list):
            return [item(value)]  # errors name the key itself, not a [0] the user never wrote
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except _Bad as bad:
                raise _Bad(bad.expect, bad.value, at=(i, *bad.at)) from None
        return out

    return check


def _betas(value: Any) -> tuple[float, float]:
    expect = "a list of two numbers >= 0 and < 1"
    if not isinstance(value, (list, tuple)) or len(value) != 2:  # tuple: the adam default
        raise _Bad(expect, value)
    return tuple(_or(_number(ge=0, lt=1), none=(), expect=expect)(v) for v in value)  # type: ignore[return-value]


# Checked types. PlainValidator replaces pydantic's own coercion, so "3" is not an
# int and true is not a number; the inner type is for readers and type checkers.
Flag = Annotated[bool, _plain(_flag)]
PosInt = Annotated[int, _plain(_integer(ge=1)), Field(description="an integer >= 1")]
NonNegInt = Annotated[int, _plain(_integer(ge=0)), Field(description="an integer >= 0")]
Cap = Annotated[Optional[int], _plain(_or(_integer(ge=1))), Field(description="an integer >= 1")]
StudyName = Annotated[str, _plain(_pattern("a name made of letters, digits, '_', '.' and '-'",
                                           r"[A-Za-z0-9_.-]{1,128}"))]
TaskName = Annotated[str, _plain(_choice("a known task", known_tasks))]
DatasetName = Annotated[str, _plain(_choice("a known data set", lambda: DATASETS))]
DataDir = Annotated[Optional[str], _plain(_or(_pattern("a path", r"(?s).+")))]
OptimizerName = Annotated[str, _plain(_choice("a known optimizer", known_optimizers))]
Momentum = Annotated[Optional[float], _plain(_number(ge=0, lt=1))]
Betas = Annotated[Optional[tuple[float, float]], _plain(_betas)]
PosFloat = Annotated[Optional[float], _plain(_number(gt=0))]
ScheduleName = Annotated[str, _plain(_choice("a registered noise schedule", lambda: SCHEDULES))]
LrList = Annotated[list[float], _plain(_list_of(_number(gt=0), "numbers > 0"))]
ClipItem = _or(_number(gt=0), none=(None, "none", "None", "NONE"), expect="a number > 0 or none")
ClipList = Annotated[list[Optional[float]], _plain(_list_of(ClipItem, "numbers > 0 or none"))]
InitList = Annotated[list[str], _plain(_list_of(_choice("a known init scheme", known_inits), "init names"))]
# eta is the paper's noise *variance*, so it must be > 0; gamma may be 0 (constant).
EtaList = Annotated[Optional[list[float]], _plain(_list_of(_number(gt=0), "numbers > 0"))]
GammaList = Annotated[Optional[list[float]], _plain(_list_of(_number(ge=0), "numbers >= 0"))]
MetricName = Annotated[str, _plain(_pattern("a metric name", r"[A-Za-z_][A-Za-z0-9_]*"))]
OpName = Annotated[str, _plain(_choice("a comparison", lambda: OPERATORS))]
Threshold = Annotated[float, _plain(_number())]
CpuCount = Annotated[float, _plain(_number(gt=0, keep_int=True))]
GpuCount = Annotated[float, _plain(_number(ge=0, keep_int=True))]
PackSize = Annotated[Optional[int], _plain(_or(_integer(ge=1), none=(None, "auto"), expect="an integer >= 1 or 'auto'"))]


def _noise_list(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise _error(f"expected a non-empty list of noise blocks (mappings with a 'schedule' key), "
                     f"got {_show(value)}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Model):
    """What every restart trains. ``steps`` counts parameter updates."""

    name: TaskName = Field(description="a known task, e.g. deep_mlp")
    dataset: DatasetName = "digits"
    data_dir: DataDir = None
    download: Flag = False
    depth: PosInt = Field(20, description="the number of hidden layers, an integer >= 1")
    width: PosInt = 50
    steps: PosInt = Field(description="the number of updates, an integer >= 1")
    batch_size: PosInt = 128
    eval_every: PosInt = 100

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        for key in ("data_dir", "download"):
            if key in self.model_fields_set and self.dataset != "mnist":
                raise _error(f"expected no {key} for dataset {self.dataset!r} (only mnist reads files), "
                             f"got {_show(getattr(self, key))}", (key,))
        if self.eval_every > self.steps:  # a learning curve needs at least one point
            default = "" if "eval_every" in self.model_fields_set else " (the default)"
            raise _error(f"expected an integer <= task.steps ({self.steps}), got {self.eval_every}{default}",
                         ("eval_every",))
        return self


class OptimizerConfig(_Model):
    """The base optimizer; keys that don't apply to ``name`` are None."""

    name: OptimizerName = "sgd"
    momentum: Momentum = None
    betas: Betas = None
    eps: PosFloat = None

    @model_validator(mode="before")
    @classmethod
    def _applicable(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("name", "sgd") not in _OPTIMIZER_DEFAULTS:
            return data  # not a mapping, or an unknown name: the field checks report it
        name = data.get("name", "sgd")
        allowed = _OPTIMIZER_DEFAULTS[name]
        for key in ("momentum", "betas", "eps"):
            if key in data and key not in allowed:
                raise _error(f"not an option of {name}; expected only: name, {', '.join(allowed)}", (key,))
        return {**allowed, **data}


class NoiseBlock(BaseModel):
    """One noise setting family: a schedule plus list-valued parameters.

    ``eta`` and ``gamma`` are checked here; any other key is passed, as a list of
    values, to a user-registered schedule's constructor.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    schedule: ScheduleName = Field(description="a registered noise schedule, e.g. none or annealed")
    eta: EtaList = None
    gamma: GammaList = None

    @model_validator(mode="after")
    def _keys_fit_schedule(self) -> NoiseBlock:
        given = [k for k in ("eta", "gamma") if k in self.model_fields_set] + list(self.model_extra or {})
        for key, value in (self.model_extra or {}).items():
            if key in GRID_KEYS:
                raise _error(f"expected a schedule parameter, got the grid coordinate {key!r}", (key,))
            try:
                _list_of(_scalar, "scalars")(value)
            except _Bad as bad:
                raise _error(str(bad), (key, *bad.at)) from None
        cls = SCHEDULES[self.schedule]
        if not dataclasses.is_dataclass(cls):
            return self  # no declared fields to check against; the constructor decides
        fields = [f for f in dataclasses.fields(cls) if f.init]
        names = [f.name for f in fields]
        for key in given:
            if key not in names:
                expected = f"only: schedule, {', '.join(names)}" if names else "no parameters"
                raise _error(f"unknown key for schedule {self.schedule!r}; expected {expected}", (key,))
        for f in fields:
            if f.name not in given and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                what = "a non-empty list of numbers > 0" if f.name == "eta" else "a value or a list of values"
                raise _error(f"missing required key for schedule {self.schedule!r}; expected {what}", (f.name,))
        return self

    def axes(self) -> dict[str, list[Any]]:
        """The block's list-valued parameters, deduplicated, in file order."""
        out = {k: _unique(getattr(self, k)) for k in ("eta", "gamma") if getattr(self, k) is not None}
        out.update({k: _unique(_list_of(_scalar, "scalars")(v)) for k, v in (self.model_extra or {}).items()})
        return out


class GridConfig(_Model):
    lr: LrList = Field(description="a non-empty list of numbers > 0")
    clip: ClipList = Field(default_factory=lambda: [None])
    init: InitList = Field(default_factory=lambda: ["he"])
    noise: Annotated[list[NoiseBlock], BeforeValidator(_noise_list)] = Field(
        description="a non-empty list of noise blocks, e.g. [{schedule: none}]")


class _SuccessConfig(_Model):
    metric: MetricName = Field(description="a metric name, e.g. test_accuracy")
    op: OpName = Field(description="a comparison (one of: <, <=, >, >=)")
    threshold: Threshold = Field(description="a number")


class _ResourcesConfig(_Model):
    cpu: CpuCount = 1
    gpu: GpuCount = 0


class _SpaceModel(_Model):
    study: StudyName = Field(description="a study name")
    task: TaskConfig = Field(description="a mapping with at least name and steps")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    grid: GridConfig = Field(description="a mapping with at least lr and noise")
    restarts: PosInt = Field(description="the number of restarts per cell, an integer >= 1")
    base_seed: NonNegInt = 0
    success: _SuccessConfig = Field(description="a mapping with metric, op and threshold")
    pack_size: PackSize = None
    resources: _ResourcesConfig = Field(default_factory=_ResourcesConfig)
    max_cells: Cap = None
    max_restarts: Cap = None


# --- errors -------------------------------------------------------------------------


def _unique(values: Iterable[Any]) -> list[Any]:
    """Distinct values in first-seen order (0.1 listed twice is one grid value)."""
    return list(dict.fromkeys(values))


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: Iterable[Any]) -> type[BaseModel] | None:
    """The schema model that validates the mapping at ``loc`` (list indices skipped)."""
    model: type[BaseModel] | None = _SpaceModel
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = None if field is None else _submodel(field.annotation)
    return model


def _submodel(tp: Any) -> type[BaseModel] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp) if get_origin(tp) is not None else ():
        if (found := _submodel(arg)) is not None:
            return found
    return None


def _describe(err: Mapping[str, Any]) -> str:
    """One pydantic error as ``key.path: what was expected, got what``."""
    ctx = err.get("ctx") or {}
    loc = (*err["loc"], *ctx.get("at", ()))
    kind = err["type"]
    if kind == "search_space":
        text = ctx["message"]
    elif kind == "missing":
        parent = _model_at(loc[:-1])
        field = parent.model_fields.get(loc[-1]) if parent is not None else None
        text = "missing required key" + (f"; expected {field.description}" if field and field.description else "")
    elif kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = list(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        text = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        text += f"; expected one of: {', '.join(allowed)}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = f"expected a mapping, got {_show(err.get('input'))}"
    else:
        text = f"{err['msg']}, got {_show(err.get('input'))}"
    path = _path(loc)
    return f"{path}: {text}" if path else text


# --- the validated study ------------------------------------------------------------


def cell_schedule(cell: Mapping[str, Any]) -> NoiseSchedule:
    """Rebuild a cell's noise schedule from its coordinates (e.g. a stored trial's params)."""
    cls = SCHEDULES[cell["schedule"]]
    if dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls) if f.init]
    else:
        names = [k for k in cell if k not in ("lr", "clip", "init", "schedule")]
    return make_schedule(cell["schedule"], **{k: cell[k] for k in names if cell.get(k) is not None})


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated study: the grid of cells and how to train and judge each restart.

    Build one with :func:`load_search_space` or :func:`parse_search_space`.
    """

    study: str
    text: str = dataclasses.field(repr=False)  # the file as written, stored with the study
    task: TaskConfig
    optimizer: OptimizerConfig
    grid: GridConfig = dataclasses.field(hash=False)  # holds lists
    restarts: int
    base_seed: int
    success: Criterion
    pack_size: int | None  # None: let the runner choose ("auto")
    resources: dict[str, float] = dataclasses.field(hash=False)  # per pack, as Ray takes them
    source: str = "<string>"
    _cells: tuple[FrozenMap, ...] = dataclasses.field(default=(), repr=False)

    def cells(self) -> list[FrozenMap]:
        """Distinct grid cells, init-major and noise-fastest, so arms sit side by side.

        Every cell has the keys lr, clip, init, schedule, eta, gamma (None where a
        coordinate does not apply) plus any parameters of user schedules.
        """
        return list(self._cells)

    def axes(self) -> dict[str, list[Any]]:
        """Distinct values of each coordinate over all cells (e.g. for Optuna categoricals)."""
        keys = _unique([*GRID_KEYS, *(k for cell in self._cells for k in cell)])
        return {k: _unique(cell[k] for cell in self._cells) for k in keys}

    def restart_specs(self, cells: Iterable[Mapping[str, Any]] | None = None) -> list[RestartSpec]:
        """``len(cells) * restarts`` specs, cell-major; restart k has the same seed in every cell."""
        chosen = self._cells if cells is None else [FrozenMap(c) for c in cells]
        seeds = [restart_seed(k, base_seed=self.base_seed) for k in range(self.restarts)]
        specs = []
        for cell in chosen:
            schedule = cell_schedule(cell)
            specs += [RestartSpec(params=cell, restart=k, seed=seed, lr=float(cell["lr"]), schedule=schedule,
                                  clip_norm=cell["clip"], init=cell["init"]) for k, seed in enumerate(seeds)]
        return specs

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts: study, cells, restarts_per_cell, total_restarts, then details."""
        return {
            "study": self.study,
            "cells": len(self._cells),
            "restarts_per_cell": self.restarts,
            "total_restarts": len(self._cells) * self.restarts,
            "task": self.task.name,
            "success": str(self.success),
            "axes": self.axes(),
        }


def _expand(model: _SpaceModel, *, source: str, max_cells: int, max_restarts: int) -> tuple[FrozenMap, ...]:
    grid = model.grid
    lrs, clips, inits = _unique(grid.lr), _unique(grid.clip), _unique(grid.init)
    blocks = [block.axes() for block in grid.noise]
    settings = sum(math.prod(len(v) for v in axes.values()) for axes in blocks)
    upper = len(lrs) * len(clips) * len(inits) * settings
    if upper > max_cells:  # checked before expanding, so a runaway grid costs nothing
        raise SearchSpaceError(
            f"{source}: grid: expected at most {max_cells} cells (max_cells), got {upper} = {len(lrs)} lr x "
            f"{len(clips)} clip x {len(inits)} init x {settings} noise settings")
    noise = []
    for i, (block, axes) in enumerate(zip(grid.noise, blocks)):
        for combo in itertools.product(*axes.values()):
            kwargs = dict(zip(axes, combo))
            try:
                schedule = make_schedule(block.schedule, **kwargs)
            except Exception as exc:  # a user schedule's own check; report it, not a traceback
                shown = ", ".join(f"{k}={_show(v)}" for k, v in kwargs.items())
                detail = " ".join(str(exc).split())
                raise SearchSpaceError(f"{source}: grid.noise[{i}]: schedule {block.schedule!r} rejected "
                                       f"{shown or 'no parameters'}: {detail}") from None
            noise.append(schedule.params() if dataclasses.is_dataclass(schedule)
                         else {"schedule": block.schedule, **kwargs})
    blank = dict.fromkeys(_unique([*GRID_KEYS, *(k for params in noise for k in params)]))
    cells = tuple(_unique(FrozenMap({**blank, "lr": lr, "clip": clip, "init": init, **params})
                          for init, clip, lr, params in itertools.product(inits, clips, lrs, noise)))
    if len(cells) * model.restarts > max_restarts:
        raise SearchSpaceError(
            f"{source}: restarts: expected at most {max_restarts} restarts in total (max_restarts), got "
            f"{len(cells)} cells x {model.restarts} = {len(cells) * model.restarts}")
    return cells


# --- loading --------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate and non-string keys instead of guessing."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key_node.tag != "tag:yaml.org,2002:merge" and not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f"keys must be strings, got {_show(key)}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 reads 1e-3 (no dot) as a string; read it as the number everyone means.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    empty = f"{source}: the file is empty; expected a mapping with keys study, task, grid, restarts, success"
    if not text.strip():
        raise SearchSpaceError(empty)
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise SearchSpaceError(f"{source}: {where}malformed YAML: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: e.g. a date 2024-13-45
        raise SearchSpaceError(f"{source}: malformed YAML: {' '.join(str(exc).split()) or 'nested too deeply'}") from None
    if data is None:  # only comments
        raise SearchSpaceError(empty)
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{source}: expected a mapping at the top level (study, task, grid, ...), "
                               f"got {_show(data)}")
    return data


def parse_search_space(text: str, *, source: str = "<string>", max_cells: int | None = None,
                       max_restarts: int | None = None) -> SearchSpace:
    """Validate a search space given as YAML text; ``source`` names it in error messages.

    ``max_cells`` / ``max_restarts`` override the file's own caps (defaults
    10,000 cells and 1,000,000 restarts). Raises :class:`SearchSpaceError`.
    """
    data = _read_yaml(text, source)
    try:
        model = _SpaceModel.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
        raise SearchSpaceError(f"{source}: {_describe(errors[0])}{more}") from None
    cells = _expand(model, source=source,
                    max_cells=max_cells or model.max_cells or DEFAULT_MAX_CELLS,
                    max_restarts=max_restarts or model.max_restarts or DEFAULT_MAX_RESTARTS)
    success = Criterion(metric=model.success.metric, op=model.success.op, threshold=model.success.threshold)
    return SearchSpace(
        study=model.study, text=text, task=model.task, optimizer=model.optimizer, grid=model.grid,
        restarts=model.restarts, base_seed=model.base_seed, success=success, pack_size=model.pack_size,
        resources=dict(model.resources), source=source, _cells=cells,
    )


def load_search_space(path: str | Path, *, max_cells: int | None = None,
                      max_restarts: int | None = None) -> SearchSpace:
    """Read and validate a search-space file. Raises :class:`SearchSpaceError`.

    Example::

        space = load_search_space("search_spaces/demo.yaml")
        space.summary()  # {'study': 'demo-noise', 'cells': 2, 'restarts_per_cell': 24, ...}
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SearchSpaceError(f"{path}: expected a UTF-8 text file") from None
    except OSError as exc:
        raise SearchSpaceError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    return parse_search_space(text, source=str(path), max_cells=max_cells, max_restarts=max_restarts)
