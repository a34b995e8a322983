"""One child process in its own process group: output pumped line by line, exit seen without reaping early.

The child's exit is watched through a pidfd, so the worker notices it while the child is still a zombie.
At that moment the process group's number cannot have been reused, so whatever is left of the group
(grandchildren) is killed by that number before the child is reaped: no orphans, no zombies, no signal
ever sent to a stranger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence

from flamenco_worker.execution.lines import LineSplitter

log = logging.getLogger(__name__)

#: Time between SIGTERM and SIGKILL on abort. Blender and ffmpeg quit within a second or two on SIGTERM;
#: it stays well below the core's TASK_ABORT_TIMEOUT (15 s) so an abort always completes in time.
ABORT_GRACE = 10.0
#: How long to wait for a SIGKILLed child to disappear; only a process stuck in uninterruptible I/O (a hung
#: network share) takes longer, and then it is reaped in the background rather than holding up the abort.
KILL_WAIT = 3.0
#: After the child exited, how long its pipe may stay open (held by a process that left the group);
#: afterwards the remaining output is dropped so a stray cannot keep the command running.
OUTPUT_DRAIN_TIMEOUT = 2.0

#: Sets the OOM score inside the child and then execs the real program under the same pid. Doing it in
#: the child before exec is race-free: the program never runs, and never forks, with the worker's value;
#: the worker's own score is never touched; and no Python code runs between fork and exec (preexec_fn is
#: unsafe when the process has threads). A refused value is reported in the task log and not fatal.
_OOM_TRAMPOLINE = (
    'echo "$1" 2>/dev/null >/proc/self/oom_score_adj'
    ' || echo "oom_score_adj=$1 could not be set; running with the inherited value" >&2;'
    ' shift; exec "$@"'
)
#: The POSIX shell that runs the trampoline; every Linux system has it.
_SHELL = "/bin/sh"

#: What systemd hands the worker itself (sd_notify, watchdog, socket activation); a task process that
#: inherited them could send READY=1 or WATCHDOG=1 on the worker's behalf or claim its sockets.
#: JOURNAL_STREAM goes too: a task's stderr is the worker's pipe, never the journal.
DAEMON_ONLY_VARIABLES = frozenset(
    {
        "NOTIFY_SOCKET",
        "WATCHDOG_PID",
        "WATCHDOG_USEC",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "JOURNAL_STREAM",
    }
)


def child_environment(
    env: Mapping[str, str] | None = None, extra: Iterable[tuple[str, str]] = ()
) -> dict[str, str]:
    """The worker's environment without what systemd meant for the worker alone, plus `extra` on top
    (the `environment:` setting)."""
    source = os.environ if env is None else env
    child = {key: value for key, value in source.items() if key not in DAEMON_ONLY_VARIABLES}
    child.update(extra)
    return child


#: Called with the child's pid and one line of its output.
LineHandler = Callable[[int, str], None]


class ChildProcess:
    """A started child; `wait()` for its end, `abort()` to stop it, `kill()` from synchronous code."""

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int, pump: _OutputPump) -> None:
        self._popen = popen
        self._pidfd = pidfd
        self._pump = pump
        self._transport: asyncio.ReadTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._loop.add_reader(pidfd, self._on_exit)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def reaped(self) -> bool:
        return self._popen.returncode is not None

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        on_line: LineHandler,
        *,
        oom_score_adjust: int | None = None,
        environment: Iterable[tuple[str, str]] = (),
    ) -> ChildProcess:
        """Spawn `argv` (argv[0] a path) with stdin closed and stdout+stderr merged into `on_line`;
        `environment` is added to the worker's own (see child_environment)."""
        spawn_argv = list(argv)
        if oom_score_adjust is not None:
            spawn_argv = [_SHELL, "-c", _OOM_TRAMPOLINE, "flamenco-oom", str(oom_score_adjust), *spawn_argv]
        popen = _spawn(spawn_argv, child_environment(extra=environment))
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:
            _kill_and_reap(popen)
            raise
        pump = _OutputPump(on_line, popen.pid)
        child = cls(popen, pidfd, pump)
        assert popen.stdout is not None
        try:
            transport, _ = await child._loop.connect_read_pipe(lambda: pump, popen.stdout)
        except BaseException:
            child.kill()
            popen.stdout.close()
            raise
        child._transport = transport
        log.debug("pid=%d started argv0=%s", popen.pid, argv[0])
        return child

    async def wait(self) -> int:
        """Wait for the exit, then for the rest of its output; returns the exit code (-N: killed by N)."""
        returncode = await asyncio.shield(self._exited)
        await self._drain()
        return returncode

    async def abort(self) -> None:
        """SIGTERM the group, SIGKILL it after ABORT_GRACE; being cancelled meanwhile skips to SIGKILL."""
        log.info("pid=%d aborting: SIGTERM to the process group", self.pid)
        self._signal_group(signal.SIGTERM)
        if not await self._wait_exit(ABORT_GRACE):
            log.warning(
                "pid=%d still running %.1fs after SIGTERM: SIGKILL to the process group",
                self.pid,
                ABORT_GRACE,
            )
            self._signal_group(signal.SIGKILL)
            if not await self._wait_exit(KILL_WAIT):
                log.error(
                    "pid=%d did not die from SIGKILL within %.1fs; it is reaped when it does",
                    self.pid,
                    KILL_WAIT,
                )
        if self._exited.done():
            # Keep what the child said while stopping; the pipe ends at once now that its group is gone.
            with contextlib.suppress(asyncio.CancelledError):
                await self._drain()
        self.close()

    def kill(self) -> None:
        """SIGKILL the whole group now; it is reaped as soon as it is gone."""
        self._signal_group(signal.SIGKILL)

    def close(self) -> None:
        """Stop reading output; a child still running is killed (and reaped once it is gone)."""
        if not self._exited.done():
            self.kill()
        if self._transport is not None:
            self._transport.close()
        self._pump.finish()

    async def _wait_exit(self, within: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), within)
        except TimeoutError:
            return False
        except asyncio.CancelledError:
            # Asked again while stopping: stop politely waiting; the caller re-raises its own cancellation.
            return self._exited.done()
        return True

    async def _drain(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._pump.closed), OUTPUT_DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning(
                "pid=%d exited but its output stayed open %.1fs (held by a process outside its group); "
                "dropping the rest",
                self.pid,
                OUTPUT_DRAIN_TIMEOUT,
            )
        finally:
            self.close()

    def _on_exit(self) -> None:
        """The child is a zombie now: kill what is left of its group, then reap it."""
        self._loop.remove_reader(self._pidfd)
        self._signal_group(signal.SIGKILL)
        returncode = self._popen.wait()
        os.close(self._pidfd)
        log.debug("pid=%d reaped returncode=%d", self.pid, returncode)
        if not self._exited.done():
            self._exited.set_result(returncode)

    def _signal_group(self, sig: signal.Signals) -> None:
        # Only while the child is unreaped: then its pid, which is also the group's id, is still ours.
        if self.reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


class _OutputPump(asyncio.Protocol):
    """Receives the merged output pipe's chunks and hands on whole lines; a failing handler is logged once."""

    def __init__(self, on_line: LineHandler, pid: int) -> None:
        self._on_line = on_line
        self._pid = pid
        self._splitter = LineSplitter()
        self._handler_failed = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._deliver(self._splitter.feed(data))

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.warning("pid=%d reading output failed: %s", self._pid, exc)
        self.finish()

    def finish(self) -> None:
        if self.closed.done():
            return
        self._deliver(self._splitter.finish())
        self.closed.set_result(None)

    def _deliver(self, lines: list[str]) -> None:
        for line in lines:
            try:
                self._on_line(self._pid, line)
            except Exception:
                if not self._handler_failed:
                    self._handler_failed = True
                    log.exception(
                        "pid=%d handling an output line failed; later failures are not logged", self._pid
                    )


def _spawn(argv: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    # Synchronous, like asyncio's own subprocess start: fork+exec takes about a millisecond.
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
        env=env,
    )


def _kill_and_reap(popen: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()
