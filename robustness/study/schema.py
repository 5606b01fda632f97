"""The search-space YAML schema: pydantic models for each section and the checks behind them.

:class:`~robustness.study.search_space.SearchSpace` is built from the ``_SpaceModel``
validated here; grid expansion and file loading live in :mod:`robustness.study.search_space`.

Each field's type is a strict check (``_number``, ``_integer``, ``_choice``, ...):
"3" is not an integer and true is not a number. A failed check, and any other
pydantic error, becomes one line via :func:`_describe`: the key path, what was
expected and what was given, e.g. ``grid.noise[1].eta[0]: expected a number > 0, got -1``.
The keys are documented in ``search_spaces/README.md``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Optional, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from robustness.criterion import OPERATORS
from robustness.noise import SCHEDULES
from robustness.training.config import (
    DEFAULT_LR_SCHEDULE,
    DEFAULT_OPTIMIZER,
    LR_SCHEDULE_DEFAULTS,
    LR_SCHEDULES,
    OPTIMIZER_DEFAULTS,
    OPTIMIZERS,
    RNGS,
)

__all__ = [
    "GRID_KEYS", "GridConfig", "NoiseBlock", "OptimizerConfig", "TaskConfig", "known_inits", "known_optimizers",
    "known_tasks",
]

GRID_KEYS = ("lr", "clip", "init", "schedule", "eta", "gamma")  # every cell has all six


def known_tasks() -> list[str]:
    from robustness.training.tasks import (
        TASKS,  # torch: loaded only once a file names a task
    )

    return sorted(TASKS)


def known_optimizers() -> list[str]:
    return sorted(OPTIMIZERS)


def known_inits() -> list[str]:
    from robustness.training.models import INIT_SCHEMES

    return sorted(INIT_SCHEMES)


def _unique(values: Iterable[Any]) -> list[Any]:
    """Distinct values in first-seen order (0.1 listed twice is one grid value)."""
    return list(dict.fromkeys(values))


# --- scalar checks ---------------------------------------------------------------
# Each check returns the cleaned value or raises _Bad; _plain turns that into a
# pydantic error whose context carries our one-line message and any sub-path.


class _Bad(Exception):  # noqa: N818 (a control-flow signal inside validation, never raised to users)
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


def _show(value: Any, limit: int = 60) -> str:
    """A short, one-line, YAML-flavoured rendering of a user value, at most ``limit`` characters.

    Rendering stops once the budget is spent, so a huge or deeply nested value
    costs no more than what is printed.
    """
    parts: list[str] = []
    size = 0

    def emit(text: str) -> bool:
        nonlocal size
        parts.append(text)
        size += len(text)
        return size <= limit

    def walk(v: Any, depth: int) -> bool:
        if v is None:
            return emit("null")
        if isinstance(v, bool):
            return emit(str(v).lower())
        if isinstance(v, Mapping):
            if not v:
                return emit("a mapping {}")
            if not emit("a mapping with keys "):
                return False
            for i, key in enumerate(v):
                if (i and not emit(", ")) or not emit(str(key)[: limit + 1]):
                    return False
            return True
        if isinstance(v, (list, tuple)):
            if depth > 20 or not emit("["):
                return emit("...")
            for i, item in enumerate(v):
                if (i and not emit(", ")) or not walk(item, depth + 1):
                    return False
            return emit("]")
        text = repr(v[: limit + 1]) if isinstance(v, str) else str(v)[: limit + 1]
        return emit(text)

    walk(value, 0)
    text = "".join(parts).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


def _seed(value: Any) -> int:
    # Seeds are mixed by NumPy's SeedSequence and stored as 64-bit integers: refuse what would not fit.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise _Bad("an integer >= 0 and < 2**63", value)
    return value


SeedInt = Annotated[int, _plain(_seed), Field(description="an integer >= 0 and < 2**63")]
Cap = Annotated[Optional[int], _plain(_or(_integer(ge=1))), Field(description="an integer >= 1")]
StudyName = Annotated[str, _plain(_pattern("a name made of letters, digits, '_', '.' and '-'",
                                           r"[A-Za-z0-9_.-]{1,128}"))]
TaskName = Annotated[str, _plain(_pattern("a task name or an import path 'package.module:Class'", r"[A-Za-z0-9_.:-]{1,200}"))]
OptimizerName = Annotated[str, _plain(_choice("a known optimizer", known_optimizers))]
RngName = Annotated[str, _plain(_choice("a random-stream kind", lambda: RNGS))]
Momentum = Annotated[Optional[float], _plain(_number(ge=0, lt=1))]
Betas = Annotated[Optional[tuple[float, float]], _plain(_betas)]
PosFloat = Annotated[Optional[float], _plain(_number(gt=0))]
def _schedule_name(value: Any) -> str:
    """A registered schedule, an installed plugin's entry point, or ``package.module:Class``."""
    from robustness.noise import SCHEDULE_GROUP, schedule_class
    from robustness.plugins import entry_point_names

    known = ", ".join(sorted({*SCHEDULES, *entry_point_names(SCHEDULE_GROUP)}))
    if not isinstance(value, str):
        raise _Bad(f"a registered noise schedule (one of: {known})", value)
    try:
        schedule_class(value)
    except ValueError as e:
        if ":" in value:  # an import path that failed: say why, in the plugin loader's words
            raise _error(str(e)) from None
        raise _Bad(f"a registered noise schedule (one of: {known}) or an import path 'package.module:Class'",
                   value) from None
    return value


