"""Finding user code: tasks and noise schedules named by import path or installed as entry points.

A search space names a task or a schedule in one of three ways, tried in order:

1. a built-in name (``deep_mlp``, ``annealed``);
2. an entry point of an installed package, in the group ``robustness.tasks`` or
   ``robustness.schedules`` (``pip install my-pkg`` extends the tool, no flags);
3. an import path ``package.module:Name`` (``my_pkg.tasks:SmallCNN``), resolved
   from the current directory too, as ``python -m`` would.

Every failure is a :class:`PluginError` whose message is one line naming what
was looked up and why it failed, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable
from typing import Any

from robustness.errors import RobustnessError

__all__ = ["PluginError", "entry_point_names", "is_import_path", "load_entry_point", "load_import_path"]


class PluginError(RobustnessError, ValueError):
    """A plugin named in a search space could not be loaded."""


def is_import_path(name: str) -> bool:
    """``package.module:Name``: a module path, a colon, an attribute path."""
    module, sep, attr = name.partition(":")
    return bool(sep and module and attr) and all(part.isidentifier() for part in [*module.split("."), *attr.split(".")])


def load_import_path(name: str, *, what: str, check: Callable[[Any], str | None] | None = None) -> Any:
    """The object at ``package.module:Name``; ``check(obj)`` returns why it is the wrong kind, or None."""
    if not is_import_path(name):
        raise PluginError(f"{what} {name!r}: expected a registered name or an import path 'package.module:Name'")
    module_name, _, attr = name.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        # A user's own module next to their search space, as `python -m` would find it.
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.startswith(e.name):
            raise PluginError(f"{what} {name!r}: no module named {e.name!r} (is it installed, or in the "
                              f"current directory?)") from None
        raise PluginError(f"{what} {name!r}: importing {module_name} failed: {_one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 (a user module that fails on import: say so in one line)
        raise PluginError(f"{what} {name!r}: importing {module_name} failed: {_one_line(e)}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"{what} {name!r}: module {module_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    problem = check(obj) if check is not None else None
    if problem:
        raise PluginError(f"{what} {name!r}: {problem}")
    return obj


def entry_point_names(group: str) -> list[str]:
    """Names installed packages register in ``group`` (e.g. ``robustness.tasks``)."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=group)})


def load_entry_point(group: str, name: str, *, what: str, check: Callable[[Any], str | None] | None = None) -> Any:
    """The object an installed package registers as ``name`` in ``group``, or None if none does."""
    found = [ep for ep in importlib.metadata.entry_points(group=group) if ep.name == name]
    if not found:
        return None
    try:
        obj = found[0].load()
    except Exception as e:  # noqa: BLE001 (a broken plugin package: say so in one line)
        raise PluginError(f"{what} {name!r} (entry point {found[0].value!r}): loading failed: {_one_line(e)}") from None
    problem = check(obj) if check is not None else None
    if problem:
        raise PluginError(f"{what} {name!r} (entry point {found[0].value!r}): {problem}")
    return obj


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
