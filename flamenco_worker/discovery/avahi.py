"""DNS-SD: Managers found by browsing `_flamenco._tcp` through avahi-daemon's D-Bus API.

Rules this finder keeps:
- No system bus, or no avahi-daemon on it: one debug line and the generator returns at once.
- The signal subscription (AddMatch) comes before ServiceBrowserNew, and signals are queued until the
  browser's object path is known: avahi-daemon may send the first ItemNew before the reply has been read.
- Every service found is resolved on the protocol it was seen on; each address becomes one Candidate
  (IPv6 link-local addresses carry their interface as zone, `[fe80::1%eth0]`), each URL at most once.
- A restarted avahi-daemon gets a new browser; the finder runs until `stop` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from dbus_next import BusType, DBusError, Message, MessageType
from dbus_next.aio import MessageBus

from flamenco_worker.discovery.candidates import Candidate

log = logging.getLogger(__name__)

SOURCE = "dns-sd"
SERVICE_TYPE = "_flamenco._tcp"
AVAHI = "org.freedesktop.Avahi"
SERVER_IFACE = "org.freedesktop.Avahi.Server"
BROWSER_IFACE = "org.freedesktop.Avahi.ServiceBrowser"
DBUS = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"
# avahi-common/defs.h: any interface, any protocol.
IF_UNSPEC = -1
PROTO_UNSPEC = -1

#: Connecting to the local system bus takes milliseconds; a worker must not wait long for a bus it lacks.
CONNECT_TIMEOUT = 5.0
#: avahi-daemon answers most calls at once; resolving asks the network and gives up by itself after ~5 s.
CALL_TIMEOUT = 10.0
#: Freeing the browser at the end is a courtesy (Avahi frees a departed client's browsers anyway).
CLOSE_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Resolved:
    """One resolved service instance, as avahi-daemon answers ResolveService."""

    interface: int
    name: str
    address: str
    port: int
    txt: dict[str, str]


def candidate_url(found: Resolved) -> str:
    """`http://ADDRESS:PORT/PATH`; IPv6 in brackets, link-local with its interface as zone."""
    host = found.address
    try:
        ip = ipaddress.ip_address(found.address)
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_link_local and found.interface >= 0:
            try:
                host = f"{found.address}%{socket.if_indextoname(found.interface)}"
            except OSError:
                host = f"{found.address}%{found.interface}"
        host = f"[{host}]"
    path = found.txt.get("path", "/")
    if not path.startswith("/"):
        path = "/"
    if not path.endswith("/"):
        path += "/"
    return f"http://{host}:{found.port}{path}"


def parse_txt(records: list[Any]) -> dict[str, str]:
    """TXT strings (aay) `key=value` → dict; keys are case-insensitive in DNS-SD, so lower-cased."""
    values: dict[str, str] = {}
    for raw in records:
        text = bytes(raw).decode(errors="replace")
        key, _, value = text.partition("=")
        values.setdefault(key.lower(), value)
    return values


def _system_bus(address: str | None) -> MessageBus:
    """The machine's system bus, or the bus at `address` (tests)."""
    return MessageBus(bus_type=BusType.SYSTEM) if address is None else MessageBus(bus_address=address)


@dataclass
class _Event:
    kind: str  # "owner", "item", "failure", "resolved", "stop"
    path: str = ""
    body: Any = None


