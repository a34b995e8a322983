"""Waiting for events in tests: one polling loop for conditions, and line reads that honour a deadline.

Tests never sleep to synchronise. When no notification exists for what a test waits for, `wait_for`
re-checks the condition with a short pause in between, and fails with the last value seen.
"""

from __future__ import annotations

import os
import re
import select
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

T = TypeVar("T")

#: Pause between two checks of a condition: short against every timeout, long against a check's cost.
POLL_INTERVAL = 0.02


def wait_for(
    condition: Callable[[], T], timeout: float, what: str = "", interval: float = POLL_INTERVAL
) -> T:
    """The first truthy result of `condition()` within `timeout` seconds; AssertionError otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what or condition}; last: {last!r}"
            )
        time.sleep(min(interval, remaining))


class PipeLines:
    """Lines from a child's pipe, each read bounded by a deadline (a plain `readline()` can block forever)."""

    def __init__(self, stream: IO[Any]) -> None:
        self._fd = stream.fileno()
        self._buffer = b""
        self._eof = False
        #: Every line read so far, for failure messages.
        self.seen: list[str] = []

    def readline(self, timeout: float) -> str | None:
        """The next line without its newline; None at end of file. AssertionError when none comes in time."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer and not self._eof:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line within {timeout}s; last lines: {self.seen[-10:]}")
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                chunk = os.read(self._fd, 65536)
                self._buffer += chunk
                self._eof = not chunk
        if b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
        elif self._buffer:
            line, self._buffer = self._buffer, b""
        else:
            return None
        text = line.decode(errors="replace")
        self.seen.append(text)
        return text

    def wait_line(self, predicate: Callable[[str], object], timeout: float) -> str:
        """The next line for which `predicate` is truthy; earlier lines are skipped (and kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"the stream ended; last lines: {self.seen[-10:]}")
            if predicate(line):
                return line

    def wait_match(self, pattern: str, timeout: float) -> re.Match[str]:
        line = self.wait_line(lambda text: re.search(pattern, text), timeout)
        match = re.search(pattern, line)
        assert match is not None
        return match
