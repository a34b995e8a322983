"""Runs a task's commands in order, reporting to the task listener; the first failure ends the task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from flamenco_worker.execution.commands import lookup
from flamenco_worker.execution.context import CommandContext
from flamenco_worker.execution.model import Command, CommandError, TaskListener
from flamenco_worker.execution.runner import ProcessRunner

log = logging.getLogger(__name__)


class Executor:
    """Runs commands one after the other; cancel the `run()` coroutine to abort, `kill_now()` to kill."""

    def __init__(
        self,
        listener: TaskListener,
        *,
        oom_score_adjust: int | None = None,
        environment: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._listener = listener
        self._runner = ProcessRunner(listener, oom_score_adjust=oom_score_adjust, environment=environment)

    async def run(self, commands: list[Command]) -> None:
        """Run the commands in order. Raises CommandError on the first failure (the rest are skipped).

        Cancellation aborts the running child (SIGTERM to its process group, SIGKILL after ABORT_GRACE),
        waits until it is reaped, and then lets CancelledError propagate.
        """
        for index, command in enumerate(commands):
            implementation = lookup(command.name)
            context = CommandContext(command=command, listener=self._listener, runner=self._runner)
            log.info("command=%s index=%d/%d starting", command.name, index + 1, len(commands))
            try:
                await implementation(context)
            except CommandError as err:
                log.info("command=%s index=%d failed: %s", command.name, index + 1, err)
                raise
            except asyncio.CancelledError:
                log.info("command=%s index=%d aborted", command.name, index + 1)
                raise
            if command.total_step_count <= 0:
                # Commands that do not count their own steps count as one step when they end.
                self._listener.step_completed()

    def kill_now(self) -> None:
        """SIGKILL the process group of the running child, if any (right before a forced exit)."""
        self._runner.kill_now()
