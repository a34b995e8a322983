"""One task from the Manager, run by the core: executes its commands, reports in order, can be aborted.

Updates follow Flamenco's pattern: `Started` (active), log chunks and progress, then `Completed` or
`Failed: …`. An aborted task sends its last log lines and nothing else: the Manager requeues it when the
worker acknowledges its new status or signs off.

Cancellation: `abort()` cancels the task's own runner. That one cancellation is expected and is taken
back (`uncancel()`) once the last lines are out, so `run()` returns normally; any other cancellation
(the core stopping, or both at once) propagates as CancelledError.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from flamenco_worker.cancel import cancel_and_wait
from flamenco_worker.execution import CommandError, Executor, parse_commands
from flamenco_worker.manager_client import AssignedTask
from flamenco_worker.output_upload import OutputUploader
from flamenco_worker.task_report import LIVE, LogCadence, TaskReporter
from flamenco_worker.task_updates_sender import TaskReassigned, TaskUpdatesSender

log = logging.getLogger(__name__)

#: What watches a running task for the Manager's "stop" (may-i-run); cancelled when the task ends.
TaskWatch = Callable[["ManagedTask"], Coroutine[Any, Any, None]]


class ManagedTask:
    """The core's TaskHandle for a task assigned by the Manager."""

    def __init__(
        self,
        assigned: AssignedTask,
        sender: TaskUpdatesSender,
        uploader: OutputUploader,
        *,
        watch: TaskWatch,
        cadence: LogCadence = LIVE,
        oom_score_adjust: int | None = None,
        environment: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._assigned = assigned
        self._watch = watch
        self._reporter = TaskReporter(assigned.uuid, sender, uploader, cadence)
        self._executor = Executor(self._reporter, oom_score_adjust=oom_score_adjust, environment=environment)
        self._runner: asyncio.Task[Any] | None = None
        self._cancelled_by_abort = False
        self.abort_reason: str | None = None
        self.outcome = "pending"

    @property
    def task_id(self) -> str:
        return self._assigned.uuid

    @property
    def title(self) -> str:
        return self._assigned.name or self._assigned.uuid

    @property
    def job_id(self) -> str:
        return self._assigned.job

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
            if not self._take_back_own_cancellation():
                raise
        else:
            self.outcome = "completed"
            await self._finish({"activity": "Completed", "taskStatus": "completed"})
        finally:
            if watcher is not None:
                await cancel_and_wait(watcher)
            await self._reporter.close()
            log.info("task=%s outcome=%s", task_id, self.outcome)

    def _take_back_own_cancellation(self) -> bool:
        """True when the only cancellation was our own abort's (now taken back); False: pass it on."""
        runner = asyncio.current_task()
        assert runner is not None
        if not self._cancelled_by_abort:
            return False
        self._cancelled_by_abort = False
        return runner.uncancel() == 0

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
                self._cancelled_by_abort = True
                self._runner.cancel()
