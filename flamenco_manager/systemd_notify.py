"""What the manager tells systemd (sd_notify): READY, STATUS, WATCHDOG and STOPPING.

Rules kept here:
- Nothing is sent when NOTIFY_SOCKET is unset (not running under systemd).
- A send never blocks the event loop: the socket is non-blocking, and a message that does not fit in a
  queue nobody reads is dropped (the next STATUS= or WATCHDOG=1 supersedes it).
- WATCHDOG=1 is sent by a task on the event loop, so a stuck loop stops the pings and systemd notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

# sd_watchdog_enabled(3) advises pinging at half of WATCHDOG_USEC: one late tick is not yet a timeout.
WATCHDOG_FRACTION = 0.5


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings, or None when systemd watches no process of ours."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None  # meant for another process
    return int(usec) / 1_000_000 * WATCHDOG_FRACTION


def _address(value: str) -> str:
    # "@name" is an abstract socket; its first byte is NUL on the wire.
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """sd_notify sender; silent when not under systemd."""

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self._sock: socket.socket | None = None
        self._interval = watchdog_interval(env)
        self._watchdog: asyncio.Task[None] | None = None
        path = env.get("NOTIFY_SOCKET", "")
        if not path:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            sock.connect(_address(path))
        except OSError as exc:
            sock.close()
            log.warning("cannot reach the notify socket socket=%s error=%s", path, exc)
            return
        self._sock = sock

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def watchdog_interval(self) -> float | None:
        return self._interval if self.enabled else None

    def send(self, *lines: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.send("\n".join(lines).encode())
        except BlockingIOError:
            log.debug("notify socket full, message dropped message=%s", lines[0])
        except OSError as exc:
            log.debug("notify failed message=%s error=%s", lines[0], exc)

    def start_watchdog(self) -> None:
        """Begin pinging WATCHDOG=1 from the running loop, when systemd asked for it."""
        interval = self.watchdog_interval
        if interval is None or self._watchdog is not None:
            return
        log.debug("watchdog ping every %.1fs", interval)
        self._watchdog = asyncio.get_running_loop().create_task(self._ping(interval))

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _ping(self, interval: float) -> None:
        # On the event loop on purpose: while the loop is stuck, no ping goes out and systemd restarts us.
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
