"""Plain-text tables, CSV and JSON for the CLI. No library logic here."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["COMPARISON_COLUMNS", "comparison_rows", "comparison_text", "flatten_cells", "fmt", "render", "text_table"]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Aligned columns; numbers right-aligned."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: ("" if r.get(c) is None else r.get(c)) for c in columns} for r in rows)
    return buf.getvalue().rstrip("\n")


def render(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, format: str) -> str:  # noqa: A002 (the CLI's --format)
    if format == "json":
        return json.dumps(list(rows), indent=2, default=str)
    if format == "csv":
        return _csv(rows, columns)
    return text_table(rows, columns)


def flatten_cells(cells: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    axes: list[str] = []
    for c in cells:
        axes += [k for k in c["params"] if k not in axes]
    # Only the axes that vary are worth a column.
    varying = [a for a in axes if len({json.dumps(c["params"].get(a), default=str) for c in cells}) > 1] or axes
    return [{**{a: c["params"].get(a) for a in varying}, **{k: v for k, v in c.items() if k != "params"}} for c in cells], varying


COMPARISON_COLUMNS = ["cell", "noise", "noise_k/n", "base_k/n", "test", "p_value", "p_adjusted", "risk_diff", "rd_ci", "risk_ratio"]


def comparison_rows(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def arm(params: dict[str, Any]) -> str:
        return ",".join(f"{k}={v}" for k, v in params.items() if v is not None)

    def ci(lo: Any, hi: Any) -> str:
        return "[" + ", ".join("-" if x is None else f"{x:.3g}" for x in (lo, hi)) + "]"

    def noise_only(c: dict[str, Any]) -> dict[str, Any]:
        # The arm's own coordinates: what differs from the baseline of its cell.
        group = c.get("group") or {}
        return {k: v for k, v in c["noise"].items() if k not in group}

    return [{
        "cell": arm(c.get("group") or {}), "noise": arm(noise_only(c)),
        "noise_k/n": f"{c['noise_successes']}/{c['noise_n']}", "base_k/n": f"{c['baseline_successes']}/{c['baseline_n']}",
        "test": c["test"], "p_value": c["p_value"], "p_adjusted": c["p_adjusted"],
        "risk_diff": c["risk_difference"], "rd_ci": ci(c["rd_low"], c["rd_high"]), "risk_ratio": c["risk_ratio"],
    } for c in comparisons]


def comparison_text(comparisons: list[dict[str, Any]]) -> str:
    return text_table(comparison_rows(comparisons), COMPARISON_COLUMNS)
