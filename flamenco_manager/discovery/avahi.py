"""DNS-SD: the Manager published as `_flamenco._tcp` through avahi-daemon's D-Bus API.

Rules this module keeps:
- Nothing here is needed to serve: no system bus, no avahi-daemon or any D-Bus error is one log line and
  the Manager goes on without it. `start()` never raises and never waits long.
- One task owns the publication and handles one event at a time (avahi-daemon appearing or leaving, the
  entry group's state, the server's state), so a collision and a restart of avahi-daemon cannot interleave.
- Signals are subscribed to (AddMatch) before the first call that can cause them, so none is missed.
- A name collision (another service of the same name on the network, or on this host) takes Avahi's
  alternative name ("NAME #2", …) and publishes again; a restarted avahi-daemon gets the service again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbus_next import BusType, DBusError, Message, MessageType
from dbus_next.aio import MessageBus

if TYPE_CHECKING:
    from flamenco_manager.config import ManagerConfig

log = logging.getLogger(__name__)

SERVICE_TYPE = "_flamenco._tcp"
AVAHI = "org.freedesktop.Avahi"
SERVER_PATH = "/"
SERVER_IFACE = "org.freedesktop.Avahi.Server"
GROUP_IFACE = "org.freedesktop.Avahi.EntryGroup"
DBUS = "org.freedesktop.DBus"
# avahi-common/defs.h: any interface, any protocol; entry group and server states.
IF_UNSPEC = -1
PROTO_UNSPEC = -1
GROUP_UNCOMMITED, GROUP_REGISTERING, GROUP_ESTABLISHED, GROUP_COLLISION, GROUP_FAILURE = range(5)
SERVER_INVALID, SERVER_REGISTERING, SERVER_RUNNING, SERVER_COLLISION, SERVER_FAILURE = range(5)
COLLISION_ERROR = "org.freedesktop.Avahi.CollisionError"
# The Manager's name when nobody set one (flamenco_manager.config.DEFAULT_MANAGER_NAME).
DEFAULT_MANAGER_NAME = "Flamenco"
# A DNS label (the service instance name) holds at most 63 bytes; Avahi refuses longer names.
MAX_NAME_BYTES = 63
# Avahi numbers alternatives "NAME #2", "#3", …: after this many collisions in a row something is wrong
# (two publishers fighting), and the Manager stops trying rather than flood the network.
MAX_COLLISIONS = 20

#: Connecting to the local system bus takes milliseconds; the Manager's start must not hang on it.
CONNECT_TIMEOUT = 5.0
#: avahi-daemon answers each call at once; a call that takes longer than this means it is stuck.
CALL_TIMEOUT = 10.0
#: Withdrawing the service at shutdown is a courtesy (Avahi frees a departed client's entries anyway).
CLOSE_TIMEOUT = 2.0


def service_name(manager_name: str, hostname: str | None = None) -> str:
    """The DNS-SD instance name: the configured Manager name, or "Flamenco Manager on HOST"."""
    name = manager_name.strip()
    if not name or name == DEFAULT_MANAGER_NAME:
        name = f"Flamenco Manager on {hostname or socket.gethostname()}"
    raw = name.encode()[:MAX_NAME_BYTES]
    return raw.decode(errors="ignore")


def txt_records(values: Mapping[str, str]) -> list[bytes]:
    """TXT strings `key=value` as the aay Avahi wants (each at most 255 bytes)."""
    return [f"{key}={value}".encode()[:255] for key, value in values.items()]


@dataclass
class _Event:
    kind: str  # "owner", "group", "server"
    value: int | str
    path: str = ""


class AvahiPublisher:
    """Publishes one `_flamenco._tcp` service while the Manager runs; `start()` and `close()` once each."""

    def __init__(
        self,
        *,
        port: int,
        name: str,
        txt: Mapping[str, str] | None = None,
        enabled: bool = True,
        bus_address: str | None = None,
    ) -> None:
        self.port = port
        self.name = name
        self.txt = txt_records(txt if txt is not None else {"path": "/"})
        self.enabled = enabled
        self._bus_address = bus_address
        self._bus: MessageBus | None = None
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._group = ""  # object path of our entry group at the current avahi-daemon, "" when none
        self._collisions = 0
        self._owner = ""  # avahi-daemon's unique bus name, "" while it is not on the bus
        self._withdrawn = False  # our entries were reset while avahi-daemon registered its host name
        #: Set once the attempt to reach avahi-daemon is over, whether it succeeded or not.
        self.started = asyncio.Event()
        #: Set while the service is established under `self.name`.
        self.established = asyncio.Event()

    @classmethod
    def for_manager(cls, config: ManagerConfig, *, enabled: bool, port: int | None = None) -> AvahiPublisher:
        """The Manager's own service: its name, port (the bound one when given, else the configured one)
        and Flamenco version; not published when it only listens on loopback (nobody else could reach it)."""
        loopback = config.listen_host in ("localhost", "127.0.0.1", "::1")
        if enabled and loopback:
            log.info("dns-sd: not published listen=%s (loopback only)", config.listen)
        txt = {"path": "/", "version": config.flamenco_version}
        return cls(
            port=config.listen_port if port is None else port,
            name=service_name(config.manager_name),
            txt=txt,
            enabled=enabled and not loopback,
        )

    async def start(self) -> None:
        """Begin publishing in the background: the Manager's start never waits for the bus."""
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="avahi-publisher")
        else:
            self.started.set()

    async def _connect(self) -> bool:
        try:
            address = self._bus_address
            bus = MessageBus(bus_type=BusType.SYSTEM) if address is None else MessageBus(bus_address=address)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                self._bus = await bus.connect()
        except (OSError, DBusError, TimeoutError, EOFError, ValueError) as exc:
            log.info("dns-sd: not published, no system D-Bus error=%s", exc or type(exc).__name__)
            self._bus = None
            return False
        self._bus.add_message_handler(self._on_message)
        try:
            for rule in (
                f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged',arg0='{AVAHI}'",
                f"type='signal',interface='{GROUP_IFACE}',member='StateChanged'",
                f"type='signal',interface='{SERVER_IFACE}',member='StateChanged'",
            ):
                await self._call(DBUS, "/org/freedesktop/DBus", DBUS, "AddMatch", "s", [rule])
            owner = await self._name_owner()
        except (DBusError, TimeoutError, OSError, EOFError) as exc:
            log.info("dns-sd: not published error=%s", exc)
            await self._disconnect()
            return False
        if owner:
            self._events.put_nowait(_Event("owner", owner))
        else:
            log.info("dns-sd: avahi-daemon is not on the system bus; publishing when it starts")
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._bus is not None and self._group:
            with contextlib.suppress(DBusError, TimeoutError, OSError, EOFError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._call(AVAHI, self._group, GROUP_IFACE, "Free")
            log.info("dns-sd: withdrawn name=%r", self.name)
        self._group = ""
        await self._disconnect()

    async def _disconnect(self) -> None:
        if self._bus is None:
            return
        bus, self._bus = self._bus, None
        if bus.connected:
            bus.disconnect()
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()

    # --- the one task that owns the publication ---------------------------------------------------

    async def _run(self) -> None:
        try:
            if not await self._connect():
                return
        finally:
            self.started.set()
        while True:
            event = await self._events.get()
            try:
                await self._handle(event)
            except (DBusError, TimeoutError, OSError, EOFError) as exc:
                # avahi-daemon left mid-call or refused: the next owner change starts over.
                log.warning("dns-sd: publishing failed name=%r error=%s", self.name, exc)
            except Exception:
                # Publishing is a courtesy: whatever went wrong here must not end the Manager.
                log.exception("dns-sd: publishing failed name=%r", self.name)
            if self._bus is None or not self._bus.connected:
                log.info("dns-sd: the system bus went away; not published any more")
                return

    async def _handle(self, event: _Event) -> None:
        if event.kind == "owner":
            if event.value == self._owner:
                return  # the name change seen both by GetNameOwner and by its signal
            self._owner = str(event.value)
            self._group = ""
            self._withdrawn = False
            self.established.clear()
            if event.value:
                await self._publish()
            else:
                log.info("dns-sd: avahi-daemon left the bus; publishing again when it is back")
        elif event.kind == "server":
            if event.value in (SERVER_REGISTERING, SERVER_COLLISION) and self._group:
                # The host name is being (re)registered: our records follow it once the server runs again.
                await self._call(AVAHI, self._group, GROUP_IFACE, "Reset")
                self._withdrawn = True
                self.established.clear()
            elif event.value == SERVER_RUNNING and self._withdrawn:
                self._withdrawn = False
                await self._publish()
        elif event.kind == "group" and event.path == self._group:
            if event.value == GROUP_ESTABLISHED:
                self._collisions = 0
                log.info("dns-sd: published name=%r type=%s port=%d", self.name, SERVICE_TYPE, self.port)
                self.established.set()
            elif event.value == GROUP_COLLISION:
                self.established.clear()
                await self._rename("another service on the network has the name")
            elif event.value == GROUP_FAILURE:
                self.established.clear()
                log.warning("dns-sd: avahi-daemon could not publish name=%r", self.name)

    async def _publish(self) -> None:
        while True:
            if not self._group:
                (self._group,) = await self._call(AVAHI, SERVER_PATH, SERVER_IFACE, "EntryGroupNew")
            else:
                await self._call(AVAHI, self._group, GROUP_IFACE, "Reset")
            args = [IF_UNSPEC, PROTO_UNSPEC, 0, self.name, SERVICE_TYPE, "", "", self.port, self.txt]
            try:
                await self._call(AVAHI, self._group, GROUP_IFACE, "AddService", "iiussssqaay", args)
            except DBusError as exc:
                if exc.type != COLLISION_ERROR:
                    raise
                if not await self._rename("a service on this host has the name", publish=False):
                    return
                continue
            await self._call(AVAHI, self._group, GROUP_IFACE, "Commit")
            return

    async def _rename(self, why: str, *, publish: bool = True) -> bool:
        self._collisions += 1
        if self._collisions > MAX_COLLISIONS:
            log.warning("dns-sd: giving up after %d name collisions name=%r", MAX_COLLISIONS, self.name)
            return False
        (alternative,) = await self._call(
            AVAHI, SERVER_PATH, SERVER_IFACE, "GetAlternativeServiceName", "s", [self.name]
        )
        log.warning("dns-sd: name collision (%s) name=%r new_name=%r", why, self.name, alternative)
        self.name = alternative
        if publish:
            await self._publish()
        return True

    # --- the bus ----------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or msg.member not in ("StateChanged", "NameOwnerChanged"):
            return
        if msg.interface == DBUS and msg.body and msg.body[0] == AVAHI:
            self._events.put_nowait(_Event("owner", msg.body[2]))
        elif msg.interface == GROUP_IFACE:
            self._events.put_nowait(_Event("group", msg.body[0], msg.path))
        elif msg.interface == SERVER_IFACE and msg.path == SERVER_PATH:
            self._events.put_nowait(_Event("server", msg.body[0]))

    async def _name_owner(self) -> str:
        try:
            (owner,) = await self._call(DBUS, "/org/freedesktop/DBus", DBUS, "GetNameOwner", "s", [AVAHI])
        except DBusError as exc:
            if exc.type == "org.freedesktop.DBus.Error.NameHasNoOwner":
                return ""
            raise
        return str(owner)

    async def _call(
        self,
        dest: str,
        path: str,
        iface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> list[Any]:
        assert self._bus is not None
        msg = Message(
            destination=dest, path=path, interface=iface, member=member, signature=signature, body=body or []
        )
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation (close()).
        async with asyncio.timeout(CALL_TIMEOUT):
            reply = await self._bus.call(msg)
        assert reply is not None  # a method call always gets a reply
        if reply.message_type == MessageType.ERROR:
            raise DBusError(reply.error_name, reply.body[0] if reply.body else "", reply)
        return list(reply.body)
