"""A small stand-in for avahi-daemon's D-Bus API (`org.freedesktop.Avahi`) on a private bus.

avahi-daemon itself needs the machine's system bus and a multicast network, so the unit tests meet this
instead: the same names, paths, signatures and signals, with the network replaced by what the test sets
(`services` that browsers find, names taken locally or on the network). Like avahi-daemon, it sends a
browser's first ItemNew right after its reply to ServiceBrowserNew, before a client could subscribe
to the new object path: a client that subscribes late misses it.
"""

# No `from __future__ import annotations` here: dbus-next reads the D-Bus signatures from the annotations.

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dbus_next import DBusError, Message
from dbus_next.aio import MessageBus
from dbus_next.service import ServiceInterface, method, signal

NAME = "org.freedesktop.Avahi"
LOCAL_COLLISION = "org.freedesktop.Avahi.CollisionError"
RESOLVE_TIMEOUT = "org.freedesktop.Avahi.TimeoutError"
UNCOMMITED, REGISTERING, ESTABLISHED, COLLISION, FAILURE = range(5)
SERVER_REGISTERING, SERVER_RUNNING = 1, 2
#: How often `wait` looks again at a condition that no call to the fake announces.
POLL_INTERVAL = 0.05

if TYPE_CHECKING:
    INT32 = int
    UINT32 = int
    UINT16 = int
    STRING = str
    PATH = str
    BYTES_LIST = list[bytes]
    ISSU = Any
    ITEM = Any
    RESOLVED = list[Any]
else:
    INT32 = "i"
    UINT32 = "u"
    UINT16 = "q"
    STRING = "s"
    PATH = "o"
    BYTES_LIST = "aay"
    ISSU = "is"
    ITEM = "iisssu"
    RESOLVED = "iissssisqaayu"


@dataclass(frozen=True)
class Service:
    """A `_flamenco._tcp` instance "on the network", as browsing finds and resolving answers it."""

    name: str
    address: str
    port: int
    interface: int = 2
    protocol: int = 0  # 0 IPv4, 1 IPv6
    txt: tuple[bytes, ...] = (b"path=/",)
    resolvable: bool = True


@dataclass
class Published:
    name: str
    type: str
    port: int
    txt: list[bytes]
    interface: int
    protocol: int


@dataclass
class FakeAvahi:
    """Owns `org.freedesktop.Avahi` on `address` between `start()` and `stop()` (a stop is a daemon exit)."""

    address: str
    services: list[Service] = field(default_factory=list)
    taken_locally: set[str] = field(default_factory=set)  # AddService raises CollisionError
    taken_on_network: set[str] = field(default_factory=set)  # Commit ends in the COLLISION state
    add_error: str = ""  # AddService fails with this D-Bus error (e.g. an invalid name)
    published: dict[str, Published] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    bus: MessageBus | None = None
    server: "Server | None" = None
    _paths: itertools.count = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> "FakeAvahi":
        self.bus = await MessageBus(bus_address=self.address).connect()
        self.server = Server(self)
        self.bus.export("/", self.server)
        await self.bus.request_name(NAME)
        return self

    async def stop(self) -> None:
        if self.bus is not None:
            # A round trip first: signals still queued behind it are written, not cut off by the close.
            await self.bus.call(
                Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus", member="GetId")
            )  # fmt: skip
            self.bus.disconnect()
            await self.bus.wait_for_disconnect()
            self.bus = None
        self.published.clear()

    def note(self, call: str) -> None:
        self.calls.append(call)
        self.changed.set()

    async def wait(self, predicate: Callable[[], object], within: float = 10.0) -> None:
        """Until `predicate()` holds: checked at each call the fake answers, and every POLL_INTERVAL for
        what the fake does not see (a client's log line)."""

        async def until() -> None:
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_INTERVAL):
                        await self.changed.wait()

        async with asyncio.timeout(within):
            await until()

    def export(self, kind: str, interface: ServiceInterface) -> str:
        assert self.bus is not None
        path = f"/Client1/{kind}{next(self._paths)}"
        self.bus.export(path, interface)
        return path

    def announce(self, service: Service) -> None:
        """A new Manager appears on the network: every browser reports it."""
        self.services.append(service)
        assert self.server is not None
        for browser in self.server.browsers:
            browser.ItemNew(service.interface, service.protocol, service.name, "_flamenco._tcp", "local", 0)


