"""Runs a command's child processes one at a time and reports them to the task listener."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
from collections.abc import Callable, Iterable, Sequence

from flamenco_worker.execution import process
from flamenco_worker.execution.model import CommandError, TaskListener

log = logging.getLogger(__name__)

#: Linux bounds of /proc/<pid>/oom_score_adj for the values Flamenco's setting accepts.
OOM_SCORE_ADJUST_RANGE = range(0, 1001)


class ProcessRunner:
    """Starts children for commands, logs them like Flamenco's worker does, and can kill the current one."""

    def __init__(
        self,
        listener: TaskListener,
        *,
        oom_score_adjust: int | None = None,
        environment: Iterable[tuple[str, str]] = (),
    ) -> None:
        if oom_score_adjust is not None and oom_score_adjust not in OOM_SCORE_ADJUST_RANGE:
            raise ValueError(f"oom_score_adjust={oom_score_adjust} is outside 0..1000")
        if oom_score_adjust is not None and not os.path.exists("/proc/self/oom_score_adj"):
            log.warning(
                "oom_score_adjust=%d ignored: this system has no /proc/<pid>/oom_score_adj", oom_score_adjust
            )
            oom_score_adjust = None
        self._listener = listener
        self._oom_score_adjust = oom_score_adjust
        self._environment = tuple(environment)  # added to every child's environment
        self._child: process.ChildProcess | None = None

    async def run(
        self, command: str, argv: Sequence[str], on_line: Callable[[str], None] | None = None
    ) -> None:
        """Run `argv` to the end; a non-zero exit raises CommandError. Cancelling aborts the child."""
        listener = self._listener
        listener.log_line("going to run:")
        listener.log_line("")
        listener.log_line(f"    {shlex.join(argv)}")

        def handle(pid: int, line: str) -> None:
            listener.log_line(f"pid={pid} > {line}")
            if on_line is not None:
                on_line(line)

        try:
            child = await process.ChildProcess.start(
                argv, handle, oom_score_adjust=self._oom_score_adjust, environment=self._environment
            )
        except OSError as err:
            raise CommandError(
                f"{command}: cannot start {argv[0]!r}: {err.strerror or err}", command=command
            ) from err
        self._child = child
        log.info("command=%s pid=%d started", command, child.pid)
        try:
            try:
                returncode = await child.wait()
            except asyncio.CancelledError:
                await child.abort()
                log.info("command=%s pid=%d aborted", command, child.pid)
                raise
        finally:
            child.close()
            self._child = None
        log.info("command=%s pid=%d exited returncode=%d", command, child.pid, returncode)
        if returncode != 0:
            raise CommandError(f"{command}: {_describe_exit(returncode)}", command=command)

    def kill_now(self) -> None:
        """SIGKILL the running child's process group, if there is one."""
        if self._child is not None:
            log.warning("pid=%d killed at once", self._child.pid)
            self._child.kill()


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"command exited abnormally: killed by {name}"
    return f"command exited abnormally with code {returncode}"
