"""Worker → Manager: task updates, in order; straight to the Manager when it answers, through the outbox
when not.

* One update at a time per worker, in the order they were made; an update never overtakes a queued one.
* While updates are queued, only the retry loop (and `flush`) talk to the Manager about them, so a
  partitioned network cannot stall the task's own reporting.
* Each update carries one idempotency key for life, so a resend after a lost answer counts once.
* 409 means the task is no longer ours: `send` raises `TaskReassigned`; a queued update that learns it
  drops the task's other queued updates and tells the `on_reassigned` listeners.
* The outbox belongs to whoever made it; this sender only uses it, and never lets its trouble (a damaged
  or closed file) stop a shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

from flamenco_worker import journal
from flamenco_worker.cancel import cancel_and_wait
from flamenco_worker.manager_client import UPDATE_KEY, ManagerClient, ManagerUnreachable
from flamenco_worker.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)

#: Pause between attempts to deliver queued updates while the Manager is away.
RETRY_INTERVAL = 5.0


class TaskReassigned(Exception):
    """409 on an update: the Manager gave the task to someone else (or took it back)."""


def _retry_later(status: int) -> bool:
    """Statuses after which the same update may well be accepted later."""
    return status in (408, 429) or status >= 500


class TaskUpdatesSender:
    def __init__(self, client: ManagerClient, outbox: Outbox) -> None:
        self._client = client
        self._outbox = outbox
        self._lock = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None
        self._reassigned_listeners: list[Callable[[str], None]] = []
        self._warned = False

    @property
    def queued(self) -> int:
        return len(self._outbox)

    def on_reassigned(self, listener: Callable[[str], None]) -> None:
        """Called with the task id when a queued update learns that the task was taken away."""
        self._reassigned_listeners.append(listener)

    async def send(self, task_id: str, payload: dict[str, Any]) -> None:
        """Deliver or queue; raises TaskReassigned on 409. Order per worker is kept.

        Each update gets a key that stays with it through the outbox, so a resend after a lost answer
        (the Manager died after applying it) is recognised as one."""
        payload = {**payload, UPDATE_KEY: uuid.uuid4().hex}
        async with self._lock:
            if len(self._outbox):
                # Behind queued updates: wait in line. Only the retry loop talks to a Manager known to be
                # away, so a partitioned network cannot stall the task's own reporting.
                self._queue(task_id, payload)
                return
            try:
                status = await self._client.task_update(task_id, payload)
            except ManagerUnreachable as exc:
                self._queue(task_id, payload, reason=str(exc))
                return
            log.debug("task=%s update HTTP %d: %s", task_id, status, _summary(payload))
            if status in (200, 204):
                self._warned = False
                return
            if status == 409:
                raise TaskReassigned(task_id)
            if _retry_later(status):
                self._queue(task_id, payload, reason=f"HTTP {status}")
                return
            log.error(
                "task=%s update refused by the Manager (HTTP %d); dropped: %s",
                task_id,
                status,
                _summary(payload),
            )

    def _queue(self, task_id: str, payload: dict[str, Any], reason: str = "") -> None:
        self._outbox.push(task_id, payload)
        if reason and not self._warned:
            log.warning(
                "Manager not taking task updates (%s); queueing them in %s", reason, self._outbox.path
            )
            self._warned = True
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(
                self._retry_loop(), context=journal.outside_tasks()
            )

    async def _retry_loop(self) -> None:
        while len(self._outbox):
            await asyncio.sleep(RETRY_INTERVAL)
            async with self._lock:
                if await self._flush_locked():
                    log.info("queued task updates delivered")
                    self._warned = False

    async def flush(self, time_limit: float | None = None) -> bool:
        """Deliver what is queued; True when the queue is empty afterwards."""
        try:
            async with asyncio.timeout(time_limit):
                async with self._lock:
                    return await self._flush_locked()
        except TimeoutError:
            log.warning(
                "task updates still queued after %.0fs; they go out on the next start", time_limit or 0
            )
            return False
        except OutboxError as exc:
            log.error("queued task updates cannot be delivered: %s", exc)
            return False

    async def _flush_locked(self) -> bool:
        while (item := self._outbox.front()) is not None:
            try:
                status = await self._client.task_update(item.task_id, item.payload)
            except ManagerUnreachable:
                return False
            if _retry_later(status):
                return False
            if status == 409:
                dropped = self._outbox.drop_task(item.task_id)
                log.warning(
                    "task=%s was reassigned; dropped %d queued updates",
                    item.task_id,
                    dropped,
                    extra=journal.about_task(item.task_id),
                )
                for listener in list(self._reassigned_listeners):
                    listener(item.task_id)
                continue
            if status not in (200, 204):
                log.error(
                    "task=%s queued update refused (HTTP %d); dropped: %s",
                    item.task_id,
                    status,
                    _summary(item.payload),
                    extra=journal.about_task(item.task_id),
                )
            self._outbox.remove(item)
        return True

    async def close(self) -> None:
        """Stop the retry loop; what is still queued stays in the outbox."""
        if self._retry is not None:
            await cancel_and_wait(self._retry)


def _summary(payload: dict[str, Any]) -> str:
    parts = [f"{k}={payload[k]!r}" for k in ("taskStatus", "activity", "steps_completed") if k in payload]
    if "log" in payload:
        parts.append(f"log={len(payload['log'])} chars")
    return " ".join(parts) or "{}"
