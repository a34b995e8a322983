"""Wiring: the core plus its adapters (signals, D-Bus, systemd), started and stopped in order."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping

from flamenco_worker.config import ConfigError, FlagValues, WorkerSettings, load_settings
from flamenco_worker.dbus_service import DbusService
from flamenco_worker.logs import set_level
from flamenco_worker.signals import SignalAdapter
from flamenco_worker.status import Origin, WorkerStatus
from flamenco_worker.systemd import SystemdNotifier
from flamenco_worker.worker import Worker

log = logging.getLogger(__name__)

#: Settings a SIGHUP applies at once; the others are read at start only.
LIVE_SETTINGS = frozenset({"manager_url", "worker_name", "restart_exit_code", "log_level"})


def waiting_detail(settings: WorkerSettings) -> str:
    if settings.manager_url:
        return f"waiting for Manager at {settings.manager_url}"
    return "no Manager URL configured (manager_url / -manager)"


class Daemon:
    def __init__(
        self, settings: WorkerSettings, flags: FlagValues, env: Mapping[str, str] = os.environ
    ) -> None:
        self._flags = flags
        self._env = env
        self.worker = Worker(settings)
        self._notifier = SystemdNotifier(self.worker, env)
        self._signals = SignalAdapter(self.worker, self.reload)
        self._dbus = DbusService(self.worker, settings.dbus) if settings.dbus != "off" else None

    async def run(self) -> int:
        worker = self.worker
        self._signals.install()  # before READY=1: a stop right after start must be handled
        try:
            if self._dbus is not None:
                await self._dbus.start()
            self._notifier.start()
            worker.set_detail(waiting_detail(worker.settings))
            worker.request_status(WorkerStatus.AWAKE, lazy=False, origin=Origin.STARTUP)
            self._notifier.ready()
            log.info("worker=%s ready: %s", worker.settings.worker_name, worker.snapshot().describe())
            code = await worker.run()
            log.info("worker=%s exiting with code %d", worker.settings.worker_name, code)
            return code
        finally:
            self._notifier.stopping()
            if self._dbus is not None:
                await self._dbus.close()
            await self._notifier.close()
            self._signals.uninstall()

    def reload(self) -> None:
        """SIGHUP: re-read the configuration; a broken file keeps the running settings."""
        self._notifier.reloading()
        try:
            self._reload()
        except Exception:
            log.exception("reload failed; keeping the running settings")
        finally:
            self._notifier.ready()

    def _reload(self) -> None:
        old = self.worker.settings
        try:
            new = load_settings(self._flags, self._env)
        except ConfigError as exc:
            log.error("reload: %s; keeping the running settings", exc)
            return
        changed = {f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)}
        later = changed - LIVE_SETTINGS
        if later:
            log.warning("reload: %s changed; takes effect after a restart", ", ".join(sorted(later)))
        applied = dataclasses.replace(new, **{name: getattr(old, name) for name in later})
        set_level(applied.log_level)
        self.worker.update_settings(applied)
        if "manager_url" in changed:
            self.worker.set_detail(waiting_detail(applied))
        now = sorted(changed & LIVE_SETTINGS)
        log.info("reload: config=%s applied %s", applied.config_path, ", ".join(now) if now else "no changes")