async def find(stop: asyncio.Event, *, bus_address: str | None = None) -> AsyncGenerator[Candidate, None]:
    """Yield Managers that avahi-daemon finds, until `stop` is set; return at once without Avahi."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            bus = await _system_bus(bus_address).connect()
    except (OSError, DBusError, TimeoutError, EOFError, ValueError) as exc:
        log.debug("dns-sd: not browsing, no system D-Bus error=%s", exc or type(exc).__name__)
        return
    browser = _Browser(bus)
    found = browser.candidates(stop)
    try:
        if not await browser.start():
            return
        async for candidate in found:
            yield candidate
    finally:
        await found.aclose()
        await browser.close()


class _Browser:
    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._path = ""  # the ServiceBrowser at the current avahi-daemon, "" when none
        self._owner = ""
        self._resolving: set[asyncio.Task[None]] = set()
        self._seen: set[str] = set()

    async def start(self) -> bool:
        self._bus.add_message_handler(self._on_message)
        try:
            for rule in (
                f"type='signal',sender='{DBUS}',interface='{DBUS}',member='NameOwnerChanged',arg0='{AVAHI}'",
                f"type='signal',interface='{BROWSER_IFACE}'",
            ):
                await self._call(DBUS, DBUS_PATH, DBUS, "AddMatch", "s", [rule])
            self._owner = await self._name_owner()
            if not self._owner:
                log.debug("dns-sd: not browsing, avahi-daemon is not on the system bus")
                return False
            await self._new_browser()
        except (DBusError, TimeoutError, OSError, EOFError) as exc:
            log.debug("dns-sd: not browsing error=%s", exc)
            return False
        return True

    async def candidates(self, stop: asyncio.Event) -> AsyncGenerator[Candidate, None]:
        stopper = asyncio.create_task(self._stop_when(stop))
        try:
            while True:
                event = await self._events.get()
                if event.kind == "stop":
                    return
                if event.kind == "resolved":
                    url = candidate_url(event.body)
                    if url not in self._seen:
                        self._seen.add(url)
                        log.info("dns-sd: found name=%r url=%s", event.body.name, url)
                        yield Candidate(url, SOURCE)
                    continue
                try:
                    await self._handle(event)
                except (DBusError, TimeoutError, OSError, EOFError) as exc:
                    log.warning("dns-sd: browsing failed error=%s", exc)
                if not self._bus.connected:
                    log.info("dns-sd: the system bus went away; not browsing any more")
                    return
        finally:
            stopper.cancel()

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._events.put_nowait(_Event("stop"))

    async def _handle(self, event: _Event) -> None:
        if event.kind == "owner":
            if event.body == self._owner:
                return
            self._owner = event.body
            self._path = ""
            if self._owner:
                log.info("dns-sd: avahi-daemon is back; browsing again")
                await self._new_browser()
            else:
                log.info("dns-sd: avahi-daemon left the bus")
        elif event.path != self._path:
            return  # a browser of an earlier avahi-daemon, or another client's
        elif event.kind == "item":
            interface, protocol, name, service_type, domain, _flags = event.body
            task = asyncio.create_task(self._resolve(interface, protocol, name, service_type, domain))
            self._resolving.add(task)
            task.add_done_callback(self._resolving.discard)
        elif event.kind == "failure":
            log.warning("dns-sd: avahi-daemon's browser failed error=%s", event.body)

    async def _new_browser(self) -> None:
        args = [IF_UNSPEC, PROTO_UNSPEC, SERVICE_TYPE, "", 0]
        (self._path,) = await self._call(AVAHI, "/", SERVER_IFACE, "ServiceBrowserNew", "iissu", args)
        log.debug("dns-sd: browsing type=%s browser=%s", SERVICE_TYPE, self._path)

    async def _resolve(
        self, interface: int, protocol: int, name: str, service_type: str, domain: str
    ) -> None:
        # The address family asked for is the one the service was seen on: an IPv4 and an IPv6 sighting
        # each give their own candidate.
        args = [interface, protocol, name, service_type, domain, protocol, 0]
        try:
            body = await self._call(AVAHI, "/", SERVER_IFACE, "ResolveService", "iisssiu", args)
        except (DBusError, TimeoutError, OSError, EOFError) as exc:
            log.debug("dns-sd: could not resolve name=%r interface=%d error=%s", name, interface, exc)
            return
        if_index, _proto, found_name, _type, _domain, _host, _aproto, address, port, txt, _flags = body
        found = Resolved(if_index, found_name, address, port, parse_txt(txt))
        self._events.put_nowait(_Event("resolved", body=found))

    async def close(self) -> None:
        for task in list(self._resolving):
            task.cancel()
        for task in list(self._resolving):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._path and self._bus.connected:
            with contextlib.suppress(DBusError, TimeoutError, OSError, EOFError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._call(AVAHI, self._path, BROWSER_IFACE, "Free")
        if self._bus.connected:
            self._bus.disconnect()
        with contextlib.suppress(Exception):
            await self._bus.wait_for_disconnect()

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.interface == DBUS and msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == AVAHI:
            self._events.put_nowait(_Event("owner", body=msg.body[2]))
        elif msg.interface == BROWSER_IFACE and msg.member == "ItemNew":
            self._events.put_nowait(_Event("item", msg.path or "", msg.body))
        elif msg.interface == BROWSER_IFACE and msg.member == "Failure":
            self._events.put_nowait(_Event("failure", msg.path or "", msg.body[0] if msg.body else ""))

    async def _name_owner(self) -> str:
        try:
            (owner,) = await self._call(DBUS, DBUS_PATH, DBUS, "GetNameOwner", "s", [AVAHI])
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
        msg = Message(
            destination=dest, path=path, interface=iface, member=member, signature=signature, body=body or []
        )
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation.
        async with asyncio.timeout(CALL_TIMEOUT):
            reply = await self._bus.call(msg)
        assert reply is not None  # a method call always gets a reply
        if reply.message_type == MessageType.ERROR:
            raise DBusError(reply.error_name, reply.body[0] if reply.body else "", reply)
        return list(reply.body)
