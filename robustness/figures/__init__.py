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
  the learning curves per arm, pooled or split by any axis (one panel per value).
- :func:`ecdf_data` / :func:`plot_ecdf`: empirical CDF of the final metric per
  arm, pooled or split the same way.
- :func:`restart_curves_data` / :func:`plot_restart_curves`: one cell's
  restarts curve by curve over the cell's band, failures and divergence marked
  (:func:`restart_curves_by_cell`: many cells, capped, for a dropdown).
- :func:`importance_data` / :func:`plot_importance`: which axes move the
  success rate most (fANOVA), beside each axis's success rate per value.
- :func:`paper_tables_data`: best / mean per setting and successes at several thresholds.

An arm is a noise setting (schedule, eta, gamma). Arms are listed baseline
first, then by eta, and keep one colour across figures. Bad inputs (an axis
the study does not have) raise :class:`FigureError`, a one-line
:class:`~robustness.errors.RobustnessError`.
"""

from __future__ import annotations

from robustness.figures._common import FigureError, arm_label, metric_direction
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
from robustness.figures._importance import (
    ImportanceData,
    MarginalPanel,
    importance_data,
    plot_importance,
)
from robustness.figures._restarts import (
    CellRestartCurves,
    RestartCurve,
    RestartCurvesData,
    plot_restart_curves,
    restart_curves_by_cell,
    restart_curves_data,
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
    "CellRestartCurves",
    "CurveBand",
    "CurveBandData",
    "Curves",
    "EcdfCurve",
    "EcdfData",
    "FigureError",
    "ForestData",
    "HeatmapData",
    "HeatmapPanel",
    "ImportanceData",
    "MarginalPanel",
    "PaperTables",
    "RestartCurve",
    "RestartCurvesData",
    "ScheduleData",
    "arm_label",
    "curve_arrays",
    "curve_band_data",
    "default_thresholds",
    "ecdf_data",
    "forest_data",
    "heatmap_data",
    "importance_data",
    "metric_direction",
    "paper_tables_data",
    "plot_curve_bands",
    "plot_ecdf",
    "plot_forest",
    "plot_heatmap",
    "plot_importance",
    "plot_restart_curves",
    "plot_schedules",
    "restart_curves_by_cell",
    "restart_curves_data",
    "schedule_data",
    "update_grid",
]
