"""What the dashboard reads from storage, cached per study and re-read only when the study changed.

The page never ships restarts to the browser: each view is computed here from
the study's :class:`~robustness.table.RestartTable` (one summary query, about
1 s for 100k restarts on SQLite) and sent as a figure of aggregates. The table
is read again only when the study's restart count moved, so changing the
threshold or switching tabs costs NumPy work, not a database round trip.
Learning curves are the expensive part (one row per evaluation point): they
are read on demand, for one cell at a time in the drill-down, and for the
bands from at most :data:`MAX_BAND_RESTARTS` restarts (the first restarts of
every cell, stated on the page).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from robustness.criterion import Criterion
from robustness.figures import Curves, curve_arrays
from robustness.figures._common import arm_axes, setting_axes
from robustness.records import FrozenMap, RestartOutcome
from robustness.storage import RestartStore, StorageError, StudySummary, steps_per_restart
from robustness.table import RestartTable

__all__ = ["MAX_BAND_RESTARTS", "DashboardData", "StudyData"]

# Curve bands of bigger studies use the first restarts of each cell up to this many in all.
MAX_BAND_RESTARTS = 10_000
# The study list (one aggregate query: about 0.5 s over 100k restarts on SQLite) is shared by the
# callbacks of one page refresh for this long.
LIST_TTL_S = 1.0
# σ_t is drawn over this many updates when the study did not record its length.
DEFAULT_STEPS = 1000


@dataclasses.dataclass(frozen=True, eq=False)
class StudyData:
    """One study as the dashboard sees it.

    Attributes:
        name: the study's name.
        table: every recorded restart (columnar).
        attrs: the study's user attributes (search space, criterion, versions...).
        criterion: the study's own success criterion, if it recorded one in a readable form.
        axes: the grid axes (noise axes included), sorted.
        settings: the non-noise axes.
        arms: the noise axes.
        steps: updates per restart (from the search space), for σ_t plots.
    """

    name: str
    table: RestartTable
    attrs: Mapping[str, Any]
    criterion: Criterion | None
    axes: tuple[str, ...]
    settings: tuple[str, ...]
    arms: tuple[str, ...]
    steps: int

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(sorted(self.table.metrics))


def _criterion(attrs: Mapping[str, Any]) -> Criterion | None:
    from robustness.report import ReportError, parse_criterion

    text = attrs.get("criterion")
    if not isinstance(text, str):
        return None
    try:
        return parse_criterion(text)
    except ReportError:
        return None


class DashboardData:
    """Read-only access to one storage, with per-study caches shared by every request.

    Thread-safe: Flask serves requests from several threads, and two requests
    for the same stale study read it once.
    """

    def __init__(self, store: RestartStore, *, list_ttl_s: float = LIST_TTL_S) -> None:
        self.store = store
        self.list_ttl_s = list_ttl_s
        self._lock = threading.Lock()
        self._listed: tuple[float, list[StudySummary]] | None = None
        self._studies: dict[str, tuple[int, StudyData]] = {}  # name -> (restart count when read, data)
        self._bands: dict[str, tuple[int, Curves]] = {}

    @property
    def url(self) -> str:
        """The storage URL with any password masked (what the page and messages show)."""
        from robustness.storage._config import safe_url

        return safe_url(self.store.url)

    def studies(self) -> list[StudySummary]:
        """Every study with its counts; one query serves every callback of a refresh (within ``list_ttl_s``)."""
        now = time.monotonic()
        listed = self._listed
        if listed is not None and now - listed[0] < self.list_ttl_s:
            return listed[1]
        studies = self.store.studies()
        self._listed = (now, studies)
        return studies

    def summary(self, name: str) -> StudySummary:
        for s in self.studies():
            if s.name == name:
                return s
        raise StorageError(f"no study named {name!r} in {self.url}")

    def study(self, name: str) -> StudyData:
        """The study, read again only when its restart count changed since the last read."""
        count = self.summary(name).n_restarts
        with self._lock:
            cached = self._studies.get(name)
            if cached is not None and cached[0] == count:
                return cached[1]
            attrs = self.store.study_attrs(name)
            table = self.store.read_table(name)
            arms = arm_axes(table)
            data = StudyData(
                name=name, table=table, attrs=attrs, criterion=_criterion(attrs), axes=tuple(sorted(table.params)),
                settings=setting_axes(table), arms=arms, steps=steps_per_restart(attrs) or DEFAULT_STEPS,
            )
            self._studies[name] = (len(table), data)
            return data

    def band_curves(self, name: str) -> tuple[Curves, int]:
        """Curves grouped per cell for the bands (every axis kept, so any split works); and restarts read."""
        data = self.study(name)
        with self._lock:
            cached = self._bands.get(name)
            if cached is not None and cached[0] == len(data.table):
                curves = cached[1]
            else:
                outcomes = self._band_outcomes(name, data)
                curves = curve_arrays(outcomes, by=data.axes)
                self._bands[name] = (len(data.table), curves)
        return curves, sum(v.shape[0] for _, v in curves.values())

    def _band_outcomes(self, name: str, data: StudyData) -> list[RestartOutcome]:
        n = len(data.table)
        if n <= MAX_BAND_RESTARTS:
            return list(self.store.iter_outcomes(name))
        cells = cells_of(data.table)
        per_cell = max(1, MAX_BAND_RESTARTS // max(1, len(cells)))
        return list(self.store.iter_outcomes(name, cells=cells, max_restart=per_cell))

    def cell_outcomes(self, name: str, cell: Mapping[str, Any]) -> list[RestartOutcome]:
        """One cell's restarts with their curves (one filtered query)."""
        return sorted(self.store.iter_outcomes(name, cells=[dict(cell)]), key=lambda o: o.restart)

    def progress(self, name: str) -> Any:
        return self.store.read_progress(name)


def cells_of(table: RestartTable, axes: Sequence[str] | None = None) -> list[FrozenMap]:
    """The table's distinct cells (over ``axes``, default every axis), in a stable (sorted) order."""
    from robustness.stats._groups import group_rows

    groups = group_rows(table, axes)
    return [FrozenMap(dict(zip(groups.axes, key))) for key in groups.keys]
