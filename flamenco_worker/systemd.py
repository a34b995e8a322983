"""systemd notifications: READY, STATUS (mirrors the core), WATCHDOG, STOPPING, RELOADING.

Everything here is a no-op when NOTIFY_SOCKET is unset (not running under systemd).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping

import sdnotify

from flamenco_worker.status import FINAL
from flamenco_worker.worker import Worker

log = logging.getLogger(__name__)


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process
    return int(usec) / 1_000_000 / 2


class SystemdNotifier:
    def __init__(self, worker: Worker, env: Mapping[str, str] = os.environ) -> None:
        self._worker = worker
        self._enabled = bool(env.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self._enabled else None
        if self._notifier is not None and self._notifier.socket is not None:
            # Never block the event loop on a notify socket nobody reads: a full queue drops the message
            # (the next STATUS= supersedes it) instead of freezing the worker.
            self._notifier.socket.setblocking(False)
        self._interval = watchdog_interval(env) if self._enabled else None
        self._last_status = ""
        self._stopping_sent = False
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    def send(self, *lines: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(lines))

    def start(self) -> None:
        """Begin mirroring the core's state and pinging the watchdog."""
        if not self._enabled:
            return
        self._worker.subscribe(self._on_change)
        if self._interval is not None:
            log.debug("watchdog ping every %.1fs", self._interval)
            self._watchdog = asyncio.get_running_loop().create_task(self._ping_watchdog(self._interval))

    def ready(self) -> None:
        self.send("READY=1", self._status_line())

    def reloading(self) -> None:
        # sd_notify(3): RELOADING=1 carries the CLOCK_MONOTONIC time, so systemd (Type=notify-reload)
        # can tell this reload from an earlier one.
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", "STATUS=reloading configuration")

    def stopping(self) -> None:
        if not self._stopping_sent:
            self._stopping_sent = True
            self.send("STOPPING=1", self._status_line())

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog

    def _status_line(self) -> str:
        self._last_status = self._worker.snapshot().describe()
        return f"STATUS={self._last_status}"

    def _on_change(self) -> None:
        snap = self._worker.snapshot()
        pending = snap.pending
        if snap.status in FINAL or (pending is not None and pending.status in FINAL and not pending.lazy):
            self.stopping()
        if snap.describe() != self._last_status:
            self.send(self._status_line())

    async def _ping_watchdog(self, interval: float) -> None:
        # Runs on the event loop on purpose: a stuck loop stops the pings and systemd restarts us.
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
