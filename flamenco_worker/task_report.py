"""Worker → Manager: one task's log lines and progress, batched into task updates.

How often buffered log lines go out depends on the Manager (`LogCadence`):

* one that long-polls (answers `Prefer: wait` with `Preference-Applied`, as ours does): at least every
  second, so the web interface's log tail stays live — ours holds requests open cheaply;
* one that does not (a stock Flamenco Manager): every 30 s, or as soon as more than 10 KiB waits, as
  Flamenco's own worker does, so a stock Manager gets no more requests from us than from its own workers.

Whatever the cadence, a status update (start, completion, failure) goes out at once, right after the
lines buffered before it: the order of the task log and of the task's states is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flamenco_worker.cancel import cancel_and_wait
from flamenco_worker.output_upload import OutputUploader
from flamenco_worker.task_updates_sender import TaskReassigned, TaskUpdatesSender

log = logging.getLogger(__name__)

#: Largest log text in one update, well under the Manager's request-body limit.
LOG_CHUNK_MAX = 512 * 1024


@dataclass(frozen=True, slots=True)
class LogCadence:
    """When buffered log lines go out: after `interval` seconds, or once more than `chunk_bytes` wait."""

    name: str
    interval: float
    chunk_bytes: int


#: For a Manager that long-polls (ours): a live log tail at one small request a second.
LIVE = LogCadence("live", interval=1.0, chunk_bytes=10 * 1024)
#: For a Manager that does not (stock Flamenco): Flamenco's own worker sends its log per 30 s or 10 KiB.
BATCHED = LogCadence("batched", interval=30.0, chunk_bytes=10 * 1024)


def cadence_for(manager_long_polls: bool) -> LogCadence:
    return LIVE if manager_long_polls else BATCHED


class TaskReporter:
    """The executor's listener: collects lines and steps, a sender coroutine ships them in order."""

    def __init__(
        self, task_id: str, sender: TaskUpdatesSender, uploader: OutputUploader, cadence: LogCadence
    ) -> None:
        self._task_id = task_id
        self._sender = sender
        self._uploader = uploader
        self._cadence = cadence
        self._lines: list[str] = []
        self._size = 0
        self._steps = 0
        self._steps_sent = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._shipper: asyncio.Task[None] | None = None
        self._last_ship = 0.0
        self.reassigned = False

    # TaskListener (sync, cheap)
    def log_line(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size > self._cadence.chunk_bytes:
            self._wake.set()

    def step_completed(self) -> None:
        self._steps += 1

    def output_produced(self, path: Path) -> None:
        self._uploader.offer(self._task_id, path)

    # shipping
    def start(self, on_reassigned: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        self._last_ship = loop.time()
        self._shipper = loop.create_task(self._ship_forever(on_reassigned))

    async def send(self, payload: dict[str, Any]) -> None:
        """A status update, at once: the lines and progress buffered before it go first."""
        await self._ship()
        await self._sender.send(self._task_id, payload)

    async def close(self) -> None:
        """Stop the periodic sender and ship what is left (unless the task was taken away)."""
        self._closed = True
        if self._shipper is not None:
            await cancel_and_wait(self._shipper)
        with contextlib.suppress(TaskReassigned):
            await self._ship()

    async def _ship_forever(self, on_reassigned: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            due = self._last_ship + self._cadence.interval - loop.time()
            if due > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due)
            self._wake.clear()
            try:
                await self._ship()
            except TaskReassigned:
                self.reassigned = True
                on_reassigned()
                return

    async def _ship(self) -> None:
        self._last_ship = asyncio.get_running_loop().time()
        while self._lines or self._steps != self._steps_sent:
            payload: dict[str, Any] = {}
            if self._lines:
                take, size = 0, 0
                while take < len(self._lines) and (
                    take == 0 or size + len(self._lines[take]) < LOG_CHUNK_MAX
                ):
                    size += len(self._lines[take]) + 1
                    take += 1
                payload["log"] = "\n".join(self._lines[:take]) + "\n"
                del self._lines[:take]
                self._size -= size
            if self._steps != self._steps_sent:
                payload["steps_completed"] = self._steps
                self._steps_sent = self._steps
            await self._sender.send(self._task_id, payload)
