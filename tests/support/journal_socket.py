"""A stand-in for journald's native socket: a datagram socket of our own, seen by a child process at
`/run/systemd/journal/socket` through a private mount namespace (libsystemd writes nowhere else).

Needs root (`unshare -m`); `available()` says whether this machine allows it.
"""

from __future__ import annotations

import shlex
import socket
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

#: How long the test waits for a datagram the child should have sent already.
RECEIVE_TIMEOUT = 10.0


def available() -> str | None:
    """None when a private mount namespace can be made here, else why not."""
    try:
        result = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare is not usable: {exc}"
    return None if result.returncode == 0 else f"unshare -m refused: {result.stderr.decode().strip()}"


def parse_entry(datagram: bytes) -> dict[str, str]:
    """One native-protocol entry: `KEY=value\\n`, or `KEY\\n`, 64-bit little-endian size, value, `\\n`."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line_end = rest.index(b"\n")
        head = rest[:line_end]
        if b"=" in head:
            key, _, value = head.partition(b"=")
            rest = rest[line_end + 1 :]
        else:
            key = head
            (size,) = struct.unpack("<Q", rest[line_end + 1 : line_end + 9])
            value = rest[line_end + 9 : line_end + 9 + size]
            rest = rest[line_end + 9 + size + 1 :]
        fields[key.decode()] = value.decode()
    return fields


class JournalSocket:
    """Bound in `directory`; `run_child()` runs argv with this socket as the journal's."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "journal.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(RECEIVE_TIMEOUT)

    def run_child(
        self, argv: Sequence[str], *, env: dict[str, str], stderr_path: Path, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        setup = (
            "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal"
            " && touch /run/systemd/journal/socket"
            f" && mount --bind {shlex.quote(str(self.path))} /run/systemd/journal/socket"
            ' && exec "$@"'
        )
        with stderr_path.open("ab") as stderr:
            return subprocess.run(
                ["unshare", "-m", "sh", "-c", setup, "sh", *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                timeout=timeout,
            )

    def entries(self) -> list[dict[str, str]]:
        """Every entry received so far (the child has exited: nothing more is on its way)."""
        found = []
        self.sock.setblocking(False)
        try:
            while True:
                found.append(parse_entry(self.sock.recv(1 << 20)))
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(RECEIVE_TIMEOUT)
        return found

    def close(self) -> None:
        self.sock.close()
