"""The test's end of sd_notify: a datagram socket that collects what the daemon tells systemd."""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []
        self._cursor = 0  # wait_for() looks only past its previous match

    def drain(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.messages
            self.messages.extend(data.decode().split("\n"))

    def wait_for(self, predicate: str, timeout: float = 10.0) -> str:
        """Wait for the next line starting with `predicate` after the previous match; return it."""
        deadline = time.monotonic() + timeout
        while True:
            self.drain()
            for index in range(self._cursor, len(self.messages)):
                if self.messages[index].startswith(predicate):
                    self._cursor = index + 1
                    return self.messages[index]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            select.select([self.sock], [], [], remaining)  # until the next datagram arrives
        raise AssertionError(f"no {predicate!r} within {timeout}s; got {self.messages[self._cursor :]}")

    def seen(self, predicate: str) -> list[str]:
        self.drain()
        return [m for m in self.messages if m.startswith(predicate)]

    def quiet_for(self, predicate: str, seconds: float) -> list[str]:
        """Lines starting with `predicate` that arrive within `seconds` from now (after a drain)."""
        self.drain()
        start = len(self.messages)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            select.select([self.sock], [], [], remaining)
            self.drain()
        self._cursor = len(self.messages)
        return [m for m in self.messages[start:] if m.startswith(predicate)]

    def is_full(self) -> bool:
        """A datagram of ours is refused: the daemon filled this socket's queue (nobody reads it)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            probe.setblocking(False)
            try:
                probe.sendto(b"X-PROBE=1", str(self.path))
            except BlockingIOError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
