"""When an acknowledgement is safe: the caller's writes are committed and its workers' log lines written.

Writes are group-committed once per event-loop turn (see the store) and task-log chunks are written by
threads (see `tasklogs`), so a change is on disk a moment after the service call returns. Whoever tells a
client "done" awaits `settled()` first; the HTTP edge does it for every handler that writes.
"""

from __future__ import annotations

from flamenco_manager.services.tasklogs import TaskLogs
from flamenco_manager.store import Store


class Durability:
    def __init__(self, store: Store, logs: TaskLogs) -> None:
        self.store = store
        self.logs = logs

    async def settled(self) -> None:
        """Return once this asyncio task's writes are committed and pending worker log lines written.

        Raises the store's error when the commit failed: the change is lost and must not be acknowledged.
        """
        committed = self.store.committed()
        written = self.logs.written()
        if committed is not None:
            await committed
        if written is not None:
            await written
