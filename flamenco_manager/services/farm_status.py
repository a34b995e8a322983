"""The farm status shown in the web UI's top bar (`GET /status`, `/status` events)."""

from __future__ import annotations

import asyncio
import logging

from flamenco_manager.model import JobStatus, WorkerStatus
from flamenco_manager.services.events import Hub
from flamenco_manager.store import Store, StoreBusy

log = logging.getLogger(__name__)

# How often the status is recomputed without a trigger (Flamenco's period).
REFRESH_INTERVAL = 30.0
# Changes within this window are folded into one recomputation.
COALESCE_DELAY = 0.5


def compute(store: Store) -> str:
    workers = store.count_workers_by_status()
    jobs = store.count_jobs_by_status()
    usable = sum(
        n for s, n in workers.items() if s in (WorkerStatus.AWAKE, WorkerStatus.ASLEEP, WorkerStatus.STARTING)
    )
    if usable == 0:
        return "inoperative"
    if jobs.get(JobStatus.ACTIVE, 0):
        return "active"
    if workers.get(WorkerStatus.STARTING, 0) and not workers.get(WorkerStatus.AWAKE, 0):
        return "starting"
    queued = jobs.get(JobStatus.QUEUED, 0)
    if not workers.get(WorkerStatus.AWAKE, 0):
        return "waiting" if queued else "asleep"
    return "waiting" if queued else "idle"


class FarmStatus:
    def __init__(self, store: Store, hub: Hub) -> None:
        self.store = store
        self.hub = hub
        self.current = "starting"
        self._pending: asyncio.TimerHandle | None = None
        self._closed = False

    def refresh(self) -> str:
        self._pending = None
        if self._closed:
            return self.current
        status = compute(self.store)
        if status != self.current:
            log.info("farm status changed from=%s to=%s", self.current, status)
            self.current = status
            self.hub.publish("/status", {"status": status})
        return status

    def changed_soon(self) -> None:
        """Something that may change the farm status happened; recompute shortly, once."""
        if self._pending is None and not self._closed:
            self._pending = asyncio.get_running_loop().call_later(COALESCE_DELAY, self._refresh_quietly)

    def close(self) -> None:
        """No more recomputations: the store is about to close."""
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _refresh_quietly(self) -> None:
        """A background recomputation: a busy or unreachable database keeps the last status until the
        next one (the store logs a lost connection itself); it never ends the periodic loop."""
        try:
            self.refresh()
        except StoreBusy as exc:
            self._pending = None
            log.debug("farm status not recomputed now error=%s", exc)

    async def run(self) -> None:
        while True:
            self._refresh_quietly()
            await asyncio.sleep(REFRESH_INTERVAL)
