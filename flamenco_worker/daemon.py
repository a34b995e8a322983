"""Wiring: the core plus its adapters (signals, D-Bus, systemd), started and stopped in order."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Mapping

from flamenco_worker import journal
from flamenco_worker.cancel import cancel_and_wait
from flamenco_worker.config import ConfigError, FlagValues, WorkerSettings, load_settings
from flamenco_worker.credentials import load_credentials
from flamenco_worker.dbus_service import BUS_NAME, DbusService

# The DNS-SD finder, loaded at start like every module the worker may run (an upgrade must not swap it
# under a running worker); the discovery loop uses it.
from flamenco_worker.discovery import avahi as _dns_sd  # noqa: F401
from flamenco_worker.instance import bus_name
from flamenco_worker.link import ManagerLink
from flamenco_worker.logs import set_level
from flamenco_worker.manager_client import ManagerClient, ManagerUnreachable, UnexpectedAnswer
from flamenco_worker.outbox import Outbox
from flamenco_worker.signals import SignalAdapter
from flamenco_worker.signon import SIGN_OFF_TIMEOUT
from flamenco_worker.status import ExitCode, Origin, WorkerStatus
from flamenco_worker.systemd import SystemdNotifier
from flamenco_worker.task_updates_sender import TaskUpdatesSender
from flamenco_worker.worker import RequestRefused, Worker

log = logging.getLogger(__name__)

#: Settings a SIGHUP applies at once; the others are read at start only.
LIVE_SETTINGS = frozenset({"manager_urls", "worker_name", "restart_exit_code", "log_level"})


#: `-flush` gives up after this long without emptying the queue.
FLUSH_TIMEOUT = 60.0
#: Exit code of `-flush` when updates remain queued (EX_TEMPFAIL: try again later).
EXIT_FLUSH_INCOMPLETE = 75

NO_MANAGER = "no Manager URL configured (manager_url / -manager)"


class Daemon:
    def __init__(
        self, settings: WorkerSettings, flags: FlagValues, env: Mapping[str, str] = os.environ
    ) -> None:
        self._flags = flags
        self._env = env
        self._link = ManagerLink(settings) if settings.manager_url else None
        self.worker = Worker(settings, task_source=self._link)
        if self._link is not None:
            self._link.attach(self.worker)
        self._notifier = SystemdNotifier(self.worker, env)
        self._signals = SignalAdapter(self.worker, self.reload)
        self._dbus = (
            DbusService(self.worker, settings.dbus, bus_name(BUS_NAME, settings.instance))
            if settings.dbus != "off"
            else None
        )
        self._core: asyncio.Task[int] | None = None
        self._fatal: ConfigError | None = None
        journal.follow_worker(self.worker)  # its id and name go on every journal entry
        journal.set_instance(settings.instance)  # flamenco-worker@NAME: FLAMENCO_INSTANCE=NAME

    async def run(self) -> int:
        worker = self.worker
        connecting: asyncio.Task[None] | None = None
        self._signals.install()  # before READY=1: a stop right after start must be handled
        try:
            if self._dbus is not None:
                await self._dbus.start()
            self._notifier.start()
            if self._link is not None:
                connecting = asyncio.get_running_loop().create_task(self._connect(self._link))
            else:
                log.warning("no Manager URL configured (manager_url / -manager): nothing to do but wait")
                worker.set_detail(NO_MANAGER)
                worker.request_status(WorkerStatus.AWAKE, lazy=False, origin=Origin.STARTUP)
            self._notifier.ready()
            log.info(
                "worker=%s%s ready: %s",
                worker.settings.worker_name,
                f" instance={worker.settings.instance}" if worker.settings.instance else "",
                worker.snapshot().describe(),
            )
            self._core = asyncio.get_running_loop().create_task(worker.run())
            try:
                code = await self._core
            except asyncio.CancelledError:
                if self._fatal is None:
                    raise
                code = ExitCode.CONFIG
            log.info("worker=%s exiting with code %d", worker.settings.worker_name, code)
            return code
        finally:
            self._notifier.stopping()
            if connecting is not None:
                await cancel_and_wait(connecting)
            if self._link is not None:
                await self._link.close()
            if self._dbus is not None:
                await self._dbus.close()
            await self._notifier.close()
            self._signals.uninstall()

    async def _connect(self, link: ManagerLink) -> None:
        try:
            requested = await link.connect()
        except ConfigError as exc:
            # e.g. a damaged credentials file: retrying cannot help, and systemd must not loop on it
            log.error("configuration error: %s", exc)
            self._fatal = exc
            if self._core is not None:
                self._core.cancel()
            return
        worker = self.worker
        if worker.status is not WorkerStatus.STARTING:
            link.acknowledge_current()  # a local request came first; latest wins
            return
        try:
            worker.request_status(requested, lazy=False, origin=Origin.MANAGER)
        except RequestRefused as exc:
            log.error("the Manager's first request (%s) was refused: %s; starting awake", requested, exc)
            worker.request_status(WorkerStatus.AWAKE, lazy=False, origin=Origin.STARTUP)

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
        live = LIVE_SETTINGS if self._link is not None else LIVE_SETTINGS - {"manager_urls"}
        later = changed - live
        if later:
            log.warning("reload: %s changed; takes effect after a restart", ", ".join(sorted(later)))
        applied = dataclasses.replace(new, **{name: getattr(old, name) for name in later})
        set_level(applied.log_level)
        self.worker.update_settings(applied)
        if self._link is not None:
            self._link.retarget(applied)
        now = sorted(changed & live)
        log.info("reload: config=%s applied %s", applied.config_path, ", ".join(now) if now else "no changes")


async def flush_and_sign_off(settings: WorkerSettings) -> int:
    """`-flush`: deliver queued task updates, sign off, exit (75 when updates remain)."""
    if not settings.manager_url:
        raise ConfigError("flag -flush: no Manager URL configured (manager_url / -manager)")
    creds = load_credentials(settings.flamenco_home)
    outbox = Outbox(settings.flamenco_home, required=True)
    client = ManagerClient(settings.manager_urls)
    try:
        queued = len(outbox)
        if creds is None:
            log.warning("no credentials in %s: this worker never registered", settings.flamenco_home)
            return ExitCode.OK if queued == 0 else EXIT_FLUSH_INCOMPLETE
        client.set_credentials(creds.worker_id, creds.worker_secret)
        sender = TaskUpdatesSender(client, outbox)
        try:
            done = await sender.flush(FLUSH_TIMEOUT)
        finally:
            await sender.close()
        left = len(outbox)
        log.info("flushed %d of %d queued task updates to %s", queued - left, queued, client.url)
        with contextlib.suppress(ManagerUnreachable, UnexpectedAnswer):
            await client.sign_off(SIGN_OFF_TIMEOUT)
        return ExitCode.OK if done else EXIT_FLUSH_INCOMPLETE
    finally:
        await client.close()
        outbox.close()
