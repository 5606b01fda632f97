"""Grouping restarts into cells by their grid coordinates, vectorized.

Grid values are Python objects of mixed types (floats, strings, ``None``), so
``np.unique`` cannot sort them directly. Each axis is factorized once through
a dict (sorted with a type-aware key), and the integer codes are combined into
one int64 key per row and grouped with ``np.unique``: 10k restarts take a few
milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from robustness.table import RestartTable

__all__ = ["Groups", "group_rows"]


@dataclasses.dataclass(frozen=True)
class Groups:
    """Rows grouped by the values of some axes.

    Attributes:
        axes: the grouping axes, in order.
        keys: one tuple of axis values per group, sorted, shape ``(G,)``.
        index: ``(N,)`` int64 group of every row.
    """

    axes: tuple[str, ...]
    keys: list[tuple[Any, ...]]
    index: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        """``(G,)`` int64 rows per group."""
        return np.bincount(self.index, minlength=len(self.keys)).astype(np.int64)

    def count(self, mask: np.ndarray) -> np.ndarray:
        """``(G,)`` int64 number of rows per group where ``mask`` (``(N,)`` bool) holds."""
        return np.bincount(self.index, weights=mask, minlength=len(self.keys)).astype(np.int64)

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """``values`` (shape ``(N,)``) split into one array per group, in group order."""
        order = np.argsort(self.index, kind="stable")
        return np.split(np.asarray(values)[order], np.cumsum(self.sizes)[:-1]) if self.keys else []


def group_rows(table: RestartTable, axes: Sequence[str] | None = None) -> Groups:
    """Group the table's rows by ``axes`` (default: every grid axis).

    Float NaN grid values are treated as ``None`` (both mean "not applicable").
    """
    axes = tuple(sorted(table.params)) if axes is None else tuple(axes)
    missing = [a for a in axes if a not in table.params]
    if missing and len(table):
        raise KeyError(f"no grid axis {missing} in the table; it has {sorted(table.params)}")
    n = len(table)
    if not axes or n == 0:
        keys: list[tuple[Any, ...]] = [()] if n else []
        return Groups(axes=axes, keys=keys, index=np.zeros(n, dtype=np.int64))
    uniques, codes = zip(*(_factorize(table.params[a]) for a in axes))
    sizes = [len(u) for u in uniques]
    if math.prod(sizes) < 2**62:
        # One int64 per row (mixed radix, last axis fastest): a 1-D unique is far
        # faster than np.unique(axis=0) and sorts in the same lexicographic order.
        combined = np.zeros(n, dtype=np.int64)
        for size, code in zip(sizes, codes):
            combined = combined * size + code
        flat, index = np.unique(combined, return_inverse=True)
        rows = np.stack(np.unravel_index(flat, sizes), axis=1)
    else:
        rows, index = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    keys = [tuple(u[c] for u, c in zip(uniques, row)) for row in rows.tolist()]
    return Groups(axes=axes, keys=keys, index=np.asarray(index, dtype=np.int64).reshape(-1))


def _factorize(column: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """Sorted distinct values and ``(N,)`` int64 codes into them."""
    values = column.tolist()
    distinct = set(values)  # each NaN object is its own entry; they are merged below
    uniques = sorted({None if _is_nan(v) else v for v in distinct}, key=_sort_key)
    position = {v: i for i, v in enumerate(uniques)}
    lookup = {v: position[None if _is_nan(v) else v] for v in distinct}
    return uniques, np.fromiter((lookup[v] for v in values), dtype=np.int64, count=len(values))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _sort_key(value: Any) -> tuple[Any, ...]:
    # None first, then numbers, then strings: a stable order for mixed-type axes.
    if value is None:
        return (0,)
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return (1, float(value))
    if isinstance(value, str):
        return (2, value)
    return (3, repr(value))
