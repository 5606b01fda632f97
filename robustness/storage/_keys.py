"""A restart's identity and its one-row summary; no Optuna here.

The read path (``robustness stats``, ``status``, the report's tables) needs only
these, and it must not pay for importing Optuna (~0.3 s of a 1 s budget).
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from robustness.records import RestartOutcome

SEED_PARAM = "seed"

# Trial user attribute keys (documented in the package docstring).
ATTR_RESTART = "restart"
ATTR_SUCCESS = "success"
ATTR_DIVERGED = "diverged"
ATTR_DIVERGED_STEP = "diverged_step"
ATTR_WALL_TIME = "wall_time_s"
ATTR_DEVICE = "device"
ATTR_PRIMARY = "primary_metric"
ATTR_TRAIN_LOSS = "curve_train_loss"
METRIC_PREFIX = "metrics."

# A categorical choice must be one of these (Optuna's own rule).
_STORABLE = (type(None), bool, int, float, str)


def plain(name: str, value: Any) -> Any:
    """A grid value as a plain Python scalar Optuna can store, else ``ValueError``."""
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, _STORABLE):
        raise ValueError(
            f"parameter {name!r} = {value!r}: Optuna stores only None, bool, int, float or str"
        )
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"parameter {name!r} is NaN; a grid coordinate must be a real value")
    return value


def _canonical(value: Any) -> Any:
    # Numbers compare by value, so `lr: 1` and `lr: 1.0` name the same cell.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    as_float = float(value)
    if as_float == 0.0:
        return 0.0  # -0.0 and 0.0 are one cell
    return as_float if as_float == value else value


def restart_key(params: Mapping[str, Any], restart: int) -> str:
    """The canonical identity of one restart: sorted-key JSON of the cell and the index.

    Stable across processes and Python versions; ``lr=1`` and ``lr=1.0`` give the
    same key. Example: ``{"params":{"init":"he","lr":0.1},"restart":3}``.
    """
    if isinstance(restart, bool) or not isinstance(restart, numbers.Integral) or restart < 0:
        raise ValueError(f"restart index must be an int >= 0, got {restart!r}")
    cell = {str(k): _canonical(plain(str(k), v)) for k, v in params.items()}
    return json.dumps({"params": cell, "restart": int(restart)}, sort_keys=True, separators=(",", ":"))


def summary(outcome: RestartOutcome, cell: Mapping[str, Any]) -> dict[str, Any]:
    """The restart's row of summary columns in ``robustness_restarts``.

    Everything the statistics read, in one row per restart, so reading a study is
    one indexed scan instead of a pivot over Optuna's param and attribute tables
    (10k restarts: ~1.3M rows there). Written in the transaction that writes the
    trial, so the two never disagree. ``cell`` is the grid coordinates as stock
    Optuna reads them back (through the trial's distributions, so an int on a
    float axis comes back a float); ``metrics`` is JSON with NaN and infinities
    as Python writes them.
    """
    return {
        "cell": cell_text(cell),
        "seed": int(outcome.seed),
        "restart": int(outcome.restart),
        # A diverged restart is a failure whatever the trainer said (as in the user attrs).
        "success": bool(outcome.success) and not outcome.diverged,
        "diverged": bool(outcome.diverged),
        "metrics": json.dumps({str(k): float(v) for k, v in outcome.metrics.items()}, sort_keys=True),
        "primary_metric": str(outcome.primary_metric),
    }


def cell_text(cell: Mapping[str, Any]) -> str:
    """The ``cell`` column's text for ``cell``: sorted-key compact JSON."""
    return json.dumps(dict(cell), sort_keys=True, separators=(",", ":"))


# Spellings tried per cell when looking one up (see cell_texts): 2**8 covers eight
# whole-number axes; past that only the spelling given is looked up.
_MAX_SPELLINGS = 256


def _spellings(name: str, value: Any) -> list[Any]:
    """``value`` as the ``cell`` column may hold it: a whole number as int or float, 0.0 also as -0.0."""
    value = plain(name, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return [value]
    out = [value]
    if float(value).is_integer() and abs(value) < 2**53:
        out += [int(value), float(value)]
    if value == 0:
        out.append(-0.0)
    return list({json.dumps(v): v for v in out}.values())


def cell_texts(cell: Mapping[str, Any]) -> list[str]:
    """Every text of the ``cell`` column that stands for ``cell`` (grid coordinates, no seed).

    The column holds the coordinates as stock Optuna reads them back, so an
    ``lr: 1`` of the file may be stored as ``1.0`` (a float distribution) or
    ``1`` (a categorical): numbers compare by value, as in :func:`restart_key`.
    ``ValueError`` for a value no cell can hold (see :func:`plain`).
    """
    names = sorted(str(k) for k in cell)
    choices = [_spellings(name, cell[name]) for name in names]
    if math.prod(len(c) for c in choices) > _MAX_SPELLINGS:
        choices = [c[:1] for c in choices]
    return list(dict.fromkeys(cell_text(dict(zip(names, combo))) for combo in itertools.product(*choices)))


SUMMARY_COLUMNS = ("cell", "seed", "restart", "success", "diverged", "metrics", "primary_metric")
