"""Figures of a restart study, computing kept apart from drawing (as optuna's ``_get_edf_info``/``plot_edf``).

Each figure is a pair: ``<name>_data(...)`` computes plain numbers (frozen
dataclasses of NumPy arrays and tuples, from :mod:`robustness.stats`) and
``plot_<name>(data)`` only turns them into a ``plotly.graph_objects.Figure``.
Tests check the numbers; the report (:mod:`robustness.report`) draws them.

- :func:`heatmap_data` / :func:`plot_heatmap`: success rate per cell, η by
  learning rate, one panel per (init, clip); k/n and the interval in the hover.
- :func:`forest_data` / :func:`plot_forest`: noise-minus-baseline risk
  differences with intervals and adjusted p-values.
- :func:`schedule_data` / :func:`plot_schedules`: σ_t of each schedule beside
  its pooled success rate.
- :func:`curve_band_data` / :func:`plot_curve_bands`: median and quartiles of
  the learning curves per arm.
- :func:`ecdf_data` / :func:`plot_ecdf`: empirical CDF of the final metric per arm.
- :func:`paper_tables_data`: best / mean per setting and successes at several thresholds.

An arm is a noise setting (schedule, eta, gamma). Arms are listed baseline
first, then by eta, and keep one colour across figures.
"""

from __future__ import annotations

from robustness.figures._common import arm_label, metric_direction
from robustness.figures._curves import (
    CurveBand,
    CurveBandData,
    Curves,
    curve_arrays,
    curve_band_data,
    plot_curve_bands,
)
from robustness.figures._ecdf import EcdfCurve, EcdfData, ecdf_data, plot_ecdf
from robustness.figures._forest import ForestData, forest_data, plot_forest
from robustness.figures._heatmap import (
    HeatmapData,
    HeatmapPanel,
    heatmap_data,
    plot_heatmap,
)
from robustness.figures._schedules import (
    ScheduleData,
    plot_schedules,
    schedule_data,
    update_grid,
)
from robustness.figures._tables import (
    PaperTables,
    default_thresholds,
    paper_tables_data,
)

__all__ = [
    "CurveBand",
    "CurveBandData",
    "Curves",
    "EcdfCurve",
    "EcdfData",
    "ForestData",
    "HeatmapData",
    "HeatmapPanel",
    "PaperTables",
    "ScheduleData",
    "arm_label",
    "curve_arrays",
    "curve_band_data",
    "default_thresholds",
    "ecdf_data",
    "forest_data",
    "heatmap_data",
    "metric_direction",
    "paper_tables_data",
    "plot_curve_bands",
    "plot_ecdf",
    "plot_forest",
    "plot_heatmap",
    "plot_schedules",
    "schedule_data",
    "update_grid",
]
