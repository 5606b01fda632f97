"""The driver's side of sweep progress: the packs it started, in memory, written about once a second."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from robustness.storage._progress import ALIVE_EVERY_S, DONE, FAILED, RUNNING, PackProgress

if TYPE_CHECKING:
    from robustness.storage._store import RestartStore, StudyRef

# At most one progress write a second per driver (plus one at each pack's start and
# end): a dashboard polls every few seconds, and each write is a transaction.
WRITE_EVERY_S = 1.0
# After a failed write, leave the database alone this long: a server that is down
# would otherwise cost a connection timeout on every turn of the driver's loop.
RETRY_AFTER_S = 30.0


class ProgressWriter:
    """One driver's packs, upserted into ``robustness_progress`` for :meth:`RestartStore.read_progress`.

    The sweep driver calls :meth:`start`, :meth:`report` and :meth:`finish` as Tune
    tells it about its packs (numbered as the driver numbers them; the row is
    named ``holder/number``), and :meth:`tick` on every turn of its loop. A start
    or an end is written at once; reports at most every ``every_s`` seconds, the
    latest of each pack winning. Running packs are stamped alive every
    :data:`~robustness.storage._progress.ALIVE_EVERY_S` seconds even without
    reports, so readers tell a slow pack from a dead driver.

    Opening one prunes the rows of drivers that are gone (see
    :meth:`RestartStore.prune_progress`): a new run's rate starts afresh.

    Progress is only a view of the sweep: a failed write is said once through
    ``say``, never raised, and tried again after :data:`RETRY_AFTER_S`. One
    thread (the driver's) calls it; it takes no lock.
    """

    def __init__(self, store: RestartStore, study: StudyRef, *, holder: str, steps: int,
                 say: Callable[[str], None], every_s: float = WRITE_EVERY_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.study, self.holder, self.steps, self.say = store, study, holder, int(steps), say
        self.every_s, self.clock = every_s, clock
        self._packs: dict[int, PackProgress] = {}
        self._dirty: set[int] = set()
        self._written_at = self._stamped_at = self._retry_at = -math.inf
        self._warned = False
        self._guarded(lambda: store.prune_progress(study, keep_holder=holder))

    def name(self, number: int) -> str:
        """The row's ``pack``: unique across drivers, since holders are."""
        return f"{self.holder}/{number}"

    @property
    def packs(self) -> tuple[PackProgress, ...]:
        """This driver's packs as it last saw them (times on the local clock)."""
        return tuple(self._packs.values())

    @property
    def restart_steps(self) -> int:
        """Restart-steps trained by this driver's packs: done ones in full, running ones so far."""
        return sum(p.restart_steps for p in self._packs.values() if p.state != FAILED)

    def start(self, number: int, *, restarts: int) -> None:
        """Pack ``number`` (of ``restarts`` restarts) started; a retried pack keeps its row."""
        known = self._packs.get(number)
        if known is not None and known.state == RUNNING:
            return
        now = self.clock()
        self._packs[number] = PackProgress(pack=self.name(number), holder=self.holder, restarts=int(restarts), step=0,
                                           steps=self.steps, metrics={}, started_at=now, updated_at=now, alive_at=now)
        self._dirty.add(number)
        self.flush()

    def report(self, number: int, *, step: int, metrics: Mapping[str, float] | None = None) -> None:
        """Pack ``number``'s restarts have done ``step`` updates; ``metrics`` summarizes them (kept if None)."""
        known = self._packs.get(number)
        if known is None or known.state != RUNNING:
            return
        now = self.clock()
        self._packs[number] = dataclasses.replace(
            known, step=int(step), metrics=dict(metrics) if metrics is not None else known.metrics,
            updated_at=now, alive_at=now)
        self._dirty.add(number)
        self.tick()

    def finish(self, number: int, *, ok: bool) -> None:
        """Pack ``number`` ended: recorded (``ok``) or failed; a pack already ended stays as it was."""
        known = self._packs.get(number)
        if known is None or known.state != RUNNING:
            return
        now = self.clock()
        if ok:
            ended = dataclasses.replace(known, state=DONE, step=known.steps, updated_at=now, alive_at=now)
        else:  # its last report stays its progress: the rate leaves failed packs out
            ended = dataclasses.replace(known, state=FAILED, alive_at=now)
        self._packs[number] = ended
        self._dirty.add(number)
        self.flush()

    def tick(self) -> None:
        """Write what changed if the last write is ``every_s`` old; stamp running packs alive when due."""
        now = self.clock()
        if now - self._stamped_at >= ALIVE_EVERY_S:
            self._stamped_at = now
            for number, pack in self._packs.items():
                if pack.state == RUNNING:
                    self._packs[number] = dataclasses.replace(pack, alive_at=now)
                    self._dirty.add(number)
        if self._dirty and now - self._written_at >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Write every changed row now (unless a write failed less than RETRY_AFTER_S ago)."""
        now = self.clock()
        if not self._dirty or now < self._retry_at:
            return
        rows = [self._packs[n] for n in sorted(self._dirty)]
        if self._guarded(lambda: self.store.write_progress(self.study, rows)):
            self._dirty.clear()
            self._written_at = now
        else:
            self._retry_at = now + RETRY_AFTER_S

    def _guarded(self, write: Callable[[], object]) -> bool:
        try:
            write()
        except Exception as e:  # noqa: BLE001 (progress must never fail the sweep)
            if not self._warned:
                self._warned = True
                self.say(f"could not record sweep progress ({str(e).splitlines()[0] if str(e) else type(e).__name__});"
                         " training goes on")
            return False
        return True