ScheduleName = Annotated[str, _plain(_schedule_name)]
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


class TaskConfig(BaseModel):
    """What every restart trains: the task (its name and its own fields) and how long.

    ``steps`` counts parameter updates. Every other key is a field of the task's
    class, checked against the field's type and then by the task itself
    (:class:`~robustness.training.tasks.TaskFieldError`), so a plugin's keys get
    the same one-line errors as the built-in ones.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: TaskName = Field(description="a task: a built-in name (e.g. deep_mlp), a plugin's name, or package.module:Class")
    steps: PosInt = Field(description="the number of updates, an integer >= 1")
    batch_size: PosInt = 128
    eval_every: PosInt = 100
    # generator: per-restart torch generators (the plain loop's streams); philox: keyed
    # streams drawn for the whole pack at once, the GPU path (robustness.training.philox).
    rng: RngName = "generator"

    @model_validator(mode="after")
    def _task_fields(self) -> TaskConfig:
        if self.eval_every > self.steps:  # a learning curve needs at least one point
            default = "" if "eval_every" in self.model_fields_set else " (the default)"
            raise _error(f"expected an integer <= task.steps ({self.steps}), got {self.eval_every}{default}",
                         ("eval_every",))
        from robustness.plugins import PluginError
        from robustness.training.tasks import TaskFieldError, task_class, task_fields

        try:
            cls = task_class(self.name)
        except PluginError as e:
            raise _error(str(e).removeprefix(f"task {self.name!r}: "), ("name",)) from None
        fields = task_fields(cls)
        given = dict(self.model_extra or {})
        allowed = ["name", "steps", "batch_size", "eval_every", "rng", *fields]
        hints = typing.get_type_hints(cls)
        for key, value in given.items():
            if key not in fields:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise _error(f"unknown key{hint}; expected one of: {', '.join(allowed)}", (key,))
            try:
                given[key] = _typed(hints.get(key, Any))(value)
            except _Bad as bad:
                raise _error(str(bad), (key, *bad.at)) from None
        try:
            cls(**given)
        except TaskFieldError as e:
            value = given.get(e.field, getattr(fields.get(e.field), "default", None))
            raise _error(f"expected {e.expected}, got {_show(value)}", (e.field,)) from None
        except Exception as e:  # noqa: BLE001 (a plugin's own check: report it, not a traceback)
            raise _error(f"task {self.name!r} refused its fields: {' '.join(str(e).split()) or type(e).__name__}") from None
        self.__pydantic_extra__.update(given)  # the checked values (an int given for a float, as a float)
        return self

    def fields(self) -> dict[str, Any]:
        """The task's own fields, defaults included (what the task is built with)."""
        from robustness.training.tasks import task_class, task_fields

        given = dict(self.model_extra or {})
        out = {}
        for name, field in task_fields(task_class(self.name)).items():
            if name in given:
                out[name] = given[name]
            elif field.default is not dataclasses.MISSING:
                out[name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                out[name] = field.default_factory()
        return out

    def build(self) -> Any:
        """The task object every restart trains."""
        from robustness.training.tasks import make_task

        return make_task(self.name, **dict(self.model_extra or {}))

    def __getattr__(self, name: str) -> Any:
        # A task field the file left at its default reads as that default (space.task.depth).
        if not name.startswith("_"):
            try:
                fields = self.fields()
            except Exception:  # noqa: BLE001 (an unresolvable task: plain attribute error below)
                fields = {}
            if name in fields:
                return fields[name]
        return super().__getattr__(name)  # type: ignore[misc]


def _typed(tp: Any) -> Callable[[Any], Any]:
    """The strict check for a task field of type ``tp`` (int, float, bool, str, X | None, Literal, list)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and type(None) in args:
            check = _typed(inner[0])
            return _or(check, expect=f"{_expectation(inner[0])} or null")
        return _scalar
    if origin is typing.Literal:
        return _choice("one of the listed values", lambda: [str(a) for a in args])
    if origin in (list, tuple) or tp in (list, tuple):
        item = _typed(args[0]) if args else _scalar
        return _list_of(item, "values")
    if tp is bool:
        return _flag
    if tp is int:
        return _any_integer
    if tp is float:
        return _number()
    if tp is str:
        return _pattern("a string", r"(?s).*")
    return _scalar


def _expectation(tp: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, "a value")


def _any_integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad("an integer", value)
    return value


# --- the optimizer and its learning-rate schedule ------------------------------------
Nesterov = Annotated[Optional[bool], _plain(_flag)]
WeightDecay = Annotated[Optional[float], _plain(_number(ge=0))]
LrScheduleName = Annotated[str, _plain(_choice("a known lr schedule", lambda: LR_SCHEDULES))]
StepSize = Annotated[Optional[int], _plain(_integer(ge=1))]
Decay = Annotated[Optional[float], _plain(_number(gt=0))]
FinalFactor = Annotated[Optional[float], _plain(_number(ge=0))]


def _own_keys(model: type[BaseModel], data: Any, table: Mapping[str, Mapping[str, Any]], default: str,
              shared: tuple[str, ...]) -> Any:
    """Refuse the keys of ``model`` that don't apply to ``data["name"]``; fill in that name's defaults.

    ``table`` (from robustness.training.config) maps each name to its own keys and
    their defaults (None: no default); ``shared`` keys apply to every name.
    """
    if not isinstance(data, dict) or data.get("name", default) not in table:
        return data  # not a mapping, or an unknown name: the field checks report it
    name = data.get("name", default)
    allowed = ["name", *table[name], *shared]
    for key in data:
        if key in model.model_fields and key not in allowed:  # other keys: pydantic's "unknown key"
            raise _error(f"not an option of {name}; expected only: {', '.join(allowed)}", (key,))
    return {**{k: v for k, v in table[name].items() if v is not None}, **data}


class _LRScheduleConfig(_Model):
    """The pack's learning-rate schedule (robustness.training.config.LRSchedule); keys that don't apply are None."""

    name: LrScheduleName = DEFAULT_LR_SCHEDULE
    warmup: NonNegInt = 0
    step_size: StepSize = None
    gamma: Decay = None
    final_factor: FinalFactor = None

    @model_validator(mode="before")
    @classmethod
    def _applicable(cls, data: Any) -> Any:
        return _own_keys(cls, data, LR_SCHEDULE_DEFAULTS, DEFAULT_LR_SCHEDULE, ("warmup",))

    @model_validator(mode="after")
    def _required(self) -> _LRScheduleConfig:
        if self.name == "step" and self.step_size is None:
            raise _error("missing required key for schedule 'step'; expected the updates between decays, "
                         "an integer >= 1", ("step_size",))
        return self


class OptimizerConfig(_Model):
    """The base optimizer and the pack's LR schedule; keys that don't apply to ``name`` are None."""

    name: OptimizerName = DEFAULT_OPTIMIZER
    momentum: Momentum = None
    nesterov: Nesterov = None
    weight_decay: WeightDecay = None
    betas: Betas = None
    eps: PosFloat = None
    lr_schedule: _LRScheduleConfig = Field(default_factory=_LRScheduleConfig)

    @model_validator(mode="before")
    @classmethod
    def _applicable(cls, data: Any) -> Any:
        return _own_keys(cls, data, OPTIMIZER_DEFAULTS, DEFAULT_OPTIMIZER, ("lr_schedule",))

    @field_serializer("betas", when_used="json")
    def _betas_as_list(self, betas: tuple[float, float] | None) -> list[float] | None:
        # pydantic's own tuple serializer warns on every JSON dump (the fingerprint) of a checked tuple
        return None if betas is None else list(betas)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimizerConfig:
        if self.nesterov and not self.momentum:  # torch.optim.SGD refuses it too
            raise _error(f"expected momentum > 0 with nesterov: true, got momentum {_show(self.momentum)}",
                         ("nesterov",))
        return self


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
        from robustness.noise import schedule_class

        cls = schedule_class(self.schedule)
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


def _as_grids(value: Any) -> Any:
    """One grid (a mapping) or a union of grids (a non-empty list of mappings), as a list."""
    if isinstance(value, Mapping):
        return [value]
    if not isinstance(value, list) or not value:
        raise _error(f"expected a mapping with at least lr and noise, or a non-empty list of such mappings, "
                     f"got {_show(value)}")
    return value


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
    # A list of grids is their union: arms that are not a full product (the paper's
    # Table 1 crosses clip with the simple init only) are one grid each.
    grid: Annotated[tuple[GridConfig, ...], BeforeValidator(_as_grids)] = Field(
        description="a mapping with at least lr and noise, or a list of such mappings")
    restarts: PosInt = Field(description="the number of restarts per cell, an integer >= 1")
    base_seed: SeedInt = 0
    success: _SuccessConfig = Field(description="a mapping with metric, op and threshold")
    pack_size: PackSize = None
    resources: _ResourcesConfig = Field(default_factory=_ResourcesConfig)
    max_cells: Cap = None
    max_restarts: Cap = None


# --- pydantic errors as one-line messages ---------------------------------------


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
