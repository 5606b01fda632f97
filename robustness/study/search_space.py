"""Search spaces: one YAML file describes one robustness study, and is validated here.

A study is a grid of cells (learning rate x clip x init x noise setting) and
``restarts`` random restarts per cell. Restart ``k`` of *every* cell gets the same
seed (:func:`robustness.training.spec.restart_seed`), so a noise arm and its no-noise
baseline start from the same initialization and see the same batches; only the
noise stream, derived separately from that seed, differs. That pairing is what
lets the statistics use McNemar's test instead of comparing independent samples.

This module reads the YAML, expands the grid and builds the :class:`SearchSpace`;
the schema itself (the section models and their field checks) is in
:mod:`robustness.study.schema`, and its classes are re-exported here.

The schema is documented in ``search_spaces/README.md``. Every user error becomes
one :class:`SearchSpaceError` line naming the file, the key path and what was
expected, e.g. ``demo.yaml: grid.noise[1].eta[0]: expected a number > 0, got -1``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from robustness.criterion import Criterion
from robustness.errors import RobustnessError
from robustness.noise import make_schedule, schedule_from_cell
from robustness.records import FrozenMap
from robustness.study.schema import (
    GRID_KEYS,
    GridConfig,
    NoiseBlock,
    OptimizerConfig,
    TaskConfig,
    _describe,
    _show,
    _SpaceModel,
    _unique,
    known_inits,
    known_optimizers,
    known_tasks,
)
from robustness.training.spec import RestartSpec, restart_seed

__all__ = [
    "GridConfig", "NoiseBlock", "OptimizerConfig", "SearchSpace", "SearchSpaceError", "TaskConfig",
    "known_inits", "known_optimizers", "known_tasks", "load_search_space",
    "parse_search_space",
]

DEFAULT_MAX_CELLS = 10_000
DEFAULT_MAX_RESTARTS = 1_000_000
# Ceilings no cap can raise: a plan holds every restart spec in memory (about 0.5 KB each),
# so a study beyond these is refused from the axis lengths alone, before anything is
# enumerated or stored.
HARD_MAX_CELLS = 1_000_000
HARD_MAX_RESTARTS = 5_000_000


class SearchSpaceError(RobustnessError, ValueError):
    """A search-space file is invalid. The message is one complete line."""


# --- the validated study ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated study: the grid of cells and how to train and judge each restart.

    Build one with :func:`load_search_space` or :func:`parse_search_space`.
    """

    study: str
    text: str = dataclasses.field(repr=False)  # the file as written, stored with the study
    task: TaskConfig
    optimizer: OptimizerConfig
    grid: tuple[GridConfig, ...] = dataclasses.field(hash=False)  # the union of these grids; they hold lists
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
            schedule = schedule_from_cell(cell)
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


def _grid_settings(grid: GridConfig) -> tuple[list[Any], list[Any], list[Any], list[dict[str, list[Any]]], int]:
    lrs, clips, inits = _unique(grid.lr), _unique(grid.clip), _unique(grid.init)
    blocks = [block.axes() for block in grid.noise]
    settings = sum(math.prod(len(v) for v in axes.values()) for axes in blocks)
    return lrs, clips, inits, blocks, settings


def _noise_settings(grid: GridConfig, blocks: list[dict[str, list[Any]]], *, where: str) -> list[dict[str, Any]]:
    noise = []
    for i, (block, axes) in enumerate(zip(grid.noise, blocks)):
        for combo in itertools.product(*axes.values()):
            kwargs = dict(zip(axes, combo))
            try:
                schedule = make_schedule(block.schedule, **kwargs)
            except Exception as exc:  # noqa: BLE001 (a user schedule's own check: report it, not a traceback)
                shown = ", ".join(f"{k}={_show(v)}" for k, v in kwargs.items())
                detail = " ".join(str(exc).split())
                raise SearchSpaceError(f"{where}.noise[{i}]: schedule {block.schedule!r} rejected "
                                       f"{shown or 'no parameters'}: {detail}") from None
            noise.append(schedule.params() if dataclasses.is_dataclass(schedule)
                         else {"schedule": block.schedule, **kwargs})
    return noise


