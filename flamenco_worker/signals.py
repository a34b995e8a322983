"""POSIX signals as core requests: SIGTERM/SIGINT shut down (a second one exits at once), SIGHUP reloads.

Handlers run on the event loop (`loop.add_signal_handler`) and only hand the event on: the first stop
signal becomes an "offline, immediately" request to the core (the task is aborted and handed back); the
second schedules the forced exit, which kills the task's processes and leaves without handing it back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable

from flamenco_worker.status import ExitCode, Origin, WorkerStatus
from flamenco_worker.worker import RequestRefused, Worker

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalAdapter:
    def __init__(self, worker: Worker, reload: Callable[[], None]) -> None:
        self._worker = worker
        self._reload = reload
        self._stop_requested = False

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._reload)

    def uninstall(self) -> None:
        """Called once the exit code is decided: a stop signal from now on changes nothing.

        Removing a loop handler restores the default action, which would turn a SIGTERM landing in the
        last moments of the exit into death by signal instead of the code the core chose; so the stop
        signals are ignored until the process is gone.
        """
        loop = asyncio.get_running_loop()
        for sig in (*STOP_SIGNALS, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)

    def _on_stop(self, sig: signal.Signals) -> None:
        if self._stop_requested:
            log.warning("signal=%s again: exiting at once without handing back the task", sig.name)
            asyncio.get_running_loop().call_soon(self._exit_now)
            return
        self._stop_requested = True
        log.info("signal=%s: shutting down (send it again to exit at once)", sig.name)
        try:
            self._worker.request_status(WorkerStatus.OFFLINE, lazy=False, origin=Origin.SIGNAL)
        except RequestRefused as exc:
            # Already on the way out (e.g. restarting): the signal upgrades nothing, but must not be lost.
            log.info("signal=%s: %s", sig.name, exc)

    def _exit_now(self) -> None:
        """The forced exit: the task's process group is killed; nothing else is waited for."""
        self._worker.force_stop()
        logging.shutdown()  # the warning above reaches the log before the process ends
        os._exit(ExitCode.OK)
