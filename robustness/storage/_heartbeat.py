"""A driver's name as a lease holder, and the thread that keeps its leases alive."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from robustness.storage._config import StorageError

if TYPE_CHECKING:
    from types import TracebackType

    from robustness.storage._store import RestartStore


def new_holder() -> str:
    """A name no other driver has: host and pid (for a person reading the table) and a random part."""
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Heartbeat:
    """Renews ``holder``'s leases every third of ``ttl_s`` in a daemon thread, while the ``with`` block runs.

    Two missed beats still leave the leases alive, so a slow database (a SQLite
    writer holding the lock for a big pack) does not cost them. A renewal that
    fails is said once through ``say`` and tried again on the next beat; leases
    it could not keep only risk being trained twice, never recorded twice.
    """

    def __init__(self, store: RestartStore, holder: str, *, ttl_s: float, say: Callable[[str], None]) -> None:
        self.store, self.holder, self.ttl_s, self.say = store, holder, ttl_s, say
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="robustness-lease-heartbeat", daemon=True)

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.store.renew_leases(self.holder, ttl_s=self.ttl_s)
            except StorageError as e:
                if not warned:
                    self.say(f"could not renew this driver's leases ({e}); retrying")
                    warned = True

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