def _expand(model: _SpaceModel, *, source: str, paths: list[str], max_cells: int,
            max_restarts: int) -> tuple[FrozenMap, ...]:
    """Every grid's cells, in file order, each distinct cell once; ``paths`` name the grids in errors."""
    sizes = [_grid_settings(grid) for grid in model.grid]
    upper = sum(len(lrs) * len(clips) * len(inits) * n for lrs, clips, inits, _, n in sizes)
    max_cells, max_restarts = min(max_cells, HARD_MAX_CELLS), min(max_restarts, HARD_MAX_RESTARTS)
    if upper * model.restarts > max_restarts:  # an upper bound: arithmetic on the axis lengths only
        raise SearchSpaceError(
            f"{source}: restarts: expected at most {max_restarts} restarts in total (max_restarts; the tool's "
            f"ceiling is {HARD_MAX_RESTARTS}), got up to {upper} cells x {model.restarts} = {upper * model.restarts}")
    if upper > max_cells:  # checked before expanding, so a runaway grid costs nothing
        parts = " + ".join(f"{len(lrs)} lr x {len(clips)} clip x {len(inits)} init x {n} noise settings"
                           for lrs, clips, inits, _, n in sizes)
        raise SearchSpaceError(f"{source}: grid: expected at most {max_cells} cells (max_cells), got {upper} = {parts}")
    products = []
    for grid, (lrs, clips, inits, blocks, _), path in zip(model.grid, sizes, paths):
        noise = _noise_settings(grid, blocks, where=f"{source}: {path}")
        products.append((inits, clips, lrs, noise))
    keys = _unique([*GRID_KEYS, *(k for *_, noise in products for params in noise for k in params)])
    blank = dict.fromkeys(keys)
    cells = tuple(_unique(FrozenMap({**blank, "lr": lr, "clip": clip, "init": init, **params})
                          for inits, clips, lrs, noise in products
                          for init, clip, lr, params in itertools.product(inits, clips, lrs, noise)))
    if len(cells) * model.restarts > max_restarts:
        raise SearchSpaceError(
            f"{source}: restarts: expected at most {max_restarts} restarts in total (max_restarts), got "
            f"{len(cells)} cells x {model.restarts} = {len(cells) * model.restarts}")
    return cells


# --- loading --------------------------------------------------------------------------


MAX_FILE_BYTES = 1 << 20  # a search space is a page of YAML; a megabyte is not one
MAX_DEPTH = 32  # the schema nests five levels deep


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases, deep nesting, duplicate and non-string keys.

    Aliases have no use in a search space, and nested aliases expand
    exponentially ("billion laughs"); refusing them at composition costs nothing.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name) are not allowed in a search space; "
                "write the value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key_node.tag != "tag:yaml.org,2002:merge" and not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f"keys must be strings, got {_show(key)}", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {_show(key)}", key_node.start_mark)
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
    if len(text) > MAX_FILE_BYTES:
        raise SearchSpaceError(f"{source}: expected a search space of at most {MAX_FILE_BYTES // 1024} KiB, "
                               f"got {len(text) // 1024} KiB")
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
    one_grid = isinstance(data.get("grid"), Mapping)
    try:
        model = _SpaceModel.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        if one_grid:  # the file wrote one grid, not a list: name its keys as written (grid.lr, not grid[0].lr)
            errors = [{**e, "loc": ("grid", *e["loc"][2:])} if tuple(e["loc"][:2]) == ("grid", 0) else e
                      for e in errors]
        more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
        raise SearchSpaceError(f"{source}: {_describe(errors[0])}{more}") from None
    paths = ["grid"] if one_grid else [f"grid[{i}]" for i in range(len(model.grid))]
    cells = _expand(model, source=source, paths=paths,
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
        if Path(path).is_dir():
            raise SearchSpaceError(f"{path}: expected a search-space file, got a directory")
        if Path(path).stat().st_size > MAX_FILE_BYTES:
            raise SearchSpaceError(f"{path}: expected a search space of at most {MAX_FILE_BYTES // 1024} KiB, "
                                   f"got {Path(path).stat().st_size // 1024} KiB")
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SearchSpaceError(f"{path}: expected a UTF-8 text file") from None
    except OSError as exc:
        raise SearchSpaceError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    return parse_search_space(text, source=str(path), max_cells=max_cells, max_restarts=max_restarts)
