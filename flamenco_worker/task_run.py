"""One task from the Manager, run by the core: executes its commands, reports in order, can be aborted.

Updates follow Flamenco's pattern: `Started` (active), log chunks and progress, then `Completed` or
`Failed: …`. An aborted task sends its last log lines and nothing else: the Manager requeues it when the
worker acknowledges its new status or signs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flamenco_worker.execution import CommandError, Executor, parse_commands
from flamenco_worker.manager_client import AssignedTask
from flamenco_worker.output_upload import OutputUploader
from flamenco_worker.uplink import TaskReassigned, Uplink

log = logging.getLogger(__name__)

#: Send buffered log lines at least this often, so the web UI's log tail stays live.
LOG_FLUSH_INTERVAL = 1.0
#: Send at once when this much log text is waiting (Flamenco uses 10 KiB as well).
LOG_CHUNK_BYTES = 10 * 1024
#: Largest log text in one update, well under the Manager's request-body limit.
LOG_CHUNK_MAX = 512 * 1024


class TaskReporter:
    """The executor's listener: collects lines and steps, a sender coroutine ships them in order."""

    def __init__(self, task_id: str, uplink: Uplink, uploader: OutputUploader) -> None:
        self._task_id = task_id
        self._uplink = uplink
        self._uploader = uploader
        self._lines: list[str] = []
        self._size = 0
        self._steps = 0
        self._steps_sent = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._sender: asyncio.Task[None] | None = None
        self.reassigned = False

    # TaskListener (sync, cheap)
    def log_line(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= LOG_CHUNK_BYTES:
            self._wake.set()

    def step_completed(self) -> None:
        self._steps += 1

    def output_produced(self, path: Path) -> None:
        self._uploader.offer(self._task_id, path)

    # shipping
    def start(self, on_reassigned: Callable[[], None]) -> None:
        self._sender = asyncio.get_running_loop().create_task(self._ship_forever(on_reassigned))

    async def send(self, payload: dict[str, Any]) -> None:
        """An update in sequence with the log: buffered lines and progress go first."""
        await self._ship()
        await self._uplink.send(self._task_id, payload)

    async def close(self) -> None:
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        with contextlib.suppress(TaskReassigned):
            await self._ship()

    async def _ship_forever(self, on_reassigned: Callable[[], None]) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), LOG_FLUSH_INTERVAL)
            self._wake.clear()
            try:
                await self._ship()
            except TaskReassigned:
                self.reassigned = True
                on_reassigned()
                return

    async def _ship(self) -> None:
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
            await self._uplink.send(self._task_id, payload)


class ManagedTask:
    """The core's TaskHandle for a task assigned by the Manager."""

    def __init__(
        self,
        assigned: AssignedTask,
        uplink: Uplink,
        uploader: OutputUploader,
        *,
        watch: Callable[[ManagedTask], Awaitable[None]],
        oom_score_adjust: int | None = None,
    ) -> None:
        self._assigned = assigned
        self._uplink = uplink
        self._watch = watch
        self._reporter = TaskReporter(assigned.uuid, uplink, uploader)
        self._executor = Executor(self._reporter, oom_score_adjust=oom_score_adjust)
        self._runner: asyncio.Task[Any] | None = None
        self.abort_reason: str | None = None
        self.outcome = "pending"

    @property
    def task_id(self) -> str:
        return self._assigned.uuid

    @property
    def title(self) -> str:
        return self._assigned.name or self._assigned.uuid

    async def run(self) -> None:
        self._runner = asyncio.current_task()
        task_id = self.task_id
        if self.abort_reason is not None:  # aborted before it got going
            self.outcome = "aborted"
            return
        watcher: asyncio.Task[None] | None = None
        try:
            await self._reporter.send({"activity": "Started", "taskStatus": "active"})
            self._reporter.start(lambda: self.abort("the Manager reassigned the task"))
            watcher = asyncio.get_running_loop().create_task(self._watch(self))
            commands = parse_commands(self._assigned.commands)
            await self._executor.run(commands)
        except TaskReassigned:
            self.outcome = "reassigned"
            log.warning("task=%s was reassigned by the Manager; stopped", task_id)
        except CommandError as exc:
            self.outcome = "failed"
            await self._finish(
                {"activity": f"Failed: {exc}", "log": f"Failed: {exc}\n", "taskStatus": "failed"}
            )
        except asyncio.CancelledError:
            self.outcome = "aborted"
            reason = self.abort_reason or "worker stopping"
            log.info("task=%s aborted (%s); handing it back", task_id, reason)
            self._reporter.log_line(f"Task aborted on the worker: {reason}")
            await asyncio.shield(self._reporter.close())
            if self.abort_reason is None:
                raise
        else:
            self.outcome = "completed"
            await self._finish({"activity": "Completed", "taskStatus": "completed"})
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await self._reporter.close()
            log.info("task=%s outcome=%s", task_id, self.outcome)

    async def _finish(self, payload: dict[str, Any]) -> None:
        try:
            await self._reporter.send(payload)
        except TaskReassigned:
            self.outcome = "reassigned"
            log.warning("task=%s was reassigned by the Manager before it could report", self.task_id)

    def abort(self, reason: str, *, force: bool = False) -> None:
        if force:
            self._executor.kill_now()
        if self.abort_reason is None:
            self.abort_reason = reason
            if self._runner is not None and not self._runner.done():
                self._runner.cancel()