class Server(ServiceInterface):
    def __init__(self, avahi: FakeAvahi) -> None:
        super().__init__("org.freedesktop.Avahi.Server")
        self.avahi = avahi
        self.browsers: list[Browser] = []

    @method()
    def GetVersionString(self) -> STRING:
        return "avahi 0.8 (fake)"

    @method()
    def EntryGroupNew(self) -> PATH:
        self.avahi.note("EntryGroupNew")
        group = EntryGroup(self.avahi)
        group.path = self.avahi.export("EntryGroup", group)
        return group.path

    @method()
    def GetAlternativeServiceName(self, name: STRING) -> STRING:
        base, _, number = name.rpartition(" #")
        if base and number.isdigit():
            return f"{base} #{int(number) + 1}"
        return f"{name} #2"

    @method()
    def ServiceBrowserNew(
        self, interface: INT32, protocol: INT32, type: STRING, domain: STRING, flags: UINT32
    ) -> PATH:
        self.avahi.note(f"ServiceBrowserNew {type}")
        browser = Browser(self)
        path = self.avahi.export("ServiceBrowser", browser)
        self.browsers.append(browser)
        # Like avahi-daemon: the cached items go out right behind the reply.
        asyncio.get_running_loop().call_soon(browser.report_all, type)
        return path

    @method()
    def ResolveService(
        self,
        interface: INT32,
        protocol: INT32,
        name: STRING,
        type: STRING,
        domain: STRING,
        aprotocol: INT32,
        flags: UINT32,
    ) -> RESOLVED:
        self.avahi.note(f"ResolveService {name} {interface} {protocol} {aprotocol}")
        for s in self.avahi.services:
            if (s.name, s.interface, s.protocol) == (name, interface, protocol) and s.resolvable:
                return [s.interface, s.protocol, s.name, type, domain, "host.local", s.protocol, s.address,
                        s.port, list(s.txt), 0]  # fmt: skip
        raise DBusError(RESOLVE_TIMEOUT, "Timeout reached")

    @signal()
    def StateChanged(self, state: int, error: str) -> ISSU:
        return [state, error]


class Browser(ServiceInterface):
    def __init__(self, server: Server) -> None:
        super().__init__("org.freedesktop.Avahi.ServiceBrowser")
        self.server = server

    def report_all(self, service_type: str) -> None:
        for s in self.server.avahi.services:
            self.ItemNew(s.interface, s.protocol, s.name, service_type, "local", 0)
        self.AllForNow()

    @method()
    def Free(self) -> None:
        self.server.avahi.note("ServiceBrowser.Free")
        self.server.browsers.remove(self)

    @signal()
    def ItemNew(self, interface: int, protocol: int, name: str, type: str, domain: str, flags: int) -> ITEM:
        return [interface, protocol, name, type, domain, flags]

    @signal()
    def AllForNow(self) -> None:
        pass


class EntryGroup(ServiceInterface):
    def __init__(self, avahi: FakeAvahi) -> None:
        super().__init__("org.freedesktop.Avahi.EntryGroup")
        self.avahi = avahi
        self.path = ""
        self.state = UNCOMMITED
        self.pending: list[Published] = []

    @method()
    def AddService(
        self,
        interface: INT32,
        protocol: INT32,
        flags: UINT32,
        name: STRING,
        type: STRING,
        domain: STRING,
        host: STRING,
        port: UINT16,
        txt: BYTES_LIST,
    ) -> None:
        self.avahi.note(f"AddService {name}")
        if self.avahi.add_error:
            raise DBusError(self.avahi.add_error, "Refused")
        if name in self.avahi.taken_locally or name in self.avahi.published:
            raise DBusError(LOCAL_COLLISION, "Local name collision")
        self.pending.append(Published(name, type, port, list(txt), interface, protocol))

    @method()
    def Commit(self) -> None:
        self.avahi.note("Commit")
        self._set_state(REGISTERING)
        asyncio.get_running_loop().call_soon(self._settle)

    def _settle(self) -> None:
        if any(p.name in self.avahi.taken_on_network for p in self.pending):
            self._set_state(COLLISION)
            return
        for p in self.pending:
            self.avahi.published[p.name] = p
        self._set_state(ESTABLISHED)
        self.avahi.changed.set()

    @method()
    def Reset(self) -> None:
        self.avahi.note("Reset")
        self._withdraw()
        self._set_state(UNCOMMITED)

    @method()
    def Free(self) -> None:
        self.avahi.note("EntryGroup.Free")
        self._withdraw()

    @method()
    def GetState(self) -> INT32:
        return self.state

    def _withdraw(self) -> None:
        for p in self.pending:
            if self.avahi.published.get(p.name) is p:
                del self.avahi.published[p.name]
        self.pending = []

    def _set_state(self, state: int) -> None:
        self.state = state
        self.StateChanged(state, "")

    @signal()
    def StateChanged(self, state: int, error: str) -> ISSU:
        return [state, error]
