"""Helpers for the execution tests: a recording task listener and /proc inspection."""

from __future__ import annotations

import asyncio
import os
import pathlib
import re
import stat
from typing import Any

import pytest

from flamenco_worker.execution import Command, CommandError, Executor

#: How long a test waits for a child to say something before failing; generous for a loaded machine.
WAIT_FOR_LINE = 10.0
#: How long a test waits for an orphaned, killed grandchild to be reaped by init before giving up.
REAP_BY_INIT_WAIT = 5.0
#: Polling interval of the waits above.
_POLL = 0.02

_PID_PREFIX = re.compile(r"^pid=(\d+) > ")


class RecordingListener:
    """A TaskListener that keeps everything it hears."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.steps = 0
        self.outputs: list[pathlib.Path] = []

    def log_line(self, line: str) -> None:
        self.lines.append(line)

    def step_completed(self) -> None:
        self.steps += 1

    def output_produced(self, path: pathlib.Path) -> None:
        self.outputs.append(path)

    def output(self) -> list[str]:
        """The child output lines, without their `pid=N > ` prefix."""
        return [_PID_PREFIX.sub("", line, count=1) for line in self.lines if _PID_PREFIX.match(line)]

    def pids(self) -> set[int]:
        return {int(m[1]) for line in self.lines if (m := _PID_PREFIX.match(line))}

    async def wait_for_output(self, pattern: str) -> re.Match[str]:
        """The first output line matching `pattern`, waiting for it to arrive."""
        regex = re.compile(pattern)
        for _ in range(int(WAIT_FOR_LINE / _POLL)):
            for line in self.output():
                if (found := regex.search(line)) is not None:
                    return found
            await asyncio.sleep(_POLL)
        raise AssertionError(f"no output line matched {pattern!r}; got {self.lines!r}")


def write_script(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def own_oom_score_adj() -> str:
    return pathlib.Path("/proc/self/oom_score_adj").read_text().strip()


def proc_status(pid: int) -> dict[str, str] | None:
    """The fields of /proc/<pid>/status, or None when no such process exists."""
    try:
        text = pathlib.Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def zombie_children(parent: int) -> list[int]:
    """Zombies whose parent is `parent` (this test process: ones we failed to reap)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            status = proc_status(int(entry))
            if status and status.get("PPid") == str(parent) and status["State"].startswith("Z"):
                found.append(int(entry))
    return found


async def wait_until_gone(pid: int) -> dict[str, str] | None:
    """Wait until `pid` has disappeared (returns None) or the wait ran out (returns its status).

    A signal takes a moment to be acted on, and a killed orphan stays init's zombie until init reaps it.
    """
    for _ in range(int(REAP_BY_INIT_WAIT / _POLL)):
        if proc_status(pid) is None:
            return None
        await asyncio.sleep(_POLL)
    return proc_status(pid)


async def run(name: str, parameters: dict[str, Any]) -> RecordingListener:
    """Run one command with a fresh recording listener."""
    listener = RecordingListener()
    await Executor(listener).run([Command(name, parameters)])
    return listener


async def fails(name: str, parameters: dict[str, Any]) -> CommandError:
    """Run one command that must fail; its error."""
    with pytest.raises(CommandError) as caught:
        await run(name, parameters)
    return caught.value
